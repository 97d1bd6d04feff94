//! Shared set-up for node tests: a fresh SQLite store or Postgres schema and quick
//! settings.

#![allow(dead_code)]

pub mod mesh;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::SystemClock;
use jobmesh::config::{ExecSection, HttpSection, WorkersSection};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::handler::{Registry, builtin};
use jobmesh::job::{JobState, NewJob, NodeId, RetryPolicy};
use jobmesh::store::SharedStore;
use jobmesh::store::postgres::PostgresStore;
use jobmesh::store::sqlite::SqliteStore;
use jobmesh_actors::{Node, NodeOptions};
use tokio::sync::broadcast;

/// Logs to the test's output when `RUST_LOG` is set.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A store in a directory that lives as long as the returned guard.
pub async fn store() -> (SharedStore, tempfile::TempDir) {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("jobs.db"))
        .await
        .unwrap();
    (Arc::new(s), dir)
}

/// The machine's Postgres: `JOBMESH_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn pg_url() -> String {
    std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh schema named like the store suites' (`jm_test_<secs>_<hex>`), which their
/// clean-up drops once stale.
pub fn pg_schema() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!(
        "jm_test_{}_{:016x}",
        now.as_secs(),
        u64::from(now.subsec_nanos()) << 20 ^ u64::from(std::process::id())
    )
}

/// A store on `schema` of the machine's Postgres, with a connection pool of its own (as
/// a process of its own would have); fails naming the server when it cannot connect.
pub async fn pg_store(schema: &str) -> SharedStore {
    logs();
    Arc::new(
        PostgresStore::connect(&pg_url(), Some(schema))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach Postgres at {} ({e}): install and start PostgreSQL",
                    pg_url()
                )
            }),
    )
}

/// Settings for tests: short poll and retry delays.
pub fn workers(concurrency: u32) -> WorkersSection {
    WorkersSection {
        concurrency,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        ..WorkersSection::default()
    }
}

/// Retries after 5 ms, 10 ms ...
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        exponent: 1,
        unit: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        jitter: 0.1,
        ..RetryPolicy::default()
    }
}

/// The built-in handlers.
pub fn builtins() -> Registry {
    builtin::registry(&ExecSection::default(), &HttpSection::default())
}

/// Starts a node named `name`.
pub async fn node(
    name: &str,
    store: &SharedStore,
    workers: WorkersSection,
    registry: Registry,
) -> Node {
    Node::start(NodeOptions {
        node_id: NodeId(name.into()),
        workers,
        retry: fast_retry(),
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap()
}

/// `n` jobs of `kind` with `payload`.
pub fn jobs(kind: &str, payload: serde_json::Value, n: usize) -> Vec<NewJob> {
    (0..n).map(|_| NewJob::new(kind, payload.clone())).collect()
}

/// Counts by state of the default queue.
pub async fn counts(store: &SharedStore) -> BTreeMap<JobState, u64> {
    store
        .counts()
        .await
        .unwrap()
        .remove("default")
        .unwrap_or_default()
}

/// Waits, woken by live events, until `total` jobs are in a final state; returns the
/// counts. The deadline only bounds a failure.
pub async fn until_finished(
    store: &SharedStore,
    events: &mut broadcast::Receiver<LifecycleEvent>,
    total: u64,
) -> BTreeMap<JobState, u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(store).await;
        let finished: u64 = c.iter().filter(|(s, _)| s.is_final()).map(|(_, n)| n).sum();
        if finished >= total {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; counts {c:?}"
        );
        // Woken by this node's events; jobs finished by other nodes (mesh tests) raise
        // no event here, so re-read the counts at least every 200 ms.
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv()
                {
                }
            }
            Ok(Err(e)) => panic!("event stream ended: {e}; counts {c:?}"),
            Err(_) => {}
        }
    }
}

/// Waits for the next live event of `kind`.
pub async fn next_event(
    events: &mut broadcast::Receiver<LifecycleEvent>,
    kind: EventKind,
) -> LifecycleEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if e.kind == kind => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended: {e}"),
            Err(_) => panic!("no {kind} event within 30 s"),
        }
    }
}
