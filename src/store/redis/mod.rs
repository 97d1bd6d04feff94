//! Redis on redis_postgres: the ready index, wake-ups, the live event stream,
//! heartbeats and current job-state hashes, in front of the SQL system of record.
//!
//! [`RedisDispatch`] keeps, per queue, a priority ZSET of due jobs and a ZSET of delayed
//! ones. [`RedisDispatch::push`] queues jobs that the system of record made available,
//! [`RedisDispatch::take`] hands out the best of them (promoting due delayed jobs first)
//! and forgets them, [`RedisDispatch::remove`] drops cancelled ones; each is one Lua
//! script, so atomic. Redis holds no lease: the dispatcher ([`crate::store::redis_postgres`])
//! confirms every taken job in Postgres, where leases and fencing tokens live, so a
//! job Redis hands out twice (after a rebuild, say) still runs under one lease.
//! Every push feeds the queue's wake list, which waiting nodes block on
//! ([`RedisDispatch::wakeups`]). Beside the index it keeps node and worker heartbeats
//! with TTLs, current job-state hashes and a bounded stream of lifecycle events for
//! live watchers.
//!
//! Redis holds nothing that cannot be rebuilt from the system of record. A reconciler
//! watches [`RedisDispatch::generation`]: when the marker is gone, Redis lost its data,
//! and [`RedisDispatch::rebuild`] puts back the ready jobs (idempotent: a job already
//! queued is left alone).
//!
//! Times are the caller's (`now` arguments, as in [`crate::store::Store`]), except for
//! heartbeats, which use the Redis server clock so that all nodes agree on liveness.

mod heartbeat;
mod index;
pub mod keys;
mod pause;
mod rebuild;
mod scripts;
mod state;
mod stream;
mod take;
mod wake;

pub use keys::Keys;
pub use rebuild::{Generation, RebuildReport};
pub use stream::{EventCursor, EventTail, StreamEvent};
pub use take::Taken;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Script};

use crate::clock::Millis;
use crate::job::{JobId, LeaseToken, Priority};
use crate::store::StoreError;

/// A job that is ready to be dispatched (now or at `run_at`), as the system of record
/// hands it to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyJob {
    /// The job.
    pub id: JobId,
    /// The queue it is dispatched on.
    pub queue: String,
    /// Higher runs first.
    pub priority: Priority,
    /// When it becomes due; at or before `now` it is ready at once.
    pub run_at: Millis,
    /// The job's lease token in the system of record (0 for a new job). A removed
    /// job's record keeps it for a while, and a push with an older epoch is refused,
    /// so a late push cannot bring back a job removed after a newer attempt.
    pub epoch: LeaseToken,
}

impl ReadyJob {
    /// A new job (epoch 0) on `queue`.
    pub fn new(id: JobId, queue: impl Into<String>, priority: Priority, run_at: Millis) -> Self {
        Self {
            id,
            queue: queue.into(),
            priority,
            run_at,
            epoch: LeaseToken(0),
        }
    }
}

/// Settings of a [`RedisDispatch`].
#[derive(Debug, Clone)]
pub struct RedisDispatchConfig {
    /// Every key starts with `prefix:`.
    pub prefix: String,
    /// How long a job-state hash lives after its last update (seed: 24 h).
    pub state_ttl: Duration,
    /// How long coordination records live: a removed job's dispatch record (its last
    /// token) and the heartbeat registries (seed: 1 h).
    pub coordination_ttl: Duration,
    /// The event stream is trimmed to about this many entries (`MAXLEN ~`).
    pub stream_maxlen: u64,
    /// Jobs per script call in a batch (push, remove, rebuild); calls are pipelined.
    /// Bounds how long one call holds Redis.
    pub script_batch: usize,
    /// A command without an answer after this long fails (a transient error).
    pub response_timeout: Duration,
    /// A connection attempt fails after this long.
    pub connection_timeout: Duration,
    /// Reconnection attempts (with exponential backoff) before an operation fails; the
    /// next operation tries again.
    pub reconnect_retries: usize,
}

impl RedisDispatchConfig {
    /// Defaults with the given key prefix.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            state_ttl: Duration::from_secs(24 * 3600),
            coordination_ttl: Duration::from_secs(3600),
            stream_maxlen: 100_000,
            script_batch: 256,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(1),
            reconnect_retries: 2,
        }
    }

    fn manager_config(&self, response_timeout: Option<Duration>) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_number_of_retries(self.reconnect_retries)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(response_timeout)
    }
}

/// The Redis side of redis_postgres. Cheap to clone: clones share one multiplexed connection,
/// which reconnects by itself after Redis comes back (operations fail with a transient
/// [`StoreError::Unavailable`] meanwhile; see [`StoreError::is_transient`]).
#[derive(Clone)]
pub struct RedisDispatch {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    config: RedisDispatchConfig,
}

impl std::fmt::Debug for RedisDispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDispatch")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisDispatch {
    /// Connects to `url` (`redis://host:port/db`) with default settings and key `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisDispatchConfig::new(prefix)).await
    }

    /// Connects with explicit settings.
    pub async fn connect_with(url: &str, config: RedisDispatchConfig) -> Result<Self, StoreError> {
        if config.prefix.is_empty() {
            return Err(StoreError::Invalid("empty redis key prefix".into()));
        }
        if config.script_batch == 0 {
            return Err(StoreError::Invalid(
                "script_batch must be at least 1".into(),
            ));
        }
        let client = redis::Client::open(url)?;
        let conn = client
            .get_connection_manager_with_config(
                config.manager_config(Some(config.response_timeout)),
            )
            .await?;
        Ok(Self {
            client,
            conn,
            keys: Keys::new(config.prefix.clone()),
            config,
        })
    }

    /// The key layout (for tools and tests that look at Redis directly).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The settings.
    pub fn config(&self) -> &RedisDispatchConfig {
        &self.config
    }

    /// A new connection of its own, for commands that block (`BLPOP`, `XREAD BLOCK`):
    /// on the shared multiplexed connection they would stall every other caller.
    pub(crate) async fn dedicated_connection(&self) -> Result<ConnectionManager, StoreError> {
        Ok(self
            .client
            .get_connection_manager_with_config(self.config.manager_config(None))
            .await?)
    }

    /// The shared connection (clones share the socket).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `EVALSHA` of a job script with the common arguments (prefix, now, done ttl).
    pub(crate) fn job_call(&self, script: &Script, now: Millis) -> Cmd {
        let mut cmd = scripts::evalsha(script, &[]);
        cmd.arg(self.keys.prefix())
            .arg(now.0)
            .arg(duration_ms(self.config.coordination_ttl));
        cmd
    }
}

/// A duration in whole milliseconds, at least 1 (Redis refuses a zero expiry).
pub(crate) fn duration_ms(d: Duration) -> i64 {
    d.as_millis().clamp(1, i64::MAX as u128) as i64
}
