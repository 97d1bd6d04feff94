//! `jobmesh queue`: pause, resume, list.

use std::collections::BTreeMap;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::JobState;
use jobmesh::store::{Counts, PausedQueue, Store};
use serde::Serialize;

use crate::args::QueueVerb;
use crate::output::{self, outln};
use crate::setup;

/// One queue as `queue list` shows it.
#[derive(Debug, Serialize)]
struct QueueRow {
    queue: String,
    paused: bool,
    /// Milliseconds since the Unix epoch, when paused.
    paused_at: Option<i64>,
    counts: BTreeMap<JobState, u64>,
}

/// Runs the verb.
pub async fn run(config: Config, verb: QueueVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    let now = SystemClock.now();
    match verb {
        QueueVerb::Pause { name } => {
            let changed = store
                .pause_queue(&setup::audit_context(), &name, now)
                .await?;
            if json {
                return output::json(
                    &serde_json::json!({"queue": name, "paused": true, "changed": changed}),
                );
            }
            if changed {
                outln!(
                    "queue {name} paused: no node claims from it until `jobmesh queue resume {name}`; enqueues still succeed"
                )?
            } else {
                outln!("queue {name} was already paused; nothing changed")?
            }
        }
        QueueVerb::Resume { name } => {
            let changed = store
                .resume_queue(&setup::audit_context(), &name, now)
                .await?;
            if json {
                return output::json(
                    &serde_json::json!({"queue": name, "paused": false, "changed": changed}),
                );
            }
            if changed {
                outln!("queue {name} resumed")?
            } else {
                outln!("queue {name} was not paused; nothing changed")?
            }
        }
        QueueVerb::List => {
            let rows = queue_rows(&*store).await?;
            if json {
                return output::json(&rows);
            }
            let mut headers = vec!["QUEUE", "PAUSED"];
            headers.extend(JobState::ALL.iter().map(|s| s.as_str()));
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut row = vec![r.queue.clone(), yes_no(r.paused).into()];
                    row.extend(
                        JobState::ALL
                            .iter()
                            .map(|s| r.counts.get(s).copied().unwrap_or(0).to_string()),
                    );
                    row
                })
                .collect();
            output::table(&headers, &table)?;
        }
    }
    Ok(())
}

/// Every queue that has jobs or is paused, by name, with its counts and pause.
async fn queue_rows(store: &dyn Store) -> anyhow::Result<Vec<QueueRow>> {
    let counts = store.counts().await?;
    let paused = store.paused_queues().await?;
    Ok(merge(counts, paused))
}

fn merge(mut counts: Counts, paused: Vec<PausedQueue>) -> Vec<QueueRow> {
    let mut at: BTreeMap<String, i64> = paused
        .into_iter()
        .map(|p| (p.queue, p.paused_at.0))
        .collect();
    for q in at.keys() {
        counts.entry(q.clone()).or_default();
    }
    counts
        .into_iter()
        .map(|(queue, counts)| {
            let paused_at = at.remove(&queue);
            QueueRow {
                paused: paused_at.is_some(),
                paused_at,
                queue,
                counts,
            }
        })
        .collect()
}

/// The PAUSED column of `jobs stats` and `queue list`.
pub fn yes_no(paused: bool) -> &'static str {
    if paused { "yes" } else { "no" }
}

/// Job counts with every paused queue present (a paused queue with no job still shows),
/// and the set of paused queue names, for `jobs stats`.
pub async fn counts_and_paused(
    store: &dyn Store,
) -> anyhow::Result<(Counts, std::collections::BTreeSet<String>)> {
    let mut counts = store.counts().await?;
    let paused: std::collections::BTreeSet<String> = store
        .paused_queues()
        .await?
        .into_iter()
        .map(|p| p.queue)
        .collect();
    for q in &paused {
        counts.entry(q.clone()).or_default();
    }
    Ok((counts, paused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobmesh::clock::Millis;

    #[test]
    fn a_paused_queue_without_jobs_is_listed_and_others_are_not_paused() {
        let mut counts = Counts::new();
        counts
            .entry("default".into())
            .or_default()
            .insert(JobState::Available, 3);
        let rows = merge(
            counts,
            vec![PausedQueue {
                queue: "mail".into(),
                paused_at: Millis(7),
            }],
        );
        let view: Vec<(&str, bool, Option<i64>)> = rows
            .iter()
            .map(|r| (r.queue.as_str(), r.paused, r.paused_at))
            .collect();
        assert_eq!(view, [("default", false, None), ("mail", true, Some(7))]);
        assert_eq!(rows[0].counts[&JobState::Available], 3);
    }
}
