//! Shared start-up: config, logging, opening the store and the event stream.

use std::path::Path;

use anyhow::Context;
use jobmesh::config::{Backend, Config};
use jobmesh::store::SharedStore;

/// Logs go to stderr; `RUST_LOG` overrides the level (info for nodes, warn otherwise).
/// Colour only on a terminal: a log redirected to a file or a collector stays plain.
pub fn init_tracing(node: bool) {
    use std::io::IsTerminal as _;
    // gossipsub logs one WARN per invalid message it receives, which an outsider
    // controls; the mesh counts and rate-limits those itself (`mesh peers`), so the
    // library's own lines are kept to errors unless RUST_LOG asks for more.
    let default = if node {
        "info,libp2p_gossipsub=error"
    } else {
        "warn,libp2p_gossipsub=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every log line passes through the redactor: no URL credentials or
        // `Authorization` values in the log, whichever library wrote the line.
        .with_writer(|| jobmesh::redact::RedactingWriter::new(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal())
        // By default a failed log write is reported with `eprintln!`, which panics
        // when stderr is a closed pipe (`jobmesh node 2>&1 | head`) and takes the
        // logging task down with it. A log line that cannot be written is dropped.
        .log_internal_errors(false)
        .init();
}

/// The config file (if any) with environment overrides applied.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

/// Who acts at this command line, for the audit log: `cli@<user>@<host>`, the user
/// from `USER` (or `LOGNAME`), the host from the kernel (`unknown` where neither says).
/// The names are what the environment claims, not a proof of identity: whoever can run
/// the CLI holds the store's credentials anyway.
pub fn audit_context() -> jobmesh::store::AuditContext {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let h = std::fs::read_to_string(p).ok()?;
            let h = h.trim();
            (!h.is_empty()).then(|| h.to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    jobmesh::store::AuditContext::new(jobmesh::store::Actor::cli(&user, &host))
}

/// Opens (and migrates) the store the config names (see [`jobmesh::store::open`]).
pub async fn open_store(config: &Config) -> anyhow::Result<SharedStore> {
    let store = jobmesh::store::open(&config.store, &config.sqlite_path()).await?;
    Ok(store.shared())
}

/// The Redis event stream to follow on redis_postgres (`None` in other modes, or when
/// `store.redis_event_stream` is off).
pub async fn event_stream(
    config: &Config,
) -> anyhow::Result<Option<jobmesh::store::redis::RedisDispatch>> {
    let store = &config.store;
    if store.backend != Backend::RedisPostgres || !store.relays_events() {
        return Ok(None);
    }
    let url = store.redis_url.as_deref().unwrap_or_default();
    let redis = jobmesh::store::redis::RedisDispatch::connect(url, store.redis_prefix_or_default())
        .await
        .context("connecting to Redis (store.redis_url) for the event stream")?;
    Ok(Some(redis))
}
