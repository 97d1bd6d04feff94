//! When the maintenance leader reads the queue counts: every counts interval for its
//! metrics, and, while a reader wishes for fresher ones (an API process with dashboards
//! open, see [`jobmesh::metrics::posted_counts`]), every
//! [`fresh_every`](jobmesh::metrics::posted_counts::fresh_every). A plain state machine
//! the maintenance actor drives and tests drive without a store.

use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::metrics::posted_counts::{fresh_every, fresh_within};

/// How often a leader looks for a wish (a one-row read).
const WISH_CHECK: Duration = Duration::from_secs(1);

/// The counts rounds of one node.
#[derive(Debug)]
pub(crate) struct CountsRounds {
    /// The interval without a wish.
    idle_every: Duration,
    /// The maintenance round interval.
    round: Duration,
    next_idle: Millis,
    /// When the last read started and how long it took.
    last_read: Option<(Millis, Duration)>,
    /// The age a reader wants the counts within, as last seen.
    wish: Option<Duration>,
    next_wish_check: Millis,
    /// Whether this node held the leader lease at its last round.
    leading: bool,
}

impl CountsRounds {
    /// Rounds `idle_every` apart without a wish, the first one at `now`.
    pub(crate) fn new(idle_every: Duration, round: Duration, now: Millis) -> Self {
        Self {
            idle_every,
            round,
            next_idle: now,
            last_read: None,
            wish: None,
            next_wish_check: now,
            leading: false,
        }
    }

    /// Whether to look for a wish now: only a leader does, once per second.
    pub(crate) fn look_for_wish(&mut self, now: Millis) -> bool {
        if !self.leading || now < self.next_wish_check {
            return false;
        }
        self.next_wish_check = now.plus(WISH_CHECK);
        true
    }

    /// What the last look found.
    pub(crate) fn wish_seen(&mut self, wish: Option<Duration>) {
        self.wish = wish.filter(|w| !w.is_zero());
    }

    /// Whether a round is due at `now`.
    pub(crate) fn due(&self, now: Millis) -> bool {
        if now >= self.next_idle {
            return true;
        }
        match (self.leading, self.wish, self.last_read) {
            (true, Some(wish), Some((at, took))) => now.since(at) >= fresh_every(wish, took),
            (true, Some(_), None) => true,
            _ => false,
        }
    }

    /// A round starts at `now`: the next one without a wish is an interval away, or ten
    /// times the last read's time if that is longer (the last minute's finishes at
    /// 10,000 jobs/s took 1.6 s on Postgres: a read must not take more than a tenth of
    /// the leader's store time, with or without a wish).
    pub(crate) fn started(&mut self, now: Millis) {
        let slow = self.last_read.map_or(Duration::ZERO, |(_, took)| took * 10);
        self.next_idle = now.plus(self.idle_every.max(slow));
    }

    /// Whether the round found this node leading.
    pub(crate) fn led(&mut self, leading: bool) {
        self.leading = leading;
        if !leading {
            self.wish = None;
        }
    }

    /// The round read the counts at `at` in `took`.
    pub(crate) fn read(&mut self, at: Millis, took: Duration) {
        self.last_read = Some((at, took));
    }

    /// How old the counts get while the wish holds (zero without one: readers then
    /// take a post only within their own limit), for the post to say.
    pub(crate) fn fresh_within(&self) -> Duration {
        match (self.wish, self.last_read) {
            (Some(wish), Some((_, took))) => fresh_within(wish, took, self.round),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn at(ms: i64) -> Millis {
        Millis(ms)
    }

    #[test]
    fn without_a_wish_rounds_come_an_interval_apart() {
        let mut r = CountsRounds::new(S * 15, S / 2, at(0));
        assert!(r.due(at(0)));
        r.started(at(0));
        r.led(true);
        r.read(at(0), Duration::from_millis(100));
        assert!(!r.due(at(14_999)));
        assert!(r.due(at(15_000)));
        assert_eq!(r.fresh_within(), Duration::ZERO);
    }

    #[test]
    fn a_slow_count_spaces_the_rounds_to_ten_reads_apart() {
        let mut r = CountsRounds::new(S * 15, S / 2, at(0));
        r.started(at(0));
        r.led(true);
        r.read(at(0), S * 4);
        r.started(at(4_000));
        assert!(!r.due(at(43_999)));
        assert!(r.due(at(44_000)));
    }

    #[test]
    fn a_wish_makes_a_leader_reread_twice_per_wished_age_and_say_how_fresh() {
        let mut r = CountsRounds::new(S * 15, S / 2, at(0));
        r.started(at(0));
        r.led(true);
        r.read(at(0), Duration::from_millis(100));
        assert!(r.look_for_wish(at(100)));
        assert!(!r.look_for_wish(at(600)), "once per second");
        r.wish_seen(Some(S * 2));
        assert!(!r.due(at(999)));
        assert!(r.due(at(1_000)));
        assert_eq!(r.fresh_within(), Duration::from_millis(1_600));
        r.wish_seen(None);
        assert!(!r.due(at(1_000)), "the wish lapsed");
    }

    #[test]
    fn a_follower_neither_looks_for_wishes_nor_reads_for_them() {
        let mut r = CountsRounds::new(S * 15, S / 2, at(0));
        r.started(at(0));
        r.led(true);
        r.wish_seen(Some(S * 2));
        r.led(false);
        r.read(at(0), Duration::from_millis(100));
        assert!(!r.look_for_wish(at(5_000)));
        assert!(!r.due(at(5_000)));
        assert!(r.due(at(15_000)), "but keeps trying for the lease");
    }
}
