//! `jobmesh audit`: the audit log of operator actions, newest first.

use jobmesh::config::Config;
use jobmesh::store::audit::{AuditId, AuditQuery, AuditRecord};

use crate::args::AuditArgs;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, args: AuditArgs, json: bool) -> anyhow::Result<()> {
    let query = AuditQuery {
        before: args.before.map(AuditId),
        limit: args.limit,
        action: args.action,
        actor: args.actor,
    };
    // Checked before the store is opened, naming the option.
    query
        .check()
        .map_err(|m| anyhow::anyhow!("invalid audit query: --{m}"))?;
    let store = setup::open_store(&config).await?;
    let rows = store.list_audit(&query).await?;
    if json {
        return output::json(&rows);
    }
    if rows.is_empty() {
        return outln!("no audit rows").map_err(Into::into);
    }
    let table: Vec<Vec<String>> = rows.iter().map(row).collect();
    output::table(
        &[
            "ID", "AT", "ACTOR", "ADDRESS", "ACTION", "RESULT", "TARGET", "DETAIL",
        ],
        &table,
    )?;
    if rows.len() == query.limit as usize
        && let Some(last) = rows.last()
    {
        eprintln!("more with --before {}", last.id);
    }
    Ok(())
}

fn row(r: &AuditRecord) -> Vec<String> {
    vec![
        r.id.to_string(),
        output::time(r.at),
        r.actor.to_string(),
        r.address.map_or("-".into(), |a| a.to_string()),
        r.action.to_string(),
        r.result.as_str().to_owned(),
        output::truncate(&r.target.to_string(), 60),
        if r.detail.is_null() {
            "-".into()
        } else {
            output::truncate(&r.detail.to_string(), 60)
        },
    ]
}
