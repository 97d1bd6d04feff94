//! The SQLite backend against the store conformance suite, plus SQLite specifics.

use std::sync::Arc;

use jobmesh::clock::Millis;
use jobmesh::job::{ClaimRequest, JobState, NewJob, NodeId, WorkerId};
use jobmesh::store::sqlite::SqliteStore;
use jobmesh::store::{SharedStore, Store};

async fn fresh() -> SharedStore {
    // The directory must outlive the store; leaking it keeps the file for the test's life.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Arc::new(
        SqliteStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap(),
    )
}

jobmesh::store_conformance_tests!(fresh);

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
        let req = ClaimRequest {
            queues: vec!["default".into()],
            worker: WorkerId("crashy/w0".into()),
            node: node.clone(),
            limit: 4,
            lease_for: std::time::Duration::from_secs(60),
            now,
        };
        assert_eq!(s.claim(&req).await.unwrap().len(), 4);
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
