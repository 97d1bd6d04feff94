//! The API suite on the embedded store: a fresh SQLite file per test.

mod common;

async fn fresh() -> jobmesh::store::SharedStore {
    let dir = tempfile::tempdir().unwrap();
    let store = jobmesh::store::sqlite::SqliteStore::open(&dir.path().join("api.db"))
        .await
        .unwrap();
    // The file outlives the test process's need for it; the OS cleans /tmp.
    std::mem::forget(dir);
    std::sync::Arc::new(store)
}

api_suite!(fresh);
views_suite!(fresh);
presence_suite!(fresh);
session_suite!(fresh);
history_suite!(fresh);
