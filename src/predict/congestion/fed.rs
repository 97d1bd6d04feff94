//! The congestion model as a live node feeds it: the jobs waiting on a queue are read
//! from the store (the node sees a job only when it takes one, so it cannot count them
//! itself), and each job this node takes is one of them leaving.
//!
//! [`FluidQueue::set_backlog`] takes a read of the store: the jobs waiting and when the
//! oldest of them became available. Between two reads the backlog is the last read less
//! the jobs this node took since ([`FluidQueue::on_taken`]); at the next read the
//! difference between what the store says and that expectation is the arrivals the node
//! did not see (exact on a single node; on several, the arrivals less the other nodes'
//! takes, so the backlog's growth rate `arrivals - capacity` stays right). A queue fed
//! this way answers from its state: its last wait is never taken instead (the node
//! learns a job's arrival when it takes it, so a guess scored then would be scored
//! against a wait already known, and the last wait would always win).

use super::{BUSY_TAU_MS, FluidQueue};

/// A read older than this is not compared with the next one: the arrivals in between
/// are not counted (a node resuming saved models, or a store outage, would otherwise
/// count a whole gap's change as a burst of arrivals).
pub const MAX_READ_GAP_MS: i64 = 30_000;

/// What the store said of a queue's waiting jobs at its last read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Fed {
    /// Jobs waiting at the read.
    pub waiting: f64,
    /// When the oldest of them became available.
    pub oldest_ms: Option<i64>,
    /// When the store was read.
    pub at_ms: i64,
    /// Jobs this node took since the read.
    pub taken: f64,
}

impl FluidQueue {
    /// The store read at `at_ms` that `waiting` jobs wait on `queue`, the oldest
    /// available since `oldest_ms`: the backlog from now on (see the module docs).
    pub fn set_backlog(&mut self, queue: &str, waiting: u64, oldest_ms: Option<i64>, at_ms: i64) {
        let s = self.s;
        let q = self.queue(queue);
        // The time since the last event was spent with the backlog held so far.
        q.tick(at_ms);
        let waiting = waiting as f64;
        if let Some(prev) = q.fed
            && at_ms >= prev.at_ms
            && at_ms - prev.at_ms <= MAX_READ_GAP_MS
        {
            let unseen = waiting - (prev.waiting - prev.taken);
            if unseen >= 1.0 {
                q.fast.add(at_ms, s.fast_tau_ms, unseen);
                q.slow.add(at_ms, s.slow_tau_ms, unseen);
                if s.seasonal {
                    q.season.add(at_ms, unseen, s.season_ms);
                }
            }
        }
        // A read with no new arrivals still closes the season's buckets that ended.
        if s.seasonal {
            q.season.roll(at_ms, s.season_ms);
        }
        q.fed = Some(Fed {
            waiting,
            oldest_ms: oldest_ms.filter(|_| waiting >= 1.0),
            at_ms,
            taken: 0.0,
        });
        q.backlog = waiting;
        // The node's own memory of arrivals is superseded by the store's, and so is the
        // record of the guesses scored on it (a saved and resumed model, which does not
        // keep the read, answers from its state too).
        q.pending.clear();
        q.errors = [0.0; 2];
    }

    /// This node took a job of `queue` at `at_ms` that had been available since
    /// `available_ms`: a start, and on a queue never read from the store also an arrival
    /// (learned late, so no guess is scored on it).
    pub fn on_taken(&mut self, queue: &str, available_ms: i64, at_ms: i64) {
        let s = self.s;
        let q = self.queue(queue);
        q.tick(at_ms);
        match &mut q.fed {
            Some(fed) => fed.taken += 1.0,
            None => {
                q.fast.add(available_ms, s.fast_tau_ms, 1.0);
                q.slow.add(available_ms, s.slow_tau_ms, 1.0);
                if s.seasonal {
                    q.season.add(available_ms, 1.0, s.season_ms);
                }
            }
        }
        let waited = (at_ms - available_ms).max(0) as f64;
        q.last_wait = Some(waited);
        if q.backlog >= 1.0 {
            q.busy_starts.add(at_ms, BUSY_TAU_MS, 1.0);
        }
        q.backlog = (q.backlog - 1.0).max(0.0);
        q.running += 1.0;
        q.started += 1;
        if q.running >= q.servers.0 || at_ms - q.servers.1 > s.servers_memory_ms {
            q.servers = (q.running, at_ms);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::predict::congestion::CongestionPredictor;

    /// Two workers on 500 ms jobs for a minute, each job taken as it came.
    pub(in crate::predict::congestion) fn steady(m: &mut FluidQueue, until: i64) {
        let mut t = until - 60_000;
        while t < until {
            for _ in 0..2 {
                m.on_taken("q", t, t);
            }
            t += 500;
            m.on_finish("q", t, 500.0);
            m.on_finish("q", t, 500.0);
        }
    }

    #[test]
    fn a_backlog_read_from_the_store_is_waited_behind() {
        let now = 1_000_000;
        let mut m = FluidQueue::default();
        steady(&mut m, now);
        assert!(m.predict_wait("q", now, 0).unwrap() < 1.0);
        // 200 jobs wait, the oldest for 2 s: 201 / (2 / 500 ms) ahead, 2 s at the head.
        m.set_backlog("q", 200, Some(now - 2_000), now);
        let w = m.predict_wait("q", now, 0).unwrap();
        assert!((w - 0.5 * (50_250.0 + 2_000.0)).abs() < 1_000.0, "{w}");
        // Taking jobs drains it between reads.
        for i in 0..100 {
            m.on_taken("q", now - 2_000, now + i);
        }
        assert_eq!(m.backlog("q"), Some((100.0, 100.0)));
        // An empty read: nobody waits.
        m.set_backlog("q", 0, None, now + 1_000);
        assert_eq!(m.backlog("q").unwrap().0, 0.0);
    }

    #[test]
    fn the_last_wait_never_answers_for_a_queue_read_from_the_store() {
        let now = 1_000_000;
        let mut m = FluidQueue::default();
        steady(&mut m, now);
        m.set_backlog("q", 300, Some(now - 100), now);
        // The jobs taken so far waited next to nothing.
        m.on_taken("q", now - 100, now + 10);
        let w = m.predict_wait("q", now + 20, 0).unwrap();
        assert!(w > 30_000.0, "{w}");
    }

    #[test]
    fn arrivals_the_node_did_not_see_are_counted_at_the_next_read() {
        let now = 1_000_000;
        let mut m = FluidQueue::default();
        steady(&mut m, now);
        let before = m.rates(&m.queues["q"], now, 0).unwrap().0;
        m.set_backlog("q", 10, Some(now), now);
        for i in 0..10 {
            m.on_taken("q", now, now + i);
        }
        // 40 more arrived and wait; the 10 taken were known.
        m.set_backlog("q", 40, Some(now + 500), now + 1_000);
        let after = m.rates(&m.queues["q"], now + 1_000, 0).unwrap().0;
        let added = (after - before * (-1_000.0 / 30_000.0f64).exp()) * 30_000.0;
        assert!((added - 40.0).abs() < 0.5, "{added}");
        // A read long after the last one counts no arrivals.
        let mut m2 = m.clone();
        m2.set_backlog("q", 1_000, None, now + 1_000 + MAX_READ_GAP_MS + 1);
        let gap = m2.queues["q"]
            .fast
            .at(now + 1_000 + MAX_READ_GAP_MS + 1, 30_000.0);
        let kept = m.queues["q"]
            .fast
            .at(now + 1_000 + MAX_READ_GAP_MS + 1, 30_000.0);
        assert!((gap - kept).abs() < 1e-9);
    }

    #[test]
    fn a_node_reading_the_store_learns_the_season_from_its_reads() {
        // The live path: the store is read every second, two workers take a job each a
        // second, and the arrivals (a day compressed to an hour: 1.5 a second for 45
        // minutes, 3 for 15) are only seen as the reads' growth. Five minutes before
        // the third rise, with nobody waiting, a job enqueued in 15 minutes is
        // predicted to wait past a 30 s SLO only by the model that learned the cycle.
        let hour = 3_600_000;
        let seasonal = super::super::FluidSettings {
            season_ms: hour,
            seasonal: true,
            ..super::super::FluidSettings::default()
        };
        let mut with = FluidQueue::new(seasonal);
        let mut without = FluidQueue::default();
        let now = 2 * hour + 40 * 60_000;
        let mut waiting = std::collections::VecDeque::new();
        let (mut next, mut running) = (0, 0);
        for t in (1000..=now).step_by(1000) {
            while next <= t {
                waiting.push_back(next);
                next += if next % hour < 45 * 60_000 { 666 } else { 333 };
            }
            for m in [&mut with, &mut without] {
                for _ in 0..running {
                    m.on_finish("q", t, 1000.0);
                }
                m.set_backlog("q", waiting.len() as u64, waiting.front().copied(), t);
            }
            running = 0;
            while running < 2 {
                let Some(available) = waiting.pop_front() else {
                    break;
                };
                running += 1;
                for m in [&mut with, &mut without] {
                    m.on_taken("q", available, t);
                }
            }
        }
        let slo = 30_000.0;
        assert!(waiting.len() < 2);
        assert!(with.predict_breach("q", now, 15 * 60_000, slo));
        assert!(!without.predict_breach("q", now, 15 * 60_000, slo));
        // The wait of a job enqueued now is the state's, season or not.
        assert_eq!(
            with.predict_wait("q", now, 0),
            without.predict_wait("q", now, 0)
        );
    }
}
