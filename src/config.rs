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
        let mut overridden = Vec::new();
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
            overridden.push(key);
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: if overridden.is_empty() {
                        origin.clone()
                    } else {
                        format!("{origin} (with overrides {})", overridden.join(", "))
                    },
                    message: e.message().to_string(),
                })?;
        config
            .validate()
            .map_err(|message| ConfigError::Invalid { origin, message })?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        let w = &self.workers;
        if w.concurrency == 0 || w.concurrency > 10_000 {
            return Err(format!(
                "workers.concurrency must be within 1..=10000, got {}",
                w.concurrency
            ));
        }
        if w.queues.is_empty() {
            return Err("workers.queues must name at least one queue".into());
        }
        if w.lease < Duration::from_millis(100) {
            return Err(format!(
                "workers.lease must be at least 100ms, got {:?}",
                w.lease
            ));
        }
        if w.claim_batch == 0 || w.complete_batch == 0 {
            return Err("workers.claim_batch and workers.complete_batch must be at least 1".into());
        }
        if w.poll_interval.is_zero() {
            return Err("workers.poll_interval must be greater than zero".into());
        }
        if w.restart.window.is_zero() {
            return Err("workers.restart.window must be greater than zero".into());
        }
        self.retry.validate()?;
        self.exec.validate()?;
        self.http.validate()?;
        self.mesh.validate()?;
        self.retention.validate()?;
        match self.store.backend {
            Backend::Sqlite => {}
            Backend::Postgres if self.store.postgres_url.is_none() => {
                return Err("store.backend = \"postgres\" needs store.postgres_url (or JOBMESH__STORE__POSTGRES_URL)".into());
            }
            Backend::RedisPostgres
                if self.store.postgres_url.is_none() || self.store.redis_url.is_none() =>
            {
                return Err("store.backend = \"redis_postgres\" needs store.postgres_url and store.redis_url".into());
            }
            Backend::RedisPostgres if self.store.redis_prefix.as_deref() == Some("") => {
                return Err("store.redis_prefix must not be empty".into());
            }
            _ => {}
        }
        Ok(())
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
            err.contains("workers.concurrency must be within 1..=10000"),
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
