//! Helpers shared by the integration tests: panicking fronts to `jobmesh_sim::servers`,
//! the launcher the chaos runner's store scenarios use too (one implementation of "a
//! private redis-server / Postgres cluster on a free port", including Postgres as root
//! through `runuser -u postgres`), and node checks run against more than one backend.
// Each test binary uses the part it needs.
#![allow(dead_code)]

use jobmesh_sim::servers;

pub use jobmesh_sim::servers::StopMode;

/// The machine's Postgres: `JOBMESH_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn pg_url() -> String {
    std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The machine's Redis: `JOBMESH_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/`.
pub fn redis_url() -> String {
    std::env::var("JOBMESH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A new Postgres schema name for one test, `jm_test_<unix secs>_<random>`: tests
/// sharing a database run in parallel, and the Postgres suite drops such schemas once
/// they are an hour old (tests never drop their own).
pub fn test_schema() -> String {
    format!("jm_test_{}_{:016x}", unix_secs(), rand::random::<u64>())
}

/// A plain connection to the Redis at `url`, to look at keys directly.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A port free at the time of asking (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    servers::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A `redis-server` of the test's own, without persistence (a kill loses everything),
/// killed on drop.
pub struct RedisServer(servers::RedisServer);

impl RedisServer {
    /// Starts it on `port` and waits until it answers PING (bounded); a missing binary
    /// fails the test naming the package to install.
    pub fn start(port: u16) -> Self {
        Self(servers::RedisServer::start(port, None).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// SIGKILLs it and waits for it to exit.
    pub fn kill(&mut self) {
        self.0.kill().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs one argument-less command (`FLUSHALL`, ...).
    pub fn cmd(&self, name: &str) {
        self.0.command(name).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A Postgres cluster of the test's own (`initdb` + `pg_ctl` from the newest
/// `/usr/lib/postgresql/*/bin`) in a temporary directory, on a free port; stopped on
/// drop. A missing binary fails the test naming the package to install.
pub struct PgCluster(servers::PgCluster);

impl PgCluster {
    /// Creates and starts it.
    pub fn start() -> Self {
        Self(servers::PgCluster::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Starts the server again after [`PgCluster::stop`].
    pub fn start_server(&mut self) {
        self.0.start_server().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server (`pg_ctl stop -m <mode> -w`).
    pub fn stop(&mut self, mode: StopMode) {
        self.0.stop(mode).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Crashes the server: `SIGKILL` to the postmaster and every process it started.
    pub fn crash(&mut self) {
        self.0.crash().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server's WAL writer until the next crash (see
    /// `jobmesh_sim::servers::PgCluster::pause_wal_writer`).
    pub fn pause_wal_writer(&mut self) {
        self.0.pause_wal_writer().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A node whose poll interval is an hour still runs at once a job that another process
/// enqueued straight into `store` (as `jobmesh submit` or an application does): the
/// backend's wake-ups reach its dispatcher.
pub async fn a_node_wakes_for_jobs_enqueued_elsewhere(store: jobmesh::store::SharedStore) {
    use std::time::Duration;

    use jobmesh::clock::{Clock, SystemClock};
    use jobmesh::config::Config;
    use jobmesh::event::EventKind;
    use jobmesh::job::{JobId, NewJob, NodeId};
    use serde_json::json;

    /// Bounds a failure only: a wake-up normally arrives within milliseconds.
    const WAKE_TIMEOUT: Duration = Duration::from_secs(10);

    let config = Config::default();
    let registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
    let node = start_node(
        store.clone(),
        "listener",
        Duration::from_secs(3600),
        registry,
    )
    .await;
    let mut events = node.subscribe();
    let mut succeeded = async |id: JobId| loop {
        let e = events.recv().await.unwrap();
        if e.kind == EventKind::JobSucceeded && e.job == Some(id) {
            return e;
        }
    };
    // A first job through the node itself (a local wake): once it has succeeded the
    // workers are up and the claims that followed it found nothing, so a job enqueued
    // from outside can only be found through a wake-up.
    let warm = node
        .submit(vec![NewJob::new("noop", json!({}))])
        .await
        .unwrap()[0]
        .id();
    succeeded(warm).await;
    let out = store
        .enqueue(vec![NewJob::new("noop", json!({}))], SystemClock.now())
        .await
        .unwrap();
    let done = tokio::time::timeout(WAKE_TIMEOUT, succeeded(out[0].id()))
        .await
        .expect("the job enqueued by another process did not run: no wake-up reached the node");
    assert_eq!(done.node, Some(NodeId("listener".into())));
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A node named `name` on `store` with two workers that poll every `poll`, default retry
/// settings and no retention.
pub async fn start_node(
    store: jobmesh::store::SharedStore,
    name: &str,
    poll: std::time::Duration,
    registry: jobmesh::handler::Registry,
) -> jobmesh_actors::Node {
    use jobmesh::config::{Config, WorkersSection};

    jobmesh_actors::Node::start(jobmesh_actors::NodeOptions {
        node_id: jobmesh::job::NodeId(name.into()),
        workers: WorkersSection {
            concurrency: 2,
            poll_interval: poll,
            ..WorkersSection::default()
        },
        retry: Config::default().retry,
        store,
        registry,
        clock: std::sync::Arc::new(jobmesh::clock::SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap()
}

/// Deletes every Redis key matching `pattern` (`KEYS`, then one `DEL`): the clean-up of
/// tests that share the machine's Redis under a prefix of their own.
pub async fn delete_redis_keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await
            .unwrap();
    }
}

/// Damages a job's row by raw SQL, as another version or a hand-written statement could:
/// variant 0 stores a payload 200 levels deep (Postgres takes it, serde_json cannot read
/// it back), variant 1 an output that deep, variant 2 an event kind this version does not
/// know on the job's events. Shared by the Postgres and the production-mode suites.
pub fn postgres_spoiler(pool: sqlx::PgPool) -> jobmesh::store::conformance::Spoil {
    Box::new(move |id, variant| {
        let pool = pool.clone();
        Box::pin(async move {
            let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
            let (sql, value) = match variant {
                0 => ("UPDATE jobs SET payload = $1::jsonb WHERE id = $2", deep),
                1 => ("UPDATE jobs SET output = $1::jsonb WHERE id = $2", deep),
                _ => (
                    "UPDATE lifecycle_events SET kind = $1 WHERE job = $2",
                    "job.from_the_future".to_string(),
                ),
            };
            let n = sqlx::query(sql)
                .bind(value)
                .bind(id.0)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected();
            assert_eq!(n, 1);
        })
    })
}
