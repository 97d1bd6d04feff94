//! Per-peer budgets: token buckets keyed by peer (or remote IP) in a bounded map, and a
//! log limiter.
//!
//! Every kind of inbound input that makes a node do work (emit an event, answer, dial,
//! publish) is charged to its sender's bucket first. A sender over budget gets nothing
//! more done for it than the drop and a counter, so the work a peer causes is bounded by
//! its budget, not by its send rate. Time is passed in, so the types are plain and tested
//! without a clock.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// A sustained rate with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held (and the initial amount).
    pub burst: f64,
}

impl Rate {
    /// `per_second` sustained, `burst` at once.
    pub(crate) const fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst }
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.last = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets keyed by peer, at most `capacity` of them.
///
/// A missing key is a full bucket, so forgetting a bucket that refilled loses nothing.
/// When the map is full, refilled buckets are dropped first; if none is, the fullest one
/// goes (the least recently charged, roughly), which gives that key a fresh burst: callers
/// bound the number of distinct keys that can reach them (connection caps) so this is at
/// worst a burst per admitted key, never per message.
#[derive(Debug)]
pub(crate) struct PeerBudget<K> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> PeerBudget<K> {
    /// Buckets of `rate`, at most `capacity` keys remembered.
    pub(crate) fn new(rate: Rate, capacity: usize) -> Self {
        Self {
            rate,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Charges one unit to `key`; `false` if its bucket is empty.
    pub(crate) fn try_take(&mut self, key: &K, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.take(self.rate, now);
        }
        if self.buckets.len() >= self.capacity {
            self.make_room(now);
        }
        let mut bucket = Bucket::full(self.rate, now);
        let ok = bucket.take(self.rate, now);
        self.buckets.insert(key.clone(), bucket);
        ok
    }

    /// Keys remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }

    fn make_room(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| {
            b.refill(rate, now);
            b.tokens < rate.burst
        });
        if self.buckets.len() < self.capacity {
            return;
        }
        let fullest = self
            .buckets
            .iter()
            .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
            .map(|(k, _)| k.clone());
        if let Some(k) = fullest {
            self.buckets.remove(&k);
        }
    }
}

/// One token bucket on its own (e.g. the streams of one connection).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: Rate,
    bucket: Bucket,
}

impl TokenBucket {
    /// A full bucket of `rate`.
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            bucket: Bucket::full(rate, now),
        }
    }

    /// Charges one unit; `false` if the bucket is empty.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.bucket.take(self.rate, now)
    }
}

/// Lets one log line through per `every`, and says how many were held back meanwhile, so
/// a flood of bad input costs one line per interval instead of one per input.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// At most one line per `every`.
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if a line may be written now, `n` being the lines held back since the
    /// last one; `None` (and one more held back) otherwise.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = PeerBudget::new(Rate::new(2.0, 3.0), 8);
        assert!((0..3).all(|_| b.try_take(&1, t0)));
        assert!(!b.try_take(&1, t0), "burst spent");
        assert!(!b.try_take(&1, t0 + 400 * MS), "0.8 tokens is not one");
        assert!(b.try_take(&1, t0 + 500 * MS), "one token after 1/rate");
        assert!(!b.try_take(&1, t0 + 500 * MS));
        // Refill stops at the burst.
        let later = t0 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.try_take(&1, later)).count(), 3);
    }

    #[test]
    fn peers_are_charged_separately() {
        let t0 = Instant::now();
        let mut b = PeerBudget::new(Rate::new(1.0, 1.0), 8);
        assert!(b.try_take(&"a", t0));
        assert!(!b.try_take(&"a", t0));
        assert!(b.try_take(&"b", t0), "a's flood costs b nothing");
    }

    #[test]
    fn a_flood_is_cut_to_the_budget_whatever_its_rate() {
        let t0 = Instant::now();
        let mut b = PeerBudget::new(Rate::new(5.0, 10.0), 8);
        // 10 000 inputs in one second from one peer: burst + rate get through.
        let passed = (0..10_000)
            .filter(|i| b.try_take(&7, t0 + Duration::from_micros(*i as u64 * 100)))
            .count();
        assert!((10..=15).contains(&passed), "{passed} passed");
    }

    #[test]
    fn the_map_stays_bounded_and_refilled_buckets_go_first() {
        let t0 = Instant::now();
        let mut b = PeerBudget::new(Rate::new(1.0, 2.0), 4);
        for k in 0..4 {
            b.try_take(&k, t0);
            b.try_take(&k, t0);
        }
        // Key 0 refills while the others are drained again.
        let t1 = t0 + Duration::from_secs(5);
        for k in 1..4 {
            b.try_take(&k, t1);
            b.try_take(&k, t1);
            b.try_take(&k, t1);
        }
        assert!(b.try_take(&99, t1));
        assert_eq!(b.len(), 4);
        // The drained keys kept their (empty) buckets: the newcomer replaced key 0.
        assert!(!b.try_take(&1, t1), "a drained bucket is not forgotten");
        for k in 100..10_000 {
            b.try_take(&k, t1);
        }
        assert!(b.len() <= 4, "{} buckets", b.len());
    }

    #[test]
    fn a_lone_bucket_refills() {
        let t0 = Instant::now();
        let mut g = TokenBucket::new(Rate::new(10.0, 2.0), t0);
        assert!(g.try_take(t0) && g.try_take(t0));
        assert!(!g.try_take(t0));
        assert!(g.try_take(t0 + 100 * MS));
    }

    #[test]
    fn the_log_limiter_counts_what_it_held_back() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(1));
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(l.allow(t0 + i * MS), None);
        }
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), Some(99));
        assert_eq!(l.allow(t0 + Duration::from_secs(3)), Some(0));
    }
}
