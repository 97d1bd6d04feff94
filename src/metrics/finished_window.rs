//! The jobs finished in the last minute, per queue and final state, kept by the
//! maintenance leader across its counts rounds so that a round reads only what finished
//! since the last one.
//!
//! Counting the whole minute at every round costs as much as the minute held: at
//! 10,000 jobs/s, 600,000 index entries, most on pages too new for the visibility map,
//! so 1.65 s per Postgres read. The window is kept instead as one-second slices. A
//! slice that ended more than [`SETTLE`] ago is *settled*: read once, kept, and dropped
//! when it leaves the window. Each round reads the slices settled since the last round
//! in one grouped statement, and the open tail after them (at most [`SETTLE`] plus a
//! round's interval) in another, so a round costs the jobs finished in a few seconds,
//! whatever the rate.
//!
//! What a recount would see and a settled slice does not: a finish committed more than
//! [`SETTLE`] after the time it carries (a completion batch held that long by a store
//! outage, or a node's clock that far behind the others'), and a dead letter redriven
//! after its slice settled (the recount no longer sees it as discarded; the window
//! still counts its dead-lettering, which did happen in that minute). A new leader, or
//! a leader back after a gap, reads every unsettled slice of the window at once.

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::Millis;
use crate::store::{Counts, FinishedSlice, Store, StoreError};

/// How long after a slice ends it is read for the last time.
pub const SETTLE: Duration = Duration::from_secs(5);
/// The slices' length: the window's start is this precise.
pub const SLICE: Duration = Duration::from_secs(1);

/// The finishes of a sliding window, read a little at a time (see the module docs).
#[derive(Debug, Clone)]
pub struct FinishedWindow {
    window_ms: i64,
    slice_ms: i64,
    settle_ms: i64,
    /// Settled slices with some finishes, oldest first.
    settled: VecDeque<FinishedSlice>,
    /// Where the settled part ends (every slice before it is settled or empty).
    settled_until: Option<Millis>,
}

/// The statements one read makes, worked out before any IO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// The window's first slice.
    start: Millis,
    /// Slices `[from, to)` to settle now, if any.
    settle: Option<(Millis, Millis)>,
    /// The open tail's start: finishes from here on are read every round.
    tail: Millis,
}

impl FinishedWindow {
    /// A window of `window` kept in [`SLICE`]s, settled after [`SETTLE`].
    pub fn new(window: Duration) -> Self {
        Self::with(window, SLICE, SETTLE)
    }

    /// A window that settles nothing: every read counts the whole window (a reader that
    /// reads once, such as an API process with no leader to serve it).
    pub fn recount(window: Duration) -> Self {
        Self::with(window, Duration::from_millis(1), Duration::MAX)
    }

    fn with(window: Duration, slice: Duration, settle: Duration) -> Self {
        Self {
            window_ms: millis(window),
            slice_ms: millis(slice).max(1),
            settle_ms: millis(settle),
            settled: VecDeque::new(),
            settled_until: None,
        }
    }

    /// The window's length (ms), as posted. A kept window starts at its first whole
    /// slice, so it spans up to a slice less (59-60 s of a minute: a rate over the
    /// nominal length reads up to 1.7 % low); readers compare posts by this length.
    pub fn window_ms(&self) -> u64 {
        self.window_ms.max(0) as u64
    }

    /// The finishes per queue and final state from the start of the window's first
    /// whole slice before `now` on, reading only what is not settled yet.
    pub async fn read(&mut self, store: &dyn Store, now: Millis) -> Result<Counts, StoreError> {
        let plan = self.plan(now);
        while self
            .settled
            .front()
            .is_some_and(|s| s.start.0 < plan.start.0)
        {
            self.settled.pop_front();
        }
        if let Some((from, to)) = plan.settle {
            let slices = store.finished_slices(from, to, self.slice_ms).await?;
            self.settled.extend(slices);
            self.settled_until = Some(to);
        }
        let tail = store
            .finished_slices(plan.tail, Millis(i64::MAX), i64::MAX)
            .await?;
        let mut counts = Counts::new();
        for slice in self.settled.iter().chain(&tail) {
            add(&mut counts, &slice.counts);
        }
        Ok(counts)
    }

    fn plan(&self, now: Millis) -> Plan {
        let start = Millis(ceil_to(now.0.saturating_sub(self.window_ms), self.slice_ms));
        let settled_until = self
            .settled_until
            .map_or(start, |u| Millis(u.0.max(start.0)));
        let settle_end = floor_to(now.0.saturating_sub(self.settle_ms), self.slice_ms);
        let settle = (settle_end > settled_until.0).then_some((settled_until, Millis(settle_end)));
        let tail = settle.map_or(settled_until, |(_, to)| to);
        Plan {
            start,
            settle,
            tail,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step).saturating_mul(step)
}

fn ceil_to(t: i64, step: i64) -> i64 {
    let f = floor_to(t, step);
    if f == t { f } else { f.saturating_add(step) }
}

fn add(into: &mut Counts, counts: &Counts) {
    for (queue, states) in counts {
        let q = into.entry(queue.clone()).or_default();
        for (state, n) in states {
            *q.entry(*state).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> FinishedWindow {
        FinishedWindow::new(Duration::from_secs(60))
    }

    #[test]
    fn a_first_read_settles_all_but_the_last_seconds_and_reads_the_rest_as_the_tail() {
        let p = window().plan(Millis(100_500));
        assert_eq!(p.start, Millis(41_000));
        assert_eq!(p.settle, Some((Millis(41_000), Millis(95_000))));
        assert_eq!(p.tail, Millis(95_000));
    }

    #[test]
    fn a_later_read_settles_only_the_slices_that_ended_since() {
        let mut w = window();
        w.settled_until = Some(Millis(95_000));
        let p = w.plan(Millis(103_200));
        assert_eq!(p.settle, Some((Millis(95_000), Millis(98_000))));
        assert_eq!(p.tail, Millis(98_000));
        // Within the same second nothing new settles: the tail alone is read.
        w.settled_until = Some(Millis(98_000));
        let p = w.plan(Millis(103_900));
        assert_eq!(p.settle, None);
        assert_eq!(p.tail, Millis(98_000));
    }

    #[test]
    fn a_leader_back_after_a_gap_starts_from_the_window_not_from_its_old_slices() {
        let mut w = window();
        w.settled_until = Some(Millis(10_000));
        let p = w.plan(Millis(500_000));
        assert_eq!(p.settle, Some((Millis(440_000), Millis(495_000))));
    }

    #[test]
    fn a_clock_that_steps_back_settles_nothing_twice() {
        let mut w = window();
        w.settled_until = Some(Millis(95_000));
        let p = w.plan(Millis(90_000));
        assert_eq!(p.settle, None);
        assert_eq!(p.tail, Millis(95_000));
    }

    #[test]
    fn a_recount_reads_the_whole_window_as_its_tail() {
        let w = FinishedWindow::recount(Duration::from_secs(60));
        let p = w.plan(Millis(100_500));
        assert_eq!(p.settle, None);
        assert_eq!(p.tail, Millis(40_500));
    }
}
