//! Periodic ticks: the store's record of which ticks of each schedule were handled,
//! and the enqueue of a tick's job guarded by it.
//!
//! The record is one high-water mark per schedule name (`periodic_ticks`): every tick
//! at or before it was enqueued or passed over. [`PeriodicTicks::enqueue_tick`]
//! advances it with a compare-and-set (only to a later tick) in the transaction that
//! inserts the job, so a tick yields at most one job across the cluster: two nodes
//! racing (a lease overlap), a leader failing over mid-tick, or a node restarting
//! find the mark already at the tick and insert nothing. A unique key alone would not
//! do: the unique index covers unfinished jobs only, so a tick whose job already
//! finished could be enqueued again. Ticks are enqueued oldest first, so a mark is all
//! the record needs, and it stays one row per schedule.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{EnqueueOutcome, StoreError};
use crate::clock::Millis;
use crate::job::{JobId, NewJob};
use crate::periodic::{MAX_SCHEDULES, check_schedule_name};

/// A schedule's high-water mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickMark {
    /// The schedule's name.
    pub schedule: String,
    /// Every tick at or before this was enqueued or passed over.
    pub last_tick: Millis,
    /// The job enqueued for `last_tick` (none while the mark is the registration time).
    pub last_job: Option<JobId>,
    /// When the mark last moved.
    pub updated_at: Millis,
}

/// What became of a tick's enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TickOutcome {
    /// The mark moved to the tick and its job was stored (or, if an unfinished job
    /// held the tick's unique key, found).
    Enqueued {
        /// The job.
        outcome: EnqueueOutcome,
    },
    /// The tick was handled already (the mark is at or past it); nothing was stored.
    Passed {
        /// The mark as found.
        last_tick: Millis,
    },
    /// The schedule is paused; nothing was stored and the mark did not move.
    Paused,
    /// No schedule has the name (it was deleted); nothing was stored.
    NoSchedule,
}

/// The record of handled ticks. Every backend has it, so [`super::Store`] requires it.
#[async_trait]
pub trait PeriodicTicks: Send + Sync + 'static {
    /// The marks of `schedules`, first registering those without one at `now`: a
    /// schedule seen for the first time runs no tick from before it was seen. At most
    /// [`MAX_SCHEDULES`] names, each a valid schedule name.
    async fn register_schedules(
        &self,
        schedules: &[String],
        now: Millis,
    ) -> Result<Vec<TickMark>, StoreError>;

    /// Every schedule's mark, by name (read-only; for listings).
    async fn tick_marks(&self) -> Result<Vec<TickMark>, StoreError>;

    /// Enqueues `job` for the tick `tick` of `schedule` if the schedule exists in
    /// [`super::PeriodicSchedules`] and is not paused (read in the same transaction:
    /// otherwise [`TickOutcome::NoSchedule`] or [`TickOutcome::Paused`]) and its mark is
    /// before the tick, moving the mark to it in the same transaction; otherwise
    /// stores nothing and answers [`TickOutcome::Passed`]. A schedule without a mark
    /// gets one. `job` is checked as [`super::JobQueue::enqueue`] checks jobs.
    async fn enqueue_tick(
        &self,
        schedule: &str,
        tick: Millis,
        job: NewJob,
        now: Millis,
    ) -> Result<TickOutcome, StoreError>;
}

/// Refuses what no schedule could be called, and more names than a node may hold.
pub(crate) fn check_schedules(names: &[String]) -> Result<(), StoreError> {
    if names.len() > MAX_SCHEDULES {
        return Err(StoreError::Invalid(format!(
            "{} schedules; at most {MAX_SCHEDULES} are allowed",
            names.len()
        )));
    }
    names.iter().try_for_each(|n| check_schedule(n))
}

/// Refuses a name no schedule could have.
pub(crate) fn check_schedule(name: &str) -> Result<(), StoreError> {
    check_schedule_name(name).map_err(StoreError::Invalid)
}

/// A mark from its columns.
pub(crate) fn mark(
    (schedule, last_tick, last_job, updated_at): (String, i64, Option<i64>, i64),
) -> TickMark {
    TickMark {
        schedule,
        last_tick: Millis(last_tick),
        last_job: last_job.map(JobId),
        updated_at: Millis(updated_at),
    }
}
