//! Fault tests of redis_postgres (Postgres record + Redis dispatch), each through a
//! real node (actors, workers, batched completion): Redis flushed mid-drain, Redis
//! killed and restarted mid-run, Postgres stopped and restarted mid-run. After each,
//! every job must have succeeded exactly once: one recorded success (execution row and
//! `job.succeeded` event) per job, none lost. And wake-ups subscribed while Redis is
//! down arrive once it is back.
//!
//! Servers that a fault would hurt are started here from the system binaries, on free
//! ports (`tests/common`, over `jobmesh_sim::servers`, which the chaos runner's store
//! scenarios use too): `redis-server` (package `redis-server`) for the Redis faults, and
//! a Postgres cluster (`initdb`/`pg_ctl` from package `postgresql`) in a temporary
//! directory for the Postgres fault. A missing binary fails the test with the package to install.
//! The Redis faults keep their records in the machine's Postgres (a schema each); the
//! Postgres fault uses the machine's Redis under a key prefix of its own.

mod common;

use common::{PgCluster, RedisServer, StopMode, free_port};
use jobmesh::store::{JobQueue, WakeupSource};

use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::SystemClock;
use jobmesh::config::{Config, WorkersSection};
use jobmesh::job::{JobId, NewJob, NodeId};
use jobmesh::store::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};
use jobmesh::store::{SharedStore, Store, Wakeup};
use jobmesh_actors::{Node, NodeOptions};
use serde_json::json;
use tokio::time::Instant;

/// Jobs per run, and how long each runs: long enough that a fault lands mid-run.
const JOBS: usize = 2000;
const JOB_MS: u64 = 5;
const CONCURRENCY: u32 = 8;
/// Generous bounds on cross-process effects (normally seconds).
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

fn config(prefix: &str) -> RedisPostgresConfig {
    let mut c = RedisPostgresConfig::new(prefix);
    c.pump_interval = Duration::from_millis(50);
    c.reconcile_interval = Duration::from_secs(5);
    c
}

fn job() -> NewJob {
    NewJob::new("sleep", json!({ "ms": JOB_MS }))
}

async fn start_node(store: SharedStore) -> Node {
    let config = Config::default();
    let workers = WorkersSection {
        concurrency: CONCURRENCY,
        poll_interval: Duration::from_millis(50),
        ..WorkersSection::default()
    };
    Node::start(NodeOptions {
        node_id: NodeId(format!("fault-{:08x}", rand::random::<u32>())),
        workers,
        retry: config.retry.clone(),
        store,
        registry: jobmesh::handler::builtin::registry(&config.exec, &config.http),
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .expect("node starts")
}

/// The store on the shared test Postgres (a fresh schema) and `redis`, a Redis server
/// the test started for itself.
async fn connect(redis: &RedisServer) -> RedisPostgresStore {
    RedisPostgresStore::connect(
        &common::pg_url(),
        Some(&common::test_schema()),
        &redis.url(),
        config("jmfault"),
    )
    .await
    .expect("connect")
}

async fn enqueue(store: &dyn Store) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(JOBS);
    for chunk in 0..JOBS.div_ceil(500) {
        let n = (JOBS - chunk * 500).min(500);
        let out = store
            .enqueue(
                (0..n).map(|_| job()).collect(),
                jobmesh::clock::Clock::now(&SystemClock),
            )
            .await
            .unwrap();
        ids.extend(out.into_iter().map(|o| o.id()));
    }
    ids
}

/// Recorded successes, counted in Postgres (which stays reachable through `pool`).
async fn succeeded(pool: &sqlx::PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
        .fetch_one(pool)
        .await
        .ok()
}

/// Polls Postgres until at least `n` jobs succeeded (a cross-process effect), failing
/// after `deadline`.
async fn wait_succeeded(pool: &sqlx::PgPool, n: i64, deadline: Duration, what: &str) -> i64 {
    let until = Instant::now() + deadline;
    loop {
        if let Some(done) = succeeded(pool).await
            && done >= n
        {
            return done;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the store until `id` succeeded (the node is alive and dispatching).
async fn wait_state(store: &dyn Store, id: JobId) {
    let until = Instant::now() + DRAIN_DEADLINE;
    loop {
        if let Ok(Some(j)) = store.get_job(id).await
            && j.state == jobmesh::job::JobState::Succeeded
        {
            return;
        }
        assert!(
            Instant::now() < until,
            "job {id}, submitted after the fault, did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the reconciler has rebuilt a restarted (empty) Redis: its generation
/// marker is back.
async fn wait_rebuilt(store: &RedisPostgresStore) {
    let until = Instant::now() + DRAIN_DEADLINE;
    while store.redis().generation().await.ok().flatten().is_none() {
        assert!(
            Instant::now() < until,
            "the restarted Redis was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every job succeeded, with exactly one execution row and one `job.succeeded` event.
async fn assert_exactly_once(pool: &sqlx::PgPool, ids: &[JobId]) {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let bad: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT j.id, j.state,
                (SELECT count(*) FROM job_executions e WHERE e.job = j.id AND e.outcome = 'succeeded'),
                (SELECT count(*) FROM lifecycle_events v WHERE v.job = j.id AND v.kind = 'job.succeeded')
         FROM jobs j WHERE j.id = ANY ($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .filter(|(_, state, execs, evs)| state != "succeeded" || *execs != 1 || *evs != 1)
    .collect();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY ($1)")
        .bind(&ids)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(found as usize, ids.len(), "jobs went missing");
    assert!(
        bad.is_empty(),
        "{} jobs not recorded exactly once (id, state, executions, events), e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// FLUSHALL in the middle of a drain: the reconciler rebuilds Redis from Postgres, every
/// job completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_mid_drain_loses_nothing_and_duplicates_nothing() {
    let redis = RedisServer::start(free_port());
    let store = Arc::new(connect(&redis).await);
    let pool = store.postgres().pool().clone();
    let ids = enqueue(&*store).await;
    let before = store.redis().generation().await.unwrap();
    let node = start_node(store.clone()).await;
    let at = wait_succeeded(&pool, (JOBS / 4) as i64, DRAIN_DEADLINE, "a quarter done").await;
    redis.cmd("FLUSHALL");
    eprintln!("flushed Redis with {at} of {JOBS} jobs done");
    assert!(
        (at as usize) < JOBS,
        "the drain finished before the flush; the test proves nothing"
    );
    wait_succeeded(&pool, JOBS as i64, DRAIN_DEADLINE, "every job").await;
    let after = store.redis().generation().await.unwrap();
    assert!(
        after.is_some() && after != before,
        "Redis was rebuilt under a new generation"
    );
    eprintln!("claims from Postgres alone: {}", store.fallback_claims());
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_exactly_once(&pool, &ids).await;
}

/// Redis killed (no persistence: it comes back empty) and restarted mid-run: claims go to
/// Postgres meanwhile, the node stays up, every job completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run() {
    let port = free_port();
    let mut redis = RedisServer::start(port);
    let store = Arc::new(connect(&redis).await);
    let pool = store.postgres().pool().clone();
    let ids = enqueue(&*store).await;
    let node = start_node(store.clone()).await;
    let at = wait_succeeded(&pool, (JOBS / 5) as i64, DRAIN_DEADLINE, "a fifth done").await;
    redis.kill();
    eprintln!("killed Redis with {at} of {JOBS} jobs done");
    assert!((at as usize) < JOBS, "the drain finished before the kill");
    // Progress without Redis: claims fall back to Postgres.
    let want = (at + (JOBS / 5) as i64).min(JOBS as i64);
    let during = wait_succeeded(&pool, want, DRAIN_DEADLINE, "progress while Redis is down").await;
    assert!(store.fallback_claims() > 0, "claims went to Postgres");
    let redis = RedisServer::start(port);
    eprintln!(
        "restarted Redis with {during} jobs done, after {} claims from Postgres alone",
        store.fallback_claims()
    );
    wait_succeeded(&pool, JOBS as i64, DRAIN_DEADLINE, "every job").await;
    // The node is alive and dispatches through the restarted (and rebuilt) Redis.
    let late = node.submit(vec![job()]).await.unwrap()[0].id();
    wait_state(&*store, late).await;
    wait_rebuilt(&store).await;
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_exactly_once(&pool, &ids).await;
    drop(redis);
}

/// Postgres stopped mid-run and started again: the node pauses (its writes fail as
/// transient errors and are retried), resumes, and every job completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_mid_run() {
    let mut pg = PgCluster::start();
    let prefix = format!("jmtest:pgfault:{:016x}", rand::random::<u64>());
    let store = Arc::new(
        RedisPostgresStore::connect(
            &pg.url(),
            Some("jm_fault"),
            "redis://127.0.0.1:6379/",
            config(&prefix),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to own Postgres and the machine's Redis: {e}")),
    );
    let pool = store.postgres().pool().clone();
    let ids = enqueue(&*store).await;
    let node = start_node(store.clone()).await;
    let at = wait_succeeded(&pool, (JOBS / 5) as i64, DRAIN_DEADLINE, "a fifth done").await;
    pg.stop(StopMode::Fast);
    eprintln!("stopped Postgres with {at} of {JOBS} jobs done");
    assert!((at as usize) < JOBS, "the drain finished before the outage");
    // The outage lasts a while (its length is the fault, not a synchronisation).
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_server();
    wait_succeeded(&pool, JOBS as i64, DRAIN_DEADLINE, "every job").await;
    // The node came through: a job submitted now runs.
    let late = node.submit(vec![job()]).await.unwrap()[0].id();
    wait_state(&*store, late).await;
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_exactly_once(&pool, &ids).await;
    // Tidy the shared Redis.
    let mut conn = redis::Client::open("redis://127.0.0.1:6379/")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    common::delete_redis_keys(&mut conn, &format!("{prefix}:*")).await;
}

/// Wake-ups subscribed while Redis is down (as a node starting during an outage does,
/// the store having connected before it) reach the Redis wake lists once Redis is back:
/// a job enqueued then arrives as a wake-up for its queue. Only a `BLPOP` that popped a
/// token names a queue (retries deliver `Lagged`), so this needs the task's own
/// connection to have come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_subscribed_during_a_redis_outage_arrive_once_redis_is_back() {
    /// Bounds a failure only: the task retries at least every 2 s.
    const WAKE_TIMEOUT: Duration = Duration::from_secs(20);
    let port = free_port();
    let mut redis = RedisServer::start(port);
    let store = connect(&redis).await;
    redis.kill();
    let mut wakeups = store
        .wakeups(&["default".into()])
        .await
        .expect("subscribing needs no Redis");
    let _redis = RedisServer::start(port);
    // The store's own connection is back once the reconciler has rebuilt Redis, so the
    // enqueue below reaches the wake lists.
    wait_rebuilt(&store).await;
    store
        .enqueue(vec![job()], jobmesh::clock::Clock::now(&SystemClock))
        .await
        .unwrap();
    let woken = tokio::time::timeout(WAKE_TIMEOUT, async {
        loop {
            match wakeups.recv().await {
                Some(Wakeup::Queue(q)) => return q,
                Some(Wakeup::Lagged) => continue,
                None => panic!("the wake-up task stopped"),
            }
        }
    })
    .await
    .expect("no wake-up for the queue: the task never reached the restarted Redis");
    assert_eq!(woken, "default");
}
