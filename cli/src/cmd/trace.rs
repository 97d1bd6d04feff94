//! `jobmesh trace generate` and `jobmesh trace export`.

use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use jobmesh::config::Config;
use jobmesh::predict::trace::{self, TraceRecord, export, generate};

use crate::args::TraceVerb;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, verb: TraceVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        TraceVerb::Generate {
            seed,
            duration,
            cycle,
            nodes,
            out,
        } => {
            let hours = duration.as_secs_f64() / 3600.0;
            anyhow::ensure!(
                hours > 0.0 && hours <= generate::MAX_HOURS,
                "--duration must be within 1s..=14days"
            );
            anyhow::ensure!(!cycle.is_zero(), "--cycle must be longer than zero");
            anyhow::ensure!(
                (4..=1000).contains(&nodes),
                "--nodes must be within 4..=1000"
            );
            let (records, truth) = generate::generate(generate::GenConfig {
                seed,
                hours,
                cycle_hours: cycle.as_secs_f64() / 3600.0,
                nodes,
            });
            write(&out, &records)?;
            if json {
                return output::json(&serde_json::json!({
                    "records": records.len(),
                    "out": out,
                    "outage": { "class": truth.outage.0, "from": truth.outage.1, "to": truth.outage.2 },
                    "deaths": truth.deaths.iter().map(|(n, t, d)| serde_json::json!({"node": n, "at": t, "degraded": d})).collect::<Vec<_>>(),
                }));
            }
            outln!(
                "wrote {} attempts to {} (seed {seed})",
                records.len(),
                out.display()
            )?;
            Ok(())
        }
        TraceVerb::Export {
            out,
            since,
            max_jobs,
        } => {
            anyhow::ensure!(max_jobs > 0, "--max-jobs must be at least 1");
            let store = setup::open_store(&config).await?;
            let records = export::export(store.as_ref(), export::ExportOptions { since, max_jobs })
                .await
                .context("reading the store")?;
            write(&out, &records)?;
            if json {
                return output::json(&serde_json::json!({ "records": records.len(), "out": out }));
            }
            outln!("wrote {} attempts to {}", records.len(), out.display())?;
            Ok(())
        }
    }
}

/// Writes a trace to a new file (never over an existing one).
fn write(path: &Path, records: &[TraceRecord]) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (an existing file is not overwritten)",
                path.display()
            )
        })?;
    trace::write(records, BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))
}
