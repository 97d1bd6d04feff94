//! Admission control through the HTTP API of a node (`jobmesh node --api`): while the
//! node's congestion model says a queue's wait SLO breach is certain, a low-priority
//! enqueue is refused with a `queue-overloaded` problem (503) and nothing is stored;
//! others pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::{ApiSection, Config, WorkersSection};
use jobmesh::job::NodeId;
use jobmesh::predict::CongestionPredictor;
use jobmesh::predict::policy::congestion::{Admission, QueuePolicy};
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::{NewApiToken, Scope, TokenSecret};
use jobmesh_actors::{Node, NodeOptions};
use jobmesh_api::ApiServer;
use serde_json::json;

async fn token(store: &SharedStore) -> String {
    let secret = TokenSecret::generate();
    let id = store
        .create_token(
            &jobmesh::store::AuditContext::system(),
            &NewApiToken {
                name: "admission".into(),
                scopes: vec![Scope::Enqueue],
                queues: vec![],
            },
            &secret.hash(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    secret.text(id)
}

#[tokio::test]
async fn a_low_priority_enqueue_is_refused_with_503_while_the_breach_is_certain() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(
        jobmesh::store::sqlite::SqliteStore::open(&dir.path().join("a.db"))
            .await
            .unwrap(),
    );
    let config = Config::default();
    let registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
    let node = Node::start(NodeOptions {
        node_id: NodeId("admission".into()),
        workers: WorkersSection {
            concurrency: 2,
            poll_interval: Duration::from_millis(50),
            ..WorkersSection::default()
        },
        retry: config.retry.clone(),
        store,
        registry: registry.clone(),
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap();
    {
        // Two workers taking 500 ms jobs as they came, then a burst of 400.
        let models = node.models();
        let mut m = models.lock();
        let now = SystemClock.now().0;
        let mut t = now - 70_000;
        for _ in 0..60 {
            for _ in 0..2 {
                m.congestion.on_enqueue("default", t);
                m.congestion.on_start("default", t, 0.0);
            }
            t += 500;
            m.congestion.on_finish("default", t, 500.0);
            m.congestion.on_finish("default", t, 500.0);
        }
    }
    // Then 400 jobs wait in the store (the queue paused, so none starts): the node's
    // maintenance rounds read them (every second) and its model waits behind them.
    node.store()
        .pause_queue(
            &jobmesh::store::AuditContext::system(),
            "default",
            SystemClock.now(),
        )
        .await
        .unwrap();
    node.submit(vec![jobmesh::job::NewJob::new("noop", json!({})); 400])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node
        .models()
        .lock()
        .congestion
        .backlog("default")
        .map(|b| b.0)
        != Some(400.0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not read the backlog"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.set_queue_policies(BTreeMap::from([(
        "default".to_string(),
        QueuePolicy {
            wait_slo: Some(Duration::from_secs(30)),
            admission: Admission::Reject,
            low_priority: 0,
        },
    )]))
    .unwrap();
    let admission: jobmesh_api::state::Admission = Arc::new(node.admission());
    let api = ApiServer::start_in_node(
        node.store().clone(),
        Arc::new(registry),
        ApiSection {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ApiSection::default()
        },
        jobmesh_api::Extras {
            admission: Some(admission),
            ..Default::default()
        },
        node.metrics(),
    )
    .await
    .unwrap();
    let base = format!("http://{}/api/v1", api.local_addr());
    let http = reqwest::Client::new();
    let token = token(node.store()).await;
    let post = |body: serde_json::Value| {
        http.post(format!("{base}/jobs"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post(json!({"kind": "noop", "payload": {}, "priority": -5}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let problem: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(problem["type"], "urn:jobmesh:problem:queue-overloaded");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("queue `default` is overloaded"), "{detail}");
    assert_eq!(problem["field"], "priority");
    let stored = node
        .store()
        .counts()
        .await
        .unwrap()
        .get("default")
        .map(|c| c.values().sum::<u64>())
        .unwrap_or(0);
    assert_eq!(stored, 400, "a refused job is not stored");
    // Normal priority is admitted.
    let r = post(json!({"kind": "noop", "payload": {}})).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // In a batch only the low-priority job is refused.
    let r = http
        .post(format!("{base}/jobs/batch"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(
            json!({"jobs": [
                {"kind": "noop", "payload": {}},
                {"kind": "noop", "payload": {}, "priority": -1},
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("queue-overloaded"), "{text}");
    api.shutdown(Duration::from_secs(5)).await;
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}
