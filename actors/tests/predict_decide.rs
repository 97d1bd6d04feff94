//! The predictors where the node decides, on a real node and store: each test feeds the
//! node's models itself (as the node's own events would) or holds jobs in the store for
//! the node to read, and checks the decision that follows; each fails when the decision
//! ignores the model.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::event::EventKind;
use jobmesh::job::{JobState, NewJob, RetryPolicy};
use jobmesh::predict::duration::DurationKey;
use jobmesh::predict::policy::congestion::{Admission, QueuePolicy};
use jobmesh::predict::{CongestionPredictor, DurationPredictor, RetryPredictor, SharedModels};
use jobmesh::store::AuditContext;
use jobmesh_actors::{Node, NodeError, NodeOptions};
use serde_json::json;

fn learned_retry(give_up_early: bool) -> RetryPolicy {
    RetryPolicy {
        learned: true,
        give_up_early,
        ..RetryPolicy::default()
    }
}

async fn node_with(
    name: &str,
    store: &jobmesh::store::SharedStore,
    workers: jobmesh::config::WorkersSection,
    retry: RetryPolicy,
) -> Node {
    Node::start(NodeOptions {
        node_id: jobmesh::job::NodeId(name.into()),
        workers,
        retry,
        store: store.clone(),
        registry: builtins(),
        clock: std::sync::Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap()
}

fn now_ms() -> i64 {
    SystemClock.now().0
}

/// Teaches the retry model that retries of `fail` jobs failing with `class` never
/// succeed, at any attempt and any time after the first failure.
fn teach_hopeless(models: &SharedModels, class: &str) {
    let mut m = models.lock();
    let now = now_ms();
    for i in 0..20 {
        for since in [
            0, 20_000, 45_000, 90_000, 200_000, 400_000, 800_000, 1_500_000, 3_000_000,
        ] {
            for attempt in [2, 3, 4, 6, 10] {
                m.retry
                    .observe_retry("fail", class, attempt, since, false, now - i);
            }
        }
    }
}

/// Teaches the retry model that retries of `fail` jobs failing with `class` succeed
/// only from ten minutes after the job's first failure on, at any attempt.
fn teach_late_success(models: &SharedModels, class: &str) {
    let mut m = models.lock();
    let now = now_ms();
    for i in 0..20 {
        for since in [
            0, 20_000, 45_000, 90_000, 200_000, 400_000, 800_000, 1_500_000, 3_000_000,
        ] {
            for attempt in [2, 3, 4, 6, 10] {
                m.retry
                    .observe_retry("fail", class, attempt, since, since >= 600_000, now - i);
            }
        }
    }
}

/// The delay given to the first retry of a `fail` job failing with "smtp down" on a
/// node whose retry model learned that such retries succeed only ten minutes after the
/// first failure, with the learned retry on or off.
async fn first_retry_delay(learned: bool) -> i64 {
    let (store, _dir) = store().await;
    let retry = RetryPolicy {
        learned,
        ..RetryPolicy::default()
    };
    let node = node_with("late", &store, workers(2), retry).await;
    teach_late_success(&node.models(), "smtp_down");
    let mut events = node.subscribe();
    let job = NewJob::new("fail", json!({"message": "smtp down: 10.0.0.1:25"}));
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    let e = next_event(&mut events, EventKind::JobRetryScheduled).await;
    assert_eq!((e.job, e.attempt), (Some(id), Some(1)));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    e.detail["run_at"].as_i64().unwrap() - e.at.0
}

#[tokio::test]
async fn a_retry_waits_into_the_time_retries_were_seen_to_succeed() {
    // Learned: the first retry waits the ten minutes (less the few ms between the
    // decision and the event), not a second.
    let delay = first_retry_delay(true).await;
    assert!((590_000..=660_000).contains(&delay), "{delay} ms");
    // Off: the polynomial's first delay, a second plus up to 10 % jitter.
    let delay = first_retry_delay(false).await;
    assert!((900..=1_100).contains(&delay), "{delay} ms");
}

#[tokio::test]
async fn a_hopeless_error_class_is_dead_lettered_early_with_the_reason() {
    let (store, _dir) = store().await;
    let node = node_with("early", &store, workers(2), learned_retry(true)).await;
    teach_hopeless(&node.models(), "gone");
    let mut events = node.subscribe();
    let job = NewJob::new("fail", json!({"message": "gone: the account was deleted"}));
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    // The first failure still gets a retry (a second after it); the second is final.
    let dead = next_event(&mut events, EventKind::JobDiscarded).await;
    assert_eq!(dead.job, Some(id));
    assert_eq!(dead.attempt, Some(2));
    let j = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Discarded);
    let error = j.last_error.unwrap();
    assert!(
        error.contains("gave up early at attempt 2 of 25") && error.contains("`gone`"),
        "{error}"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn without_give_up_early_the_same_job_keeps_its_attempts() {
    let (store, _dir) = store().await;
    let node = node_with("patient", &store, workers(2), learned_retry(false)).await;
    teach_hopeless(&node.models(), "gone");
    let mut events = node.subscribe();
    let job = NewJob::new("fail", json!({"message": "gone: the account was deleted"}));
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    // Attempt 2 fails and is scheduled again rather than dead-lettered.
    loop {
        let e = next_event(&mut events, EventKind::JobRetryScheduled).await;
        if e.job == Some(id) && e.attempt == Some(2) {
            break;
        }
    }
    let j = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Retryable);
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_retry_storm_is_held_to_the_budget_and_nothing_is_dropped() {
    const N: usize = 40;
    let (store, _dir) = store().await;
    let node = node_with("storm", &store, workers(8), learned_retry(false)).await;
    {
        let models = node.models();
        let mut m = models.lock();
        let now = now_ms();
        for _ in 0..N {
            m.retry.observe_first("fail", now);
        }
    }
    let mut events = node.subscribe();
    let job = NewJob::new("fail", json!({"message": "connection refused"}));
    node.submit(vec![job; N]).await.unwrap();
    let mut delays = Vec::new();
    while delays.len() < N {
        let e = next_event(&mut events, EventKind::JobRetryScheduled).await;
        if e.attempt == Some(1) {
            let run_at = e.detail["run_at"].as_i64().unwrap();
            delays.push(run_at - e.at.0);
        }
    }
    // The budget counts the 40 first attempts taught above and, as the node feeds its
    // models, those of the 40 jobs it has started by the time it decides: 20 % of 40 to
    // 80 first attempts plus the floor of 10 retry soon (without the budget all 40
    // would); the rest wait out the budget's minute instead of hammering the
    // dependency, and every one is scheduled.
    let soon = delays.iter().filter(|d| **d < 60_000).count();
    assert!(
        (N / 5 + 10..=2 * N / 5 + 10).contains(&soon),
        "{soon} retried soon: {delays:?}"
    );
    assert!(
        delays.iter().all(|d| *d < 60_000 || *d >= 120_000),
        "{delays:?}"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_learned_timeout_stops_a_hang_long_before_the_default() {
    let (store, _dir) = store().await;
    let mut w = workers(2);
    w.default_timeout = Duration::from_secs(60);
    w.learned.timeout = true;
    w.learned.min_timeout = Duration::from_millis(100);
    let node = node_with("timeouts", &store, w, RetryPolicy::default()).await;
    let hang = json!({"ms": 10_000});
    {
        // Runs of `sleep` take about 200 ms.
        let models = node.models();
        let mut m = models.lock();
        let key = DurationKey {
            kind: "sleep",
            queue: "default",
            payload_bytes: serde_json::to_vec(&hang).unwrap().len() as u64,
        };
        for i in 0..200 {
            m.duration.observe(key, now_ms(), 190.0 + (i % 20) as f64);
        }
    }
    let mut events = node.subscribe();
    let mut job = NewJob::new("sleep", hang);
    job.max_attempts = 1;
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    let dead = next_event(&mut events, EventKind::JobDiscarded).await;
    assert_eq!(dead.job, Some(id));
    let error = store
        .get_job(id)
        .await
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    // p99.9 ~ 210 ms times the margin of 3.
    assert!(error.starts_with("timed out after 6"), "{error}");
    assert!(error.contains(" ms"), "{error}");
    // A job's own timeout wins over the learned one.
    let mut job = NewJob::new("sleep", json!({"ms": 1_000}));
    job.timeout = Some(Duration::from_secs(30));
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    let ok = next_event(&mut events, EventKind::JobSucceeded).await;
    assert_eq!(ok.job, Some(id));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Teaches `queue` of `models` a minute of two workers taking jobs of 500 ms as they
/// came (the service it gets), then holds `backlog` jobs waiting in the store: the
/// queue is paused (as the node's first claim would not be) and `backlog` jobs are
/// stored. Returns once the node has read them (its maintenance rounds read the jobs
/// waiting every second); the model is never told of them by hand.
async fn overload(node: &Node, store: &jobmesh::store::SharedStore, queue: &str, backlog: usize) {
    {
        let models = node.models();
        let mut m = models.lock();
        let now = now_ms();
        let mut t = now - 70_000;
        for _ in 0..60 {
            for _ in 0..2 {
                m.congestion.on_taken(queue, t, t);
            }
            t += 500;
            m.congestion.on_finish(queue, t, 500.0);
            m.congestion.on_finish(queue, t, 500.0);
        }
    }
    store
        .pause_queue(&AuditContext::system(), queue, SystemClock.now())
        .await
        .unwrap();
    let mut job = NewJob::new("noop", json!({}));
    job.queue = queue.to_string();
    node.submit(vec![job; backlog]).await.unwrap();
    // Polled: the round that reads the store emits nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = node.models().lock().congestion.backlog(queue).map(|b| b.0);
        if seen == Some(backlog as f64) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not read the backlog: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn slo(secs: u64, admission: Admission) -> BTreeMap<String, QueuePolicy> {
    BTreeMap::from([(
        "default".to_string(),
        QueuePolicy {
            wait_slo: Some(Duration::from_secs(secs)),
            admission,
            low_priority: 0,
        },
    )])
}

#[tokio::test]
async fn a_predicted_breach_is_announced_with_advice_and_counted() {
    let (store, _dir) = store().await;
    let node = node_with("breach", &store, workers(2), RetryPolicy::default()).await;
    let mut events = node.subscribe();
    overload(&node, &store, "default", 400).await;
    node.set_queue_policies(slo(30, Admission::Off)).unwrap();
    let e = next_event(&mut events, EventKind::QueueBreachPredicted).await;
    assert_eq!(e.detail["queue"], "default");
    assert!(
        e.detail["predicted_wait_ms"].as_f64().unwrap() > 30_000.0,
        "{e:?}"
    );
    assert!(e.detail["more_workers"].as_u64().unwrap() >= 1, "{e:?}");
    let advice = e.detail["advice"].as_str().unwrap();
    assert!(
        advice.contains("more workers would hold the SLO"),
        "{advice}"
    );
    // Recorded in the store's event log too (written in batches: polled until there),
    // and in the metrics.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = store.events_after(0, 1000).await.unwrap();
        if log
            .iter()
            .any(|s| s.event.kind == EventKind::QueueBreachPredicted)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in the event log: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = node.metrics().encode();
    assert!(
        text.contains("jobmesh_queue_breach_predicted_total{queue=\"default\"} 1"),
        "{text}"
    );
    // The node's failure score, as the claim gate's checks (every 500 ms, the first at
    // the start) see it: nothing went wrong here.
    assert!(
        text.contains("jobmesh_node_failure_score{node=\"breach\"} 0.0"),
        "{text}"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// 200 sleeps of 200-500 ms (350 ms on average) into two workers: 35 s of work, so the
/// jobs near the end of the queue wait far past an SLO of 5 s. The model is taught
/// nothing by hand: the node reads the jobs waiting from the store, and warns while no
/// job has yet waited 5 s (the first to do so starts 5 s after the submit). Without the
/// read it would only see the waits of the jobs it takes, short until they pass the SLO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_the_store_is_warned_of_before_any_job_waits_past_the_slo() {
    const JOBS: usize = 200;
    const SLO_MS: i64 = 5_000;
    let (store, _dir) = store().await;
    let node = node_with("backlog", &store, workers(2), RetryPolicy::default()).await;
    node.set_queue_policies(slo(5, Admission::Off)).unwrap();
    let mut events = node.subscribe();
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|i| NewJob::new("sleep", json!({"ms": 200 + (i * 37) % 300})))
        .collect();
    let submitted = now_ms();
    node.submit(jobs).await.unwrap();
    let e = next_event(&mut events, EventKind::QueueBreachPredicted).await;
    let waiting = store
        .count_jobs(
            &jobmesh::store::JobFilter::default(),
            &["available"],
            JOBS as u64,
        )
        .await
        .unwrap();
    assert!(
        e.at.0 < submitted + SLO_MS,
        "warned {} ms after the submit: {e:?}",
        e.at.0 - submitted
    );
    assert_eq!(e.detail["queue"], "default");
    let predicted = e.detail["predicted_wait_ms"].as_f64().unwrap();
    assert!(predicted > SLO_MS as f64, "{e:?}");
    assert!(e.detail["more_workers"].as_u64().unwrap() >= 1, "{e:?}");
    // The breach is real: the last of the jobs still waiting then starts after the 200
    // ms each of those ahead of it takes at least, two at a time.
    assert!(
        waiting as i64 * 200 / 2 > 2 * SLO_MS,
        "{waiting} jobs waiting at the warning"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn admission_rejects_or_defers_low_priority_jobs_when_the_breach_is_certain() {
    let (store, _dir) = store().await;
    let node = node_with("admission", &store, workers(2), RetryPolicy::default()).await;
    overload(&node, &store, "default", 400).await;
    node.set_queue_policies(slo(30, Admission::Reject)).unwrap();
    let mut low = NewJob::new("noop", json!({}));
    low.priority = -1;
    match node.submit(vec![low.clone()]).await {
        Err(NodeError::Overloaded { index, reason }) => {
            assert_eq!(index, 0);
            assert!(reason.contains("queue `default` is overloaded"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Normal priority passes.
    let normal = NewJob::new("noop", json!({}));
    let id = node.submit(vec![normal]).await.unwrap()[0].id();
    assert!(store.get_job(id).await.unwrap().is_some());
    // Deferred: stored, to run once the backlog is predicted to have drained.
    node.set_queue_policies(slo(30, Admission::Defer)).unwrap();
    let before = SystemClock.now();
    let id = node.submit(vec![low]).await.unwrap()[0].id();
    let j = store.get_job(id).await.unwrap().unwrap();
    assert!(j.run_at.0 > before.0 + 30_000, "{j:?}");
    assert_eq!(j.state, JobState::Scheduled);
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_lease_is_learned_from_the_runs_of_the_nodes_queues() {
    let (store, _dir) = store().await;
    let mut w = workers(2);
    assert_eq!(w.lease, Duration::from_secs(30));
    w.learned.lease = true;
    let node = node_with("leases", &store, w, RetryPolicy::default()).await;
    {
        // Runs of `sleep` take about 20 s: a 60 s lease outlives most of them.
        let models = node.models();
        let mut m = models.lock();
        let key = DurationKey {
            kind: "sleep",
            queue: "default",
            payload_bytes: 10,
        };
        for i in 0..200 {
            m.duration
                .observe(key, now_ms(), 19_000.0 + (i % 10) as f64 * 100.0);
        }
    }
    // The next maintenance round (every 20 ms here) adopts it; a claim after that
    // carries it. Polled: neither the round nor the claim is observable otherwise.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    'jobs: loop {
        let id = node
            .submit(vec![NewJob::new("sleep", json!({"ms": 1_000}))])
            .await
            .unwrap()[0]
            .id();
        loop {
            let j = store.get_job(id).await.unwrap().unwrap();
            if j.state.is_final() {
                break;
            }
            if let Some(expires) = j.lease_expires_at {
                let left = expires.0 - SystemClock.now().0;
                if left > 35_000 {
                    assert!(left <= 62_000, "{left} ms");
                    break 'jobs;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "claims kept the configured lease: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}
