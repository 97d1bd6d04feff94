//! The production-mode stores of one run: a Postgres cluster and a redis-server of the
//! run's own (from [`crate::servers`], on free ports; the machine's shared servers are
//! never touched), optional slowing proxies in front of them, and the store faults:
//! stop and start Postgres, kill and restart Redis, `FLUSHALL`, slow and fast links.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::servers::{PgCluster, RedisServer, ServerError, StopMode, free_port};

use super::ChaosError;
use super::plan::Fault;
use super::proxy::Proxy;

/// The Redis key prefix of the chaos cluster (the server is the run's own).
pub const REDIS_PREFIX: &str = "jobmesh";

/// The run's servers and what the nodes connect to.
#[derive(Debug)]
pub struct Stores {
    pg: Arc<Mutex<PgCluster>>,
    redis: Arc<Mutex<RedisServer>>,
    pg_url: String,
    redis_url: String,
    proxies: Option<(Proxy, Proxy)>,
    pg_log: PathBuf,
}

/// Runs a blocking server operation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ChaosError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ChaosError::Cluster(format!("a store operation panicked: {e}")))?
        .map_err(ChaosError::from)
}

impl Stores {
    /// Starts Postgres and Redis (Redis logs to `dir/redis.log`); with `proxied`, the
    /// nodes reach both through slowing proxies.
    pub async fn start(dir: &Path, proxied: bool) -> Result<Self, ChaosError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ChaosError::io(format!("creating {}", dir.display()), e))?;
        let redis_log = dir.join("redis.log");
        let redis = blocking(move || RedisServer::start(free_port()?, Some(&redis_log))).await?;
        let pg = blocking(PgCluster::start).await?;
        let (pg_url, redis_url) = (pg.url(), redis.url());
        let proxies = if proxied {
            let to = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            Some((
                Proxy::start(to(pg.port())).await?,
                Proxy::start(to(redis.port())).await?,
            ))
        } else {
            None
        };
        Ok(Self {
            pg: Arc::new(Mutex::new(pg)),
            redis: Arc::new(Mutex::new(redis)),
            pg_url,
            redis_url,
            proxies,
            pg_log: dir.join("postgres.log"),
        })
    }

    /// Postgres, directly (the runner's own connection: the record it reads).
    pub fn postgres_url(&self) -> &str {
        &self.pg_url
    }

    /// Redis, directly.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// What the nodes connect to (Postgres, Redis): the proxies when there are any,
    /// else the servers.
    pub fn node_urls(&self) -> (String, String) {
        match &self.proxies {
            Some((p, r)) => (
                format!("postgres://postgres@127.0.0.1:{}/postgres", p.port()),
                format!("redis://127.0.0.1:{}/", r.port()),
            ),
            None => (self.pg_url.clone(), self.redis_url.clone()),
        }
    }

    /// The `[store]` section of a node's config: redis_postgres on
    /// [`Stores::node_urls`].
    pub fn node_section(&self) -> String {
        let (pg, redis) = self.node_urls();
        format!(
            "[store]\nbackend = \"redis_postgres\"\npostgres_url = \"{pg}\"\nredis_url = \"{redis}\"\nredis_prefix = \"{REDIS_PREFIX}\"\n"
        )
    }

    /// Applies a store fault (others are ignored); [`Fault::HealAll`] starts what is
    /// down and makes slow links fast.
    pub async fn apply(&self, fault: &Fault) -> Result<(), ChaosError> {
        let pg = self.pg.clone();
        let redis = self.redis.clone();
        match fault {
            Fault::PostgresStop => blocking(move || lock(&pg).stop(StopMode::Fast)).await,
            Fault::PostgresStart => blocking(move || lock(&pg).start_server()).await,
            Fault::RedisKill => blocking(move || lock(&redis).kill()).await,
            Fault::RedisRestart => blocking(move || lock(&redis).restart()).await,
            Fault::RedisFlush => blocking(move || lock(&redis).command("FLUSHALL")).await,
            Fault::SlowStores {
                postgres_ms,
                redis_ms,
            } => {
                self.set_delays(*postgres_ms, *redis_ms);
                Ok(())
            }
            Fault::FastStores => {
                self.set_delays(0, 0);
                Ok(())
            }
            Fault::HealAll => {
                self.set_delays(0, 0);
                blocking(move || {
                    lock(&pg).start_server()?;
                    lock(&redis).restart()
                })
                .await
            }
            Fault::Kill { .. }
            | Fault::Restart { .. }
            | Fault::Pause { .. }
            | Fault::Resume { .. }
            | Fault::Partition { .. }
            | Fault::OneWay { .. }
            | Fault::Lossy { .. }
            | Fault::Byzantine { .. } => Ok(()),
        }
    }

    fn set_delays(&self, postgres_ms: u64, redis_ms: u64) {
        if let Some((p, r)) = &self.proxies {
            p.set_delay(Duration::from_millis(postgres_ms));
            r.set_delay(Duration::from_millis(redis_ms));
        }
    }

    /// Keeps the Postgres log beside the run's other files (the cluster itself lives
    /// in a temporary directory that goes with it).
    pub fn keep_logs(&self) {
        let from = lock(&self.pg).log_path();
        let _ = std::fs::copy(from, &self.pg_log);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it left the server handle as it was: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
