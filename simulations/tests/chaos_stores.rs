//! The store faults of the production-mode chaos scenarios, against the real servers
//! the runner starts (its own Postgres cluster and redis-server, on free ports): each
//! fault has the effect the scenario promises, seen from where the nodes connect, and
//! the heal undoes all of them. (`.ci/run` drives the whole scenarios through real
//! clusters; this checks the mechanics alone, in a few seconds.)

use std::time::Duration;

use jobmesh_sim::chaos::plan::Fault;
use jobmesh_sim::chaos::stores::Stores;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

/// One fresh connection and a query, as a node's pool would make after a failure;
/// `Err` when the server is down.
async fn pg_query(url: &str) -> Result<Duration, sqlx::Error> {
    let t = Instant::now();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    pool.close().await;
    Ok(t.elapsed())
}

async fn redis_conn(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| redis::RedisError::from(std::io::Error::other("connect timed out")))?
}

async fn redis_get(url: &str, key: &str) -> redis::RedisResult<Option<String>> {
    let mut c = redis_conn(url).await?;
    redis::cmd("GET").arg(key).query_async(&mut c).await
}

async fn redis_set(url: &str, key: &str) {
    let mut c = redis_conn(url).await.unwrap();
    let () = redis::cmd("SET")
        .arg(key)
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_fault_does_what_the_scenario_says_and_heal_undoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::start(dir.path(), true)
        .await
        .unwrap_or_else(|e| panic!("own Postgres and Redis: {e}"));
    let (pg, redis) = stores.node_urls();
    assert_ne!(pg, stores.postgres_url(), "the nodes go through the proxy");
    let section = stores.node_section();
    assert!(
        section.contains("backend = \"redis_postgres\""),
        "{section}"
    );
    assert!(
        section.contains(&pg) && section.contains(&redis),
        "{section}"
    );

    // Postgres outage: refused while stopped, back after the start.
    pg_query(&pg).await.unwrap();
    stores.apply(&Fault::PostgresStop).await.unwrap();
    assert!(pg_query(&pg).await.is_err(), "Postgres still answers");
    stores.apply(&Fault::PostgresStart).await.unwrap();
    pg_query(&pg).await.unwrap();

    // FLUSHALL empties Redis.
    redis_set(&redis, "k").await;
    stores.apply(&Fault::RedisFlush).await.unwrap();
    assert_eq!(redis_get(&redis, "k").await.unwrap(), None);

    // Kill: nothing answers; restart: an empty server on the same port.
    redis_set(&redis, "k").await;
    stores.apply(&Fault::RedisKill).await.unwrap();
    assert!(redis_get(&redis, "k").await.is_err(), "Redis still answers");
    stores.apply(&Fault::RedisRestart).await.unwrap();
    assert_eq!(redis_get(&redis, "k").await.unwrap(), None);

    // A slow Postgres link: a connection and a query take several held round trips.
    let fast = pg_query(&pg).await.unwrap();
    stores
        .apply(&Fault::SlowStores {
            postgres_ms: 150,
            redis_ms: 0,
        })
        .await
        .unwrap();
    let slow = pg_query(&pg).await.unwrap();
    assert!(
        slow >= Duration::from_millis(600) && slow > fast,
        "fast {fast:?}, slow {slow:?}"
    );
    // The server itself is not slowed: the direct link stays fast.
    assert!(pg_query(stores.postgres_url()).await.unwrap() < slow);
    stores.apply(&Fault::FastStores).await.unwrap();
    assert!(pg_query(&pg).await.unwrap() < slow);

    // Everything down and slow at once; the heal restores all of it.
    stores.apply(&Fault::PostgresStop).await.unwrap();
    stores.apply(&Fault::RedisKill).await.unwrap();
    stores
        .apply(&Fault::SlowStores {
            postgres_ms: 150,
            redis_ms: 150,
        })
        .await
        .unwrap();
    stores.apply(&Fault::HealAll).await.unwrap();
    assert!(pg_query(&pg).await.unwrap() < slow);
    let t = Instant::now();
    assert_eq!(redis_get(&redis, "k").await.unwrap(), None);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}
