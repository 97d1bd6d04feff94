//! [`PeriodicJob`]: a named schedule with the job it enqueues at each tick.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::policy::{MAX_BACKFILL, MissedTicks, due_ticks};
use super::schedule::tz_name;
use super::{Schedule, check_schedule_name};
use crate::clock::Millis;
use crate::job::NewJob;

/// A schedule and the job it enqueues at every tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodicJob {
    /// Unique name across the cluster; the store's record of handled ticks is kept by it.
    pub name: String,
    /// When it ticks.
    pub schedule: Schedule,
    /// Whose wall clock a cron expression is read on.
    #[serde(with = "tz_name")]
    pub timezone: Tz,
    /// What happens to ticks missed while no node enqueued them.
    pub policy: MissedTicks,
    /// The job enqueued at each tick (kind, payload, queue, priority, attempts,
    /// timeout). Its `unique_key` and `run_at` are set per tick; it has no parents.
    pub job: NewJob,
}

/// Why a periodic job was refused; `field` names what is wrong (`name`, `schedule`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PeriodicError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl PeriodicError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl PeriodicJob {
    /// A schedule in UTC with the `skip` policy enqueueing `job`.
    pub fn new(name: impl Into<String>, schedule: Schedule, job: NewJob) -> Self {
        Self {
            name: name.into(),
            schedule,
            timezone: Tz::UTC,
            policy: MissedTicks::Skip,
            job,
        }
    }

    /// Checks what every periodic job needs, whatever its kind: a usable name, a
    /// schedule that ticks at least once after `now` in its zone, a bounded backfill,
    /// and a job template without what each tick sets (`unique_key`, `run_at`) or
    /// cannot have (parents). The kind and payload are the registry's to check.
    pub fn check(&self, now: Millis) -> Result<(), PeriodicError> {
        check_schedule_name(&self.name).map_err(|m| PeriodicError::new("name", m))?;
        if self.schedule.next_after(now, self.timezone).is_none() {
            return Err(PeriodicError::new(
                "schedule",
                format!(
                    "`{}` never ticks in {} (a date that does not exist?)",
                    self.schedule,
                    self.timezone.name()
                ),
            ));
        }
        if let MissedTicks::CatchUp { backfill } = self.policy
            && (backfill.is_zero() || backfill > MAX_BACKFILL)
        {
            return Err(PeriodicError::new(
                "backfill",
                format!(
                    "must be from 1s to 7 days, got {}",
                    humantime_serde::re::humantime::format_duration(backfill)
                ),
            ));
        }
        let j = &self.job;
        if j.unique_key.is_some() {
            return Err(PeriodicError::new(
                "unique_key",
                "is set by each tick (periodic:<name>:<tick>); leave it out",
            ));
        }
        if j.run_at.is_some() {
            return Err(PeriodicError::new(
                "run_at",
                "is each tick's time; leave it out",
            ));
        }
        if !j.depends_on.is_empty() || !j.depends_on_index.is_empty() {
            return Err(PeriodicError::new(
                "depends_on",
                "a periodic job cannot have parents",
            ));
        }
        Ok(())
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        self.schedule.next_after(after, self.timezone)
    }

    /// The ticks to enqueue at `now`, oldest first, given the store's mark `handled`
    /// (see [`due_ticks`]).
    pub fn due(&self, handled: Millis, now: Millis) -> Vec<Millis> {
        due_ticks(&self.schedule, self.timezone, self.policy, handled, now)
    }

    /// The job of the tick at `tick`: the template, run at the tick, with the unique
    /// key of (name, tick), so that a second enqueue of the same tick while the first
    /// job is unfinished is a duplicate even outside the store's tick record.
    pub fn job_for(&self, tick: Millis) -> NewJob {
        let mut job = self.job.clone();
        job.unique_key = Some(tick_key(&self.name, tick));
        job.run_at = Some(tick);
        job
    }
}

/// The unique key of a schedule's tick: `periodic:<name>:<tick in epoch ms>`.
pub fn tick_key(name: &str, tick: Millis) -> String {
    format!("periodic:{name}:{}", tick.0)
}
