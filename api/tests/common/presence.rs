//! Node presence through the API: which live nodes serve each queue, a lost node, and
//! each worker's current job, on every backend.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::{Config, WorkersSection};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{NewJob, NodeId};
use jobmesh::store::SharedStore;
use jobmesh::store::presence::Presence;
use jobmesh::store::tokens::Scope;
use serde_json::{Value, json};

use super::{Harness, WAIT};

/// Expands to one test per case of this file, each with a fresh store from `$make`.
#[macro_export]
macro_rules! presence_suite {
    ($make:path) => {
        $crate::presence_suite!(@cases $make; queues_show_the_live_nodes_serving_them);
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::presence::$case($make().await).await;
            }
        )*
    };
}

const QUEUE: &str = "presence-q";

fn queue<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name}: {list}"))
}

fn node<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
}

/// A queue with a job and no node serves nobody; a node started on it serves it at
/// once, and once its presence is refreshed its worker's current job is the `sleep` job
/// it runs (hidden from a token of another queue); a node whose row lapsed is lost and
/// serves nothing; a node that stops gracefully serves nothing.
pub async fn queues_show_the_live_nodes_serving_them(store: SharedStore) {
    let h = Harness::start(store.clone(), false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &[]).await;
    let (_, other) = h.token(&[Scope::Read], &["elsewhere"]).await;
    let mut job = NewJob::new("sleep", json!({"ms": 60_000}));
    job.queue = QUEUE.into();
    let id = super::seed(&store, vec![job]).await[0];

    let (status, list) = h.get("/api/v1/queues", &t).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(queue(&list, QUEUE)["served_by"], json!([]), "{list}");

    let config = Config::default();
    let n = jobmesh_actors::Node::start(jobmesh_actors::NodeOptions {
        node_id: NodeId("presence-node".into()),
        workers: WorkersSection {
            concurrency: 1,
            queues: vec![QUEUE.into()],
            poll_interval: Duration::from_millis(50),
            ..WorkersSection::default()
        },
        retry: config.retry.clone(),
        store: store.clone(),
        registry: jobmesh::handler::builtin::registry(&config.exec, &config.http),
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap();
    let (_, list) = h.get("/api/v1/queues", &t).await;
    assert_eq!(
        queue(&list, QUEUE)["served_by"],
        json!(["presence-node"]),
        "served from the node's start: {list}"
    );

    // The worker's slot is in the row from the next refresh (every 5 s).
    let deadline = tokio::time::Instant::now() + WAIT;
    let seen = loop {
        let (status, body) = h.get("/api/v1/nodes", &t).await;
        assert_eq!(status, 200, "{body}");
        let done = node(&body, "presence-node").and_then(|n| {
            let w = n["workers"]
                .as_array()?
                .iter()
                .find(|w| w["id"] == "presence-node/w0")?;
            (w["current_job"]["id"] == id).then(|| n.clone())
        });
        if let Some(n) = done {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen["state"], "up", "{seen}");
    assert_eq!(seen["slots"], 1, "{seen}");
    assert_eq!(seen["running"], 1, "{seen}");
    assert_eq!(seen["queues"], json!([QUEUE]), "{seen}");
    assert!(seen["last_heartbeat"].is_i64(), "{seen}");
    let current = &seen["workers"][0]["current_job"];
    assert_eq!(
        (&current["kind"], &current["queue"]),
        (&json!("sleep"), &json!(QUEUE)),
        "{seen}"
    );
    assert!(current["started_at"].is_i64(), "{seen}");

    // A token of another queue sees the node, not the job or the queue.
    let (_, body) = h.get("/api/v1/nodes", &other).await;
    let hidden = node(&body, "presence-node").expect("the node is listed");
    assert_eq!(hidden["queues"], json!([]), "{hidden}");
    assert!(
        hidden["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["current_job"].is_null()),
        "{hidden}"
    );

    // A node that joined and went silent an hour ago is lost, and serves nothing.
    let now = SystemClock.now();
    let hour_ago = jobmesh::clock::Millis(now.0 - 3_600_000);
    store
        .record_events(vec![
            LifecycleEvent::new(EventKind::NodeJoined, hour_ago).node(NodeId("ghost".into())),
        ])
        .await
        .unwrap();
    store
        .announce(&Presence {
            node: NodeId("ghost".into()),
            queues: vec![QUEUE.into()],
            slots: 4,
            working: Vec::new(),
            started_at: hour_ago,
            seen_at: hour_ago,
            every: Duration::from_secs(5),
        })
        .await
        .unwrap();
    let (_, body) = h.get("/api/v1/nodes", &t).await;
    let ghost = node(&body, "ghost").expect("the ghost is listed");
    assert_eq!(ghost["state"], "lost", "{ghost}");
    assert_eq!(ghost["last_heartbeat"], hour_ago.0, "{ghost}");
    let (_, list) = h.get("/api/v1/queues", &t).await;
    assert_eq!(
        queue(&list, QUEUE)["served_by"],
        json!(["presence-node"]),
        "{list}"
    );

    // A graceful stop withdraws the row: the queue (its job handed back) has no server.
    n.shutdown(Duration::from_millis(200)).await.unwrap();
    let (_, list) = h.get("/api/v1/queues", &t).await;
    assert_eq!(queue(&list, QUEUE)["served_by"], json!([]), "{list}");
    h.stop().await;
}
