//! A decaying quantile sketch: DDSketch's logarithmic buckets (every quantile within a
//! relative error `alpha` of a true sample) with exponential forgetting, so that a
//! drifting duration is followed rather than averaged over its whole history.
//!
//! Forgetting without touching every bucket on every update: an observation at time
//! `t` is added with weight `2^((t - origin) / half_life)`, so older weights shrink
//! *relative* to newer ones, which is all a quantile needs. When the weights grow large
//! the sketch rescales itself once and moves its origin. Two sketches with the same
//! parameters merge by adding their buckets at a common origin.

use serde::{Deserialize, Serialize};

/// Weights above this are rescaled (far from f64's range, so sums stay exact enough).
const RESCALE_ABOVE: f64 = 1e100;

/// Values at or below this go to the zero bucket (durations are in milliseconds: a
/// hundredth of a millisecond is "instant").
const MIN_VALUE: f64 = 0.01;

/// A mergeable quantile sketch with relative accuracy and exponential decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecayingSketch {
    /// `ln(gamma)`, gamma = (1 + alpha) / (1 - alpha).
    ln_gamma: f64,
    /// Half-life of an observation's weight, in milliseconds (0 = no decay).
    half_life_ms: f64,
    /// Bucket index of `bins[0]`.
    offset: i32,
    /// Weights per bucket, contiguous from `offset`.
    bins: Vec<f64>,
    /// Weight of values at or below [`MIN_VALUE`].
    zero: f64,
    /// Sum of all weights.
    total: f64,
    /// The time (ms) at which a new observation weighs 1.
    origin_ms: i64,
    /// Most buckets kept: past it the lowest buckets are folded together (the high
    /// quantiles, which timeouts use, keep their accuracy).
    max_bins: usize,
    /// Plain number of observations (no decay), for "enough data" checks.
    count: u64,
}

impl DecayingSketch {
    /// A sketch with relative accuracy `alpha` (e.g. 0.02), weights halving every
    /// `half_life_ms` (0 for none), and at most `max_bins` buckets.
    pub fn new(alpha: f64, half_life_ms: f64, max_bins: usize) -> Self {
        let alpha = alpha.clamp(1e-4, 0.5);
        Self {
            ln_gamma: ((1.0 + alpha) / (1.0 - alpha)).ln(),
            half_life_ms: half_life_ms.max(0.0),
            offset: 0,
            bins: Vec::new(),
            zero: 0.0,
            total: 0.0,
            origin_ms: 0,
            max_bins: max_bins.max(8),
            count: 0,
        }
    }

    /// Observations added so far (not decayed).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The decayed weight of all observations, expressed at time `now_ms` (an
    /// observation made at `now_ms` weighs 1).
    pub fn weight_at(&self, now_ms: i64) -> f64 {
        self.total / self.factor(now_ms)
    }

    /// `2^((t - origin) / half_life)`: the weight of an observation at `t`.
    fn factor(&self, t_ms: i64) -> f64 {
        if self.half_life_ms == 0.0 {
            return 1.0;
        }
        ((t_ms - self.origin_ms) as f64 / self.half_life_ms).exp2()
    }

    fn index(&self, value: f64) -> i32 {
        (value.ln() / self.ln_gamma).ceil() as i32
    }

    fn value_of(&self, index: i32) -> f64 {
        // The point of the bucket (gamma^(i-1), gamma^i] with the smallest relative error.
        let gamma = self.ln_gamma.exp();
        2.0 * (index as f64 * self.ln_gamma).exp() / (gamma + 1.0)
    }

    /// Adds one observation of `value` made at `t_ms`. Non-finite and negative values
    /// are ignored (they are not durations).
    pub fn add(&mut self, value: f64, t_ms: i64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        if self.count == 0 && self.total == 0.0 {
            self.origin_ms = t_ms;
        }
        let mut w = self.factor(t_ms);
        if w > RESCALE_ABOVE {
            self.rescale(t_ms);
            w = 1.0;
        }
        self.count += 1;
        self.total += w;
        if value <= MIN_VALUE {
            self.zero += w;
            return;
        }
        let i = self.index(value);
        if self.bins.is_empty() {
            self.offset = i;
            self.bins.push(0.0);
        } else if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.bins.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = i;
        } else if i >= self.offset + self.bins.len() as i32 {
            let new_len = (i - self.offset + 1) as usize;
            self.bins.resize(new_len, 0.0);
        }
        self.bins[(i - self.offset) as usize] += w;
        self.collapse();
    }

    /// Folds the lowest buckets together while there are more than `max_bins`.
    fn collapse(&mut self) {
        if self.bins.len() <= self.max_bins {
            return;
        }
        let extra = self.bins.len() - self.max_bins;
        let folded: f64 = self.bins[..=extra].iter().sum();
        self.bins.drain(..extra);
        self.bins[0] = folded;
        self.offset += extra as i32;
    }

    /// Moves the origin to `t_ms`, scaling every weight so relative weights hold.
    fn rescale(&mut self, t_ms: i64) {
        let f = 1.0 / self.factor(t_ms);
        for b in &mut self.bins {
            *b *= f;
        }
        self.zero *= f;
        self.total *= f;
        self.origin_ms = t_ms;
    }

    /// The `q`-quantile (0..=1) of the decayed distribution, `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.total;
        let mut seen = self.zero;
        if seen >= rank && self.zero > 0.0 {
            return Some(0.0);
        }
        for (k, w) in self.bins.iter().enumerate() {
            seen += w;
            if seen >= rank {
                return Some(self.value_of(self.offset + k as i32));
            }
        }
        self.bins
            .len()
            .checked_sub(1)
            .map(|k| self.value_of(self.offset + k as i32))
    }

    /// Adds `other`'s observations (both must share `alpha` and the half-life; a sketch
    /// with other parameters is refused, since its buckets mean other ranges).
    pub fn merge(&mut self, other: &DecayingSketch) -> Result<(), MergeError> {
        if (self.ln_gamma - other.ln_gamma).abs() > 1e-12
            || (self.half_life_ms - other.half_life_ms).abs() > 1e-9
        {
            return Err(MergeError);
        }
        if other.total == 0.0 {
            return Ok(());
        }
        if self.total == 0.0 {
            *self = DecayingSketch {
                max_bins: self.max_bins,
                ..other.clone()
            };
            self.collapse();
            return Ok(());
        }
        // Express `other`'s weights at our origin.
        let f = if self.half_life_ms == 0.0 {
            1.0
        } else {
            ((other.origin_ms - self.origin_ms) as f64 / self.half_life_ms).exp2()
        };
        for (k, w) in other.bins.iter().enumerate() {
            let i = other.offset + k as i32;
            if self.bins.is_empty() {
                self.offset = i;
                self.bins.push(0.0);
            } else if i < self.offset {
                let grow = (self.offset - i) as usize;
                self.bins.splice(0..0, std::iter::repeat_n(0.0, grow));
                self.offset = i;
            } else if i >= self.offset + self.bins.len() as i32 {
                self.bins.resize((i - self.offset + 1) as usize, 0.0);
            }
            self.bins[(i - self.offset) as usize] += w * f;
        }
        self.zero += other.zero * f;
        self.total += other.total * f;
        self.count += other.count;
        self.collapse();
        Ok(())
    }
}

/// Two sketches with different accuracy or half-life cannot be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sketches with different accuracy or half-life cannot be merged")]
pub struct MergeError;

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(f64::total_cmp);
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        let mut s = DecayingSketch::new(0.02, 0.0, 2048);
        let mut values: Vec<f64> = (1..=10_000).map(|i| (i as f64).powf(1.7)).collect();
        for v in &values {
            s.add(*v, 0);
        }
        for q in [0.5, 0.9, 0.99] {
            let want = exact(&mut values, q);
            let got = s.quantile(q).unwrap();
            assert!((got - want).abs() / want <= 0.021, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.count(), 10_000);
    }

    #[test]
    fn old_observations_fade_with_the_half_life() {
        let mut s = DecayingSketch::new(0.02, 60_000.0, 512);
        for t in 0..1000 {
            s.add(100.0, t);
        }
        // Ten half-lives later, 1000 slow runs outweigh the old fast ones by ~1000x.
        for t in 0..1000 {
            s.add(5000.0, 600_000 + t);
        }
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.03, "{p50}");
        // Without decay the median would sit between the two.
        let mut flat = DecayingSketch::new(0.02, 0.0, 512);
        for t in 0..1000 {
            flat.add(100.0, t);
            flat.add(5000.0, t);
        }
        assert!(flat.quantile(0.4).unwrap() < 200.0);
    }

    #[test]
    fn rescaling_keeps_quantiles() {
        let mut s = DecayingSketch::new(0.02, 1.0, 512);
        // 1 ms half-life over 10 s: weights pass 1e100 many times.
        for t in 0..10_000i64 {
            s.add(if t % 2 == 0 { 10.0 } else { 1000.0 }, t);
        }
        let p = s.quantile(0.99).unwrap();
        assert!(p.is_finite() && p > 0.0);
        assert!(s.total.is_finite());
    }

    #[test]
    fn merged_sketches_answer_as_one() {
        let mut a = DecayingSketch::new(0.02, 30_000.0, 512);
        let mut b = DecayingSketch::new(0.02, 30_000.0, 512);
        let mut one = DecayingSketch::new(0.02, 30_000.0, 512);
        for t in 0..2000i64 {
            let v = 1.0 + (t % 97) as f64 * 13.0;
            if t % 3 == 0 { &mut a } else { &mut b }.add(v, t * 10);
            one.add(v, t * 10);
        }
        a.merge(&b).unwrap();
        for q in [0.5, 0.9, 0.99] {
            let (x, y) = (a.quantile(q).unwrap(), one.quantile(q).unwrap());
            assert!((x - y).abs() / y < 1e-6, "q{q}: {x} vs {y}");
        }
        let other = DecayingSketch::new(0.05, 30_000.0, 512);
        assert_eq!(a.merge(&other), Err(MergeError));
    }

    #[test]
    fn bins_stay_bounded_and_high_quantiles_keep_accuracy() {
        let mut s = DecayingSketch::new(0.02, 0.0, 64);
        let mut values = Vec::new();
        for i in 0..5000 {
            let v = 1.1f64.powi(i % 200);
            values.push(v);
            s.add(v, 0);
        }
        assert!(s.bins.len() <= 64);
        let want = exact(&mut values, 0.99);
        let got = s.quantile(0.99).unwrap();
        assert!((got - want).abs() / want <= 0.021, "{got} vs {want}");
    }

    #[test]
    fn junk_is_ignored_and_zero_counts() {
        let mut s = DecayingSketch::new(0.02, 0.0, 64);
        assert_eq!(s.quantile(0.5), None);
        s.add(f64::NAN, 0);
        s.add(-1.0, 0);
        assert_eq!(s.count(), 0);
        s.add(0.0, 0);
        s.add(0.0, 0);
        s.add(50.0, 0);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert!(s.quantile(1.0).unwrap() > 48.0);
    }
}
