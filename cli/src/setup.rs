//! Shared start-up: config, logging, opening the store, the handler registry.

use std::path::Path;

use anyhow::Context;
use jobmesh::config::{Backend, Config};
use jobmesh::handler::{Registry, builtin};
use jobmesh::store::SharedStore;
use jobmesh::store::sqlite::SqliteStore;

/// Logs go to stderr; `RUST_LOG` overrides the level (info for nodes, warn otherwise).
pub fn init_tracing(node: bool) {
    let default = if node { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The config file (if any) with environment overrides applied.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

/// Opens (and migrates) the store the config names.
pub async fn open_store(config: &Config) -> anyhow::Result<SharedStore> {
    match config.store.backend {
        Backend::Sqlite => {
            let path = config.sqlite_path();
            let store = SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening SQLite store {}", path.display()))?;
            Ok(std::sync::Arc::new(store))
        }
        other => anyhow::bail!("store backend {other:?} is not available in this build yet"),
    }
}

/// The built-in handlers with the config's payload rules applied.
pub fn registry(config: &Config) -> anyhow::Result<Registry> {
    let mut registry = builtin::registry(&config.exec, &config.http);
    for (kind, rules) in &config.kinds {
        registry
            .set_rules(kind, rules.clone())
            .with_context(|| format!("config [kinds.{kind}]"))?;
    }
    Ok(registry)
}
