//! redis_postgres (Postgres record + Redis dispatch) against the store conformance
//! suite, plus what is particular to it: claims go through Redis, a flushed Redis is
//! rebuilt from Postgres, stale Redis entries are refused by Postgres, events reach the
//! Redis stream, and a Redis that cannot answer hands claims to Postgres.
//!
//! Needs the machine's Postgres (`JOBMESH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and Redis (`JOBMESH_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379/`). Each test gets a Postgres schema and a Redis key
//! prefix of its own, so tests run in parallel; nothing here flushes the shared Redis
//! (the fault tests in `redis_postgres_faults.rs` start servers of their own for that).

use jobmesh::store::{EventLog, JobAdmin, JobQueue, QueueControl};
use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::event::EventKind;
use jobmesh::job::{ClaimRequest, JobId, JobState, NewJob, NodeId, WorkerId};
use jobmesh::store::SharedStore;
use jobmesh::store::conformance::{self, Spoil, T0, ok, sys};
use jobmesh::store::redis::EventCursor;
use jobmesh::store::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};
use serde_json::json;

mod common;

/// A store in a new schema `jm_test_<unix secs>_<random>` (the Postgres tests drop such
/// schemas once they are an hour old) with a new Redis prefix.
async fn store_with(config: impl FnOnce(&mut RedisPostgresConfig)) -> RedisPostgresStore {
    let schema = common::test_schema();
    let mut c = RedisPostgresConfig::new(format!("jmtest:hy:{:016x}", rand::random::<u64>()));
    config(&mut c);
    let (pg, redis) = (common::pg_url(), common::redis_url());
    RedisPostgresStore::connect(&pg, Some(&schema), &redis, c)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Postgres at {pg} or Redis at {redis} ({e}). These tests need both \
                 servers: `apt-get install postgresql redis-server`, start them (`.ci/run` \
                 does), or point JOBMESH_TEST_POSTGRES_URL / JOBMESH_TEST_REDIS_URL at them."
            )
        })
}

async fn store() -> RedisPostgresStore {
    store_with(|_| {}).await
}

/// A store whose background task stays out of the way (unless kicked), for tests that
/// drive reconciling and relaying themselves.
async fn quiet() -> RedisPostgresStore {
    store_with(|c| c.pump_interval = Duration::from_secs(3600)).await
}

async fn fresh() -> SharedStore {
    Arc::new(store().await)
}

// Redis still lists a damaged job: the claim takes it from there and Postgres's row
// decides.
async fn spoilable() -> (SharedStore, Spoil) {
    let s = store().await;
    let spoil = common::postgres_spoiler(s.postgres().pool().clone());
    (Arc::new(s), spoil)
}

jobmesh::store_conformance_tests!(fresh, spoilable);

/// Deletes every Redis key under the store's prefix.
async fn cleanup(s: &RedisPostgresStore) {
    let mut conn = raw().await;
    common::delete_redis_keys(&mut conn, &format!("{}:*", s.redis().keys().prefix())).await;
}

async fn raw() -> redis::aio::MultiplexedConnection {
    common::redis_conn(&common::redis_url()).await
}

/// A claim by node `n1`.
fn request(limit: u32, now: Millis) -> ClaimRequest {
    conformance::request("n1", limit, now)
}

fn noop() -> NewJob {
    NewJob::new("noop", json!({}))
}

async fn ready_len(s: &RedisPostgresStore, queue: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(s.redis().keys().ready(queue))
        .query_async(&mut raw().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn enqueue_pushes_to_redis_and_claims_take_from_it() {
    let s = store().await;
    let ids: Vec<JobId> = s
        .enqueue((0..10).map(|_| noop()).collect(), T0)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    assert_eq!(
        ready_len(&s, "default").await,
        10,
        "enqueue pushed every job"
    );
    let claimed = s.claim(&request(4, T0)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        ids[..4]
    );
    assert_eq!(
        ready_len(&s, "default").await,
        6,
        "the claim took from Redis"
    );
    assert_eq!(s.fallback_claims(), 0, "no claim needed Postgres alone");
    cleanup(&s).await;
}

#[tokio::test]
async fn stale_redis_entries_are_refused_by_postgres() {
    let s = store().await;
    let ids: Vec<JobId> = s
        .enqueue((0..3).map(|_| noop()).collect(), T0)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    // Cancel behind the store's back (another process, say): Redis still lists the job.
    sqlx::query("UPDATE jobs SET state = 'cancelled' WHERE id = $1")
        .bind(ids[0].0)
        .execute(s.postgres().pool())
        .await
        .unwrap();
    let claimed = s.claim(&request(2, T0)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        ids[1..],
        "the refused id is dropped and the claim takes the next one"
    );
    assert_eq!(
        s.get_job(ids[0]).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    cleanup(&s).await;
}

#[tokio::test]
async fn a_flushed_prefix_is_rebuilt_and_nothing_is_claimed_twice() {
    let s = quiet().await;
    s.enqueue((0..50).map(|_| noop()).collect(), T0)
        .await
        .unwrap();
    let first = s.claim(&request(10, T0)).await.unwrap();
    // Lose every key of this store, as a FLUSHALL would (this prefix only: the server
    // is shared).
    cleanup(&s).await;
    assert!(s.redis().generation().await.unwrap().is_none());
    // While the marker is missing a claim asks Postgres, so work goes on.
    let during = s.claim(&request(10, T0)).await.unwrap();
    assert_eq!(during.len(), 10);
    assert!(s.fallback_claims() >= 1);
    s.reconcile().await.unwrap();
    // At least the 30 still available jobs are back; a reconcile racing the Postgres
    // claim above may also have pushed some of its 10, which claims then refuse.
    assert!(ready_len(&s, "default").await >= 30);
    assert!(s.redis().generation().await.unwrap().is_some());
    let mut seen: std::collections::HashSet<JobId> =
        first.iter().chain(&during).map(|c| c.job.id).collect();
    loop {
        let got = s.claim(&request(7, T0)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for c in got {
            assert!(seen.insert(c.job.id), "job {} claimed twice", c.job.id);
        }
    }
    assert_eq!(seen.len(), 50);
    cleanup(&s).await;
}

#[tokio::test]
async fn the_background_task_rebuilds_after_a_flush() {
    let s = store_with(|c| c.pump_interval = Duration::from_millis(20)).await;
    s.enqueue((0..5).map(|_| noop()).collect(), T0)
        .await
        .unwrap();
    cleanup(&s).await;
    // Polling Redis for a cross-task effect, with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ready_len(&s, "default").await < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pump did not rebuild Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cleanup(&s).await;
}

#[tokio::test]
async fn lifecycle_events_reach_the_redis_stream() {
    let s = quiet().await;
    let [id] = s.enqueue(vec![noop()], T0).await.unwrap()[..] else {
        unreachable!()
    };
    let c = s.claim(&request(1, T0)).await.unwrap().remove(0);
    s.complete(vec![ok(&c, T0)]).await.unwrap();
    s.record_events(vec![
        jobmesh::event::LifecycleEvent::new(EventKind::NodeJoined, T0).node(NodeId("n1".into())),
    ])
    .await
    .unwrap();
    while s.relay_events().await.unwrap() > 0 {}
    let got = s
        .redis()
        .read(&EventCursor::start(), 100, None)
        .await
        .unwrap();
    let kinds: Vec<EventKind> = got.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::JobEnqueued,
            EventKind::JobClaimed,
            EventKind::JobSucceeded,
            EventKind::NodeJoined
        ]
    );
    assert_eq!(got[0].event.job, Some(id.id()));

    // The relay position is one snapshot: the newest entry, and the SQL sequence number
    // of the last event copied (what `jobmesh events --follow` hands over at).
    let (cursor, seq) = s.redis().relay_position().await.unwrap();
    assert_eq!(cursor, got.last().unwrap().cursor);
    let record = s.events_after(0, 100).await.unwrap();
    assert_eq!(seq, Some(record.last().unwrap().seq));
    cleanup(&s).await;
}

/// An empty Redis that still has its generation marker is trusted (no Postgres claim);
/// what it lost comes back with the next reconcile. (A Redis that cannot answer at all
/// is in `redis_postgres_faults.rs`, with a server of its own.)
#[tokio::test]
async fn an_empty_redis_with_its_marker_is_trusted_until_reconciled() {
    let s = store().await;
    s.enqueue(vec![noop()], T0).await.unwrap();
    // Lose the queue key alone (its job records stay) but keep the marker: Redis is
    // trusted, the job waits for the reconciler, whose push sees the record without
    // its queue entry and queues it again.
    let _: () = redis::cmd("DEL")
        .arg(s.redis().keys().ready("default"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!(s.claim(&request(1, T0)).await.unwrap().is_empty());
    s.reconcile().await.unwrap();
    assert_eq!(s.claim(&request(1, T0)).await.unwrap().len(), 1);
    cleanup(&s).await;
}

#[tokio::test]
async fn scheduled_jobs_and_released_children_are_pushed() {
    let s = store().await;
    let mut later = noop();
    later.run_at = Some(T0.plus(Duration::from_secs(60)));
    let [p, l] = s.enqueue(vec![noop(), later], T0).await.unwrap()[..] else {
        unreachable!()
    };
    let mut child = noop();
    child.depends_on = vec![p.id()];
    s.enqueue(vec![child], T0).await.unwrap();
    assert_eq!(
        ready_len(&s, "default").await,
        1,
        "only the parent is ready"
    );
    let c = s.claim(&request(5, T0)).await.unwrap().remove(0);
    s.complete(vec![ok(&c, T0)]).await.unwrap();
    assert_eq!(ready_len(&s, "default").await, 1, "the released child");
    assert_eq!(
        s.promote_due(T0.plus(Duration::from_secs(60)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(ready_len(&s, "default").await, 2, "and the promoted job");
    let got = s
        .claim(&request(5, T0.plus(Duration::from_secs(60))))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().any(|c| c.job.id == l.id()));
    cleanup(&s).await;
}

/// A snoozed job is out of the ready index until it is due, is pushed back when
/// promoted and claimed from Redis (no Postgres fallback), and its state hash reads
/// `scheduled` meanwhile; its progress goes to Postgres and its events to the stream.
#[tokio::test]
async fn snoozed_jobs_are_scheduled_through_redis() {
    use jobmesh::job::{Outcome, Progress, ProgressReport};
    let s = store().await;
    let id = s.enqueue(vec![noop()], T0).await.unwrap()[0].id();
    let c = s.claim(&request(1, T0)).await.unwrap().remove(0);
    let report = ProgressReport {
        lease: c.lease.clone(),
        progress: Progress::new(0.5, "half", T0).unwrap(),
    };
    assert_eq!(
        s.record_progress(&[report], T0.plus(Duration::from_secs(30)))
            .await
            .unwrap(),
        [true]
    );
    let due = T0.plus(Duration::from_secs(10));
    let snooze = conformance::done(&c, Outcome::Snoozed { run_at: due }, T0);
    s.complete(vec![snooze]).await.unwrap();
    assert_eq!(ready_len(&s, "default").await, 0, "not ready while snoozed");
    eventually("the state hash reads scheduled", async || {
        s.redis().get_state(id).await.unwrap() == Some(JobState::Scheduled)
    })
    .await;
    assert_eq!(s.promote_due(due).await.unwrap(), 1);
    assert_eq!(ready_len(&s, "default").await, 1, "pushed when due");
    let again = s.claim(&request(1, due)).await.unwrap().remove(0);
    assert_eq!(
        (again.job.id, again.lease.attempt, again.job.snoozes),
        (id, 1, 1)
    );
    assert_eq!(again.job.progress.map(|p| p.message), Some("half".into()));
    assert_eq!(s.fallback_claims(), 0, "every claim went through Redis");
    eventually(
        "the stream carries the progress and the snooze",
        async || {
            let kinds: Vec<EventKind> = s
                .redis()
                .read(&EventCursor::start(), 100, None)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event.kind)
                .collect();
            kinds.contains(&EventKind::JobProgress) && kinds.contains(&EventKind::JobSnoozed)
        },
    )
    .await;
    cleanup(&s).await;
}

#[tokio::test]
async fn a_prefix_of_another_postgres_store_is_refused() {
    let a = store().await;
    let prefix = a.redis().keys().prefix().to_string();
    let schema = common::test_schema();
    let err = RedisPostgresStore::connect(
        &common::pg_url(),
        Some(&schema),
        &common::redis_url(),
        RedisPostgresConfig::new(prefix),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("another Postgres store"), "{err}");
    cleanup(&a).await;
}

/// A node on redis_postgres hears jobs pushed by another process through the Redis
/// wake lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_jobs_enqueued_by_other_processes_without_waiting_for_its_poll() {
    let s = Arc::new(store().await);
    common::a_node_wakes_for_jobs_enqueued_elsewhere(s.clone()).await;
    cleanup(&s).await;
}

/// Bounds a failure only: heartbeats and relayed states arrive within a few rounds.
const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Polls `check` until it holds, failing with `what` after [`LIVE_TIMEOUT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + LIVE_TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {LIVE_TIMEOUT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A handler that reports each job it starts and then waits for a permit.
fn gated(
    registry: &mut jobmesh::handler::Registry,
) -> (
    tokio::sync::mpsc::Receiver<JobId>,
    Arc<tokio::sync::Semaphore>,
) {
    let (started_tx, started) = tokio::sync::mpsc::channel::<JobId>(8);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    registry.register_fn(
        "gated",
        jobmesh::payload::PayloadRules::default(),
        move |ctx| {
            let started = started_tx.clone();
            let gate = g.clone();
            async move {
                let _ = started.send(ctx.job.id).await;
                gate.acquire().await.unwrap().forget();
                Ok(None)
            }
        },
    );
    (started, gate)
}

/// A node on redis_postgres shows itself and its worker slots in the Redis heartbeat
/// registries while it runs, and drops out of them once their TTL passes after it stops;
/// the state hash of the job it runs follows the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_and_its_job_are_live_in_redis() {
    let s = Arc::new(store().await);
    let config = jobmesh::config::Config::default();
    let mut registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
    let (mut started, gate) = gated(&mut registry);
    let node = common::start_node(s.clone(), "hb", Duration::from_millis(100), registry).await;
    let id = node
        .submit(vec![NewJob::new("gated", json!({}))])
        .await
        .unwrap()[0]
        .id();
    assert_eq!(started.recv().await, Some(id));

    let r = s.redis();
    eventually("the node and its two workers are live", async || {
        r.alive_nodes().await.unwrap() == [NodeId("hb".into())]
            && r.alive_workers().await.unwrap()
                == [WorkerId("hb/w0".into()), WorkerId("hb/w1".into())]
    })
    .await;

    eventually("the running job's state hash says running", async || {
        r.get_state(id).await.unwrap() == Some(JobState::Running)
    })
    .await;

    gate.add_permits(1);
    eventually("the finished job's state hash says succeeded", async || {
        r.get_state(id).await.unwrap() == Some(JobState::Succeeded)
    })
    .await;
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    eventually("the stopped node's heartbeats expire", async || {
        r.alive_nodes().await.unwrap().is_empty() && r.alive_workers().await.unwrap().is_empty()
    })
    .await;
    cleanup(&s).await;
}

/// The state hashes follow every transition through the store API: those with an event
/// through the relay, promotion and released children after their commit.
#[tokio::test]
async fn job_state_hashes_follow_each_transition() {
    let s = store().await;
    let r = s.redis();
    let state_is = async |id: JobId, want: JobState| {
        eventually(&format!("job {id} reads {want:?}"), async || {
            r.get_state(id).await.unwrap() == Some(want)
        })
        .await;
    };
    let mut later = noop();
    later.run_at = Some(T0.plus(Duration::from_secs(60)));
    let out = s.enqueue(vec![noop(), later], T0).await.unwrap();
    let (now_id, later_id) = (out[0].id(), out[1].id());
    let mut child = noop();
    child.depends_on = vec![now_id];
    let child_id = s.enqueue(vec![child], T0).await.unwrap()[0].id();
    state_is(now_id, JobState::Available).await;
    state_is(later_id, JobState::Scheduled).await;
    state_is(child_id, JobState::Waiting).await;

    let claimed = s.claim(&request(1, T0)).await.unwrap();
    assert_eq!(claimed[0].job.id, now_id);
    state_is(now_id, JobState::Running).await;
    let done = ok(&claimed[0], T0);
    s.complete(vec![done]).await.unwrap();
    state_is(now_id, JobState::Succeeded).await;
    state_is(child_id, JobState::Available).await;

    assert_eq!(
        s.promote_due(T0.plus(Duration::from_secs(61)))
            .await
            .unwrap(),
        1
    );
    state_is(later_id, JobState::Available).await;
    s.cancel(&sys(), later_id, T0.plus(Duration::from_secs(62)))
        .await
        .unwrap();
    state_is(later_id, JobState::Cancelled).await;
    cleanup(&s).await;
}

/// An entry of the event stream this version cannot decode (another version's, or one
/// added by hand) is left out of reads and tails, which go on past it instead of failing
/// on it for ever.
#[tokio::test]
async fn an_undecodable_stream_entry_is_skipped() {
    use jobmesh::event::LifecycleEvent;

    let s = quiet().await;
    let d = s.redis();
    let first = LifecycleEvent::new(EventKind::NodeJoined, T0).node(NodeId("n1".into()));
    let last = LifecycleEvent::new(EventKind::NodeLeft, T0).node(NodeId("n1".into()));
    d.publish(std::slice::from_ref(&first)).await.unwrap();
    let mut conn = raw().await;
    let mut bad_id = String::new();
    for (v, e) in [("1", "{not json"), ("99", "{}")] {
        bad_id = redis::cmd("XADD")
            .arg(d.keys().events())
            .arg("*")
            .arg("v")
            .arg(v)
            .arg("e")
            .arg(e)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut tail = d
        .tail(Some(EventCursor::start()))
        .await
        .unwrap()
        .with_block(Duration::from_millis(100));
    let got = tail.next_batch().await.unwrap();
    assert_eq!(
        got.into_iter().map(|e| e.event).collect::<Vec<_>>(),
        vec![first.clone()]
    );
    assert_eq!(
        tail.cursor().0,
        bad_id,
        "the tail moved past the bad entries"
    );
    d.publish(std::slice::from_ref(&last)).await.unwrap();
    let got = tail.next_batch().await.unwrap();
    assert_eq!(
        got.into_iter().map(|e| e.event).collect::<Vec<_>>(),
        vec![last.clone()]
    );
    let read = d.read(&EventCursor::start(), 100, None).await.unwrap();
    assert_eq!(
        read.into_iter().map(|e| e.event).collect::<Vec<_>>(),
        vec![first, last]
    );
    cleanup(&s).await;
}

#[tokio::test]
async fn pause_survives_reopen() {
    let s = store().await;
    let schema = s.postgres().schema().to_owned();
    let prefix = s.redis().keys().prefix().to_owned();
    jobmesh::store::conformance::pause_survives_reopen(Arc::new(s), || async move {
        let c = RedisPostgresConfig::new(prefix);
        Arc::new(
            RedisPostgresStore::connect(&common::pg_url(), Some(&schema), &common::redis_url(), c)
                .await
                .unwrap(),
        ) as SharedStore
    })
    .await;
}

/// The Redis mirror of the paused set is a shortcut, not the rule: with it lost, Postgres
/// still refuses the paused queue's jobs, and a reconcile restores it.
#[tokio::test]
async fn pause_holds_without_its_redis_mirror() {
    let s = quiet().await;
    let id = s.enqueue(vec![mail()], T0).await.unwrap()[0].id();
    s.pause_queue(&sys(), "mail", T0).await.unwrap();
    assert_eq!(s.redis().paused().await.unwrap(), ["mail"]);
    s.redis().set_paused(&[]).await.unwrap();
    let req = |limit| ClaimRequest {
        queues: vec!["mail".into()],
        ..conformance::request("n1", limit, T0)
    };
    assert!(
        s.claim(&req(5)).await.unwrap().is_empty(),
        "Postgres refuses"
    );
    assert_eq!(
        s.get_job(id).await.unwrap().unwrap().state,
        JobState::Available
    );
    s.reconcile().await.unwrap();
    assert_eq!(
        s.redis().paused().await.unwrap(),
        ["mail"],
        "reconcile restores the mirror"
    );
    s.resume_queue(&sys(), "mail", T0).await.unwrap();
    // The refused id left Redis; the resume marked the index dirty for the reconciler.
    s.reconcile().await.unwrap();
    let got = s.claim(&req(5)).await.unwrap();
    assert_eq!(got.iter().map(|c| c.job.id).collect::<Vec<_>>(), [id]);
}

fn mail() -> NewJob {
    let mut j = NewJob::new("noop", json!({}));
    j.queue = "mail".into();
    j
}

/// `n` stores on one new schema and Redis prefix, as separate nodes are.
async fn nodes(n: usize) -> Vec<SharedStore> {
    let first = store().await;
    let schema = first.postgres().schema().to_owned();
    let prefix = first.redis().keys().prefix().to_owned();
    let mut out: Vec<SharedStore> = vec![Arc::new(first)];
    for _ in 1..n {
        let c = RedisPostgresConfig::new(prefix.clone());
        out.push(Arc::new(
            RedisPostgresStore::connect(&common::pg_url(), Some(&schema), &common::redis_url(), c)
                .await
                .unwrap(),
        ));
    }
    out
}

/// Three nodes claim one limited queue at once; a sampler reads the running counts
/// from Postgres throughout: never over a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_nodes() {
    jobmesh::store::conformance::limits_hold_across_nodes(nodes(3).await).await;
}

/// The second node's routing still says "no limit" when the first sets one: its claim
/// takes ids from Redis, Postgres refuses them (they are under a limit), and they go
/// back to Redis, so none is lost.
#[tokio::test]
async fn a_node_that_has_not_seen_a_new_limit_does_not_pass_it() {
    let n = nodes(2).await;
    jobmesh::store::conformance::a_node_that_has_not_seen_a_new_limit_does_not_pass_it(
        &*n[0], &*n[1],
    )
    .await;
}
