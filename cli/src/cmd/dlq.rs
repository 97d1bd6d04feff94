//! `jobmesh dlq`: list and redrive dead-lettered jobs.

use anyhow::bail;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::JobId;
use jobmesh::store::Redrive;

use crate::args::DlqVerb;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, verb: DlqVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    match verb {
        DlqVerb::List { queue, limit } => {
            let dead = store.dead_letters(queue.as_deref(), limit).await?;
            if json {
                let rows = dead
                    .iter()
                    .map(|d| {
                        Ok(serde_json::json!({
                            "job": output::job_json(&d.job)?,
                            "reason": d.reason,
                            "discarded_at": d.discarded_at,
                        }))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                return output::json(&rows);
            }
            let rows: Vec<Vec<String>> = dead
                .iter()
                .map(|d| {
                    vec![
                        d.job.id.to_string(),
                        d.job.queue.clone(),
                        d.job.kind.clone(),
                        d.job.attempt.to_string(),
                        output::time(d.discarded_at),
                        output::truncate(&d.reason, 70),
                    ]
                })
                .collect();
            output::table(
                &["ID", "QUEUE", "KIND", "ATTEMPTS", "DISCARDED_AT", "REASON"],
                &rows,
            )?;
        }
        DlqVerb::Redrive { ids, all, queue } => {
            let asked: Vec<JobId> = ids.iter().copied().map(JobId).collect();
            let which = match (all, queue, ids.is_empty()) {
                (true, _, _) => Redrive::All,
                (false, Some(q), _) => Redrive::Queue(q),
                (false, None, false) => Redrive::Ids(asked.clone()),
                (false, None, true) => bail!("name job ids, or use --queue Q or --all"),
            };
            let redriven = store
                .redrive(&setup::audit_context(), which, SystemClock.now())
                .await?;
            if json {
                output::json(&redriven)?;
            } else {
                outln!(
                    "redrove {} job(s){}",
                    redriven.len(),
                    if redriven.is_empty() { "" } else { ":" }
                )?;
                for id in &redriven {
                    outln!("  {id}")?;
                }
            }
            // Ids that were named but not redriven were not in the dead-letter queue:
            // say which, and in what state they are, and fail.
            let missed: Vec<JobId> = asked
                .into_iter()
                .filter(|id| !redriven.contains(id))
                .collect();
            if !missed.is_empty() {
                let mut why = Vec::new();
                for id in missed {
                    why.push(match store.get_job(id).await? {
                        Some(j) => format!("job {id} is {}, not dead-lettered", j.state),
                        None => format!("job {id} does not exist"),
                    });
                }
                bail!("not redriven: {}", why.join("; "));
            }
        }
    }
    Ok(())
}
