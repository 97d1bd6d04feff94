//! `jobmesh periodic`: list the schedules (the store's, from every config and the API,
//! plus this config's not yet stored) with each one's record (the last tick handled,
//! its job) and next run time; pause, resume, trigger and delete one. Changes go to the
//! store with the operator's `user@host` in the audit log; the node holding the
//! `periodic` lease picks them up at its next round.

use std::collections::HashMap;

use anyhow::bail;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::JobId;
use jobmesh::periodic::PeriodicJob;
use jobmesh::store::{EnqueueOutcome, ScheduleOrigin, ScheduleOutcome, StoredSchedule, TickMark};
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
    /// `config` or `api`.
    origin: ScheduleOrigin,
    /// Whether the store holds it (`false`: declared in this config, no node with it
    /// started yet).
    stored: bool,
    paused: bool,
    /// Every tick at or before this (ms since the Unix epoch) was handled; `None` until
    /// the schedule was stored.
    last_tick: Option<i64>,
    /// The job of `last_tick`.
    last_job: Option<JobId>,
    /// The next tick after now (ms since the Unix epoch); `None` while paused.
    next_run: Option<i64>,
}

/// Runs the verb.
pub async fn run(config: Config, verb: PeriodicVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    let ctx = setup::audit_context();
    let now = SystemClock.now();
    match verb {
        PeriodicVerb::List => {
            let stored = store.schedules().await?;
            let marks = store.tick_marks().await?;
            let rows = rows(stored, &config.periodic_jobs(), marks, now);
            if json {
                return output::json(&rows);
            }
            print_table(&rows)?;
        }
        PeriodicVerb::Pause { name } => {
            let out = store.set_schedule_paused(&ctx, &name, true, now).await?;
            let changed = done(&name, out)?;
            if json {
                return output::json(
                    &serde_json::json!({"name": name, "paused": true, "changed": changed}),
                );
            }
            if changed {
                outln!(
                    "schedule {name} paused: no job for its ticks until `jobmesh periodic resume {name}`"
                )?
            } else {
                outln!("schedule {name} was already paused; nothing changed")?
            }
        }
        PeriodicVerb::Resume { name } => {
            let out = store.set_schedule_paused(&ctx, &name, false, now).await?;
            let changed = done(&name, out)?;
            if json {
                return output::json(
                    &serde_json::json!({"name": name, "paused": false, "changed": changed}),
                );
            }
            if changed {
                outln!("schedule {name} resumed; ticks of the pause are passed over")?
            } else {
                outln!("schedule {name} was not paused; nothing changed")?
            }
        }
        PeriodicVerb::Trigger { name } => {
            let out = done(&name, store.trigger_schedule(&ctx, &name, now).await?)?;
            let (id, duplicate) = match out {
                EnqueueOutcome::Inserted(id) => (id, false),
                EnqueueOutcome::Duplicate(id) => (id, true),
            };
            if json {
                return output::json(
                    &serde_json::json!({"name": name, "id": id, "duplicate": duplicate}),
                );
            }
            outln!("schedule {name} triggered: job {id}")?
        }
        PeriodicVerb::Delete { name } => {
            if config.periodic.iter().any(|p| p.name == name) {
                bail!(
                    "schedule `{name}` is declared in this config ([[periodic]]): remove it there first"
                );
            }
            done(&name, store.delete_schedule(&ctx, &name, true, now).await?)?;
            if json {
                return output::json(&serde_json::json!({"name": name, "deleted": true}));
            }
            outln!("schedule {name} deleted; its jobs stay")?
        }
    }
    Ok(())
}

/// The result of a change, or the refusal as an error.
fn done<T>(name: &str, out: ScheduleOutcome<T>) -> anyhow::Result<T> {
    match out {
        ScheduleOutcome::Done(t) => Ok(t),
        ScheduleOutcome::NotFound => {
            bail!("no schedule named `{name}` (see `jobmesh periodic list`)")
        }
        ScheduleOutcome::Refused(why) => bail!("{why}"),
    }
}

fn print_table(rows: &[ScheduleRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        outln!(
            "no periodic schedules: add [[periodic]] entries to the config, or POST /api/v1/periodic"
        )?;
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
                if r.stored {
                    r.origin.to_string()
                } else {
                    "config (not stored yet)".to_string()
                },
                if r.paused { "paused" } else { "running" }.to_string(),
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
            "ORIGIN",
            "STATE",
            "LAST TICK",
            "JOB",
            "NEXT RUN",
        ],
        &table,
    )
}

fn rows(
    stored: Vec<StoredSchedule>,
    config: &[PeriodicJob],
    marks: Vec<TickMark>,
    now: Millis,
) -> Vec<ScheduleRow> {
    let marks: HashMap<String, TickMark> =
        marks.into_iter().map(|m| (m.schedule.clone(), m)).collect();
    let row = |j: &PeriodicJob, origin, stored: bool, paused: bool| {
        let mark = marks.get(&j.name).filter(|_| stored);
        ScheduleRow {
            name: j.name.clone(),
            schedule: j.schedule.to_string(),
            timezone: j.timezone.name().to_string(),
            policy: j.policy.name(),
            kind: j.job.kind.clone(),
            queue: j.job.queue.clone(),
            origin,
            stored,
            paused,
            last_tick: mark.map(|m| m.last_tick.0),
            last_job: mark.and_then(|m| m.last_job),
            next_run: if paused {
                None
            } else {
                j.next_after(now).map(|t| t.0)
            },
        }
    };
    let mut out: Vec<ScheduleRow> = stored
        .iter()
        .map(|s| row(&s.job, s.origin, true, s.paused_at.is_some()))
        .collect();
    for j in config {
        if !stored.iter().any(|s| s.job.name == j.name) {
            out.push(row(j, ScheduleOrigin::Config, false, false));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
