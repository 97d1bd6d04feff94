//! Throughput history: how many jobs were enqueued, succeeded and were dead-lettered
//! per queue in each interval of a window, read from the jobs table (their enqueue and
//! finish times), so that a dashboard opened now shows what happened before it opened.
//!
//! What the figures mean is decided here, once: a job counts as enqueued in the
//! interval of its `created_at`, as succeeded or failed in that of its `finished_at`
//! when its state now is `succeeded` or `discarded` (a job redriven since has left its
//! failed interval; a cancelled one counts in neither). Each backend answers with
//! grouped counts from indexes that hold the time, the state and the queue, so a read
//! visits no job row ([`ThroughputRow`]s are merged by [`merge`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::clock::Millis;

/// Most intervals one read covers (an hour of 5 s intervals).
pub const MAX_INTERVALS: i64 = 720;

/// What one queue did in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Jobs enqueued (by `created_at`).
    pub enqueued: u64,
    /// Jobs that succeeded (by `finished_at`).
    pub succeeded: u64,
    /// Jobs dead-lettered (state `discarded`, by `finished_at`).
    pub failed: u64,
}

impl Tally {
    /// Adds `other` to this one.
    pub fn add(&mut self, other: &Tally) {
        self.enqueued += other.enqueued;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
    }
}

/// One queue's tally in one interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// The interval's start.
    pub start: Millis,
    /// The queue.
    pub queue: String,
    /// What happened in it.
    pub tally: Tally,
}

/// Refuses a window a read would not bound: an interval that is not positive, a window
/// that ends before it starts, or more than [`MAX_INTERVALS`] intervals.
pub(crate) fn check_window(from: Millis, to: Millis, interval_ms: i64) -> Result<(), StoreError> {
    if interval_ms <= 0 {
        return Err(StoreError::Invalid(format!(
            "throughput interval {interval_ms} ms; it must be positive"
        )));
    }
    if to.0 < from.0 {
        return Err(StoreError::Invalid(format!(
            "throughput window ends ({}) before it starts ({})",
            to.0, from.0
        )));
    }
    // In i128: the bounds come from callers and must not overflow the check itself.
    let span = i128::from(to.0) - i128::from(from.0);
    let intervals = (span + i128::from(interval_ms) - 1) / i128::from(interval_ms);
    if intervals > i128::from(MAX_INTERVALS) {
        return Err(StoreError::Invalid(format!(
            "{intervals} throughput intervals; at most {MAX_INTERVALS}"
        )));
    }
    Ok(())
}

/// What a backend's grouped counts count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// Jobs by `created_at`.
    Enqueued,
    /// Jobs by `finished_at` whose state is `succeeded`.
    Succeeded,
    /// Jobs by `finished_at` whose state is `discarded`.
    Failed,
}

impl Counted {
    /// The tag a backend's statement writes in its rows for this count.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Counted::Enqueued => "enqueued",
            Counted::Succeeded => "succeeded",
            Counted::Failed => "failed",
        }
    }
}

/// Rows `(interval index from `from`, queue, tag, count)` as [`ThroughputRow`]s, by
/// interval then queue; a tag this version does not know is skipped.
pub(crate) fn merge(
    rows: impl IntoIterator<Item = (i64, String, String, i64)>,
    from: Millis,
    interval_ms: i64,
) -> Vec<ThroughputRow> {
    let mut by: BTreeMap<(i64, String), Tally> = BTreeMap::new();
    for (index, queue, tag, n) in rows {
        let n = n.max(0) as u64;
        let t = by.entry((index, queue)).or_default();
        match tag.as_str() {
            "enqueued" => t.enqueued += n,
            "succeeded" => t.succeeded += n,
            "failed" => t.failed += n,
            _ => {}
        }
    }
    by.into_iter()
        .map(|((index, queue), tally)| ThroughputRow {
            start: Millis(from.0 + index * interval_ms),
            queue,
            tally,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_merge_by_interval_and_queue() {
        let rows = vec![
            (1, "b".to_string(), "enqueued".to_string(), 3),
            (0, "a".to_string(), "succeeded".to_string(), 2),
            (1, "b".to_string(), "failed".to_string(), 1),
            (0, "a".to_string(), "unknown".to_string(), 9),
        ];
        let merged = merge(rows, Millis(1_000), 10);
        assert_eq!(
            merged,
            vec![
                ThroughputRow {
                    start: Millis(1_000),
                    queue: "a".into(),
                    tally: Tally {
                        succeeded: 2,
                        ..Tally::default()
                    }
                },
                ThroughputRow {
                    start: Millis(1_010),
                    queue: "b".into(),
                    tally: Tally {
                        enqueued: 3,
                        succeeded: 0,
                        failed: 1
                    }
                },
            ]
        );
    }

    #[test]
    fn windows_are_bounded() {
        assert!(check_window(Millis(0), Millis(3_600_000), 5_000).is_ok());
        assert!(check_window(Millis(0), Millis(3_600_001), 5_000).is_err());
        assert!(check_window(Millis(0), Millis(10), 0).is_err());
        assert!(check_window(Millis(10), Millis(0), 5).is_err());
    }
}
