//! Opening a server-backed store whose server cannot be reached fails at once with the
//! reason, not after the connection pool's 30 s time-out, and never prints the URL's
//! credentials.

mod common;

use std::time::{Duration, Instant};

use jobmesh::store::postgres::PostgresStore;
use jobmesh::store::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};

/// Far below the pool's 30 s acquire time-out that hid the cause, with room for a loaded
/// machine.
const FAST: Duration = Duration::from_secs(10);

#[tokio::test]
async fn postgres_on_a_closed_port_is_refused_at_once_without_credentials() {
    let port = common::free_port();
    let url = format!("postgres://jobuser:hunter2secret@127.0.0.1:{port}/jobs");
    let started = Instant::now();
    let err = PostgresStore::connect(&url, None)
        .await
        .map(|_| ())
        .expect_err("nothing listens on the port")
        .to_string();
    let took = started.elapsed();
    assert!(took < FAST, "took {took:?}: {err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}/jobs")), "{err}");
    assert!(
        !err.contains("hunter2secret") && !err.contains("jobuser"),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_refusing_the_database_is_reported_at_once() {
    let mut url = common::pg_url();
    let slash = url.rfind('/').unwrap();
    url.truncate(slash);
    url.push_str("/jobmesh_no_such_database");
    let started = Instant::now();
    let err = PostgresStore::connect(&url, None)
        .await
        .map(|_| ())
        .expect_err("the database does not exist")
        .to_string();
    assert!(
        started.elapsed() < FAST,
        "took {:?}: {err}",
        started.elapsed()
    );
    assert!(err.contains("jobmesh_no_such_database"), "{err}");
}

#[tokio::test]
async fn production_store_with_redis_on_a_closed_port_is_refused_at_once() {
    let port = common::free_port();
    let redis = format!("redis://:hunter2secret@127.0.0.1:{port}/");
    // Named as the other tests' schemas, so that later runs drop it.
    let schema = common::test_schema();
    let started = Instant::now();
    let err = RedisPostgresStore::connect(
        &common::pg_url(),
        Some(&schema),
        &redis,
        RedisPostgresConfig::new(&schema),
    )
    .await
    .map(|_| ())
    .expect_err("nothing listens on the Redis port")
    .to_string();
    let took = started.elapsed();
    assert!(took < FAST, "took {took:?}: {err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}
