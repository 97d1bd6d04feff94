//! Node configuration: TOML files in `config/`, overridden by environment variables,
//! read once into typed values.
//!
//! Every section refuses unknown keys, so a typo is an error that names the key rather
//! than a setting silently ignored. Environment variables named
//! `JOBMESH__<SECTION>__<KEY>` (double underscores between levels) override the file;
//! their values are read as TOML literals when they parse as one (numbers, booleans,
//! arrays), else as strings.
//!
//! What a value means is decided here, once: durations, multiaddrs, peer ids, the
//! cluster key and the `http` address policy are parsed while the file is read (a bad
//! one is refused with its key), and values that parse but make no sense are refused
//! by the checks in `checks.rs`. Components take the typed sections (the worker pool
//! [`WorkersSection`], the store [`StoreSection`] through
//! [`store::open`](crate::store::open), the built-in handlers [`ExecSection`] and
//! [`HttpSection`] through [`Config::registry`], the mesh through
//! [`MeshSection::membership`]); nothing downstream parses a string from the file again.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Config`], loading and environment overrides |
//! | `sections.rs` | `[node]`, `[store]`, `[workers]`, `[exec]`, `[http]` |
//! | `mesh.rs` | `[mesh]`: addresses, members, cluster key, admission of one node |
//! | `periodic.rs` | `[[periodic]]`: schedules and the job each tick enqueues |
//! | `limits.rs` | `[[limit]]`: cluster-wide concurrency and rate limits |
//! | `predict.rs` | `[predict]`: the live models' feed and saves |
//! | `checks.rs` | ranges and cross-key rules, every problem reported at once |

mod checks;
mod limits;
mod mesh;
mod periodic;
mod predict;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::handler::{Registry, SubmitError, builtin};
use crate::job::RetryPolicy;
use crate::payload::PayloadRules;

/// The type of `http.allow_private`, for building an [`HttpSection`] in code.
pub use crate::handler::builtin::http::address::AddressPolicy;
pub use checks::{
    MAX_BATCH, MAX_CONCURRENCY, MAX_DURATION, MAX_LEASE, MAX_MESH_F, MAX_MESH_OBSERVERS,
    MAX_OUTPUT_BYTES, MAX_POLL_INTERVAL, MAX_RESTART_BACKOFF, MAX_RESTARTS,
};
pub use limits::LimitEntry;
pub use mesh::{
    AdmissionError, ClusterKey, MeshSection, SAMPLED_MONITORING_FROM, parse_multiaddr,
    parse_peer_id,
};
pub use periodic::{DEFAULT_BACKFILL, PeriodicEntry, PolicyName};
pub use predict::{MAX_SAVE_INTERVAL, MIN_SAVE_INTERVAL, PEER_STALE_AFTER_SAVES, PredictSection};
pub use sections::{
    ApiSection, Backend, ExecSection, HttpSection, NodeSection, RestartSection, StoreSection,
    WorkersSection,
};

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
    /// Periodic schedules (`[[periodic]]`), run by the node holding the `periodic`
    /// leader lease.
    pub periodic: Vec<PeriodicEntry>,
    /// Cluster-wide concurrency and rate limits (`[[limit]]`), written to the store when
    /// a node starts.
    pub limit: Vec<LimitEntry>,
    /// Per queue: its wait SLO, warned of when a breach is predicted, and admission
    /// control while the breach is certain (`[queues.NAME]`).
    pub queues: BTreeMap<String, crate::predict::policy::congestion::QueuePolicy>,
    /// The node's live models: on or off, and how often they are saved (`[predict]`).
    pub predict: PredictSection,
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
    /// `[kinds.KIND]` names a kind no handler is registered for.
    #[error("config [kinds.{kind}]: {source}")]
    UnknownKind {
        /// The kind.
        kind: String,
        /// The registry's refusal, listing the known kinds.
        source: SubmitError,
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

    /// The built-in handlers, configured by `[exec]` and `[http]`, with the payload
    /// rules of `[kinds]` applied. Register further handlers on the result; a
    /// `[kinds.KIND]` for a kind registered later is refused here, so apply such rules
    /// after registering (see [`Registry::set_rules`]).
    pub fn registry(&self) -> Result<Registry, ConfigError> {
        let mut registry = builtin::registry(&self.exec, &self.http);
        for (kind, rules) in &self.kinds {
            registry
                .set_rules(kind, rules.clone())
                .map_err(|source| ConfigError::UnknownKind {
                    kind: kind.clone(),
                    source,
                })?;
        }
        Ok(registry)
    }

    /// The limits of `[[limit]]`, checked at load.
    pub fn limits(&self) -> Vec<crate::limits::Limit> {
        limits::limits(&self.limit)
    }

    /// The periodic jobs of `[[periodic]]`, checked at load.
    pub fn periodic_jobs(&self) -> Vec<crate::periodic::PeriodicJob> {
        self.periodic.iter().map(PeriodicEntry::to_job).collect()
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
