//! Fault tests of the Postgres backend through a real node (actors, workers, batched
//! completion, maintenance), against a Postgres cluster of the test's own (`initdb` and
//! `pg_ctl` from package `postgresql`, started by `tests/common` on a free port) so that
//! it can be stopped and started again. A missing binary fails the test with the package
//! to install.

mod common;

use common::{PgCluster, StopMode};
use jobmesh::store::JobAdmin;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::SystemClock;
use jobmesh::config::{Config, WorkersSection};
use jobmesh::job::{JobId, JobState, NewJob, NodeId};
use jobmesh::payload::PayloadRules;
use jobmesh::store::postgres::PostgresStore;
use jobmesh_actors::{Node, NodeOptions};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

const JOBS: usize = 4;
/// Short, so that the outage below outlasts every lease.
const LEASE: Duration = Duration::from_secs(1);
/// Generous bound on the recovery (normally a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);

/// Attempts that finish while Postgres is down, for longer than their lease, are recorded
/// once Postgres is back, and nothing runs twice: when the store returns, every lease
/// looks lapsed, but the node holds its rescues back for a grace and its completer
/// records the outcomes first. (Before that grace, maintenance rescued the jobs at its
/// next round, the late completions were refused and every job ran a second time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_finished_during_an_outage_longer_than_their_lease_run_once() {
    let mut pg = PgCluster::start();
    let store = Arc::new(
        PostgresStore::connect(&pg.url(), Some("jm_outage"))
            .await
            .unwrap_or_else(|e| panic!("connect to the test's own Postgres: {e}")),
    );
    let config = Config::default();
    let mut registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
    let runs: Arc<Mutex<HashMap<JobId, u32>>> = Arc::default();
    let (started_tx, mut started) = mpsc::channel::<JobId>(64);
    let gate = Arc::new(Semaphore::new(0));
    let (r, g) = (runs.clone(), gate.clone());
    registry.register_fn("gated", PayloadRules::default(), move |ctx| {
        let (runs, gate, started) = (r.clone(), g.clone(), started_tx.clone());
        async move {
            *runs.lock().unwrap().entry(ctx.job.id).or_default() += 1;
            let _ = started.send(ctx.job.id).await;
            gate.acquire().await.unwrap().forget();
            Ok(None)
        }
    });
    let node = Node::start(NodeOptions {
        node_id: NodeId("outage".into()),
        workers: WorkersSection {
            concurrency: JOBS as u32,
            poll_interval: Duration::from_millis(50),
            lease: LEASE,
            ..WorkersSection::default()
        },
        retry: config.retry.clone(),
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .expect("node starts");
    let ids: Vec<JobId> = node
        .submit((0..JOBS).map(|_| NewJob::new("gated", json!({}))).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    for _ in 0..JOBS {
        started.recv().await.expect("every job starts");
    }

    pg.stop(StopMode::Fast);
    // Every attempt finishes during the outage; its completion waits in the retry loop.
    // Any rerun also finds a permit, so a second run shows in the counts below instead
    // of hanging the test.
    gate.add_permits(JOBS * 10);
    // The outage outlasts the lease (its length is the fault, not a synchronisation).
    tokio::time::sleep(LEASE * 3).await;
    pg.start_server();

    let until = Instant::now() + DEADLINE;
    for &id in &ids {
        loop {
            if let Ok(Some(j)) = store.get_job(id).await
                && j.state == JobState::Succeeded
            {
                assert_eq!(j.attempt, 1, "job {id} was rescued and ran again");
                break;
            }
            assert!(
                Instant::now() < until,
                "job {id} did not succeed after the outage"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    node.shutdown(Duration::from_secs(5)).await.unwrap();
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), JOBS, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "a job ran twice: {runs:?}");
    let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM job_executions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(executions, JOBS as i64, "one recorded attempt per job");
}

/// Claims commit asynchronously, and a crash of Postgres loses the last of them; yet no
/// lease token is ever handed out twice, every job ends with exactly one recorded
/// outcome, and none is lost. A drain runs with claims in flight; the WAL writer is
/// paused so that the claims made after it are certainly lost; every Postgres process is
/// killed (`SIGKILL`); after the restart the lost jobs are claimed again (by the same
/// store, whose pool reconnects) before the holders of the lost claims report, so that
/// a re-issued token would let a stale holder's completion through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_that_loses_async_claims_never_hands_out_a_lease_token_twice() {
    use std::collections::HashSet;

    use jobmesh::clock::Millis;
    use jobmesh::job::{ClaimedJob, CompletionResult};
    use jobmesh::store::JobQueue;
    use jobmesh::store::conformance::{ok, request};

    const N: usize = 200;
    const BATCH: u32 = 5;
    let mut pg = PgCluster::start();
    {
        // Nothing but the test's own statements writes WAL (no autovacuum, no background
        // writer flushing WAL ahead of data pages), so what the crash loses is decided by
        // the WAL writer pause below alone.
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&pg.url())
            .await
            .unwrap_or_else(|e| panic!("connect to the test's own Postgres: {e}"));
        for setting in [
            "ALTER SYSTEM SET autovacuum = off",
            "ALTER SYSTEM SET bgwriter_lru_maxpages = 0",
            "ALTER SYSTEM SET checkpoint_timeout = '1h'",
        ] {
            sqlx::query(setting).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
        pg.stop(StopMode::Fast);
        pg.start_server();
    }
    // One connection: it draws its incarnation (a durable commit, which flushes the WAL
    // before it) at the drain's first claim. With a pool, a claim after the pause could
    // land on a connection that had only completed jobs, draw there, and flush the very
    // claims the crash is meant to lose (seen once under load).
    let options = std::str::FromStr::from_str(&pg.url())
        .unwrap_or_else(|e| panic!("the test's own Postgres URL: {e}"));
    let store = PostgresStore::connect_with(options, Some("jm_crash"), 1)
        .await
        .unwrap_or_else(|e| panic!("connect to the test's own Postgres: {e}"))
        .with_async_claims(true);
    let now = Millis(1_700_000_000_000);
    let ids: Vec<JobId> = store
        .enqueue(
            (0..N)
                .map(|i| NewJob::new("noop", json!({ "i": i })))
                .collect(),
            now,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    // Every lease handed out, in order: a token handed out twice shows here.
    let mut issued: Vec<(JobId, i64)> = Vec::new();
    let claim = async |store: &PostgresStore, issued: &mut Vec<(JobId, i64)>| {
        let got: Vec<ClaimedJob> = store.claim(&request("n1", BATCH, now)).await.unwrap();
        issued.extend(got.iter().map(|c| (c.job.id, c.lease.token.0)));
        got
    };

    // The drain, up to half the jobs, each claim completed before the next.
    let mut finished = 0;
    while finished < N / 2 {
        let got = claim(&store, &mut issued).await;
        assert!(!got.is_empty(), "the drain ran dry at {finished}");
        let done = store
            .complete(got.iter().map(|c| ok(c, now)).collect())
            .await
            .unwrap();
        assert!(done.iter().all(|r| *r == CompletionResult::Applied));
        finished += got.len();
    }
    // Claims in flight: some before the WAL writer pause (kept or lost, as the WAL
    // writer was quick or not), some after it (lost: nothing flushes them).
    let mut in_flight = claim(&store, &mut issued).await;
    pg.pause_wal_writer();
    for _ in 0..3 {
        in_flight.extend(claim(&store, &mut issued).await);
    }
    let incarnation_before: i64 = sqlx::query_scalar("SELECT n FROM store_incarnation")
        .fetch_one(store.pool())
        .await
        .unwrap();
    pg.crash();
    pg.start_server();

    // The same store after the restart: claim every job that is available again
    // (those of the lost claims among them), holding them.
    let mut reclaimed = Vec::new();
    loop {
        let got = claim(&store, &mut issued).await;
        if got.is_empty() {
            break;
        }
        reclaimed.extend(got);
    }
    let incarnation_after: i64 = sqlx::query_scalar("SELECT n FROM store_incarnation")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(
        incarnation_after > incarnation_before,
        "the reconnected pool drew no new incarnation ({incarnation_before} -> {incarnation_after})"
    );
    let in_flight_ids: HashSet<JobId> = in_flight.iter().map(|c| c.job.id).collect();
    let lost: Vec<JobId> = reclaimed
        .iter()
        .map(|c| c.job.id)
        .filter(|id| in_flight_ids.contains(id))
        .collect();
    assert!(
        lost.len() >= 3 * BATCH as usize,
        "the crash lost {} in-flight claims, not even those made after the WAL writer \
         stopped: the test proves nothing",
        lost.len()
    );

    let mut seen = HashSet::new();
    for lease in &issued {
        assert!(
            seen.insert(*lease),
            "lease token handed out twice: {lease:?}"
        );
    }

    // The holders of the claims in flight report first: the lost ones are refused
    // (their jobs are held under other tokens now), the kept ones applied.
    let results = store
        .complete(in_flight.iter().map(|c| ok(c, now)).collect())
        .await
        .unwrap();
    for (c, r) in in_flight.iter().zip(&results) {
        let expected = if lost.contains(&c.job.id) {
            CompletionResult::StaleLease
        } else {
            CompletionResult::Applied
        };
        assert_eq!(*r, expected, "in-flight completion of job {}", c.job.id);
    }
    // Then the new holders.
    let results = store
        .complete(reclaimed.iter().map(|c| ok(c, now)).collect())
        .await
        .unwrap();
    assert!(
        results.iter().all(|r| *r == CompletionResult::Applied),
        "{results:?}"
    );

    // Nothing lost, one outcome each.
    for &id in &ids {
        let j = store.get_job(id).await.unwrap().expect("job kept");
        assert_eq!(j.state, JobState::Succeeded, "job {id}");
    }
    let per_job: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT job, count(*) FROM job_executions GROUP BY job HAVING count(*) <> 1",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        per_job.is_empty(),
        "jobs without exactly one outcome: {per_job:?}"
    );
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT job) FROM job_executions WHERE outcome = 'succeeded'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(recorded, N as i64, "every job has its recorded success");
}
