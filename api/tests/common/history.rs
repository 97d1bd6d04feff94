//! The throughput history on every backend (`history_suite!`, called from
//! `api_sqlite.rs`, `api_postgres.rs` and `api_redis_postgres.rs`), over HTTP: jobs
//! enqueued and finished twenty minutes ago, by no node of the test, show in the
//! intervals of their times; a token limited to queues sees its queues only; the
//! parameters are bounded; one read serves every caller for `api.counts_max_age`. And
//! the incident history: rescues, worker crashes and restarts and evictions recorded
//! twenty minutes ago, per minute, for tokens not limited to queues.

use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{ClaimRequest, Completion, NewJob, NodeId, Outcome, WorkerId};
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::Scope;
use serde_json::{Value, json};

use super::Harness;

/// Expands to one test per history case, each on a fresh store from `$make`.
#[macro_export]
macro_rules! history_suite {
    ($make:path) => {
        $crate::history_suite!(@cases $make;
            throughput_history_holds_jobs_finished_before_it_was_asked,
            incident_history_counts_rescues_restarts_and_evictions_by_minute);
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::history::$case($make().await).await;
            }
        )*
    };
}

/// Enqueues `n` jobs on `queue` at `at`; claims and finishes them at `done_at` through
/// the store (no node serves these queues), the first `failed` dead-lettered.
async fn run_past(
    store: &SharedStore,
    queue: &str,
    n: usize,
    failed: usize,
    at: Millis,
    done_at: Millis,
) {
    let jobs = (0..n)
        .map(|_| NewJob {
            queue: queue.into(),
            ..NewJob::new("noop", json!({}))
        })
        .collect();
    store.enqueue(jobs, at).await.unwrap();
    let claimed = store
        .claim(&ClaimRequest {
            queues: vec![queue.into()],
            worker: WorkerId("elsewhere/w0".into()),
            node: NodeId("elsewhere".into()),
            limit: n as u32,
            lease_for: Duration::from_secs(3600),
            now: at,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), n);
    let done = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| Completion {
            lease: c.lease.clone(),
            outcome: if i < failed {
                Outcome::Discard {
                    error: "boom".into(),
                }
            } else {
                Outcome::Succeeded { output: None }
            },
            started_at: at,
            finished_at: done_at,
        })
        .collect();
    store.complete(done).await.unwrap();
}

/// Sums of the three series over a view's intervals.
fn totals(view: &Value) -> (u64, u64, u64) {
    let all = view["intervals"].as_array().unwrap();
    let sum = |f: &str| all.iter().map(|i| i[f].as_u64().unwrap()).sum::<u64>();
    (sum("enqueued"), sum("succeeded"), sum("failed"))
}

/// The interval of `view` that holds `at`.
fn holding(view: &Value, at: Millis) -> Value {
    let step = view["interval"].as_i64().unwrap() * 1000;
    view["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            let start = i["at"].as_i64().unwrap();
            start <= at.0 && at.0 < start + step
        })
        .cloned()
        .unwrap_or_else(|| panic!("no interval holds {at:?}: {view}"))
}

/// Jobs enqueued twenty minutes ago and finished a minute later (by no node of this
/// test) are in the intervals of those times, per 10 s and per minute; a token limited
/// to one queue sees that queue's alone and may not ask for another; bad parameters are
/// refused by name; a second read within `api.counts_max_age` is the first one.
pub async fn throughput_history_holds_jobs_finished_before_it_was_asked(store: SharedStore) {
    let h = Harness::start(store, false, |api| {
        api.counts_max_age = Duration::from_secs(60);
    })
    .await;
    let now = SystemClock.now();
    let at = Millis(now.0 - 20 * 60_000);
    let done_at = Millis(at.0 + 60_000);
    run_past(&h.store, "mail", 5, 2, at, done_at).await;
    run_past(&h.store, "web", 4, 0, at, done_at).await;
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let (_, web_only) = h.token(&[Scope::Read], &["web"]).await;

    let (status, tens) = h.get("/api/v1/stats/throughput", &reader).await;
    assert_eq!(status, 200, "{tens}");
    assert_eq!(tens["interval"], 10);
    assert_eq!(tens["intervals"].as_array().unwrap().len(), 360, "an hour");
    assert_eq!(totals(&tens), (9, 7, 2), "{tens}");
    let enq = holding(&tens, at);
    assert_eq!(
        (enq["enqueued"].clone(), enq["succeeded"].clone()),
        (json!(9), json!(0))
    );
    let fin = holding(&tens, done_at);
    assert_eq!(
        (
            fin["enqueued"].clone(),
            fin["succeeded"].clone(),
            fin["failed"].clone()
        ),
        (json!(0), json!(7), json!(2))
    );

    let (status, minutes) = h
        .get("/api/v1/stats/throughput?interval=60&minutes=30", &reader)
        .await;
    assert_eq!(status, 200, "{minutes}");
    assert_eq!(minutes["intervals"].as_array().unwrap().len(), 30);
    assert_eq!(totals(&minutes), (9, 7, 2));
    let (_, recent) = h
        .get("/api/v1/stats/throughput?interval=60&minutes=5", &reader)
        .await;
    assert_eq!(
        totals(&recent),
        (0, 0, 0),
        "twenty minutes ago is not in the last five"
    );

    // A token limited to `web`: its queue alone, and no other for the asking.
    let (status, web) = h.get("/api/v1/stats/throughput", &web_only).await;
    assert_eq!(status, 200, "{web}");
    assert_eq!(totals(&web), (4, 4, 0), "{web}");
    let (status, body) = h
        .get("/api/v1/stats/throughput?queue=mail", &web_only)
        .await;
    assert_eq!(
        (status, body["field"].clone()),
        (403, json!("queue")),
        "{body}"
    );
    let (_, mail) = h.get("/api/v1/stats/throughput?queue=mail", &reader).await;
    assert_eq!(totals(&mail), (5, 3, 2), "{mail}");

    for (query, field) in [
        ("interval=30", "interval"),
        ("minutes=0", "minutes"),
        ("minutes=61", "minutes"),
        ("minutes=-1", "minutes"),
        ("queue=", "queue"),
        ("span=5", ""),
    ] {
        let (status, body) = h
            .get(&format!("/api/v1/stats/throughput?{query}"), &reader)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        if !field.is_empty() {
            assert_eq!(body["field"], field, "{query}: {body}");
        }
    }

    // Shared: jobs finished after the read show only once it is `counts_max_age` old.
    run_past(&h.store, "mail", 3, 0, now, now).await;
    let (_, again) = h.get("/api/v1/stats/throughput", &reader).await;
    assert_eq!(again["read_at"], tens["read_at"], "{again}");
    assert_eq!(totals(&again), (9, 7, 2));
    h.stop().await;
}

/// Rescues, a worker crash and its restart and an eviction recorded twenty minutes ago
/// (and a rescue now, and job events that are no incident) are counted in the minutes
/// of their times; a token limited to queues is refused; bad parameters are refused by
/// name; a second read within `api.counts_max_age` is the first one.
pub async fn incident_history_counts_rescues_restarts_and_evictions_by_minute(store: SharedStore) {
    let h = Harness::start(store, false, |api| {
        api.counts_max_age = Duration::from_secs(60);
    })
    .await;
    let now = SystemClock.now();
    // The start of a minute twenty minutes back, and 10 s into it.
    let minute = Millis((now.0 - 20 * 60_000).div_euclid(60_000) * 60_000);
    let at = Millis(minute.0 + 10_000);
    let ev = |kind: EventKind, at: Millis| LifecycleEvent::new(kind, at);
    h.store
        .record_events(vec![
            ev(EventKind::JobRescued, at),
            ev(EventKind::JobRescued, at),
            ev(EventKind::JobRescued, at),
            ev(EventKind::WorkerCrashed, at),
            ev(EventKind::WorkerRestarted, at),
            ev(EventKind::NodeEvicted, Millis(at.0 + 60_000)),
            ev(EventKind::JobSucceeded, at),
            ev(EventKind::NodeJoined, at),
        ])
        .await
        .unwrap();
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let (_, web_only) = h.token(&[Scope::Read], &["web"]).await;

    let (status, hour) = h.get("/api/v1/stats/incidents", &reader).await;
    assert_eq!(status, 200, "{hour}");
    assert_eq!(
        hour["total"]["rescued"], 3,
        "three rescues in the hour: {hour}"
    );
    assert_eq!(hour["total"]["worker_crashed"], 1, "{hour}");
    assert_eq!(hour["total"]["worker_restarted"], 1, "{hour}");
    assert_eq!(hour["total"]["node_evicted"], 1, "{hour}");
    let minutes = hour["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 2, "two minutes with incidents: {hour}");
    assert_eq!(minutes[0]["at"], minute.0, "{hour}");
    assert_eq!(minutes[0]["rescued"], 3, "{hour}");
    assert_eq!(minutes[1]["at"], minute.0 + 60_000, "{hour}");
    assert_eq!(minutes[1]["node_evicted"], 1, "{hour}");

    let (_, recent) = h.get("/api/v1/stats/incidents?minutes=5", &reader).await;
    assert_eq!(
        recent["minutes"].as_array().unwrap().len(),
        0,
        "twenty minutes ago is not in the last five: {recent}"
    );

    let (status, body) = h.get("/api/v1/stats/incidents", &web_only).await;
    assert_eq!(status, 403, "a token limited to queues: {body}");
    for (query, field) in [
        ("minutes=0", "minutes"),
        ("minutes=61", "minutes"),
        ("span=5", ""),
    ] {
        let (status, body) = h
            .get(&format!("/api/v1/stats/incidents?{query}"), &reader)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        if !field.is_empty() {
            assert_eq!(body["field"], field, "{query}: {body}");
        }
    }

    // Shared: a rescue recorded after the read shows only once it is stale.
    h.store
        .record_events(vec![ev(EventKind::JobRescued, now)])
        .await
        .unwrap();
    let (_, again) = h.get("/api/v1/stats/incidents", &reader).await;
    assert_eq!(again["read_at"], hour["read_at"], "{again}");
    assert_eq!(again["total"]["rescued"], 3, "{again}");
    h.stop().await;
}
