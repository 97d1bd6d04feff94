//! The Redis side of redis_postgres (ready index, wake lists, event stream, state
//! hashes, heartbeats) against a real Redis at 127.0.0.1:6379 (one fault test starts
//! its own `redis-server`). Every test works under a random key prefix, so tests run in
//! parallel and beside other users of the server, and deletes its keys when it passes.

mod common;

use common::{RedisServer, free_port};

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{JobId, JobState, LeaseToken, NodeId, WorkerId};
use jobmesh::store::redis::{EventCursor, ReadyJob, RedisDispatch, RedisDispatchConfig};
use jobmesh::store::{StoreError, Wakeup};

const URL: &str = "redis://127.0.0.1:6379/";
const T0: Millis = Millis(1_700_000_000_000);

fn prefix() -> String {
    format!("jmtest:{:016x}", rand::random::<u64>())
}

fn unreachable_help(url: &str, e: &StoreError) -> String {
    format!(
        "Redis is not reachable at {url} ({e}). These tests need a real Redis: install and \
         start it, e.g. `apt-get install -y redis-server && redis-server --daemonize yes`"
    )
}

async fn dispatch_with(config: RedisDispatchConfig) -> RedisDispatch {
    match RedisDispatch::connect_with(URL, config).await {
        Ok(d) => d,
        Err(e) => panic!("{}", unreachable_help(URL, &e)),
    }
}

async fn dispatch() -> RedisDispatch {
    dispatch_with(RedisDispatchConfig::new(prefix())).await
}

/// A plain connection to look at keys directly.
async fn raw() -> redis::aio::MultiplexedConnection {
    common::redis_conn(URL).await
}

/// Deletes every key under the dispatch's prefix.
async fn cleanup(d: &RedisDispatch) {
    let mut conn = raw().await;
    let pattern = format!("{}:*", d.keys().prefix());
    common::delete_redis_keys(&mut conn, &pattern).await;
}

fn node(n: &str) -> NodeId {
    NodeId(n.into())
}

fn worker(w: &str) -> WorkerId {
    WorkerId(w.into())
}

fn job(id: i64, queue: &str, priority: i16, run_at: Millis) -> ReadyJob {
    ReadyJob::new(JobId(id), queue, priority, run_at)
}

/// Takes from `queues`, asserting that Redis still has its generation marker.
async fn take(d: &RedisDispatch, queues: &[&str], limit: u32, now: Millis) -> Vec<i64> {
    let taken = d.take(queues, limit, now).await.unwrap();
    assert!(taken.has_generation, "generation marker missing");
    taken.ids.into_iter().map(|id| id.0).collect()
}

/// A dispatch whose generation marker is set, as after the reconciler's first rebuild.
async fn built() -> RedisDispatch {
    let d = dispatch().await;
    d.rebuild(&[], T0).await.unwrap();
    d
}

async fn job_hash(d: &RedisDispatch, id: i64) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(d.keys().job(JobId(id)))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    fields.sort();
    fields
}

#[tokio::test]
async fn higher_priority_first_then_fifo_across_queues() {
    let d = built().await;
    let jobs = vec![
        job(1, "a", 0, T0),
        job(2, "a", 5, T0),
        job(3, "b", 0, T0),
        job(4, "b", 5, T0),
        job(5, "a", -3, T0),
        job(6, "b", 100, T0),
        job(7, "a", 0, T0),
    ];
    assert_eq!(d.push(&jobs, T0).await.unwrap(), vec![true; 7]);
    let mut order = Vec::new();
    for _ in 0..7 {
        order.extend(take(&d, &["a", "b"], 1, T0).await);
    }
    assert_eq!(order, vec![6, 2, 4, 1, 3, 7, 5]);
    assert!(take(&d, &["a", "b"], 10, T0).await.is_empty());

    // One queue, a batch: the same order within it.
    let jobs: Vec<_> = (10..20).map(|i| job(i, "c", (i % 3) as i16, T0)).collect();
    d.push(&jobs, T0).await.unwrap();
    let got = take(&d, &["c"], 100, T0).await;
    assert_eq!(got, vec![11, 14, 17, 10, 13, 16, 19, 12, 15, 18]);
    cleanup(&d).await;
}

#[tokio::test]
async fn push_is_idempotent_and_a_taken_job_can_be_pushed_again() {
    let d = built().await;
    assert_eq!(
        d.push(&[job(1, "q", 0, T0), job(2, "q", 0, T0)], T0)
            .await
            .unwrap(),
        vec![true, true]
    );
    assert_eq!(
        d.push(&[job(1, "q", 0, T0), job(2, "q", 0, T0)], T0)
            .await
            .unwrap(),
        vec![false, false]
    );
    assert_eq!(take(&d, &["q"], 1, T0).await, vec![1]);
    // Taking forgets the job: Redis keeps no lease and no record of it ...
    assert!(job_hash(&d, 1).await.is_empty());
    // ... so the system of record can push it again (a retry), behind job 2.
    assert_eq!(d.push(&[job(1, "q", 0, T0)], T0).await.unwrap(), vec![true]);
    assert_eq!(take(&d, &["q"], 10, T0).await, vec![2, 1]);
    assert!(take(&d, &["q"], 10, T0).await.is_empty());
    cleanup(&d).await;
}

#[tokio::test]
async fn delayed_jobs_are_promoted_only_when_due() {
    let d = built().await;
    let due = T0.plus(Duration::from_secs(10));
    d.push(
        &[
            job(1, "q", 50, due),
            job(2, "q", 0, T0.plus(Duration::from_secs(20))),
        ],
        T0,
    )
    .await
    .unwrap();
    assert!(take(&d, &["q"], 10, T0).await.is_empty());
    assert!(take(&d, &["q"], 10, Millis(due.0 - 1)).await.is_empty());
    assert_eq!(take(&d, &["q"], 10, due).await, vec![1]);
    assert!(take(&d, &["q"], 10, due).await.is_empty());
    assert_eq!(
        take(&d, &["q"], 10, T0.plus(Duration::from_secs(60))).await,
        vec![2]
    );
    cleanup(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takers_never_get_the_same_job_twice() {
    const JOBS: i64 = 10_000;
    let d = built().await;
    let jobs: Vec<_> = (1..=JOBS)
        .map(|i| job(i, "q", (i % 7) as i16, T0))
        .collect();
    assert!(d.push(&jobs, T0).await.unwrap().into_iter().all(|q| q));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = d.take(&["q"], 37, T0).await.unwrap().ids;
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch);
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} was taken twice");
        }
    }
    assert_eq!(seen.len(), JOBS as usize);
    cleanup(&d).await;
}

#[tokio::test]
async fn removed_jobs_leave_dispatch_and_stale_pushes_stay_out() {
    let d = built().await;
    let mut first = job(1, "q", 0, T0);
    first.epoch = LeaseToken(3);
    d.push(
        &[
            first.clone(),
            job(2, "q", 0, T0.plus(Duration::from_secs(30))),
            job(3, "q", 0, T0),
        ],
        T0,
    )
    .await
    .unwrap();
    assert_eq!(
        d.remove(&[JobId(1), JobId(2), JobId(9)]).await.unwrap(),
        vec![true, true, false]
    );
    assert_eq!(d.remove(&[JobId(1)]).await.unwrap(), vec![false]);
    let far = T0.plus(Duration::from_secs(3600));
    assert_eq!(take(&d, &["q"], 10, far).await, vec![3]);
    assert_eq!(d.remove(&[JobId(3)]).await.unwrap(), vec![false], "taken");

    // The removed job's record keeps its token: a push older than it is refused, one
    // from the same or a later attempt queues the job again.
    let mut stale = job(1, "q", 0, T0);
    stale.epoch = LeaseToken(2);
    assert_eq!(d.push(&[stale], T0).await.unwrap(), vec![false]);
    assert!(take(&d, &["q"], 10, far).await.is_empty());
    let mut newer = job(1, "q", 0, T0);
    newer.epoch = LeaseToken(4);
    assert_eq!(d.push(&[newer], T0).await.unwrap(), vec![true]);
    assert_eq!(take(&d, &["q"], 10, far).await, vec![1]);
    cleanup(&d).await;
}

#[tokio::test]
async fn event_stream_is_bounded_and_tailing_sees_new_events() {
    let mut config = RedisDispatchConfig::new(prefix());
    config.stream_maxlen = 50;
    let d = dispatch_with(config).await;
    let events: Vec<_> = (0..1_000)
        .map(|i| {
            LifecycleEvent::new(EventKind::JobSucceeded, Millis(T0.0 + i)).job(JobId(i), Some(1))
        })
        .collect();
    for chunk in events.chunks(100) {
        assert_eq!(d.publish(chunk).await.unwrap().len(), chunk.len());
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(d.keys().events())
        .query_async(&mut raw().await)
        .await
        .unwrap();
    // `MAXLEN ~` trims whole stream nodes (100 entries by default): never below the
    // bound, and never far above it.
    assert!((50..=150).contains(&len), "stream length {len}");
    let all = d.read(&EventCursor::start(), 10_000, None).await.unwrap();
    assert_eq!(all.len() as u64, len);
    assert_eq!(all.last().unwrap().event, events[999]);

    // A tail opened now sees only what is published afterwards.
    let mut tail = d
        .tail(None)
        .await
        .unwrap()
        .with_block(Duration::from_secs(10));
    let waiting = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 3 {
            got.extend(tail.next_batch().await.unwrap());
        }
        got
    });
    let fresh = vec![
        LifecycleEvent::new(EventKind::NodeJoined, T0).node(NodeId("n9".into())),
        LifecycleEvent::new(EventKind::JobClaimed, T0).job(JobId(5), Some(2)),
        LifecycleEvent::new(EventKind::WorkerCrashed, T0)
            .worker(WorkerId("n9/w1".into()))
            .detail(serde_json::json!({"error": "boom"})),
    ];
    d.publish(&fresh).await.unwrap();
    let got = waiting.await.unwrap();
    assert_eq!(got.into_iter().map(|e| e.event).collect::<Vec<_>>(), fresh);

    // As a stream, from a cursor; and a blocking read that waits for a publish.
    let from = all.last().unwrap().cursor.clone();
    let stream = d.tail(Some(from.clone())).await.unwrap().into_stream();
    let streamed: Vec<_> = stream.take(3).collect().await;
    let streamed: Vec<_> = streamed.into_iter().map(|e| e.unwrap().event).collect();
    assert_eq!(streamed, fresh);

    let newest = d.latest_cursor().await.unwrap();
    let reader = {
        let d = d.clone();
        let newest = newest.clone();
        tokio::spawn(async move {
            d.read(&newest, 10, Some(Duration::from_secs(10)))
                .await
                .unwrap()
        })
    };
    let last = LifecycleEvent::new(EventKind::NodeLeft, T0).node(NodeId("n9".into()));
    // The blocking reader may not have reached Redis yet; its cursor is fixed, so the
    // event is seen either way.
    d.publish(std::slice::from_ref(&last)).await.unwrap();
    let read = reader.await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event, last);
    cleanup(&d).await;
}

#[tokio::test]
async fn state_hashes_expire_after_their_ttl() {
    let mut config = RedisDispatchConfig::new(prefix());
    config.state_ttl = Duration::from_secs(600);
    let d = dispatch_with(config).await;
    d.set_state(&[
        (JobId(1), JobState::Running),
        (JobId(2), JobState::Succeeded),
    ])
    .await
    .unwrap();
    assert_eq!(
        d.get_state(JobId(1)).await.unwrap(),
        Some(JobState::Running)
    );
    assert_eq!(
        d.get_state(JobId(2)).await.unwrap(),
        Some(JobState::Succeeded)
    );
    assert_eq!(d.get_state(JobId(3)).await.unwrap(), None);
    d.set_state(&[(JobId(1), JobState::Succeeded)])
        .await
        .unwrap();
    assert_eq!(
        d.get_state(JobId(1)).await.unwrap(),
        Some(JobState::Succeeded)
    );
    for id in [1, 2] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(d.keys().state(JobId(id)))
            .query_async(&mut raw().await)
            .await
            .unwrap();
        assert!(
            ttl > 590_000 && ttl <= 600_000,
            "job {id} state ttl {ttl} ms"
        );
    }
    cleanup(&d).await;
}

#[tokio::test]
async fn heartbeats_expire() {
    let d = dispatch().await;
    d.heartbeat_node(&node("n1"), Duration::from_secs(60))
        .await
        .unwrap();
    d.heartbeat_node(&node("n2"), Duration::from_millis(1))
        .await
        .unwrap();
    d.heartbeat_worker(&worker("n1/w0"), Duration::from_secs(60))
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(d.keys().node_heartbeat(&node("n1")))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "heartbeat ttl {ttl}");
    // Let n2's 1 ms heartbeat lapse (time has to pass; nothing is being awaited).
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(d.alive_nodes().await.unwrap(), vec![node("n1")]);
    assert_eq!(d.alive_workers().await.unwrap(), vec![worker("n1/w0")]);
    cleanup(&d).await;
}

#[tokio::test]
async fn rebuild_after_a_flush_restores_ready_jobs_idempotently() {
    let d = dispatch().await;
    assert!(d.is_empty().await.unwrap());
    // Without the marker a take says so: an empty answer means nothing.
    let taken = d.take(&["q"], 10, T0).await.unwrap();
    assert!(!taken.has_generation && taken.ids.is_empty());
    let jobs: Vec<_> = (1..=5).map(|i| job(i, "q", 0, T0)).collect();
    let first = d.rebuild(&jobs, T0).await.unwrap();
    assert_eq!(first.queued, 5);
    assert!(!d.is_empty().await.unwrap());
    assert_eq!(take(&d, &["q"], 2, T0).await, vec![1, 2]);

    // Redis loses everything; the system of record still has 3 ready jobs.
    cleanup(&d).await;
    assert!(d.is_empty().await.unwrap());
    let report = d.rebuild(&jobs[2..], T0).await.unwrap();
    assert_eq!(report.queued, 3);
    assert_ne!(report.generation, first.generation);
    let again = d.rebuild(&jobs[2..], T0).await.unwrap();
    assert_eq!(again.queued, 0);
    assert_eq!(again.generation, report.generation);
    assert_eq!(d.generation().await.unwrap(), Some(report.generation));
    assert_eq!(take(&d, &["q"], 10, T0).await, vec![3, 4, 5]);
    cleanup(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_wake_the_queues_listeners_and_takes_clear_stale_tokens() {
    let d = built().await;
    let mut wakeups = d.wakeups(&["q".into(), "r".into()]).unwrap();
    d.push(&[job(1, "r", 0, SystemClock.now())], SystemClock.now())
        .await
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(10), wakeups.recv())
        .await
        .expect("no wake-up within 10 s");
    assert_eq!(woke, Some(Wakeup::Queue("r".into())));

    // Tokens left by a burst (on a queue nobody listens to here) are dropped once a
    // take empties the queue, so idle nodes are not woken for jobs already gone.
    let wake_len = |queue: &'static str| {
        let key = d.keys().wake(queue);
        async move {
            let n: i64 = redis::cmd("LLEN")
                .arg(key)
                .query_async(&mut raw().await)
                .await
                .unwrap();
            n
        }
    };
    let now = SystemClock.now();
    d.push(
        &(2..12).map(|i| job(i, "s", 0, now)).collect::<Vec<_>>(),
        now,
    )
    .await
    .unwrap();
    assert_eq!(wake_len("s").await, 10);
    assert_eq!(take(&d, &["s"], 4, now).await.len(), 4);
    assert_eq!(wake_len("s").await, 10, "jobs are left: tokens stay");
    assert_eq!(take(&d, &["s"], 100, now).await.len(), 6);
    assert_eq!(wake_len("s").await, 0);
    drop(wakeups);
    cleanup(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_transiently_while_redis_is_down_and_recover_after() {
    let port = free_port();
    let mut server = RedisServer::start(port);
    let mut config = RedisDispatchConfig::new(prefix());
    config.response_timeout = Duration::from_millis(500);
    config.connection_timeout = Duration::from_millis(200);
    config.reconnect_retries = 1;
    let d = RedisDispatch::connect_with(&server.url(), config)
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable_help(&server.url(), &e)));
    d.rebuild(&[job(1, "q", 0, T0), job(2, "q", 0, T0)], T0)
        .await
        .unwrap();
    assert_eq!(take(&d, &["q"], 1, T0).await, vec![1]);

    server.kill();
    for attempt in 0..3 {
        let err = d
            .take(&["q"], 1, T0)
            .await
            .expect_err("take succeeded with Redis down");
        assert!(
            err.is_transient(),
            "attempt {attempt}: {err:?} is not transient"
        );
        let err = d
            .push(&[job(3, "q", 0, T0)], T0)
            .await
            .expect_err("push succeeded with Redis down");
        assert!(err.is_transient(), "{err:?} is not transient");
        let err = d
            .publish(&[LifecycleEvent::new(EventKind::NodeSuspected, T0)])
            .await
            .expect_err("publish succeeded with Redis down");
        assert!(err.is_transient(), "{err:?} is not transient");
    }

    let server = RedisServer::start(port);
    // The manager reconnects on the next calls; a few may still see the old failure.
    let mut recovered = None;
    for _ in 0..50 {
        match d.is_empty().await {
            Ok(empty) => {
                recovered = Some(empty);
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e:?} is not transient");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Without persistence the data is gone, and the missing marker says so.
    assert_eq!(recovered, Some(true), "did not reconnect");
    // Scripts are gone too: they are loaded again on NOSCRIPT.
    d.rebuild(&[job(2, "q", 0, T0)], T0).await.unwrap();
    assert_eq!(take(&d, &["q"], 10, T0).await, vec![2]);
    assert_eq!(d.push(&[job(3, "q", 0, T0)], T0).await.unwrap(), vec![true]);
    drop(server);
}
