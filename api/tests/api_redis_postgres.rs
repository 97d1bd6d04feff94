//! The API suite on the production store: a Postgres schema and a Redis prefix of its
//! own per test (`JOBMESH_TEST_POSTGRES_URL`, `JOBMESH_TEST_REDIS_URL`).

mod common;

use jobmesh::store::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};

async fn fresh() -> jobmesh::store::SharedStore {
    let pg = std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("JOBMESH_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("jm_test_{secs}_{:016x}", rand::random::<u64>());
    let config = RedisPostgresConfig::new(format!("jmtest:api:{:016x}", rand::random::<u64>()));
    let store = RedisPostgresStore::connect(&pg, Some(&schema), &redis, config)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Postgres at {pg} or Redis at {redis} ({e})"));
    std::sync::Arc::new(store)
}

api_suite!(fresh);
views_suite!(fresh);
presence_suite!(fresh);
session_suite!(fresh);
history_suite!(fresh);
