//! `jobmesh limits`: the cluster-wide limits in force (as the store holds them, written
//! by the last node started) and what runs under each, per key.

use jobmesh::config::Config;
use jobmesh::limits::{Limit, LimitUsage};
use serde::Serialize;

use crate::output::{self, outln};
use crate::setup;

/// What `limits --json` prints.
#[derive(Debug, Serialize)]
struct Shown {
    limits: Vec<Limit>,
    running: Vec<LimitUsage>,
}

/// Runs the verb.
pub async fn run(config: Config, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    let shown = Shown {
        limits: store.limits().await?,
        running: store.limit_usage().await?,
    };
    if json {
        return output::json(&shown);
    }
    if shown.limits.is_empty() {
        outln!("no limits in force: add [[limit]] entries to the config and start a node")?;
        return Ok(());
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = shown
        .limits
        .iter()
        .map(|l| {
            vec![
                l.name(),
                opt(l.max_running.map(|n| n.to_string())),
                opt(l.rate.map(|r| r.to_string())),
                opt(l.rate.map(|_| l.capacity().to_string())),
                opt(l.limit_by.clone()),
            ]
        })
        .collect();
    output::table(
        &["LIMIT", "MAX RUNNING", "RATE", "BURST", "LIMIT BY"],
        &rows,
    )?;
    if !shown.running.is_empty() {
        outln!()?;
        let rows: Vec<Vec<String>> = shown
            .running
            .iter()
            .map(|u| {
                let key = if u.key.is_empty() {
                    "-".into()
                } else {
                    u.key.clone()
                };
                vec![u.limit.clone(), key, u.running.to_string()]
            })
            .collect();
        output::table(&["LIMIT", "KEY", "RUNNING"], &rows)?;
    }
    Ok(())
}
