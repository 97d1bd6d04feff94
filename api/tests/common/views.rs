//! The read-side views on every backend (`views_suite!`, called from `api_sqlite.rs`,
//! `api_postgres.rs` and `api_redis_postgres.rs`): a job's attempts and timeline,
//! queues with their pause, oldest age and throughput, nodes and workers, and the
//! mesh route of a process without a mesh. (A real mesh node's `/api/v1/mesh` is
//! tested through the binary in `cli/tests/api_mesh.rs`.)

use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{ClaimRequest, Completion, JobState, NewJob, NodeId, Outcome, WorkerId};
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::Scope;
use serde_json::{Value, json};

pub use super::predictions::predictions_show_what_a_node_learned;
use super::{Harness, WAIT, job};

/// Expands to one test per views case, each on a fresh store from `$make`.
#[macro_export]
macro_rules! views_suite {
    ($make:path) => {
        $crate::views_suite!(@cases $make;
            job_detail_shows_attempts_and_timeline, queue_view_shows_pause_age_and_throughput,
            nodes_view_shows_the_node_and_its_workers, hostile_view_params_are_refused_by_name,
            predictions_show_what_a_node_learned, queue_counts_come_from_the_maintenance_leader);
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::views::$case($make().await).await;
            }
        )*
    };
}

fn kinds(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

/// A job that failed once and then succeeded, run by a real node: its view lists two
/// attempts (the failure's error masked as stored) and its events in order; `events`
/// bounds the timeline and says it was cut; a token of another queue is refused.
pub async fn job_detail_shows_attempts_and_timeline(store: SharedStore) {
    let h = Harness::start(store, true, |_| {}).await;
    let (_, t) = h.token(&[Scope::Enqueue, Scope::Read], &[]).await;
    let (_, other_queue) = h.token(&[Scope::Read], &["elsewhere"]).await;
    let (status, body) = h
        .post(
            "/api/v1/jobs",
            &t,
            &job(
                "fail",
                json!({"message": "flaky password=hunter2", "times": 1}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    // The default backoff waits 1 s (+ jitter) after the first attempt.
    h.wait_state(id, JobState::Succeeded).await;

    let (status, view) = h.get(&format!("/api/v1/jobs/{id}"), &t).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["state"].as_str(), view["attempt"].as_i64()),
        (Some("succeeded"), Some(2))
    );
    let attempts = view["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{view}");
    assert_eq!(
        (
            attempts[0]["attempt"].as_i64(),
            attempts[0]["outcome"].as_str()
        ),
        (Some(1), Some("failed"))
    );
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains("flaky") && !error.contains("hunter2"),
        "{error}"
    );
    assert_eq!(
        (
            attempts[1]["attempt"].as_i64(),
            attempts[1]["outcome"].as_str()
        ),
        (Some(2), Some("succeeded"))
    );
    assert!(attempts[1]["error"].is_null());
    for a in attempts {
        assert_eq!(a["node"], "api-test", "{a}");
        assert!(
            a["worker"].as_str().unwrap().starts_with("api-test/"),
            "{a}"
        );
        assert!(a["duration_ms"].as_i64().unwrap() >= 0, "{a}");
    }
    assert!(
        attempts[0]["finished_at"].as_i64() <= attempts[1]["started_at"].as_i64(),
        "{view}"
    );
    assert_eq!(view["attempts_truncated"], false);
    assert_eq!(
        kinds(&view["events"]),
        [
            "job.enqueued",
            "job.claimed",
            "job.failed",
            "job.retry_scheduled",
            "job.claimed",
            "job.succeeded"
        ]
    );
    let seqs: Vec<i64> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    assert!(
        !view["events"].to_string().contains("hunter2"),
        "the failure's event is masked too"
    );
    assert_eq!(view["events_truncated"], false);

    let (status, short) = h.get(&format!("/api/v1/jobs/{id}?events=2"), &t).await;
    assert_eq!(status, 200, "{short}");
    assert_eq!(kinds(&short["events"]), ["job.enqueued", "job.claimed"]);
    assert_eq!(short["events_truncated"], true);

    let (status, body) = h.get(&format!("/api/v1/jobs/{id}"), &other_queue).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.get("attempts").is_none(),
        "nothing of the job leaks: {body}"
    );
    h.stop().await;
}

/// The queue view: a paused queue shows its pause (also with no job in it), the age of
/// its oldest available job (across priorities), and each queue the jobs it finished
/// in the last minute; a token limited to a queue sees only that queue.
pub async fn queue_view_shows_pause_age_and_throughput(store: SharedStore) {
    let h = Harness::start(store.clone(), false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &[]).await;
    let (_, mail_only) = h.token(&[Scope::Read], &["mail"]).await;
    let now = SystemClock.now();
    let on = |q: &str, priority: i16| {
        let mut j = NewJob::new("noop", json!({}));
        j.queue = q.into();
        j.priority = priority;
        j
    };
    // The low-priority job has waited longest: 30 s against 5 s.
    store
        .enqueue(vec![on("mail", -5)], Millis(now.0 - 30_000))
        .await
        .unwrap();
    store
        .enqueue(
            vec![on("mail", 50), on("default", 0)],
            Millis(now.0 - 5_000),
        )
        .await
        .unwrap();
    let system = jobmesh::store::AuditContext::system();
    store.pause_queue(&system, "mail", now).await.unwrap();
    store.pause_queue(&system, "empty", now).await.unwrap();
    // One job of `default` finished just now.
    let claimed = store
        .claim(&ClaimRequest {
            queues: vec!["default".into()],
            worker: WorkerId("t/w0".into()),
            node: NodeId("t".into()),
            limit: 1,
            lease_for: Duration::from_secs(30),
            now,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .complete(vec![Completion {
            lease: claimed[0].lease.clone(),
            outcome: Outcome::Succeeded { output: None },
            started_at: now,
            finished_at: now,
        }])
        .await
        .unwrap();

    let (status, body) = h.get("/api/v1/queues", &t).await;
    assert_eq!(status, 200, "{body}");
    let queues = body["queues"].as_array().unwrap();
    let find = |name: &str| {
        queues
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {body}"))
    };
    let mail = find("mail");
    assert_eq!(mail["paused"], true, "{mail}");
    assert!(mail["paused_at"].as_i64().unwrap() >= now.0, "{mail}");
    assert_eq!(mail["counts"]["available"], 2, "{mail}");
    let age = mail["oldest_available_age_ms"].as_u64().unwrap();
    assert!(
        (30_000..30_000 + WAIT.as_millis() as u64).contains(&age),
        "the priority -5 job is the oldest: {mail}"
    );
    assert_eq!(mail["throughput"]["finished"], 0, "{mail}");
    let default = find("default");
    assert_eq!(default["paused"], false, "{default}");
    assert!(default["paused_at"].is_null());
    assert!(
        default["oldest_available_age_ms"].is_null(),
        "none available: {default}"
    );
    let tp = &default["throughput"];
    assert_eq!(
        (
            tp["window_ms"].as_u64(),
            tp["finished"].as_u64(),
            tp["succeeded"].as_u64()
        ),
        (Some(60_000), Some(1), Some(1)),
        "{default}"
    );
    assert!(tp["per_second"].as_f64().unwrap() > 0.0, "{default}");
    let empty = find("empty");
    assert_eq!(
        (empty["paused"].as_bool(), empty["total"].as_u64()),
        (Some(true), Some(0))
    );

    let (status, body) = h.get("/api/v1/queues", &mail_only).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mail"]);
    h.stop().await;
}

/// With `api.counts_max_age` set, an API process serves the counts the node holding the
/// maintenance leader lease posts (`counted_by: leader`), which re-reads them as often
/// as the API's wish asks (its post says how fresh it keeps them) and so follows every
/// change; without a node, the API process counts itself (`counted_by: api`).
pub async fn queue_counts_come_from_the_maintenance_leader(store: SharedStore) {
    let max_age = |api: &mut jobmesh::config::ApiSection| {
        api.counts_max_age = Duration::from_secs(2);
    };
    let held = |n: usize| {
        (0..n)
            .map(|_| {
                let mut j = NewJob::new("noop", json!({}));
                j.queue = "held".into();
                j
            })
            .collect::<Vec<_>>()
    };
    store.enqueue(held(3), SystemClock.now()).await.unwrap();
    // Posts this build cannot read (another version's, or junk) are not counts: the API
    // counts for itself.
    let now = SystemClock.now();
    store.post("queue_counts", b"{not json", now).await.unwrap();
    store
        .post("queue_counts.wish", b"\xff\x00", now)
        .await
        .unwrap();
    let alone = Harness::start(store.clone(), false, max_age).await;
    let (_, t) = alone.token(&[Scope::Read], &[]).await;
    let (status, body) = alone.get("/api/v1/queues", &t).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["counted_by"], "api", "no node, no leader: {body}");
    alone.stop().await;

    // `held` is no queue of the node's: its jobs stay available.
    let h = Harness::start(store.clone(), true, max_age).await;
    let led = |body: &Value, n: u64| {
        body["counted_by"] == "leader"
            && body["queues"]
                .as_array()
                .unwrap()
                .iter()
                .any(|q| q["name"] == "held" && q["counts"]["available"] == n)
    };
    let until_led = |n: u64| {
        let h = &h;
        let t = &t;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (status, body) = h.get("/api/v1/queues", t).await;
                assert_eq!(status, 200, "{body}");
                if led(&body, n) {
                    return body;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no leader's count of {n} held jobs: {body}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until_led(3).await;
    // The API's wish reached the leader: its posts say how fresh it keeps them.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = h.get("/api/v1/queues", &t).await;
        let posted = jobmesh::metrics::posted_counts::PostedCounts::latest(&*store)
            .await
            .unwrap()
            .expect("the leader posted");
        if posted.fresh_within_ms > 0 {
            assert!(posted.fresh_within_ms <= 2_000, "{posted:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader never took the wish: {posted:?} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.enqueue(held(2), SystemClock.now()).await.unwrap();
    let body = until_led(5).await;
    assert!(
        body["counts_at"].as_i64().unwrap() > 0,
        "when the leader counted: {body}"
    );
    h.stop().await;
}

/// The nodes view on a real node: it is up with its two workers running; a crash and a
/// restart in the record count; on a backend with heartbeats (redis_postgres) the live
/// registry is read and shows the node and its workers. Without a mesh, `/api/v1/mesh`
/// is a 404 problem saying so.
pub async fn nodes_view_shows_the_node_and_its_workers(store: SharedStore) {
    let has_heartbeats = store.heartbeats().is_some();
    let h = Harness::start(store.clone(), true, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &["default"]).await;
    let now = SystemClock.now();
    store
        .record_events(vec![
            LifecycleEvent::new(EventKind::WorkerCrashed, now)
                .worker(WorkerId("api-test/w1".into()))
                .node(NodeId("api-test".into())),
            LifecycleEvent::new(EventKind::WorkerRestarted, now)
                .worker(WorkerId("api-test/w1".into()))
                .node(NodeId("api-test".into())),
        ])
        .await
        .unwrap();
    // The node's own events go through its batched event sink, and its heartbeat comes
    // with its maintenance round: poll until both are in.
    let deadline = tokio::time::Instant::now() + WAIT;
    let node = loop {
        let (status, body) = h.get("/api/v1/nodes", &t).await;
        assert_eq!(status, 200, "{body}");
        let want = if has_heartbeats { "live" } else { "none" };
        assert_eq!(body["heartbeats"], want, "{body}");
        let node = body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "api-test")
            .cloned();
        let ready = node.as_ref().is_some_and(|n| {
            n["workers"].as_array().unwrap().len() == 2
                && (!has_heartbeats || n["heartbeat_until"].is_i64())
        });
        if ready {
            break node.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(node["state"], "up", "{node}");
    assert!(node["last_seen"].as_i64().is_some(), "{node}");
    let workers = node["workers"].as_array().unwrap();
    let ids: Vec<&str> = workers.iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["api-test/w0", "api-test/w1"]);
    assert!(workers.iter().all(|w| w["state"] == "running"), "{node}");
    assert_eq!(
        (
            workers[1]["restarts"].as_u64(),
            workers[1]["crashes"].as_u64()
        ),
        (Some(1), Some(1)),
        "{node}"
    );
    if has_heartbeats {
        assert!(
            workers.iter().all(|w| w["heartbeat_until"].is_i64()),
            "{node}"
        );
    }

    let (status, body) = h.get("/api/v1/mesh", &t).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "urn:jobmesh:problem:not-found");
    assert!(
        body["detail"].as_str().unwrap().contains("no mesh node"),
        "{body}"
    );
    h.stop().await;
}

/// Bad ids and parameters of the views are refused with 400 naming them, and change
/// nothing; a token without `read` gets 403.
pub async fn hostile_view_params_are_refused_by_name(store: SharedStore) {
    let h = Harness::start(store.clone(), false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &[]).await;
    let (_, enqueue_only) = h.token(&[Scope::Enqueue], &[]).await;
    let id = super::seed(&store, vec![NewJob::new("noop", json!({}))]).await[0];
    let cases: [(String, &str); 8] = [
        ("/api/v1/jobs/abc".into(), "id"),
        ("/api/v1/jobs/1'%20OR%201=1".into(), "id"),
        ("/api/v1/jobs/99999999999999999999999".into(), "id"),
        (format!("/api/v1/jobs/{id}?events=0"), "events"),
        (format!("/api/v1/jobs/{id}?events=1001"), "events"),
        (format!("/api/v1/jobs/{id}?events=-1"), "events"),
        (format!("/api/v1/jobs/{id}?events=lots"), "events"),
        (
            format!("/api/v1/jobs/{id}?events=99999999999999999999"),
            "events",
        ),
    ];
    for (path, field) in &cases {
        let (status, body) = h.get(path, &t).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["field"], *field, "{path}: {body}");
        assert_eq!(
            body["type"], "urn:jobmesh:problem:invalid-field",
            "{path}: {body}"
        );
    }
    let (status, body) = h.get(&format!("/api/v1/jobs/{id}?bogus=1"), &t).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("bogus"), "{body}");
    let (status, body) = h.get(&format!("/api/v1/jobs/{id}?events=1000"), &t).await;
    assert_eq!(status, 200, "the bound itself is allowed: {body}");
    for path in ["/api/v1/nodes", "/api/v1/mesh", "/api/v1/queues"] {
        let (status, body) = h.get(path, &enqueue_only).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert_eq!(h.job_count().await, 1, "nothing was stored");
    h.stop().await;
}
