//! The Redis dispatch layer against a real Redis at 127.0.0.1:6379 (one fault test starts
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
use jobmesh::store::StoreError;
use jobmesh::store::redis::{
    ClaimSpec, EventCursor, ReadyJob, RedisDispatch, RedisDispatchConfig, RestoredLease,
};

const URL: &str = "redis://127.0.0.1:6379/";
const T0: Millis = Millis(1_700_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

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
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes every key under the dispatch's prefix.
async fn cleanup(d: &RedisDispatch) {
    let mut conn = raw().await;
    let pattern = format!("{}:*", d.keys().prefix());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
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

async fn claim(
    d: &RedisDispatch,
    queues: &[&str],
    limit: u32,
    n: &str,
    now: Millis,
) -> Vec<(JobId, LeaseToken)> {
    d.claim(
        queues,
        limit,
        &node(n),
        &worker(&format!("{n}/w0")),
        LEASE,
        now,
    )
    .await
    .unwrap()
}

fn ids(claimed: &[(JobId, LeaseToken)]) -> Vec<i64> {
    claimed.iter().map(|(id, _)| id.0).collect()
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
    let d = dispatch().await;
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
        order.extend(ids(&claim(&d, &["a", "b"], 1, "n1", T0).await));
    }
    assert_eq!(order, vec![6, 2, 4, 1, 3, 7, 5]);
    assert!(claim(&d, &["a", "b"], 10, "n1", T0).await.is_empty());

    // One queue, a batch: the same order within it.
    let jobs: Vec<_> = (10..20).map(|i| job(i, "c", (i % 3) as i16, T0)).collect();
    d.push(&jobs, T0).await.unwrap();
    let got = ids(&claim(&d, &["c"], 100, "n1", T0).await);
    assert_eq!(got, vec![11, 14, 17, 10, 13, 16, 19, 12, 15, 18]);
    cleanup(&d).await;
}

#[tokio::test]
async fn push_is_idempotent_for_queued_and_leased_jobs() {
    let d = dispatch().await;
    assert_eq!(
        d.push(&[job(1, "q", 0, T0), job(2, "q", 0, T0)], T0)
            .await
            .unwrap(),
        vec![true, true]
    );
    assert_eq!(
        d.push(&[job(1, "q", 0, T0)], T0).await.unwrap(),
        vec![false]
    );
    let first = claim(&d, &["q"], 1, "n1", T0).await;
    assert_eq!(ids(&first), vec![1]);
    // Leased now: pushing it again does nothing.
    assert_eq!(
        d.push(&[job(1, "q", 0, T0)], T0).await.unwrap(),
        vec![false]
    );
    assert_eq!(ids(&claim(&d, &["q"], 10, "n1", T0).await), vec![2]);
    assert!(claim(&d, &["q"], 10, "n1", T0).await.is_empty());

    // Finished in Redis with token 1: a push that has not seen that token is refused,
    // one that has (the retry the system of record decided) is taken.
    assert_eq!(d.ack(&first).await.unwrap(), vec![true]);
    assert_eq!(
        d.push(&[job(1, "q", 0, T0)], T0).await.unwrap(),
        vec![false]
    );
    let mut retry = job(1, "q", 0, T0);
    retry.epoch = first[0].1;
    assert_eq!(d.push(&[retry], T0).await.unwrap(), vec![true]);
    let again = claim(&d, &["q"], 1, "n1", T0).await;
    assert_eq!(ids(&again), vec![1]);
    assert!(again[0].1 > first[0].1);
    cleanup(&d).await;
}

#[tokio::test]
async fn delayed_jobs_are_promoted_only_when_due() {
    let d = dispatch().await;
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
    assert!(claim(&d, &["q"], 10, "n1", T0).await.is_empty());
    assert!(
        claim(&d, &["q"], 10, "n1", Millis(due.0 - 1))
            .await
            .is_empty()
    );
    assert_eq!(ids(&claim(&d, &["q"], 10, "n1", due).await), vec![1]);
    assert!(claim(&d, &["q"], 10, "n1", due).await.is_empty());
    assert_eq!(
        ids(&claim(&d, &["q"], 10, "n1", T0.plus(Duration::from_secs(60))).await),
        vec![2]
    );
    cleanup(&d).await;
}

#[tokio::test]
async fn a_stale_token_is_refused_and_changes_nothing() {
    let d = dispatch().await;
    d.push(&[job(1, "q", 0, T0)], T0).await.unwrap();
    let old = claim(&d, &["q"], 1, "n1", T0).await[0];
    // The lease lapses; the job is taken back and claimed again with a newer token.
    let later = T0.plus(LEASE).plus(Duration::from_secs(1));
    assert_eq!(d.expired(later, 100).await.unwrap(), vec![old]);
    let new = claim(&d, &["q"], 1, "n2", later).await[0];
    assert_eq!(new.0, old.0);
    assert!(new.1 > old.1);

    let before = job_hash(&d, 1).await;
    let far = later.plus(Duration::from_secs(3600));
    assert_eq!(d.ack(&[old]).await.unwrap(), vec![false]);
    assert_eq!(
        d.nack(&[(old.0, old.1, T0)], later).await.unwrap(),
        vec![false]
    );
    assert_eq!(d.extend(&[old], far).await.unwrap(), vec![false]);
    assert_eq!(
        d.ack(&[(JobId(999), LeaseToken(1))]).await.unwrap(),
        vec![false]
    );
    assert_eq!(
        job_hash(&d, 1).await,
        before,
        "stale calls changed the lease"
    );
    assert!(claim(&d, &["q"], 1, "n1", far).await.is_empty());
    // A future token is as stale as a past one.
    assert_eq!(
        d.ack(&[(new.0, LeaseToken(new.1.0 + 1))]).await.unwrap(),
        vec![false]
    );

    // The current holder can extend, nack and then (after claiming again) ack.
    assert_eq!(d.extend(&[new], far).await.unwrap(), vec![true]);
    assert!(
        d.expired(later.plus(LEASE).plus(LEASE), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        d.nack(&[(new.0, new.1, far)], later).await.unwrap(),
        vec![true]
    );
    assert_eq!(
        d.ack(&[new]).await.unwrap(),
        vec![false],
        "nacked lease is gone"
    );
    assert!(claim(&d, &["q"], 1, "n1", later).await.is_empty());
    let third = claim(&d, &["q"], 1, "n1", far).await[0];
    assert!(third.1 > new.1);
    assert_eq!(d.ack(&[third, third]).await.unwrap(), vec![true, false]);
    cleanup(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_get_the_same_job_twice() {
    const JOBS: i64 = 10_000;
    let d = dispatch().await;
    let jobs: Vec<_> = (1..=JOBS)
        .map(|i| job(i, "q", (i % 7) as i16, T0))
        .collect();
    assert!(d.push(&jobs, T0).await.unwrap().into_iter().all(|q| q));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let d = d.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = d
                        .claim(
                            &["q"],
                            37,
                            &node("n"),
                            &worker(&format!("n/w{t}")),
                            LEASE,
                            T0,
                        )
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    assert!(d.ack(&batch).await.unwrap().into_iter().all(|a| a));
                    got.extend(batch);
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for (id, tok) in t.await.unwrap() {
            assert_eq!(tok, LeaseToken(1));
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), JOBS as usize);
    cleanup(&d).await;
}

#[tokio::test]
async fn expired_and_revoked_leases_are_requeued_and_fenced() {
    let d = dispatch().await;
    d.push(&(1..=4).map(|i| job(i, "q", 0, T0)).collect::<Vec<_>>(), T0)
        .await
        .unwrap();
    let short = d
        .claim(
            &["q"],
            2,
            &node("a"),
            &worker("a/w0"),
            Duration::from_secs(1),
            T0,
        )
        .await
        .unwrap();
    let long = d
        .claim(
            &["q"],
            2,
            &node("b"),
            &worker("b/w0"),
            Duration::from_secs(600),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(ids(&short), vec![1, 2]);
    assert_eq!(ids(&long), vec![3, 4]);

    // Not yet lapsed at its expiry instant; lapsed just after.
    assert!(
        d.expired(T0.plus(Duration::from_secs(1)), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let t1 = T0.plus(Duration::from_millis(1_001));
    let mut lapsed = d.expired(t1, 1).await.unwrap();
    lapsed.extend(d.expired(t1, 10).await.unwrap());
    lapsed.sort();
    assert_eq!(lapsed, short);
    assert_eq!(d.ack(&short).await.unwrap(), vec![false, false]);

    let revoked = d.revoke_node(&node("b"), t1).await.unwrap();
    assert_eq!(
        revoked.iter().copied().collect::<HashSet<_>>(),
        [JobId(3), JobId(4)].into()
    );
    assert_eq!(d.ack(&long).await.unwrap(), vec![false, false]);
    assert_eq!(d.extend(&long, t1).await.unwrap(), vec![false, false]);
    assert!(d.revoke_node(&node("b"), t1).await.unwrap().is_empty());

    let again = claim(&d, &["q"], 10, "c", t1).await;
    assert_eq!(ids(&again), vec![1, 2, 3, 4]);
    for (id, tok) in &again {
        // Claimed once, fenced once, claimed again.
        assert_eq!(*tok, LeaseToken(3), "job {id}");
    }
    assert_eq!(d.ack(&again).await.unwrap(), vec![true; 4]);
    cleanup(&d).await;
}

#[tokio::test]
async fn removed_jobs_leave_dispatch() {
    let d = dispatch().await;
    d.push(
        &[
            job(1, "q", 0, T0),
            job(2, "q", 0, T0.plus(LEASE)),
            job(3, "q", 0, T0),
        ],
        T0,
    )
    .await
    .unwrap();
    let leased = claim(&d, &["q"], 1, "n1", T0).await;
    assert_eq!(ids(&leased), vec![1]);
    assert_eq!(
        d.remove(&[JobId(1), JobId(2), JobId(9)]).await.unwrap(),
        vec![true, true, false]
    );
    assert_eq!(d.ack(&leased).await.unwrap(), vec![false]);
    let far = T0.plus(Duration::from_secs(3600));
    assert_eq!(ids(&claim(&d, &["q"], 10, "n1", far).await), vec![3]);
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
async fn rebuild_after_a_flush_restores_jobs_and_leases_idempotently() {
    let d = dispatch().await;
    assert!(d.is_empty().await.unwrap());
    let jobs: Vec<_> = (1..=5).map(|i| job(i, "q", 0, T0)).collect();
    let first = d.rebuild(&jobs, &[], T0).await.unwrap();
    assert_eq!(first.queued, 5);
    assert!(!d.is_empty().await.unwrap());
    let leased = claim(&d, &["q"], 2, "n1", T0).await;
    assert_eq!(ids(&leased), vec![1, 2]);

    // Redis loses everything; the system of record still has 3 ready jobs and 2 leases
    // (with the tokens Redis issued, recorded by the outbox).
    cleanup(&d).await;
    assert!(d.is_empty().await.unwrap());
    assert!(claim(&d, &["q"], 10, "n1", T0).await.is_empty());
    let restore: Vec<_> = leased
        .iter()
        .map(|(id, tok)| RestoredLease {
            id: *id,
            queue: "q".into(),
            priority: 0,
            token: *tok,
            node: node("n1"),
            worker: worker("n1/w0"),
            expires: T0.plus(LEASE),
        })
        .collect();
    let report = d.rebuild(&jobs[2..], &restore, T0).await.unwrap();
    assert_eq!((report.queued, report.restored), (3, 2));
    assert_ne!(report.generation, first.generation);
    let again = d.rebuild(&jobs[2..], &restore, T0).await.unwrap();
    assert_eq!((again.queued, again.restored), (0, 0));
    assert_eq!(again.generation, report.generation);
    assert_eq!(d.generation().await.unwrap(), Some(report.generation));

    // The restored leases work as before: the holder acks one, the other lapses and
    // comes back with a token above the restored one.
    assert_eq!(d.ack(&leased[..1]).await.unwrap(), vec![true]);
    let rest = claim(&d, &["q"], 10, "n1", T0).await;
    assert_eq!(ids(&rest), vec![3, 4, 5]);
    assert_eq!(d.ack(&rest).await.unwrap(), vec![true; 3]);
    let after = T0.plus(LEASE).plus(Duration::from_secs(1));
    assert_eq!(d.expired(after, 10).await.unwrap(), vec![leased[1]]);
    let back = claim(&d, &["q"], 10, "n2", after).await;
    assert_eq!(ids(&back), vec![2]);
    assert!(back[0].1 > leased[1].1);
    // A ready job pushed with the epoch of its last lease gets tokens above it.
    let mut with_epoch = job(42, "q", 0, T0);
    with_epoch.epoch = LeaseToken(70);
    d.rebuild(&[with_epoch], &[], T0).await.unwrap();
    assert_eq!(
        claim(&d, &["q"], 1, "n1", T0).await,
        vec![(JobId(42), LeaseToken(71))]
    );
    cleanup(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_claimer_wakes_on_push_and_when_a_delayed_job_is_due() {
    let d = dispatch().await;
    let spec = ClaimSpec {
        queues: vec!["q".into(), "r".into()],
        limit: 10,
        node: node("n1"),
        worker: worker("n1/w0"),
        lease_for: LEASE,
    };
    let mut claimer = d.claimer(spec).await.unwrap();
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let got = claimer
            .claim_wait(&SystemClock, Duration::from_secs(20))
            .await
            .unwrap();
        (got, started.elapsed(), claimer)
    });
    d.push(&[job(1, "r", 0, SystemClock.now())], SystemClock.now())
        .await
        .unwrap();
    let (got, waited, mut claimer) = waiting.await.unwrap();
    assert_eq!(ids(&got), vec![1]);
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");

    // A delayed job: the claimer sleeps until its run_at, not the full wait.
    let now = SystemClock.now();
    d.push(&[job(2, "q", 0, now.plus(Duration::from_millis(200)))], now)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = claimer
        .claim_wait(&SystemClock, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ids(&got), vec![2]);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing to claim: waits the whole (short) time and returns empty.
    assert!(
        claimer
            .claim_wait(&SystemClock, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
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
    d.rebuild(&[job(1, "q", 0, T0), job(2, "q", 0, T0)], &[], T0)
        .await
        .unwrap();
    let leased = claim(&d, &["q"], 1, "n1", T0).await;
    assert_eq!(ids(&leased), vec![1]);

    server.kill();
    for attempt in 0..3 {
        let err = d
            .claim(&["q"], 1, &node("n1"), &worker("n1/w0"), LEASE, T0)
            .await
            .expect_err("claim succeeded with Redis down");
        assert!(
            err.is_transient(),
            "attempt {attempt}: {err:?} is not transient"
        );
        let err = d
            .ack(&leased)
            .await
            .expect_err("ack succeeded with Redis down");
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
    d.rebuild(&[job(2, "q", 0, T0)], &[], T0).await.unwrap();
    assert_eq!(ids(&claim(&d, &["q"], 10, "n1", T0).await), vec![2]);
    assert_eq!(d.push(&[job(3, "q", 0, T0)], T0).await.unwrap(), vec![true]);
    drop(server);
}
