//! The seasonal part of a queue's arrivals: the rate by phase of a cycle (a day, or the
//! compressed "day" of a generated trace), for forecasts of the arrivals over the next
//! minutes that see a daily rise coming before it shows in the recent rate.
//!
//! The cycle is cut into [`BUCKETS`] equal buckets; each bucket's rate is smoothed over
//! the cycles seen (each pass through a bucket is one observation, weighted
//! [`CYCLE_ALPHA`]). A prefix sum over the buckets makes the arrivals expected over any
//! window an O(1) lookup: two evaluations of the cumulative arrivals, however long the
//! window. The prefix sum is rebuilt when a bucket closes (once per bucket, `BUCKETS`
//! additions), never on a prediction.

use serde::{Deserialize, Serialize};

/// Buckets per cycle (30 min each over a day, 75 s over a 1 h cycle): fine enough that
/// a 1 min horizon spans about one bucket on the generated traces, coarse enough that
/// each bucket sees tens of arrivals per pass on a busy queue.
pub const BUCKETS: usize = 48;

/// Weight of the latest pass through a bucket against the cycles before it: 0.5 follows
/// a change of the daily shape within two or three cycles while halving the noise of one
/// pass (a burst in one cycle counts half, then a quarter, ...).
pub const CYCLE_ALPHA: f64 = 0.5;

/// Arrival rate by phase of the cycle, for one queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Season {
    /// Smoothed arrivals per ms of each bucket (empty until the first bucket closes).
    rate: Vec<f64>,
    /// Passes seen of each bucket (saturating).
    seen: Vec<u16>,
    /// Buckets seen at least once: a full cycle when all were (kept, not counted on
    /// each forecast, so a forecast stays O(1)).
    filled: usize,
    /// Cumulative expected arrivals at the start of each bucket (`BUCKETS + 1` entries,
    /// the last the whole cycle's).
    prefix: Vec<f64>,
    /// The absolute bucket (time over the bucket length) being counted, if any.
    current: Option<i64>,
    /// Arrivals counted in it so far.
    count: f64,
}

impl Season {
    /// Counts `n` arrivals at `at_ms` (times in order; an earlier time counts in the
    /// current bucket).
    pub fn add(&mut self, at_ms: i64, n: f64, season_ms: i64) {
        self.roll(at_ms, season_ms);
        self.count += n;
    }

    /// Closes the buckets that ended before `now_ms`: each takes its count as one pass;
    /// those passed with no event had no arrivals (at most a cycle of them is written:
    /// longer gaps hold no more information).
    pub fn roll(&mut self, now_ms: i64, season_ms: i64) {
        let len = bucket_ms(season_ms);
        let k = now_ms.div_euclid(len);
        let Some(cur) = self.current else {
            self.current = Some(k);
            self.count = 0.0;
            return;
        };
        if k <= cur {
            return;
        }
        if self.rate.len() != BUCKETS {
            self.rate = vec![0.0; BUCKETS];
            self.seen = vec![0; BUCKETS];
        }
        let first_empty = (k - cur - 1).min(BUCKETS as i64);
        self.observe(cur, self.count / len as f64);
        for b in (k - first_empty)..k {
            self.observe(b, 0.0);
        }
        self.current = Some(k);
        self.count = 0.0;
        self.rebuild(len as f64);
    }

    fn observe(&mut self, bucket: i64, rate: f64) {
        let i = bucket.rem_euclid(BUCKETS as i64) as usize;
        let r = &mut self.rate[i];
        *r = if self.seen[i] == 0 {
            self.filled += 1;
            rate
        } else {
            *r + CYCLE_ALPHA * (rate - *r)
        };
        self.seen[i] = self.seen[i].saturating_add(1);
    }

    fn rebuild(&mut self, len: f64) {
        self.prefix.clear();
        self.prefix.push(0.0);
        let mut sum = 0.0;
        for r in &self.rate {
            sum += r * len;
            self.prefix.push(sum);
        }
    }

    /// Whether every bucket was seen at least once: a full cycle.
    pub fn ready(&self) -> bool {
        self.filled == BUCKETS
    }

    /// The arrivals expected over `[from_ms, to_ms)` from the cycles seen, once a full
    /// cycle was (else `None`). O(1).
    pub fn arrivals(&self, from_ms: i64, to_ms: i64, season_ms: i64) -> Option<f64> {
        (self.ready() && self.prefix.len() == BUCKETS + 1).then(|| {
            let len = bucket_ms(season_ms);
            self.cumulative(to_ms, len) - self.cumulative(from_ms, len)
        })
    }

    /// Expected arrivals from the start of the epoch's cycle 0 to `t_ms`.
    fn cumulative(&self, t_ms: i64, len: i64) -> f64 {
        let k = t_ms.div_euclid(len);
        let cycles = k.div_euclid(BUCKETS as i64) as f64;
        let i = k.rem_euclid(BUCKETS as i64) as usize;
        let within = (t_ms - k * len) as f64;
        cycles * self.prefix[BUCKETS] + self.prefix[i] + self.rate[i] * within
    }
}

/// One bucket's length (ms), at least 1.
fn bucket_ms(season_ms: i64) -> i64 {
    (season_ms / BUCKETS as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    /// Arrivals at `rate(t)` per second, one event a second, from `from_ms` to
    /// `until_ms`.
    fn feed(s: &mut Season, from_ms: i64, until_ms: i64, rate: impl Fn(i64) -> f64) {
        for t in (from_ms..until_ms).step_by(1000) {
            s.add(t, rate(t), HOUR);
        }
    }

    #[test]
    fn a_full_cycle_is_needed_and_the_window_sums_the_phases() {
        let mut s = Season::default();
        // One a second in the first half of the hour, three in the second.
        let rate = |t: i64| {
            if t.rem_euclid(HOUR) < HOUR / 2 {
                1.0
            } else {
                3.0
            }
        };
        feed(&mut s, 0, HOUR / 2, rate);
        assert_eq!(s.arrivals(0, 1000, HOUR), None);
        feed(&mut s, HOUR / 2, 2 * HOUR + 1000, rate);
        assert!(s.ready());
        // Ten minutes across the step: five at 1/s, five at 3/s.
        let t = 2 * HOUR + 25 * 60_000;
        let n = s.arrivals(t, t + 10 * 60_000, HOUR).unwrap();
        assert!((n - 1200.0).abs() < 10.0, "{n}");
        // Windows longer than a cycle wrap around it.
        let n = s.arrivals(t, t + 2 * HOUR, HOUR).unwrap();
        assert!((n - 14_400.0).abs() < 20.0, "{n}");
    }

    #[test]
    fn silent_buckets_count_as_no_arrivals() {
        let mut s = Season::default();
        s.add(0, 10.0, HOUR);
        s.add(HOUR + 5, 1.0, HOUR);
        assert!(s.ready());
        let n = s.arrivals(HOUR + 10, 2 * HOUR, HOUR).unwrap();
        assert!(n < 11.0, "{n}");
    }
}
