//! The `[node]`, `[store]`, `[workers]`, `[exec]`, `[http]` and `[api]` sections: typed as the
//! components that take them use them (durations, numbers, the backend, the parsed
//! `http.allow_private` policy), so nothing read from a file is parsed again later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MAX_BATCH;
use crate::handler::builtin::http::address::AddressPolicy;
use crate::store::DEFAULT_REDIS_PREFIX;

/// `[node]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Node name, used as its id in the store when not in a mesh.
    pub name: String,
    /// Directory for the node's files (embedded database, identity key).
    pub data_dir: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "local".into(),
            data_dir: PathBuf::from("data"),
        }
    }
}

/// Which backend holds the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One SQLite file, no servers (the default).
    #[default]
    Sqlite,
    /// Postgres alone.
    Postgres,
    /// Postgres as the record, Redis for dispatch.
    RedisPostgres,
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// The backend.
    pub backend: Backend,
    /// SQLite file; default `<data_dir>/jobmesh.db`.
    pub sqlite_path: Option<PathBuf>,
    /// Postgres URL (prefer the environment for passwords).
    pub postgres_url: Option<String>,
    /// Redis URL.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several clusters can share a server (default
    /// `jobmesh`).
    pub redis_prefix: Option<String>,
    /// `redis_postgres` only: copy lifecycle events into the Redis stream for live
    /// watchers (default `true`). Postgres records every event either way; the copy costs
    /// CPU on Postgres, Redis and the node.
    pub redis_event_stream: Option<bool>,
    /// `postgres` and `redis_postgres`: claims commit asynchronously
    /// (`synchronous_commit = off` for the claim alone; default `true`). A crash of
    /// Postgres may then lose the last claims: their jobs run again, and the lost
    /// leases' completions are refused (lease tokens are never handed out twice).
    pub postgres_async_claims: Option<bool>,
}

impl StoreSection {
    /// `redis_prefix`, or its default [`DEFAULT_REDIS_PREFIX`].
    pub fn redis_prefix_or_default(&self) -> &str {
        self.redis_prefix.as_deref().unwrap_or(DEFAULT_REDIS_PREFIX)
    }

    /// `redis_event_stream`, or its default (on).
    pub fn relays_events(&self) -> bool {
        self.redis_event_stream.unwrap_or(true)
    }

    /// `postgres_async_claims`, or its default
    /// ([`crate::store::postgres::DEFAULT_ASYNC_CLAIMS`]).
    pub fn async_claims(&self) -> bool {
        self.postgres_async_claims
            .unwrap_or(crate::store::postgres::DEFAULT_ASYNC_CLAIMS)
    }
}

/// `[workers]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersSection {
    /// Worker actors on this node.
    pub concurrency: u32,
    /// Queues this node takes jobs from.
    pub queues: Vec<String>,
    /// Lease length; workers extend it while a job runs.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often to look for work when nothing woke the node.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Timeout of an attempt when the job sets none.
    #[serde(with = "humantime_serde")]
    pub default_timeout: Duration,
    /// How long a cancelled attempt (job cancelled, lease lost, node stopping) may take
    /// to stop on its own after its handler is told (`exec`: SIGTERM) before the worker
    /// drops it (`exec`: SIGKILL) and takes the next job.
    #[serde(with = "humantime_serde")]
    pub cancel_grace: Duration,
    /// Most jobs taken in one claim.
    pub claim_batch: u32,
    /// Most completions written in one transaction.
    pub complete_batch: u32,
    /// How often the progress that running attempts reported is recorded (one store
    /// call for all of them, each with a `job.progress` event and a lease extension):
    /// at most one report per job per interval, the newest; an attempt's last report is
    /// recorded when it ends.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// Snoozes allowed per job; the next one dead-letters it.
    pub max_snoozes: u32,
    /// Longest delay a handler may snooze for; a longer one fails the attempt.
    #[serde(with = "humantime_serde")]
    pub max_snooze: Duration,
    /// Restarts of crashed workers.
    pub restart: RestartSection,
    /// Timeouts and leases learned from the kinds' durations (`[workers.learned]`).
    pub learned: crate::predict::policy::duration::DurationPolicy,
}

impl WorkersSection {
    /// The bounds of snoozes, from `max_snoozes` and `max_snooze`.
    pub fn snooze_limits(&self) -> crate::job::SnoozeLimits {
        crate::job::SnoozeLimits {
            max_snoozes: self.max_snoozes,
            max_delay: self.max_snooze,
        }
    }
}

impl Default for WorkersSection {
    fn default() -> Self {
        Self {
            concurrency: 16,
            queues: vec![crate::job::DEFAULT_QUEUE.to_string()],
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            default_timeout: Duration::from_secs(300),
            cancel_grace: Duration::from_secs(5),
            claim_batch: 256,
            complete_batch: 512,
            progress_interval: Duration::from_secs(1),
            max_snoozes: crate::job::DEFAULT_MAX_SNOOZES,
            max_snooze: crate::job::DEFAULT_MAX_SNOOZE,
            restart: RestartSection::default(),
            learned: Default::default(),
        }
    }
}

/// `[workers.restart]`: OTP-style restart intensity and backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartSection {
    /// Most restarts of one worker within `window` before the supervisor gives up on it
    /// (and escalates).
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Delay before the first restart in a burst; doubles per restart in the window.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// Largest delay between restarts.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for RestartSection {
    fn default() -> Self {
        Self {
            max_restarts: 20,
            window: Duration::from_secs(60),
            backoff_min: Duration::ZERO,
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// `[exec]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecSection {
    /// Programs the `exec` kind may run (names looked up on PATH, or absolute paths).
    /// Empty: `exec` refuses everything. Submitters choose the arguments and stdin of
    /// whatever is listed: list no shells, interpreters or programs that read or write
    /// files named by their arguments.
    pub allow: Vec<String>,
    /// Environment variables a program may see besides the fixed
    /// [`EXEC_BASE_ENV`](crate::handler::builtin::exec::EXEC_BASE_ENV): each is passed
    /// through from the node's environment, and a job's `env` may set only these. Names
    /// that change which code runs (`PATH`, `LD_*`, `BASH_FUNC_*` ...) are refused.
    pub env_allow: Vec<String>,
    /// Names on `env_allow` whose values are secrets: masked in every error and output
    /// the job records.
    pub env_secret: Vec<String>,
    /// Captured stdout/stderr kept per stream, in bytes.
    pub max_output_bytes: usize,
}

impl Default for ExecSection {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            env_allow: Vec::new(),
            env_secret: Vec::new(),
            max_output_bytes: 64 * 1024,
        }
    }
}

impl ExecSection {
    /// Checks the allowlists; the error names the key and the entry.
    pub fn validate(&self) -> Result<(), String> {
        crate::handler::builtin::exec::validate_config(self)
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Hosts the `http` kind may call (`host` on any port, or `host:port`); empty allows
    /// any host that passes the address rules.
    pub allow_hosts: Vec<String>,
    /// Internal targets opened up: addresses (`10.0.0.7`), networks (`10.0.0.0/8`,
    /// `fd00::/8`) or host names (`internal.example`, matched exactly, case-insensitively).
    /// Without an entry, loopback, private, link-local, unique-local, shared (CGNAT),
    /// multicast, broadcast, unspecified, documentation and cloud-metadata addresses are
    /// refused, whatever name leads to them. Parsed when the config is read; the
    /// handler uses the policy as it is.
    pub allow_private: AddressPolicy,
    /// Header names whose values are secrets besides `Authorization`,
    /// `Proxy-Authorization` and `Cookie`: masked in every error and output the job records.
    pub secret_headers: Vec<String>,
    /// Response body kept, in bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            allow_private: AddressPolicy::default(),
            secret_headers: Vec::new(),
            max_response_bytes: 64 * 1024,
        }
    }
}

impl HttpSection {
    /// Checks the allowlists; the error names the key and the entry.
    pub fn validate(&self) -> Result<(), String> {
        crate::handler::builtin::http::validate_config(self)
    }
}

/// `[api]`: the HTTP API served by `jobmesh node` (when `listen` is set) and
/// `jobmesh api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Address to serve on (`127.0.0.1:7780`); unset, the node serves no API.
    pub listen: Option<SocketAddr>,
    /// Requests from a loopback address without a token may read (jobs, queues,
    /// events): for a laptop. Writes always need a token.
    pub allow_anonymous_loopback_read: bool,
    /// Start on a non-loopback address even when the store holds no live token (by
    /// default that is refused: an API nobody can use yet is usually a mistake).
    pub allow_without_tokens: bool,
    /// Requests per second each token may make on average.
    pub rate_per_second: u32,
    /// Requests a token may make at once above its rate.
    pub burst: u32,
    /// Largest request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Longest a request (other than the event stream) may take.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most jobs in one `POST /api/v1/jobs/batch` or workflow.
    pub max_batch: u32,
    /// How old the job counts of `GET /api/v1/queues` may be: one read of the counts
    /// serves every caller (every open dashboard) for this long. `0s` reads them on
    /// every request.
    #[serde(with = "humantime_serde")]
    pub counts_max_age: Duration,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: None,
            allow_anonymous_loopback_read: false,
            allow_without_tokens: false,
            rate_per_second: 100,
            burst: 200,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_batch: 1000,
            counts_max_age: Duration::from_secs(2),
        }
    }
}

impl ApiSection {
    /// Checks the limits (the address is parsed at load); the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let within = |key: &str, v: u64, min: u64, max: u64| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("api.{key}: must be within {min}..={max}, got {v}"))
            }
        };
        within("rate_per_second", self.rate_per_second.into(), 1, 1_000_000)?;
        within("burst", self.burst.into(), 1, 1_000_000)?;
        within("max_body_bytes", self.max_body_bytes as u64, 1024, 1 << 30)?;
        within("max_batch", self.max_batch.into(), 1, MAX_BATCH.into())?;
        let ms = u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX);
        within("request_timeout (ms)", ms, 1, 3_600_000)?;
        let ms = u64::try_from(self.counts_max_age.as_millis()).unwrap_or(u64::MAX);
        within("counts_max_age (ms)", ms, 0, 60_000)
    }
}
