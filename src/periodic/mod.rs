//! Periodic jobs: schedules that enqueue a job at each tick, exactly one per tick
//! across the cluster.
//!
//! The core holds what a tick is and which ticks are due, as pure functions of the
//! schedule, the store's high-water mark and an instant ([`Millis`](crate::clock::Millis), from an
//! injected clock): `schedule.rs` parses schedules and finds ticks in a time zone, `policy.rs`
//! decides which missed ticks run, `job.rs` is a schedule with the job it enqueues.
//! Exactly-once is the store's: [`PeriodicTicks::enqueue_tick`] advances the
//! schedule's mark with a compare-and-set in the transaction of the enqueue, so a tick
//! is enqueued once however many nodes try, even after its job finished. Who tries is
//! the actors' business (the node holding the `periodic` leader lease).
//!
//! [`PeriodicTicks::enqueue_tick`]: crate::store::PeriodicTicks::enqueue_tick

mod job;
mod policy;
mod schedule;
#[cfg(test)]
mod tests;

pub use job::{PeriodicError, PeriodicJob, tick_key};
pub use policy::{MAX_BACKFILL, MAX_CATCH_UP, MissedTicks, due_ticks};
pub use schedule::{
    MAX_EVERY, MAX_SCHEDULE_LEN, MIN_EVERY, Schedule, ScheduleError, parse_timezone, tz_name,
};

/// Re-exported so callers can name time zones without depending on chrono-tz.
pub use chrono_tz::Tz;

/// Longest schedule name, in bytes (it becomes part of each tick's unique key).
pub const MAX_NAME_LEN: usize = 100;
/// Most schedules a node (or a config) holds.
pub const MAX_SCHEDULES: usize = 1000;

/// Checks a schedule name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits and `- _ . :`
/// (it is part of unique keys, log lines and the CLI's table).
pub fn check_schedule_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_NAME_LEN).collect();
        Err(format!(
            "schedule name `{}` must be 1-{MAX_NAME_LEN} characters of letters, digits, - _ . :",
            shown.escape_debug()
        ))
    }
}
