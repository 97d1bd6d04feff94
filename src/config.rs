//! Node configuration: TOML files in `config/`, overridden by environment variables.
//!
//! Every section refuses unknown keys, so a typo is an error that names the key rather
//! than a setting silently ignored. Environment variables named
//! `JOBMESH__<SECTION>__<KEY>` (double underscores between levels) override the file;
//! their values are read as TOML literals when they parse as one (numbers, booleans,
//! arrays), else as strings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::RetryPolicy;
use crate::payload::PayloadRules;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "JOBMESH__";

/// Most levels in an override name (`JOBMESH__A__B` has two); no key is nearly as deep.
pub const MAX_OVERRIDE_DEPTH: usize = 64;

/// Everything a node needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity and files of the node.
    pub node: NodeSection,
    /// Where jobs are stored.
    pub store: StoreSection,
    /// Worker pool.
    pub workers: WorkersSection,
    /// Retry backoff.
    pub retry: RetryPolicy,
    /// Allowlist and limits of the `exec` handler.
    pub exec: ExecSection,
    /// Limits of the `http` handler.
    pub http: HttpSection,
    /// Payload rules per kind, overriding the built-in ones.
    pub kinds: BTreeMap<String, PayloadRules>,
    /// The libp2p mesh and its health voting.
    pub mesh: MeshSection,
    /// How long finished work is kept.
    pub retention: crate::store::retention::Retention,
    /// The HTTP API (off unless `listen` is set).
    pub api: ApiSection,
}

/// `[mesh]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSection {
    /// Join a mesh (also turned on by `jobmesh node --listen/--join`).
    pub enabled: bool,
    /// The node's ed25519 identity; created on first start. Default `<data_dir>/node.key`.
    pub key_file: Option<PathBuf>,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Multiaddrs of members to join (ending in `/p2p/<peer id>`).
    pub join: Vec<String>,
    /// Peer ids admitted as members and voters (this node's included); `jobmesh mesh id`
    /// prints a node's id.
    pub members: Vec<String>,
    /// Byzantine members tolerated; needs at least `3f + 1` members.
    pub f: usize,
    /// The cluster key's id (`jobmesh mesh cluster-key` prints it): peers holding a join
    /// certificate it signed are admitted besides `members`.
    pub cluster_key: Option<String>,
    /// This node's join certificate (`jobmesh mesh issue-join` writes one), if it is
    /// admitted by the cluster key rather than listed in `members`.
    pub join_certificate: Option<PathBuf>,
    /// Observers per member: each member is watched (liveness frames, probes, votes) by
    /// this many others, its successors on as many pseudo-random rings; at least
    /// `3f + 1`. Unset: every member watches every other below
    /// [`SAMPLED_MONITORING_FROM`] members, and `max(10, 3f + 1)` observe each from
    /// there on.
    pub observers: Option<usize>,
}

/// From this many members on, an unset `mesh.observers` means sampled monitoring.
pub const SAMPLED_MONITORING_FROM: usize = 32;

impl Default for MeshSection {
    fn default() -> Self {
        Self {
            enabled: false,
            key_file: None,
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            join: Vec::new(),
            members: Vec::new(),
            f: 1,
            cluster_key: None,
            join_certificate: None,
            observers: None,
        }
    }
}

impl MeshSection {
    /// How many observers watch each member in a view of `members`, or `None` when
    /// every member watches every other (also when `observers` covers everyone).
    pub fn observers_for(&self, members: usize) -> Option<usize> {
        let k = match self.observers {
            Some(k) => k,
            None if members < SAMPLED_MONITORING_FROM => return None,
            None => 10.max(3 * self.f + 1),
        };
        (k + 1 < members).then_some(k)
    }

    /// Checks addresses, peer ids, `n >= 3f + 1` and `observers >= 3f + 1`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(k) = self.observers
            && k < 3 * self.f + 1
        {
            return Err(format!(
                "mesh.observers = {k}: tolerating f = {} Byzantine members needs at least {} \
                 observers per member (3f + 1)",
                self.f,
                3 * self.f + 1
            ));
        }
        for (key, addrs) in [("mesh.listen", &self.listen), ("mesh.join", &self.join)] {
            for a in addrs {
                a.parse::<libp2p::Multiaddr>()
                    .map_err(|e| format!("{key}: `{a}` is not a multiaddr: {e}"))?;
            }
        }
        for m in &self.members {
            m.parse::<libp2p::PeerId>()
                .map_err(|e| format!("mesh.members: `{m}` is not a peer id: {e}"))?;
        }
        if let Some(k) = &self.cluster_key {
            k.parse::<libp2p::PeerId>()
                .map_err(|e| format!("mesh.cluster_key: `{k}` is not a cluster key id: {e}"))?;
        }
        if self.join_certificate.is_some() && self.cluster_key.is_none() {
            return Err(
                "mesh.join_certificate needs mesh.cluster_key (the key that signed it)".into(),
            );
        }
        if !self.enabled {
            return Ok(());
        }
        let need = 3 * self.f + 1;
        // With a cluster key, further members join by certificate.
        if self.cluster_key.is_none() && self.members.len() < need {
            return Err(format!(
                "mesh.members lists {} peer ids; tolerating f = {} Byzantine members needs at least {need} \
                 (`jobmesh mesh id` prints a node's peer id)",
                self.members.len(),
                self.f
            ));
        }
        Ok(())
    }
}

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
    /// Most jobs taken in one claim.
    pub claim_batch: u32,
    /// Most completions written in one transaction.
    pub complete_batch: u32,
    /// Restarts of crashed workers.
    pub restart: RestartSection,
}

impl Default for WorkersSection {
    fn default() -> Self {
        Self {
            concurrency: 16,
            queues: vec![crate::job::DEFAULT_QUEUE.to_string()],
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            default_timeout: Duration::from_secs(300),
            claim_batch: 256,
            complete_batch: 512,
            restart: RestartSection::default(),
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
    /// refused, whatever name leads to them.
    pub allow_private: Vec<String>,
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
            allow_private: Vec::new(),
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
    pub listen: Option<String>,
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
        }
    }
}

impl ApiSection {
    /// Checks the address and the limits; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.listen {
            l.parse::<std::net::SocketAddr>().map_err(|_| {
                format!("api.listen: `{l}` is not an address with a port, e.g. 127.0.0.1:7780")
            })?;
        }
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
        within("request_timeout (ms)", ms, 1, 3_600_000)
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file (or an override) is not valid, with the key that is wrong.
    #[error("invalid config {origin}: {message}")]
    Invalid {
        /// The file, or `environment`.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Loads `path` (or the defaults when `None`) and applies the overrides in `env`.
    ///
    /// Every error names the key that is wrong (`workers.concurrency: invalid type: …`)
    /// and where its value came from: the file, or the environment override that set it.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
                        origin: p.display().to_string(),
                        message: e.to_string(),
                    })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "defaults".to_string()),
        };
        // Each override as (dotted key path, variable name), to say which one set a bad value.
        let mut overrides: Vec<(String, String)> = Vec::new();
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Invalid {
                    origin: "environment".into(),
                    message: format!("malformed override name `{key}`"),
                });
            }
            if path.len() > MAX_OVERRIDE_DEPTH {
                // A deeper table would overflow the stack when it is read or dropped.
                let head: String = key.chars().take(64).collect();
                return Err(ConfigError::Invalid {
                    origin: "environment".into(),
                    message: format!(
                        "override name `{head}...` has {} levels, more than {MAX_OVERRIDE_DEPTH}",
                        path.len()
                    ),
                });
            }
            set_path(&mut table, &path, parse_env_value(&value));
            overrides.push((path.join("."), key));
        }
        let blame = |key: &str| -> String {
            let vars: Vec<&str> = overrides
                .iter()
                .filter(|(p, _)| key_within(key, p))
                .map(|(_, var)| var.as_str())
                .collect();
            if vars.is_empty() {
                origin.clone()
            } else {
                format!("environment override {}", vars.join(", "))
            }
        };
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let key = e.path().to_string();
                let message = friendlier(e.inner().message());
                ConfigError::Invalid {
                    origin: blame(&key),
                    // `.` is the root: an unknown section names itself in the message.
                    message: if key == "." {
                        message
                    } else {
                        format!("{key}: {message}")
                    },
                }
            },
        )?;
        config
            .validate_all()
            .map_err(|problems| ConfigError::Invalid {
                origin: problems
                    .iter()
                    .map(|p| blame(&p.key))
                    .find(|o| *o != origin)
                    .unwrap_or_else(|| origin.clone()),
                message: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
        Ok(config)
    }

    /// Checks values that parse but make no sense; the message names every key that is
    /// wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_all().map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn validate_all(&self) -> Result<(), Vec<Problem>> {
        let mut c = Checks::default();
        let w = &self.workers;
        c.within("workers.concurrency", w.concurrency, 1, MAX_CONCURRENCY);
        if w.queues.is_empty() {
            c.fail("workers.queues", "must name at least one queue".into());
        }
        for q in &w.queues {
            if let Err(e) = crate::job::check_queue_name(q) {
                c.fail("workers.queues", e);
            }
        }
        c.duration(
            "workers.lease",
            w.lease,
            Duration::from_millis(100),
            MAX_LEASE,
        );
        c.duration(
            "workers.poll_interval",
            w.poll_interval,
            Duration::from_millis(1),
            MAX_POLL_INTERVAL,
        );
        c.duration(
            "workers.default_timeout",
            w.default_timeout,
            Duration::from_millis(1),
            MAX_DURATION,
        );
        c.within("workers.claim_batch", w.claim_batch, 1, MAX_BATCH);
        c.within("workers.complete_batch", w.complete_batch, 1, MAX_BATCH);
        let r = &w.restart;
        c.within(
            "workers.restart.max_restarts",
            r.max_restarts,
            0,
            MAX_RESTARTS,
        );
        c.duration(
            "workers.restart.window",
            r.window,
            Duration::from_millis(1),
            MAX_DURATION,
        );
        c.duration(
            "workers.restart.backoff_min",
            r.backoff_min,
            Duration::ZERO,
            MAX_RESTART_BACKOFF,
        );
        c.duration(
            "workers.restart.backoff_max",
            r.backoff_max,
            Duration::ZERO,
            MAX_RESTART_BACKOFF,
        );
        if r.backoff_min > r.backoff_max {
            c.fail(
                "workers.restart.backoff_min",
                format!(
                    "must not exceed workers.restart.backoff_max ({}), got {}",
                    human(r.backoff_max),
                    human(r.backoff_min)
                ),
            );
        }
        c.external("retry", self.retry.validate());
        c.duration("retry.unit", self.retry.unit, Duration::ZERO, MAX_DURATION);
        c.duration(
            "retry.max_delay",
            self.retry.max_delay,
            Duration::ZERO,
            MAX_DURATION,
        );
        c.within(
            "exec.max_output_bytes",
            self.exec.max_output_bytes,
            1,
            MAX_OUTPUT_BYTES,
        );
        c.within(
            "http.max_response_bytes",
            self.http.max_response_bytes,
            1,
            MAX_OUTPUT_BYTES,
        );
        let m = &self.mesh;
        // Bounded first: `mesh.validate` computes `3f + 1`.
        let f_ok = c.within("mesh.f", m.f, 0, MAX_MESH_F);
        let observers_ok = m
            .observers
            .is_none_or(|k| c.within("mesh.observers", k, 1, MAX_MESH_OBSERVERS));
        if f_ok && observers_ok {
            c.external("mesh", m.validate());
        }
        let t = &self.retention;
        c.duration(
            "retention.finished_jobs",
            t.finished_jobs,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.dead_letters",
            t.dead_letters,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.coordination",
            t.coordination,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.interval",
            t.interval,
            Duration::from_millis(1),
            MAX_DURATION,
        );
        c.within("retention.batch", t.batch, 1, MAX_BATCH);
        c.external("retention", t.validate());
        if self.node.name.is_empty() {
            c.fail("node.name", "must not be empty".into());
        }
        c.external("exec", self.exec.validate());
        c.external("http", self.http.validate());
        c.external("api", self.api.validate());
        let st = &self.store;
        for (key, url) in [
            ("store.postgres_url", &st.postgres_url),
            ("store.redis_url", &st.redis_url),
        ] {
            if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                c.fail(key, "must not be empty (leave it out instead)".into());
            }
        }
        if st.redis_prefix.as_deref() == Some("") {
            c.fail("store.redis_prefix", "must not be empty".into());
        }
        match st.backend {
            Backend::Sqlite => {}
            Backend::Postgres if st.postgres_url.is_none() => c.fail(
                "store.postgres_url",
                "store.backend = \"postgres\" needs store.postgres_url (or JOBMESH__STORE__POSTGRES_URL)"
                    .into(),
            ),
            Backend::RedisPostgres if st.postgres_url.is_none() || st.redis_url.is_none() => {
                c.fail(
                    "store.redis_url",
                    "store.backend = \"redis_postgres\" needs store.postgres_url and store.redis_url"
                        .into(),
                )
            }
            _ => {}
        }
        c.finish()
    }

    /// The node's identity key file.
    pub fn key_path(&self) -> PathBuf {
        self.mesh
            .key_file
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("node.key"))
    }

    /// Where a running mesh node writes its view for `jobmesh mesh peers`.
    pub fn mesh_status_path(&self) -> PathBuf {
        self.node.data_dir.join("mesh-status.json")
    }

    /// The SQLite file this config points at.
    pub fn sqlite_path(&self) -> PathBuf {
        self.store
            .sqlite_path
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("jobmesh.db"))
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    // `x = <raw>` parses numbers, booleans, arrays and quoted strings; anything else is a bare string.
    toml::from_str::<toml::Table>(&format!("x = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (last, parents) = path.split_last().expect("path is not empty");
    let mut at = table;
    for p in parents {
        let entry = at
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        at = entry.as_table_mut().expect("just made a table");
    }
    at.insert(last.clone(), value);
}

/// Most worker actors on one node.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Most jobs per claim, completions per transaction, or jobs per retention purge.
pub const MAX_BATCH: u32 = 10_000;
/// Longest configurable duration (about 10 years): durations are added to timestamps in
/// milliseconds, and anything longer is a typo rather than a policy.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest lease: a lost worker's jobs wait this long before they are rescued.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// Longest fallback poll interval.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
/// Most restarts allowed within `workers.restart.window`.
pub const MAX_RESTARTS: u32 = 1_000_000;
/// Longest delay between worker restarts.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(3600);
/// Largest output (`exec`) or response (`http`) kept per job, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// Most Byzantine members tolerated (`mesh.f`).
pub const MAX_MESH_F: usize = 1_000;
/// Most observers per member (`mesh.observers`).
pub const MAX_MESH_OBSERVERS: usize = 10_000;

/// One refused value: the key and what is wrong with it.
#[derive(Debug)]
struct Problem {
    key: String,
    message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Messages of the sections' own validators already start with their key.
        if self.message.starts_with(&self.key) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Collects every refused value, so one run of the loader reports all of them.
#[derive(Default)]
struct Checks(Vec<Problem>);

impl Checks {
    fn fail(&mut self, key: &str, message: String) {
        self.0.push(Problem {
            key: key.to_string(),
            message,
        });
    }

    /// `min..=max`; returns whether it was.
    fn within<T: PartialOrd + std::fmt::Display>(
        &mut self,
        key: &str,
        v: T,
        min: T,
        max: T,
    ) -> bool {
        let ok = min <= v && v <= max;
        if !ok {
            self.fail(key, format!("must be within {min}..={max}, got {v}"));
        }
        ok
    }

    fn duration(&mut self, key: &str, v: Duration, min: Duration, max: Duration) {
        if v < min {
            let floor = if min == Duration::from_millis(1) {
                "greater than zero".to_string()
            } else {
                format!("at least {}", human(min))
            };
            self.fail(key, format!("must be {floor}, got {}", human(v)));
        } else if v > max {
            self.fail(
                key,
                format!("must be at most {}, got {}", human(max), human(v)),
            );
        }
    }

    /// A section's own validator, whose message names its key (`retry.jitter must …`).
    fn external(&mut self, section: &str, result: Result<(), String>) {
        if let Err(message) = result {
            let key = message
                .split([' ', ':'])
                .next()
                .filter(|k| k.starts_with(section))
                .unwrap_or(section)
                .to_string();
            self.0.push(Problem { key, message });
        }
    }

    fn finish(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn human(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

/// Whether `key` (a deserializer path such as `workers.queues[0]`) lies within `prefix`.
fn key_within(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        // An override of a whole section (`JOBMESH__WORKERS='{…}'`) or of the key itself.
        || prefix.strip_prefix(key).is_some_and(|rest| rest.starts_with('.'))
}

/// serde's wording for Rust integer types, in words a config file's reader uses.
fn friendlier(message: &str) -> String {
    let mut m = message.to_string();
    for (rust, words) in [
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, words);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, []).unwrap();
        assert_eq!(c.store.backend, Backend::Sqlite);
        assert_eq!(c.sqlite_path(), PathBuf::from("data/jobmesh.db"));
    }

    #[test]
    fn environment_overrides_file() {
        let f = file("[workers]\nconcurrency = 4\nlease = \"10s\"\n");
        let env = [
            ("JOBMESH__WORKERS__CONCURRENCY".to_string(), "8".to_string()),
            (
                "JOBMESH__WORKERS__QUEUES".to_string(),
                "[\"a\", \"b\"]".to_string(),
            ),
            ("JOBMESH__NODE__NAME".to_string(), "n1".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(f.path()), env).unwrap();
        assert_eq!(c.workers.concurrency, 8);
        assert_eq!(c.workers.queues, ["a", "b"]);
        assert_eq!(c.workers.lease, Duration::from_secs(10));
        assert_eq!(c.node.name, "n1");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::load(Some(file("[workers]\nconcurency = 4\n").path()), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `concurency`"), "{err}");
        let err = Config::load(Some(file("[workers]\nconcurrency = 0\n").path()), [])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("workers.concurrency: must be within 1..=10000"),
            "{err}"
        );
        let err = Config::load(Some(file("[store]\nbackend = \"postgres\"\n").path()), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs store.postgres_url"), "{err}");
        let err = Config::load(None, [("JOBMESH__WORKERS__LEASE".into(), "soon".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("JOBMESH__WORKERS__LEASE"), "{err}");
    }

    #[test]
    fn observers_default_to_all_to_all_for_small_meshes() {
        let mut m = MeshSection::default();
        assert_eq!(m.observers_for(5), None);
        assert_eq!(m.observers_for(31), None);
        assert_eq!(m.observers_for(32), Some(10));
        m.f = 4;
        assert_eq!(m.observers_for(100), Some(13), "at least 3f + 1");
        m.f = 1;
        m.observers = Some(4);
        assert_eq!(m.observers_for(7), Some(4));
        assert_eq!(
            m.observers_for(5),
            None,
            "4 observers of 5 members is everyone"
        );
        assert!(m.validate().is_ok());
        m.observers = Some(3);
        let err = m.validate().unwrap_err();
        assert!(
            err.contains("mesh.observers = 3") && err.contains("at least 4"),
            "{err}"
        );
    }

    /// Loads `text` as a config file and returns the error message.
    fn refused(text: &str) -> String {
        match Config::load(Some(file(text).path()), []) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn type_errors_name_the_key() {
        for (text, expected) in [
            (
                "[workers]\nconcurrency = \"x\"\n",
                "workers.concurrency: invalid type: string \"x\", expected a non-negative integer",
            ),
            (
                "[workers]\nconcurrency = -1\n",
                "workers.concurrency: invalid value",
            ),
            (
                "[workers]\nqueues = \"default\"\n",
                "workers.queues: invalid type",
            ),
            (
                "[workers]\nqueues = [\"a\", 5]\n",
                "workers.queues[1]: invalid type",
            ),
            ("[workers]\nlease = 30\n", "workers.lease: invalid type"),
            ("[workers]\nlease = \"soon\"\n", "workers.lease: "),
            (
                "[workers.restart]\nwindow = true\n",
                "workers.restart.window: invalid type",
            ),
            ("[retry]\njitter = \"lots\"\n", "retry.jitter: invalid type"),
            (
                "[exec]\nmax_output_bytes = \"1k\"\n",
                "exec.max_output_bytes: invalid type",
            ),
            ("[mesh]\nf = 1.5\n", "mesh.f: invalid type"),
            (
                "[store]\nbackend = \"mysql\"\n",
                "store.backend: unknown variant `mysql`",
            ),
            ("[retention]\nbatch = []\n", "retention.batch: invalid type"),
            (
                "[kinds.http]\nmax_bytes = \"big\"\n",
                "kinds.http.max_bytes: invalid type",
            ),
        ] {
            let err = refused(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn override_type_errors_name_the_key_and_the_variable() {
        let f = file("[workers]\nconcurrency = 4\n");
        for (var, value, expected) in [
            (
                "JOBMESH__WORKERS__CONCURRENCY",
                "many",
                "workers.concurrency: invalid type",
            ),
            ("JOBMESH__WORKERS__LEASE", "soon", "workers.lease: "),
            (
                "JOBMESH__WORKERS__RESTART__WINDOW",
                "7",
                "workers.restart.window: invalid type",
            ),
            (
                "JOBMESH__RETRY__EXPONENT",
                "[1]",
                "retry.exponent: invalid type",
            ),
        ] {
            let err = Config::load(Some(f.path()), [(var.to_string(), value.to_string())])
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{var}: {err}");
            assert!(
                err.contains(&format!("environment override {var}")),
                "{var}: {err}"
            );
        }
        // A bad value in the file is blamed on the file even when other keys are overridden.
        let f = file("[workers]\nconcurrency = \"x\"\n");
        let err = Config::load(
            Some(f.path()),
            [("JOBMESH__NODE__NAME".to_string(), "n1".to_string())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(!err.contains("JOBMESH__NODE__NAME"), "{err}");
    }

    #[test]
    fn nonsense_values_are_refused_with_their_key() {
        for (text, expected) in [
            // Queue names follow the submit rule.
            (
                "[workers]\nqueues = [\"\"]\n",
                "workers.queues: queue name ``",
            ),
            (
                "[workers]\nqueues = [\"a b\"]\n",
                "workers.queues: queue name `a b`",
            ),
            (
                "[workers]\nqueues = [\"ok\", \"sp/am\"]\n",
                "queue name `sp/am`",
            ),
            (
                "[workers]\nqueues = []\n",
                "workers.queues: must name at least one queue",
            ),
            // Durations that must be positive, and bounded.
            (
                "[workers]\ndefault_timeout = \"0s\"\n",
                "workers.default_timeout: must be greater than zero",
            ),
            (
                "[workers]\npoll_interval = \"0s\"\n",
                "workers.poll_interval: must be greater than zero",
            ),
            (
                "[workers]\nlease = \"10ms\"\n",
                "workers.lease: must be at least 100ms",
            ),
            (
                "[workers]\nlease = \"30days\"\n",
                "workers.lease: must be at most 1day",
            ),
            (
                "[workers]\ndefault_timeout = \"8000y\"\n",
                "workers.default_timeout: must be at most",
            ),
            (
                "[workers.restart]\nwindow = \"0s\"\n",
                "workers.restart.window: must be greater than zero",
            ),
            (
                "[workers.restart]\nbackoff_min = \"10s\"\nbackoff_max = \"1s\"\n",
                "workers.restart.backoff_min: must not exceed workers.restart.backoff_max",
            ),
            (
                "[retention]\nfinished_jobs = \"0s\"\n",
                "retention.finished_jobs: must be at least 1s",
            ),
            (
                "[retention]\ndead_letters = \"0s\"\n",
                "retention.dead_letters: must be at least 1s",
            ),
            (
                "[retention]\ncoordination = \"0s\"\n",
                "retention.coordination: must be at least 1s",
            ),
            (
                "[retention]\ninterval = \"0s\"\n",
                "retention.interval: must be greater than zero",
            ),
            (
                "[retry]\nmax_delay = \"100y\"\n",
                "retry.max_delay: must be at most",
            ),
            // Batch sizes.
            (
                "[workers]\nclaim_batch = 0\n",
                "workers.claim_batch: must be within 1..=10000, got 0",
            ),
            (
                "[workers]\nclaim_batch = 4000000000\n",
                "workers.claim_batch: must be within 1..=10000",
            ),
            (
                "[workers]\ncomplete_batch = 0\n",
                "workers.complete_batch: must be within 1..=10000",
            ),
            (
                "[workers]\ncomplete_batch = 1000000\n",
                "workers.complete_batch: must be within 1..=10000",
            ),
            (
                "[retention]\nbatch = 0\n",
                "retention.batch: must be within 1..=10000",
            ),
            (
                "[workers]\nconcurrency = 100000\n",
                "workers.concurrency: must be within 1..=10000",
            ),
            // Output limits.
            (
                "[exec]\nmax_output_bytes = 0\n",
                "exec.max_output_bytes: must be within 1..=67108864, got 0",
            ),
            (
                "[exec]\nmax_output_bytes = 1000000000000\n",
                "exec.max_output_bytes: must be within",
            ),
            (
                "[http]\nmax_response_bytes = 0\n",
                "http.max_response_bytes: must be within 1..=67108864",
            ),
            // Retry policy.
            (
                "[retry]\nexponent = 1000\n",
                "retry.exponent must be within 0..=10, got 1000",
            ),
            (
                "[retry]\njitter = 2.0\n",
                "retry.jitter must be within 0.0..=1.0",
            ),
            (
                "[retry]\njitter = nan\n",
                "retry.jitter must be within 0.0..=1.0",
            ),
            (
                "[retry]\nunit = \"0s\"\n",
                "retry.unit must be greater than zero",
            ),
            // Mesh numbers (a huge f must not overflow 3f + 1).
            (
                "[mesh]\nf = 9223372036854775807\n",
                "mesh.f: must be within 0..=1000",
            ),
            (
                "[mesh]\nobservers = 0\n",
                "mesh.observers: must be within 1..=10000",
            ),
            (
                "[mesh]\nobservers = 2\n",
                "mesh.observers = 2: tolerating f = 1",
            ),
            ("[mesh]\nenabled = true\n", "mesh.members lists 0 peer ids"),
            // Store and node.
            (
                "[store]\npostgres_url = \" \"\n",
                "store.postgres_url: must not be empty",
            ),
            (
                "[store]\nredis_prefix = \"\"\n",
                "store.redis_prefix: must not be empty",
            ),
            ("[node]\nname = \"\"\n", "node.name: must not be empty"),
        ] {
            let err = refused(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn every_refused_value_is_reported_at_once() {
        let err = refused("[workers]\nclaim_batch = 0\n[exec]\nmax_output_bytes = 0\n");
        assert!(
            err.contains("workers.claim_batch") && err.contains("exec.max_output_bytes"),
            "{err}"
        );
    }

    #[test]
    fn override_value_errors_name_the_variable() {
        let err = Config::load(
            None,
            [(
                "JOBMESH__WORKERS__QUEUES".to_string(),
                "[\"no spaces please\"]".to_string(),
            )],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("environment override JOBMESH__WORKERS__QUEUES")
                && err.contains("queue name `no spaces please`"),
            "{err}"
        );
    }

    /// `config/node.toml`, which documents every key.
    fn documented() -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    #[test]
    fn documented_config_equals_the_defaults() {
        let (path, text) = documented();
        let mut loaded = Config::load(Some(&path), []).unwrap();
        // The keys the quick tour needs, which the file lists in its header.
        let tour_keys = ["exec.allow"];
        for key in tour_keys {
            assert!(
                text.lines()
                    .any(|l| l.starts_with("#   ") && l.contains(key)),
                "config/node.toml must list `{key}` among the keys that differ from the defaults"
            );
        }
        assert!(
            !loaded.exec.allow.is_empty(),
            "the quick tour runs `echo` through exec"
        );
        loaded.exec.allow = Config::default().exec.allow;
        assert_eq!(loaded, Config::default());
    }

    #[test]
    fn documented_config_lists_every_key() {
        let (_, text) = documented();
        // Sections as written, with their set and commented-out keys.
        let mut keys: Vec<(String, String, bool)> = Vec::new();
        let mut section = String::new();
        for line in text.lines() {
            let code = line.trim_start_matches(['#', ' ']);
            let commented = line.starts_with('#');
            if let Some(name) = code.strip_prefix('[').and_then(|r| r.split(']').next()) {
                if !commented {
                    section = name.to_string();
                }
                continue;
            }
            if let Some((key, _)) = code.split_once(" = ")
                && !key.contains(' ')
            {
                keys.push((section.clone(), key.to_string(), commented));
            }
        }
        // JSON keeps `None` fields (as null), so optional keys are listed too.
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut missing = Vec::new();
        walk(&defaults, "", &mut |path, value| {
            let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
            let found = keys
                .iter()
                .find(|(s, k, _)| s == section && k == key)
                .map(|(_, _, commented)| *commented);
            match found {
                // Keys without a default value are documented as comments.
                Some(commented) if commented == value.is_null() => {}
                _ if section.is_empty() && value.as_object().is_some_and(|o| o.is_empty()) => {
                    // `[kinds]` is an empty map: an example table suffices.
                    if !text.contains(&format!("# [{key}.")) {
                        missing.push(path.to_string());
                    }
                }
                _ => missing.push(path.to_string()),
            }
        });
        assert!(
            missing.is_empty(),
            "config/node.toml does not document (set, or commented out when unset by default): {missing:?}"
        );
    }

    /// Calls `f` with the dotted path of every leaf (non-table value) of `v`.
    fn walk(v: &serde_json::Value, prefix: &str, f: &mut impl FnMut(&str, &serde_json::Value)) {
        match v.as_object() {
            Some(o) if !o.is_empty() => {
                for (k, child) in o {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(child, &path, f);
                }
            }
            _ => f(prefix, v),
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load(Some(Path::new("/nonexistent/jobmesh.toml")), [])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read config file /nonexistent/jobmesh.toml"),
            "{err}"
        );
    }
}
