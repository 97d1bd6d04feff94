//! `jobmesh periodic list`: the schedules of `[[periodic]]` with the store's record of
//! each (the last tick handled, its job) and the next run time.

use std::collections::HashMap;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::JobId;
use jobmesh::periodic::PeriodicJob;
use jobmesh::store::TickMark;
use serde::Serialize;

use crate::args::PeriodicVerb;
use crate::output::{self, outln};
use crate::setup;

/// One schedule as `periodic list` shows it.
#[derive(Debug, Serialize)]
struct ScheduleRow {
    name: String,
    schedule: String,
    timezone: String,
    policy: &'static str,
    kind: String,
    queue: String,
    /// Every tick at or before this (ms since the Unix epoch) was handled; `None` until
    /// a node led the schedule.
    last_tick: Option<i64>,
    /// The job of `last_tick`.
    last_job: Option<JobId>,
    /// The next tick after now (ms since the Unix epoch).
    next_run: Option<i64>,
}

/// Runs the verb.
pub async fn run(config: Config, verb: PeriodicVerb, json: bool) -> anyhow::Result<()> {
    match verb {
        PeriodicVerb::List => {
            let jobs = config.periodic_jobs();
            let store = setup::open_store(&config).await?;
            let marks = store.tick_marks().await?;
            let rows = rows(&jobs, marks, SystemClock.now());
            if json {
                return output::json(&rows);
            }
            if rows.is_empty() {
                outln!("no periodic schedules: add [[periodic]] entries to the config")?;
                return Ok(());
            }
            let show = |t: Option<i64>| t.map_or("-".to_string(), |t| output::time(Millis(t)));
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.schedule.clone(),
                        r.timezone.clone(),
                        r.policy.to_string(),
                        r.kind.clone(),
                        r.queue.clone(),
                        show(r.last_tick),
                        r.last_job.map_or("-".into(), |j| j.to_string()),
                        show(r.next_run),
                    ]
                })
                .collect();
            output::table(
                &[
                    "NAME",
                    "SCHEDULE",
                    "ZONE",
                    "POLICY",
                    "KIND",
                    "QUEUE",
                    "LAST TICK",
                    "JOB",
                    "NEXT RUN",
                ],
                &table,
            )?;
        }
    }
    Ok(())
}

fn rows(jobs: &[PeriodicJob], marks: Vec<TickMark>, now: Millis) -> Vec<ScheduleRow> {
    let marks: HashMap<String, TickMark> =
        marks.into_iter().map(|m| (m.schedule.clone(), m)).collect();
    jobs.iter()
        .map(|j| {
            let mark = marks.get(&j.name);
            ScheduleRow {
                name: j.name.clone(),
                schedule: j.schedule.to_string(),
                timezone: j.timezone.name().to_string(),
                policy: j.policy.name(),
                kind: j.job.kind.clone(),
                queue: j.job.queue.clone(),
                last_tick: mark.map(|m| m.last_tick.0),
                last_job: mark.and_then(|m| m.last_job),
                next_run: j.next_after(now).map(|t| t.0),
            }
        })
        .collect()
}
