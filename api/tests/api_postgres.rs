//! The API suite on Postgres: a schema of its own per test (`JOBMESH_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; the store tests drop such
//! schemas once they are an hour old).

mod common;

async fn fresh() -> jobmesh::store::SharedStore {
    let url = std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("jm_test_{secs}_{:016x}", rand::random::<u64>());
    let store = jobmesh::store::postgres::PostgresStore::connect(&url, Some(&schema))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Postgres at {url} ({e}): start it or set JOBMESH_TEST_POSTGRES_URL"
            )
        });
    std::sync::Arc::new(store)
}

api_suite!(fresh);
views_suite!(fresh);
presence_suite!(fresh);
session_suite!(fresh);
history_suite!(fresh);
