//! Phi-accrual failure detector (Hayashibara et al.; the Akka/Cassandra variant): the
//! suspicion level grows continuously with the time since the last arrival, scaled by
//! the observed distribution of arrival intervals.

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::Millis;

/// Arrival history of one peer and its suspicion level.
#[derive(Debug, Clone)]
pub struct PhiAccrual {
    intervals: VecDeque<f64>,
    window: usize,
    sum: f64,
    sum_sq: f64,
    last: Millis,
    min_std_dev: f64,
    acceptable_pause: f64,
}

impl PhiAccrual {
    /// A detector that last heard from the peer at `now` and expects arrivals every
    /// `expected` (seeded as one sample with a wide spread so a silent peer becomes
    /// suspect only after a few intervals).
    pub fn new(
        now: Millis,
        expected: Duration,
        window: usize,
        min_std_dev: Duration,
        acceptable_pause: Duration,
    ) -> Self {
        let mut d = Self {
            intervals: VecDeque::with_capacity(window.max(1)),
            window: window.max(1),
            sum: 0.0,
            sum_sq: 0.0,
            last: now,
            min_std_dev: min_std_dev.as_secs_f64() * 1000.0,
            acceptable_pause: acceptable_pause.as_secs_f64() * 1000.0,
        };
        let mean = expected.as_secs_f64() * 1000.0;
        // Two samples around the mean: first guesses, displaced as real arrivals come.
        d.push(mean * 0.75);
        d.push(mean * 1.25);
        d
    }

    fn push(&mut self, interval: f64) {
        if self.intervals.len() == self.window
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        self.sum_sq += interval * interval;
    }

    /// Records an arrival (heartbeat or successful probe) at `now`. Arrivals that are
    /// not later than the previous one are ignored (out-of-order delivery).
    pub fn heartbeat(&mut self, now: Millis) {
        if now <= self.last {
            return;
        }
        let interval = (now.0 - self.last.0) as f64;
        self.last = now;
        self.push(interval);
    }

    /// Forgets the time since the last arrival, as if the peer were heard at `now`.
    /// Used after a local pause, when silence is no evidence about the peer.
    pub fn reset_last(&mut self, now: Millis) {
        self.last = self.last.max(now);
    }

    /// When the peer was last heard.
    pub fn last_arrival(&self) -> Millis {
        self.last
    }

    /// Mean arrival interval in milliseconds.
    pub fn mean(&self) -> f64 {
        self.sum / self.intervals.len().max(1) as f64
    }

    fn std_dev(&self) -> f64 {
        let n = self.intervals.len().max(1) as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        var.sqrt().max(self.min_std_dev)
    }

    /// Suspicion level at `now`: `-log10(P(next arrival later than now))`. 1 means a
    /// 10% chance the peer is merely late, 8 means 1e-8.
    pub fn phi(&self, now: Millis) -> f64 {
        let elapsed = now.0.saturating_sub(self.last.0).max(0) as f64;
        let mean = self.mean() + self.acceptable_pause;
        let std = self.std_dev();
        let phi = phi_of_deviation((elapsed - mean) / std);
        if phi.is_finite() {
            phi.max(0.0)
        } else {
            f64::MAX
        }
    }

    /// Earliest time at which phi reaches the threshold whose normalised deviation is
    /// `y` (see [`deviation_for_phi`]) if nothing arrives: the next timer for this peer.
    /// O(1), so a node can schedule timers for many peers cheaply.
    pub fn suspect_at(&self, y: f64) -> Millis {
        let after = self.mean() + self.acceptable_pause + y * self.std_dev();
        // One extra millisecond absorbs rounding so phi is over the threshold then.
        let after = if after.is_finite() {
            after.clamp(0.0, 1e15) as i64 + 1
        } else {
            i64::MAX / 4
        };
        Millis(self.last.0.saturating_add(after))
    }
}

/// Phi as a function of the normalised deviation `y = (elapsed - mean) / std`, using the
/// logistic approximation of the normal CDF (Bowling et al.), as Akka does.
fn phi_of_deviation(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if y > 0.0 {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// The normalised deviation at which phi equals `threshold` (phi is monotone in it),
/// computed once per configuration by bisection.
pub fn deviation_for_phi(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0_f64, 100.0_f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi_of_deviation(mid) >= threshold {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det() -> PhiAccrual {
        PhiAccrual::new(
            Millis(0),
            Duration::from_millis(500),
            64,
            Duration::from_millis(100),
            Duration::from_millis(200),
        )
    }

    #[test]
    fn phi_grows_with_silence() {
        let mut d = det();
        for i in 1..=20 {
            d.heartbeat(Millis(i * 500));
        }
        let t = Millis(20 * 500);
        assert!(d.phi(t) < 0.5);
        assert!(d.phi(Millis(t.0 + 600)) < 8.0);
        assert!(d.phi(Millis(t.0 + 2000)) > 8.0);
        let mut prev = 0.0;
        for dt in (0..3000).step_by(50) {
            let p = d.phi(Millis(t.0 + dt));
            assert!(p >= prev, "phi must be monotone");
            prev = p;
        }
    }

    #[test]
    fn suspect_at_matches_phi() {
        let mut d = det();
        for i in 1..=10 {
            d.heartbeat(Millis(i * 500));
        }
        let y = deviation_for_phi(8.0);
        let at = d.suspect_at(y);
        assert!(d.phi(at) >= 8.0);
        assert!(d.phi(Millis(at.0 - 3)) < 8.0);
        let after = at.0 - 5000;
        assert!(after < 2000, "suspect within 2 s, got {after}");
    }

    #[test]
    fn ignores_out_of_order_arrivals() {
        let mut d = det();
        d.heartbeat(Millis(500));
        d.heartbeat(Millis(400));
        assert_eq!(d.last_arrival(), Millis(500));
    }
}
