//! Jobs enqueued, succeeded and dead-lettered per 10 s over the last hour, per queue,
//! cluster-wide: read from the store's jobs (their enqueue and finish times, see
//! [`jobmesh::store::throughput`]) so a dashboard opened now shows the hour before it
//! opened, and shared by every caller through [`crate::shared_read`].
//!
//! An interval that ended a while ago no longer changes, so a re-read asks the store
//! only from the first interval still open (the current one and those that ended less
//! than [`SETTLED_MS`] ago: completions are recorded in batches, and a node's clock may
//! run behind): a refresh is one statement over the last few intervals, a node's first
//! read one over the hour.

use std::collections::BTreeMap;

use jobmesh::clock::Millis;
use jobmesh::store::throughput::Tally;
use jobmesh::store::{Store, StoreError};

/// The length of an interval.
pub const INTERVAL_MS: i64 = 10_000;
/// Intervals kept: 61 minutes, so that the oldest of 60 whole minutes is complete.
pub const INTERVALS: i64 = 366;
/// An interval that ended this long before a read is read no more.
pub const SETTLED_MS: i64 = 30_000;

/// One interval of the hour.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// Its start.
    pub start: Millis,
    /// What each queue with some did in it.
    pub by_queue: BTreeMap<String, Tally>,
    /// Whether it was read after it settled (it is not read again).
    pub settled: bool,
}

impl Interval {
    /// The sum over the queues `sees` lets through.
    pub fn total(&self, sees: impl Fn(&str) -> bool) -> Tally {
        let mut t = Tally::default();
        for (_, tally) in self.by_queue.iter().filter(|(q, _)| sees(q.as_str())) {
            t.add(tally);
        }
        t
    }
}

/// The intervals of the hour up to `now`, oldest first: the settled ones of `previous`
/// that lead the hour kept, the rest read from `store` in one call.
pub async fn read_hour(
    store: &dyn Store,
    previous: &[Interval],
    now: Millis,
) -> Result<Vec<Interval>, StoreError> {
    let current = now.0.div_euclid(INTERVAL_MS) * INTERVAL_MS;
    let first = current - (INTERVALS - 1) * INTERVAL_MS;
    let end = current + INTERVAL_MS;
    let settled: BTreeMap<i64, &Interval> = previous
        .iter()
        .filter(|i| i.settled)
        .map(|i| (i.start.0, i))
        .collect();
    // Keep the settled run from the start of the hour; read everything after it.
    let mut read_from = first;
    while read_from < end && settled.contains_key(&read_from) {
        read_from += INTERVAL_MS;
    }
    let rows = store
        .throughput(Millis(read_from), Millis(end), INTERVAL_MS)
        .await?;
    let mut fresh: BTreeMap<i64, BTreeMap<String, Tally>> = BTreeMap::new();
    for row in rows {
        fresh
            .entry(row.start.0)
            .or_default()
            .insert(row.queue, row.tally);
    }
    let mut out = Vec::with_capacity(INTERVALS as usize);
    let mut start = first;
    while start < end {
        if start < read_from {
            out.push(Interval::clone(settled[&start]));
        } else {
            out.push(Interval {
                start: Millis(start),
                by_queue: fresh.remove(&start).unwrap_or_default(),
                settled: now.0 >= start + INTERVAL_MS + SETTLED_MS,
            });
        }
        start += INTERVAL_MS;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_sums_the_queues_let_through() {
        let mut by_queue = BTreeMap::new();
        let t = |e, s, f| Tally {
            enqueued: e,
            succeeded: s,
            failed: f,
        };
        by_queue.insert("a".to_string(), t(1, 2, 3));
        by_queue.insert("b".to_string(), t(10, 20, 30));
        let i = Interval {
            start: Millis(0),
            by_queue,
            settled: true,
        };
        assert_eq!(i.total(|_| true), t(11, 22, 33));
        assert_eq!(i.total(|q| q == "b"), t(10, 20, 30));
    }
}
