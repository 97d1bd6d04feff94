//! The SQLite backend against the store conformance suite, plus SQLite specifics.

use jobmesh::store::{JobAdmin, JobQueue};
use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::job::{JobState, NewJob, NodeId};
use jobmesh::store::SharedStore;
use jobmesh::store::conformance::{Spoil, request};
use jobmesh::store::sqlite::SqliteStore;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

async fn fresh() -> SharedStore {
    // The directory must outlive the store; leaking it keeps the file for the test's life.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Arc::new(
        SqliteStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap(),
    )
}

/// A store and a way to damage its rows by raw SQL, as another version or a hand-written
/// statement could: variant 0 stores a payload 200 levels deep (valid JSON that
/// serde_json cannot read), variant 1 a payload that is not JSON at all, variant 2 an
/// event kind this version does not know on the job's events.
async fn spoilable() -> (SharedStore, Spoil) {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let path = dir.path().join("jobs.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let spoil: Spoil = Box::new(move |id, variant| {
        let path = path.clone();
        Box::pin(async move {
            let mut conn = SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(Duration::from_secs(10))
                .connect()
                .await
                .unwrap();
            let (sql, value) = match variant {
                0 => (
                    "UPDATE jobs SET payload = ?1 WHERE id = ?2",
                    format!("{}1{}", "[".repeat(200), "]".repeat(200)),
                ),
                1 => (
                    "UPDATE jobs SET payload = ?1 WHERE id = ?2",
                    "{\"truncated\": ".to_string(),
                ),
                _ => (
                    "UPDATE lifecycle_events SET kind = ?1 WHERE job = ?2",
                    "job.from_the_future".to_string(),
                ),
            };
            let n = sqlx::query(sql)
                .bind(value)
                .bind(id.0)
                .execute(&mut conn)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(n, 1);
        })
    });
    (Arc::new(store), spoil)
}

jobmesh::store_conformance_tests!(fresh, spoilable);

#[tokio::test]
async fn jobs_and_leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/jobs.db");
    let now = Millis(1_000);
    let node = NodeId("crashy".into());
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.enqueue(
            (0..10)
                .map(|_| NewJob::new("noop", serde_json::json!({})))
                .collect(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(s.claim(&request("crashy", 4, now)).await.unwrap().len(), 4);
        s.close().await;
    }
    let s = SqliteStore::open(&path).await.unwrap();
    let counts = s.counts().await.unwrap();
    assert_eq!(
        counts["default"][&JobState::Running],
        4,
        "leases are durable"
    );
    assert_eq!(counts["default"][&JobState::Available], 6);
    let rescued = s
        .revoke_node(&node, now, serde_json::json!("restart"))
        .await
        .unwrap();
    assert_eq!(rescued.len(), 4);
    assert_eq!(
        s.counts().await.unwrap()["default"][&JobState::Available],
        10
    );
}

#[tokio::test]
async fn unusable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file.join("jobs.db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not-a-dir"), "{err}");
}

/// A new database file (and the `-wal` and `-shm` files beside it) is readable by its
/// owner only: it holds every payload.
#[cfg(unix)]
#[tokio::test]
async fn new_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let s = SqliteStore::open(&path).await.unwrap();
    // A write, so the WAL and shared-memory files exist.
    s.enqueue(vec![NewJob::new("noop", serde_json::json!({}))], Millis(1))
        .await
        .unwrap();
    let mut checked = 0;
    for name in ["jobs.db", "jobs.db-wal", "jobs.db-shm"] {
        let file = dir.path().join(name);
        if let Ok(meta) = std::fs::metadata(&file) {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "the database and its WAL exist");
    s.close().await;
}

/// End to end through a node: a job whose row cannot be decoded (written by hand in SQL
/// here) is dead-lettered with the reason, and the node keeps running the jobs of every
/// queue it works, beside it and after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_running_after_an_undecodable_row() {
    use jobmesh::clock::{Clock, SystemClock};
    use jobmesh::config::{Config, WorkersSection};
    use jobmesh::event::EventKind;
    use jobmesh::job::JobId;

    /// Bounds a failure only: the jobs normally run within milliseconds.
    const RUN_TIMEOUT: Duration = Duration::from_secs(30);

    let (store, spoil) = spoilable().await;
    let on = |queue: &str| {
        let mut j = NewJob::new("noop", serde_json::json!({}));
        j.queue = queue.into();
        j
    };
    // Stored and spoiled before the node starts, so its first claim meets the bad row.
    let bad = store
        .enqueue(vec![on("default")], SystemClock.now())
        .await
        .unwrap()[0]
        .id();
    spoil(bad, 0).await;
    let config = Config::default();
    let node = jobmesh_actors::Node::start(jobmesh_actors::NodeOptions {
        node_id: NodeId("survivor".into()),
        workers: WorkersSection {
            concurrency: 2,
            queues: vec!["default".into(), "other".into()],
            poll_interval: Duration::from_millis(50),
            ..WorkersSection::default()
        },
        retry: config.retry.clone(),
        store: store.clone(),
        registry: jobmesh::handler::builtin::registry(&config.exec, &config.http),
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap();
    let mut events = node.subscribe();
    let good: Vec<JobId> = node
        .submit(vec![on("default"), on("other"), on("default"), on("other")])
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    let mut pending: std::collections::HashSet<JobId> = good.iter().copied().collect();
    tokio::time::timeout(RUN_TIMEOUT, async {
        while !pending.is_empty() {
            let e = events.recv().await.unwrap();
            if e.kind == EventKind::JobSucceeded {
                pending.remove(&e.job.unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("jobs on both queues must run beside a bad row"));
    let counts = store.counts().await.unwrap();
    assert_eq!(counts["default"][&JobState::Discarded], 1, "{counts:?}");
    assert_eq!(counts["default"][&JobState::Succeeded], 2, "{counts:?}");
    assert_eq!(counts["other"][&JobState::Succeeded], 2, "{counts:?}");
    let reason = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event.job == Some(bad) && e.event.kind == EventKind::JobDiscarded)
        .expect("the bad job has a job.discarded event")
        .event
        .detail["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("undecodable row: "), "{reason}");
    assert!(reason.contains("recursion limit"), "{reason}");
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn pause_survives_reopen() {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let path = dir.path().join("jobs.db");
    let s: SharedStore = Arc::new(SqliteStore::open(&path).await.unwrap());
    jobmesh::store::conformance::pause_survives_reopen(s, || async move {
        Arc::new(SqliteStore::open(&path).await.unwrap()) as SharedStore
    })
    .await;
}

/// Three stores opened on one file (as three processes would): limits hold across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let mut nodes: Vec<SharedStore> = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(SqliteStore::open(&path).await.unwrap()));
    }
    jobmesh::store::conformance::limits_hold_across_nodes(nodes).await;
}

#[tokio::test]
async fn a_node_that_has_not_seen_a_new_limit_does_not_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    jobmesh::store::conformance::a_node_that_has_not_seen_a_new_limit_does_not_pass_it(
        &first, &second,
    )
    .await;
}

/// Payload pages larger than the sample Postgres walks first: the same pages here.
#[tokio::test]
async fn payload_pages_past_the_sample() {
    jobmesh::store::conformance::payload_pages_past_the_sample(&*fresh().await).await;
}

/// Processes that open a new database file at once (a node and a `submit` started
/// together) all open it: the ones that lose the race to create the tables find them
/// made and go on, instead of failing with "table jobs already exists".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openers_racing_on_a_new_file_all_open_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await })
        })
        .collect();
    for open in opens {
        let store = open
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("open failed: {e}"));
        assert!(
            store
                .claim(&request("n1", 1, Millis(1_000)))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
