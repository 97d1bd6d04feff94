//! Retry delays: polynomial backoff with jitter, as River and Sidekiq do
//! (`attempt^4` seconds by default), so that a burst of failures spreads out.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Largest `exponent`: polynomial growth beyond this saturates at `max_delay` within a
/// few attempts, so a larger value is a mistake rather than a policy.
pub const MAX_RETRY_EXPONENT: u32 = 10;

/// Largest `budget_ratio`: a hundred retries per first attempt is no budget at all.
pub const MAX_BUDGET_RATIO: f64 = 100.0;
/// Shortest `budget_window`: the window is counted in six slots.
pub const MIN_BUDGET_WINDOW: Duration = Duration::from_secs(1);
/// Longest `budget_window`.
pub const MAX_BUDGET_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Largest `budget_min`.
pub const MAX_BUDGET_MIN: u32 = 1_000_000;

/// How long to wait before attempt `n + 1` after attempt `n` failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// The delay grows as `attempt ^ exponent` units.
    pub exponent: u32,
    /// The unit of the polynomial.
    #[serde(with = "humantime_serde")]
    pub unit: Duration,
    /// Delays never exceed this (before jitter).
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Up to this fraction of the delay is added at random, in `0.0..=1.0`.
    pub jitter: f64,
    /// Learned delays: the node's retry model chooses each delay (waiting longer when
    /// retries of the kind and error class only succeed later) and holds retries to
    /// the kind's retry budget; the polynomial above is then unused. See
    /// `jobmesh::predict::policy::retry`.
    pub learned: bool,
    /// With `learned`: dead-letter a job at once, with the reason, when the model says
    /// no retry of its kind and error class succeeds (instead of spending its attempts).
    pub give_up_early: bool,
    /// With `learned`: the retry budget per kind allows this many retries soon after
    /// a failure per first attempt over `budget_window` ...
    pub budget_ratio: f64,
    /// ... plus this many (so a kind with few first attempts can still retry).
    pub budget_min: u32,
    /// The window the budget counts first attempts and retries over.
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            exponent: 4,
            unit: Duration::from_secs(1),
            max_delay: Duration::from_secs(24 * 3600),
            jitter: 0.1,
            learned: false,
            give_up_early: false,
            budget_ratio: 0.2,
            budget_min: 10,
            budget_window: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt, after `attempt` (1-based) failed.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_delay(attempt);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || base.is_zero() {
            return base;
        }
        base + base.mul_f64(rng.random_range(0.0..jitter))
    }

    /// The delay without jitter: `min(unit * attempt^exponent, max_delay)`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = (attempt.max(1) as u64).saturating_pow(self.exponent);
        let factor = u32::try_from(factor).unwrap_or(u32::MAX);
        self.unit.saturating_mul(factor).min(self.max_delay)
    }

    /// Checks the policy's fields, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "retry.jitter must be within 0.0..=1.0, got {}",
                self.jitter
            ));
        }
        if self.exponent > MAX_RETRY_EXPONENT {
            return Err(format!(
                "retry.exponent must be within 0..={MAX_RETRY_EXPONENT}, got {}",
                self.exponent
            ));
        }
        if self.give_up_early && !self.learned {
            return Err("retry.give_up_early needs retry.learned = true".into());
        }
        if !(0.0..=MAX_BUDGET_RATIO).contains(&self.budget_ratio) {
            return Err(format!(
                "retry.budget_ratio must be a number within 0.0..={MAX_BUDGET_RATIO}, got {}",
                self.budget_ratio
            ));
        }
        if self.budget_min > MAX_BUDGET_MIN {
            return Err(format!(
                "retry.budget_min must be within 0..={MAX_BUDGET_MIN}, got {}",
                self.budget_min
            ));
        }
        if !(MIN_BUDGET_WINDOW..=MAX_BUDGET_WINDOW).contains(&self.budget_window) {
            return Err(format!(
                "retry.budget_window must be within 1s..=24h, got {}",
                humantime_serde::re::humantime::format_duration(self.budget_window)
            ));
        }
        if self.unit.is_zero() && self.exponent > 0 {
            return Err("retry.unit must be greater than zero".into());
        }
        // A retry is scheduled like a delayed job: the same ten-year bound keeps its
        // `run_at` within what the store and the printers can hold.
        for (key, d) in [
            ("retry.unit", self.unit),
            ("retry.max_delay", self.max_delay),
        ] {
            if d > super::MAX_DELAY {
                return Err(format!(
                    "{key} must be at most 10 years ({} s), got {} s",
                    super::MAX_DELAY.as_secs(),
                    d.as_secs()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn grows_polynomially_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.base_delay(1), Duration::from_secs(1));
        assert_eq!(p.base_delay(2), Duration::from_secs(16));
        assert_eq!(p.base_delay(3), Duration::from_secs(81));
        assert_eq!(p.base_delay(1000), p.max_delay);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<_> = (0..100).map(|_| p.delay(3, &mut rng)).collect();
        let base = p.base_delay(3);
        assert!(delays.iter().all(|d| *d >= base && *d < base.mul_f64(1.1)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "jitter should spread delays");
    }

    #[test]
    fn rejects_delays_beyond_ten_years() {
        let p = RetryPolicy {
            max_delay: Duration::from_secs(11 * 366 * 86_400),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("retry.max_delay"));
        let p = RetryPolicy {
            unit: Duration::MAX,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("retry.unit"));
    }

    #[test]
    fn rejects_bad_jitter() {
        let p = RetryPolicy {
            jitter: 1.5,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("retry.jitter"));
    }
}
