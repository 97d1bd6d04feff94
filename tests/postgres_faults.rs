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
