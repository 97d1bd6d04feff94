//! Incidents over time: how many jobs were rescued, workers crashed and restarted and
//! nodes evicted in each interval of a window, cluster-wide, read from the lifecycle
//! events (their `at`), so a dashboard opened now shows the rate of trouble before it
//! opened.
//!
//! Each backend answers with one grouped count over a partial index on the event time
//! that holds only these kinds (Postgres migration 0023, SQLite 0020): they are rare
//! next to a job's own events, so the index costs the hot path nothing (no job's
//! claim or finish enters it) and a read visits only the incidents of the window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::event::EventKind;

/// The kinds counted, in the order of [`Incidents`]' fields.
pub const KINDS: [EventKind; 4] = [
    EventKind::JobRescued,
    EventKind::WorkerCrashed,
    EventKind::WorkerRestarted,
    EventKind::NodeEvicted,
];

/// The partial index's predicate, written once for both backends' SQL (SQLite uses a
/// partial index only when a query repeats its predicate word for word).
macro_rules! incident_kinds_sql {
    () => {
        "kind IN ('job.rescued', 'worker.crashed', 'worker.restarted', 'node.evicted')"
    };
}
pub(crate) use incident_kinds_sql;

/// What happened in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incidents {
    /// Jobs rescued: a lapsed or revoked lease gave the job back to its queue.
    pub rescued: u64,
    /// Workers that crashed (panic or error).
    pub worker_crashed: u64,
    /// Crashed workers that their supervisor restarted.
    pub worker_restarted: u64,
    /// Node evictions recorded (one per recording node and certificate).
    pub node_evicted: u64,
}

impl Incidents {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == Incidents::default()
    }

    fn add(&mut self, kind: &str, n: u64) {
        match kind {
            "job.rescued" => self.rescued += n,
            "worker.crashed" => self.worker_crashed += n,
            "worker.restarted" => self.worker_restarted += n,
            "node.evicted" => self.node_evicted += n,
            _ => {}
        }
    }
}

/// One interval's incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRow {
    /// The interval's start.
    pub start: Millis,
    /// What happened in it (never empty).
    pub incidents: Incidents,
}

/// Rows `(interval index from `from`, kind, count)` as [`IncidentRow`]s, by interval;
/// a kind this version does not count is skipped.
pub(crate) fn merge(
    rows: impl IntoIterator<Item = (i64, String, i64)>,
    from: Millis,
    interval_ms: i64,
) -> Vec<IncidentRow> {
    let mut by: BTreeMap<i64, Incidents> = BTreeMap::new();
    for (index, kind, n) in rows {
        by.entry(index).or_default().add(&kind, n.max(0) as u64);
    }
    by.into_iter()
        .filter(|(_, i)| !i.is_empty())
        .map(|(index, incidents)| IncidentRow {
            start: Millis(from.0 + index * interval_ms),
            incidents,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_names_every_kind_counted() {
        for k in KINDS {
            assert!(
                incident_kinds_sql!().contains(&format!("'{}'", k.as_str())),
                "{}",
                k.as_str()
            );
        }
    }

    #[test]
    fn rows_merge_by_interval_and_unknown_kinds_are_skipped() {
        let rows = vec![
            (2, "worker.crashed".to_string(), 2),
            (0, "job.rescued".to_string(), 5),
            (2, "worker.restarted".to_string(), 1),
            (1, "job.enqueued".to_string(), 9),
            (0, "node.evicted".to_string(), 1),
        ];
        let merged = merge(rows, Millis(1_000), 60_000);
        assert_eq!(
            merged,
            vec![
                IncidentRow {
                    start: Millis(1_000),
                    incidents: Incidents {
                        rescued: 5,
                        node_evicted: 1,
                        ..Incidents::default()
                    }
                },
                IncidentRow {
                    start: Millis(121_000),
                    incidents: Incidents {
                        worker_crashed: 2,
                        worker_restarted: 1,
                        ..Incidents::default()
                    }
                },
            ]
        );
    }
}
