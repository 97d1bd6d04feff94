//! The supervision tree under load and failure, on the embedded store: panicking
//! workers are restarted and their attempts retried, failing jobs retry then
//! dead-letter, timeouts and cancellation interrupt attempts, a crashed node's leases
//! are rescued by its restart, and a pool that keeps crashing fails the node.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use jobmesh::config::RestartSection;
use jobmesh::event::EventKind;
use jobmesh::handler::HandlerError;
use jobmesh::job::{JobId, JobState, NewJob};
use jobmesh::payload::PayloadRules;
use jobmesh::store::{AuditContext, CancelOutcome, EnqueueOutcome};
use jobmesh_actors::NodeError;
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_ends_succeeded_or_dead_lettered_with_workers_restarted() {
    let (store, _dir) = store().await;
    let node = node("mixed", &store, workers(8), builtins()).await;
    let mut events = node.subscribe();
    let mut batch = jobs("noop", json!({}), 400);
    batch.extend(jobs("fail", json!({"times": 2}), 20));
    let mut doomed = jobs("fail", json!({}), 10);
    doomed.iter_mut().for_each(|j| j.max_attempts = 2);
    batch.extend(doomed);
    batch.extend(jobs("panic", json!({"times": 1}), 15));
    let mut poison = jobs("panic", json!({}), 5);
    poison.iter_mut().for_each(|j| j.max_attempts = 2);
    batch.extend(poison);
    node.submit(batch).await.unwrap();

    let c = until_finished(&store, &mut events, 450).await;
    assert_eq!(c.get(&JobState::Succeeded), Some(&435), "{c:?}");
    assert_eq!(c.get(&JobState::Discarded), Some(&15), "{c:?}");
    // A worker that crashes again soon is restarted after a backoff: await the last.
    while node.stats().restarts < 25 {
        next_event(&mut events, EventKind::WorkerRestarted).await;
    }
    let stats = node.stats();
    assert_eq!(stats.crashes, 15 + 10, "one crash per panicking attempt");
    assert_eq!(
        stats.restarts, stats.crashes,
        "every crashed worker restarted"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();

    let log = store.events_after(0, 100_000).await.unwrap();
    let count = |k| log.iter().filter(|e| e.event.kind == k).count();
    assert_eq!(count(EventKind::WorkerCrashed), 25);
    assert_eq!(count(EventKind::WorkerRestarted), 25);
    assert_eq!(count(EventKind::WorkerStarted), 8);
    assert_eq!(count(EventKind::WorkerStopped), 8);
    assert_eq!(
        count(EventKind::JobSucceeded),
        435,
        "no success recorded twice"
    );
    // A crash names the job it interrupted; the job's next attempt ran.
    let crash = log
        .iter()
        .find(|e| e.event.kind == EventKind::WorkerCrashed)
        .unwrap();
    assert!(crash.event.job.is_some());
    assert!(
        crash.event.detail["error"]
            .as_str()
            .unwrap()
            .contains("panicked on purpose")
    );
}

#[tokio::test]
async fn a_panicking_attempt_is_retried_on_a_restarted_worker() {
    let (store, _dir) = store().await;
    let node = node("crashy", &store, workers(1), builtins()).await;
    let mut events = node.subscribe();
    let id = node
        .submit(jobs("panic", json!({"times": 1}), 1))
        .await
        .unwrap()[0]
        .id();
    let crash = next_event(&mut events, EventKind::WorkerCrashed).await;
    assert_eq!(crash.job, Some(id));
    let restart = next_event(&mut events, EventKind::WorkerRestarted).await;
    assert_eq!(restart.worker, crash.worker, "the same slot is restarted");
    let done = next_event(&mut events, EventKind::JobSucceeded).await;
    assert_eq!((done.job, done.attempt), (Some(id), Some(2)));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn timeouts_fail_the_attempt_and_dead_letter_when_out_of_attempts() {
    let (store, _dir) = store().await;
    let node = node("slow", &store, workers(2), builtins()).await;
    let mut events = node.subscribe();
    let mut job = NewJob::new("sleep", json!({"ms": 60_000}));
    job.timeout = Some(Duration::from_millis(50));
    job.max_attempts = 2;
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    let dead = next_event(&mut events, EventKind::JobDiscarded).await;
    assert_eq!((dead.job, dead.attempt), (Some(id), Some(2)));
    let j = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Discarded);
    assert!(j.last_error.unwrap().contains("timed out after 50 ms"));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_running_job_interrupts_its_handler() {
    let (store, _dir) = store().await;
    let (started_tx, mut started) = mpsc::channel::<JobId>(1);
    let (dropped_tx, mut dropped) = mpsc::channel::<()>(1);
    let mut registry = builtins();
    registry.register_fn("hang", PayloadRules::default(), move |ctx| {
        let started = started_tx.clone();
        let guard = DropSignal(dropped_tx.clone());
        async move {
            let _guard = guard;
            started.send(ctx.job.id).await.unwrap();
            std::future::pending::<()>().await;
            Ok(None)
        }
    });
    let node = node("cancel", &store, workers(1), registry).await;
    let id = node.submit(jobs("hang", json!({}), 1)).await.unwrap()[0].id();
    assert_eq!(started.recv().await, Some(id));
    assert_eq!(
        node.cancel(&AuditContext::system(), id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    dropped.recv().await.expect("the handler future is dropped");
    assert_eq!(node.stats().running, 0);
    let j = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(
        node.cancel(&AuditContext::system(), id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    // The worker is free again.
    let mut events = node.subscribe();
    let next = node.submit(jobs("noop", json!({}), 1)).await.unwrap()[0].id();
    assert_eq!(
        next_event(&mut events, EventKind::JobSucceeded).await.job,
        Some(next)
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A handler that watches its cancellation token stops on its own, and what it returns
/// then does not count: the job stays cancelled, not succeeded.
#[tokio::test]
async fn a_cancelled_handler_is_told_and_its_answer_is_discarded() {
    let (store, _dir) = store().await;
    let (started_tx, mut started) = mpsc::channel::<JobId>(1);
    let (told_tx, mut told) = mpsc::channel::<JobId>(1);
    let mut registry = builtins();
    registry.register_fn("cooperative", PayloadRules::default(), move |ctx| {
        let (started, told) = (started_tx.clone(), told_tx.clone());
        async move {
            started.send(ctx.job.id).await.unwrap();
            ctx.cancel.cancelled().await;
            told.send(ctx.job.id).await.unwrap();
            Ok(Some(json!({"stopped": "cleanly"})))
        }
    });
    let mut w = workers(1);
    // Long enough that only the handler's own return can free the slot in time.
    w.cancel_grace = Duration::from_secs(3600);
    let node = node("cooperative", &store, w, registry).await;
    let id = node
        .submit(jobs("cooperative", json!({}), 1))
        .await
        .unwrap()[0]
        .id();
    assert_eq!(started.recv().await, Some(id));
    assert_eq!(
        node.cancel(&AuditContext::system(), id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        told.recv().await,
        Some(id),
        "the handler saw the cancellation"
    );
    // The slot is free again without waiting out the grace.
    let mut events = node.subscribe();
    let next = node.submit(jobs("noop", json!({}), 1)).await.unwrap()[0].id();
    assert_eq!(
        next_event(&mut events, EventKind::JobSucceeded).await.job,
        Some(next)
    );
    let j = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(j.output, None, "the handler's late answer is not recorded");
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

struct DropSignal(mpsc::Sender<()>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

#[tokio::test]
async fn handler_errors_retry_with_backoff_then_dead_letter_and_redrive() {
    let (store, _dir) = store().await;
    let calls = Arc::new(AtomicU32::new(0));
    let mut registry = builtins();
    let c = calls.clone();
    registry.register_fn("flaky", PayloadRules::default(), move |_ctx| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            Err(HandlerError::Retryable(format!(
                "downstream busy (call {n})"
            )))
        }
    });
    let node = node("flaky", &store, workers(2), registry).await;
    let mut events = node.subscribe();
    let mut job = NewJob::new("flaky", json!({}));
    job.max_attempts = 3;
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    let dead = next_event(&mut events, EventKind::JobDiscarded).await;
    assert_eq!(dead.job, Some(id));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "exactly max_attempts attempts"
    );
    let log = store.events_after(0, 1000).await.unwrap();
    let retries: Vec<_> = log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobRetryScheduled)
        .collect();
    assert_eq!(retries.len(), 2);
    for r in &retries {
        assert!(
            r.event.detail["run_at"].as_i64().unwrap() > r.event.at.0,
            "backoff delays the retry"
        );
    }
    let dlq = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0].reason.contains("downstream busy"));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn invalid_submissions_are_refused_and_store_nothing() {
    let (store, _dir) = store().await;
    let node = node("strict", &store, workers(1), builtins()).await;
    let mut batch = jobs("noop", json!({}), 2);
    batch.push(NewJob::new("sleep", json!({"ms": "soon"})));
    match node.submit(batch).await {
        Err(NodeError::Refused { index: 2, error }) => {
            assert!(error.to_string().contains("sleep"), "{error}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    match node.submit(jobs("emial", json!({}), 1)).await {
        Err(NodeError::Refused { index: 0, error }) => {
            assert!(error.to_string().contains("unknown job kind `emial`"))
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    assert!(counts(&store).await.is_empty(), "nothing stored");
    // Unique keys: the second submit names the first job.
    let mut a = NewJob::new("sleep", json!({"ms": 10}));
    a.unique_key = Some("report-42".into());
    let first = node.submit(vec![a.clone()]).await.unwrap()[0];
    let second = node.submit(vec![a]).await.unwrap()[0];
    assert!(matches!(first, EnqueueOutcome::Inserted(_)));
    assert_eq!(second, EnqueueOutcome::Duplicate(first.id()));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_restarting_rescues_its_leases_and_records_each_success_once() {
    let (store, _dir) = store().await;
    let (started_tx, mut started) = mpsc::channel::<JobId>(64);
    let mut registry = builtins();
    registry.register_fn("stuck", PayloadRules::default(), move |ctx| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(ctx.job.id).await;
            std::future::pending::<()>().await;
            Ok(None)
        }
    });
    let first = node("phoenix", &store, workers(4), registry).await;
    first.submit(jobs("stuck", json!({}), 4)).await.unwrap();
    for _ in 0..4 {
        started.recv().await.unwrap();
    }
    first.abort(); // a crash: leases stay with "phoenix"
    assert_eq!(counts(&store).await.get(&JobState::Running), Some(&4));

    // Restarted under the same name with a handler that works: it revokes its old
    // leases at start, and the jobs run again.
    let mut registry = builtins();
    registry.register_fn("stuck", PayloadRules::default(), |_ctx| async { Ok(None) });
    let second = node("phoenix", &store, workers(4), registry).await;
    let mut events = second.subscribe();
    let c = until_finished(&store, &mut events, 4).await;
    assert_eq!(c.get(&JobState::Succeeded), Some(&4), "{c:?}");
    second.shutdown(Duration::from_secs(5)).await.unwrap();
    let log = store.events_after(0, 10_000).await.unwrap();
    let mut per_job = BTreeMap::new();
    for e in log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobSucceeded)
    {
        *per_job.entry(e.event.job.unwrap()).or_insert(0) += 1;
    }
    assert!(per_job.values().all(|&n| n == 1), "{per_job:?}");
    let rescued = log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobRescued)
        .count();
    assert_eq!(rescued, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_keeps_crashing_is_restarted_then_the_node_fails() {
    let (store, _dir) = store().await;
    let mut w = workers(1);
    w.restart = RestartSection {
        max_restarts: 2,
        window: Duration::from_secs(60),
        backoff_min: Duration::ZERO,
        backoff_max: Duration::from_millis(20),
    };
    let node = node("doomed", &store, w, builtins()).await;
    node.submit(jobs("panic", json!({}), 30)).await.unwrap();
    let why = tokio::time::timeout(Duration::from_secs(30), node.failed())
        .await
        .expect("the node gives up");
    assert!(why.contains("worker pool keeps failing"), "{why}");
    // The host shuts the failed node down, which flushes what its writers hold.
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    // Every interrupted attempt went back to the store: nothing is left running.
    let c = counts(&store).await;
    assert_eq!(c.get(&JobState::Running), None, "{c:?}");
    assert_eq!(c.values().sum::<u64>(), 30, "{c:?}");
}

fn gated(
    registry: &mut jobmesh::handler::Registry,
) -> (mpsc::Receiver<JobId>, Arc<tokio::sync::Semaphore>) {
    let (started_tx, started) = mpsc::channel::<JobId>(64);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    registry.register_fn("gated", PayloadRules::default(), move |ctx| {
        let started = started_tx.clone();
        let gate = g.clone();
        async move {
            let _ = started.send(ctx.job.id).await;
            gate.acquire().await.unwrap().forget();
            Ok(None)
        }
    });
    (started, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_attempts_finish() {
    let (store, _dir) = store().await;
    let mut registry = builtins();
    let (mut started, gate) = gated(&mut registry);
    let node = node("polite", &store, workers(2), registry).await;
    node.submit(jobs("gated", json!({}), 2)).await.unwrap();
    started.recv().await.unwrap();
    started.recv().await.unwrap();
    let stopping = tokio::spawn(node.shutdown(Duration::from_secs(30)));
    gate.add_permits(2);
    stopping.await.unwrap().unwrap();
    let c = counts(&store).await;
    assert_eq!(c.get(&JobState::Succeeded), Some(&2), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_its_grace_hands_running_attempts_back() {
    let (store, _dir) = store().await;
    let mut registry = builtins();
    let (mut started, _gate) = gated(&mut registry);
    let node = node("hasty", &store, workers(3), registry).await;
    node.submit(jobs("gated", json!({}), 3)).await.unwrap();
    for _ in 0..3 {
        started.recv().await.unwrap();
    }
    node.shutdown(Duration::from_millis(50)).await.unwrap();
    let c = counts(&store).await;
    assert_eq!(c.get(&JobState::Running), None, "{c:?}");
    let back = c.get(&JobState::Available).copied().unwrap_or(0)
        + c.get(&JobState::Retryable).copied().unwrap_or(0);
    assert_eq!(back, 3, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_leader_purges_finished_jobs_past_retention() {
    let (store, _dir) = store().await;
    let node = jobmesh_actors::Node::start(jobmesh_actors::NodeOptions {
        node_id: jobmesh::job::NodeId("keeper".into()),
        workers: workers(2),
        retry: fast_retry(),
        store: store.clone(),
        registry: builtins(),
        clock: Arc::new(jobmesh::clock::SystemClock),
        retention: Some(jobmesh::store::retention::Retention {
            finished_jobs: Duration::ZERO,
            interval: Duration::from_millis(50),
            ..Default::default()
        }),
        predict: Default::default(),
    })
    .await
    .unwrap();
    let mut events = node.subscribe();
    let mut waiting = NewJob::new("noop", json!({}));
    waiting.run_at = Some(
        jobmesh::clock::Clock::now(&jobmesh::clock::SystemClock)
            .plus(Duration::from_secs(365 * 86_400)),
    );
    node.submit(vec![waiting]).await.unwrap();
    node.submit(jobs("noop", json!({}), 10)).await.unwrap();
    for _ in 0..10 {
        next_event(&mut events, EventKind::JobSucceeded).await;
    }
    // The purge runs on the maintenance tick; no event reports it, so re-read the
    // counts until the succeeded jobs are gone (the deadline bounds a failure).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let c = counts(&store).await;
        if !c.contains_key(&JobState::Succeeded) {
            assert_eq!(
                c.get(&JobState::Scheduled),
                Some(&1),
                "unfinished jobs stay"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not purged: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = store.events_after(0, 1000).await.unwrap();
    assert!(
        !log.iter().any(|e| e.event.kind == EventKind::JobSucceeded),
        "the purged jobs' events went with them"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}
