//! `jobmesh jobs`: list, show, cancel, stats (with each queue's pause).

use anyhow::bail;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::{JobId, JobState};
use jobmesh::store::{CancelOutcome, JobFilter};

use crate::args::JobsVerb;
use crate::cmd::queue;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, verb: JobsVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    match verb {
        JobsVerb::List {
            state,
            queue,
            kind,
            after,
            limit,
        } => {
            let filter = JobFilter {
                state,
                queue,
                kind,
                after: after.map(JobId),
                limit,
            };
            let jobs = store.list_jobs(&filter).await?;
            if json {
                let rows = jobs
                    .iter()
                    .map(output::job_json)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                return output::json(&rows);
            }
            output::table(&output::JOB_HEADERS, &output::job_rows(&jobs))?;
        }
        JobsVerb::Show { id } => {
            let Some(job) = store.get_job(JobId(id)).await? else {
                bail!("job {id} not found")
            };
            if json {
                return output::json(&output::job_json(&job)?);
            }
            output::job_details(&job)?;
        }
        JobsVerb::Cancel { id } => {
            let outcome = store
                .cancel(&setup::audit_context(), JobId(id), SystemClock.now())
                .await?;
            if json {
                return output::json(&serde_json::json!({"id": id, "outcome": outcome}));
            }
            match outcome {
                CancelOutcome::Cancelled => outln!("job {id} cancelled")?,
                CancelOutcome::AlreadyFinished(state) => {
                    outln!("job {id} had already finished ({state}); nothing changed")?
                }
            }
        }
        JobsVerb::Stats => {
            let (counts, paused) = queue::counts_and_paused(&*store).await?;
            if json {
                // Per queue its pause beside its counts (`{"mail": {"paused": true,
                // "counts": {"available": 3}}}`), as the table shows both.
                let by_queue: std::collections::BTreeMap<&String, serde_json::Value> = counts
                    .iter()
                    .map(|(q, c)| {
                        (
                            q,
                            serde_json::json!({"paused": paused.contains(q), "counts": c}),
                        )
                    })
                    .collect();
                return output::json(&by_queue);
            }
            let mut headers = vec!["QUEUE", "PAUSED"];
            headers.extend(JobState::ALL.iter().map(|s| s.as_str()));
            let rows: Vec<Vec<String>> = counts
                .iter()
                .map(|(queue, by_state)| {
                    let paused = queue::yes_no(paused.contains(queue));
                    let mut row = vec![queue.clone(), paused.to_owned()];
                    row.extend(
                        JobState::ALL
                            .iter()
                            .map(|s| by_state.get(s).copied().unwrap_or(0).to_string()),
                    );
                    row
                })
                .collect();
            output::table(&headers, &rows)?;
        }
    }
    Ok(())
}
