//! `jobmesh dlq`: list and redrive dead-lettered jobs.

use anyhow::bail;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::JobId;
use jobmesh::store::Redrive;

use crate::args::DlqVerb;
use crate::{output, setup};

/// Runs the verb.
pub async fn run(config: Config, verb: DlqVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    match verb {
        DlqVerb::List { queue, limit } => {
            let dead = store.dead_letters(queue.as_deref(), limit).await?;
            if json {
                return output::json(&dead);
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
            );
        }
        DlqVerb::Redrive { ids, all, queue } => {
            let which = match (all, queue, ids.is_empty()) {
                (true, _, _) => Redrive::All,
                (false, Some(q), _) => Redrive::Queue(q),
                (false, None, false) => Redrive::Ids(ids.into_iter().map(JobId).collect()),
                (false, None, true) => bail!("name job ids, or use --queue Q or --all"),
            };
            let redriven = store.redrive(which, SystemClock.now()).await?;
            if json {
                return output::json(&redriven);
            }
            println!(
                "redrove {} job(s){}",
                redriven.len(),
                if redriven.is_empty() { "" } else { ":" }
            );
            for id in redriven {
                println!("  {id}");
            }
        }
    }
    Ok(())
}
