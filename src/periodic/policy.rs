//! Which ticks are due: the missed-tick policy applied to a schedule, the store's
//! high-water mark and the current time. Pure functions; the clock is an argument.

use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::Schedule;
use crate::clock::Millis;

/// The most ticks a catch-up enqueues at once, whatever its window: the most recent
/// ones are kept, so a long outage of a fast schedule never floods a queue.
pub const MAX_CATCH_UP: usize = 1000;
/// The longest `backfill` window (a week).
pub const MAX_BACKFILL: Duration = Duration::from_secs(7 * 86_400);

/// What happens to ticks that passed while no node enqueued them (cluster down, leader
/// lost and not yet replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum MissedTicks {
    /// Only the latest due tick runs; earlier missed ones are passed over.
    #[default]
    Skip,
    /// Every missed tick within `backfill` of now runs (at most [`MAX_CATCH_UP`], the
    /// most recent); older ones are passed over.
    CatchUp {
        /// How far back missed ticks are still run.
        #[serde(with = "humantime_serde")]
        backfill: Duration,
    },
}

impl MissedTicks {
    /// The policy's name as the config writes it.
    pub fn name(&self) -> &'static str {
        match self {
            MissedTicks::Skip => "skip",
            MissedTicks::CatchUp { .. } => "catch_up",
        }
    }
}

/// The ticks to enqueue now, oldest first: ticks after `handled` (the store's mark:
/// every tick at or before it was enqueued or passed over) and at or before `now`,
/// filtered by `policy`.
pub fn due_ticks(
    schedule: &Schedule,
    tz: Tz,
    policy: MissedTicks,
    handled: Millis,
    now: Millis,
) -> Vec<Millis> {
    match policy {
        MissedTicks::Skip => schedule
            .latest_at_or_before(now, tz)
            .filter(|t| *t > handled)
            .into_iter()
            .collect(),
        MissedTicks::CatchUp { backfill } => {
            let from = Millis(now.0.saturating_sub(backfill.as_millis() as i64));
            // Walk back from now: the bound keeps the most recent ticks, and the walk
            // stops at the bound however long the window is.
            let mut ticks = Vec::new();
            let mut cursor = schedule.latest_at_or_before(now, tz);
            while let Some(t) = cursor {
                if t <= handled || t < from || ticks.len() == MAX_CATCH_UP {
                    break;
                }
                ticks.push(t);
                cursor = schedule.latest_at_or_before(Millis(t.0 - 1000), tz);
            }
            ticks.reverse();
            ticks
        }
    }
}
