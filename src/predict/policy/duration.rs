//! Decisions from the duration model: the default timeout of a kind, the lease length
//! of a claim, and the ETA of a running attempt.
//!
//! A learned timeout is used only when the job sets none (a job's own timeout always
//! wins); it is the kind's p99.9 times a margin, never below `min_timeout` and never
//! above `workers.default_timeout` (the learned value can only tighten the configured
//! default, so a slow kind is never cut shorter than before). A learned lease outlives
//! most runs (three times the p99, so most runs end before the first renewal at a third
//! of the lease), within `min_lease..=max_lease`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::predict::duration::{DurationKey, SketchDuration};

/// `[workers.learned]`: which decisions use the duration model, and their bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurationPolicy {
    /// Learn a default timeout per kind (for jobs that set none).
    pub timeout: bool,
    /// The learned timeout is the p99.9 of the kind's runs times this.
    pub timeout_margin: f64,
    /// The learned timeout is never below this.
    #[serde(with = "humantime_serde")]
    pub min_timeout: Duration,
    /// Runs of a (kind, queue) seen before its durations decide anything.
    pub min_runs: u64,
    /// Learn the lease length from the runs of the node's queues.
    pub lease: bool,
    /// Shortest learned lease.
    #[serde(with = "humantime_serde")]
    pub min_lease: Duration,
    /// Longest learned lease (a lost node's jobs wait up to a lease to be rescued).
    #[serde(with = "humantime_serde")]
    pub max_lease: Duration,
}

impl Default for DurationPolicy {
    fn default() -> Self {
        Self {
            timeout: false,
            timeout_margin: 3.0,
            min_timeout: Duration::from_secs(1),
            min_runs: 50,
            lease: false,
            min_lease: Duration::from_secs(5),
            max_lease: Duration::from_secs(120),
        }
    }
}

/// Largest `timeout_margin`: beyond it a learned timeout is the configured default
/// for any kind, and the setting a typo.
pub const MAX_TIMEOUT_MARGIN: f64 = 1000.0;

impl DurationPolicy {
    /// Checks the fields, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1.0..=MAX_TIMEOUT_MARGIN).contains(&self.timeout_margin) {
            return Err(format!(
                "workers.learned.timeout_margin must be within 1.0..={MAX_TIMEOUT_MARGIN}, got {}",
                self.timeout_margin
            ));
        }
        if self.min_timeout.is_zero() {
            return Err("workers.learned.min_timeout must be greater than zero".into());
        }
        if self.min_runs == 0 {
            return Err("workers.learned.min_runs must be at least 1".into());
        }
        if self.min_lease < Duration::from_millis(100) {
            return Err("workers.learned.min_lease must be at least 100ms".into());
        }
        if self.min_lease > self.max_lease {
            return Err(format!(
                "workers.learned.min_lease ({} ms) must not exceed workers.learned.max_lease ({} ms)",
                self.min_lease.as_millis(),
                self.max_lease.as_millis()
            ));
        }
        if self.max_lease > Duration::from_secs(86_400) {
            return Err("workers.learned.max_lease must be at most 1day".into());
        }
        Ok(())
    }

    /// The timeout of an attempt of `key`: the job's own when it sets one, else the
    /// learned one when enabled and known, else `default`.
    pub fn attempt_timeout(
        &self,
        model: &SketchDuration,
        key: DurationKey<'_>,
        job_timeout: Option<Duration>,
        default: Duration,
    ) -> Duration {
        if let Some(t) = job_timeout {
            return t;
        }
        if !self.timeout {
            return default;
        }
        self.learned_timeout(model, key, default).unwrap_or(default)
    }

    /// The learned timeout of `key`, once it has `min_runs` runs: p99.9 times the
    /// margin, within `min_timeout..=default` (see the module docs).
    pub fn learned_timeout(
        &self,
        model: &SketchDuration,
        key: DurationKey<'_>,
        default: Duration,
    ) -> Option<Duration> {
        let (p999, runs) = model.quantile(key, 0.999)?;
        if runs < self.min_runs || !p999.is_finite() {
            return None;
        }
        let t = Duration::from_secs_f64((p999 * self.timeout_margin / 1000.0).clamp(0.0, 1e9));
        Some(t.max(self.min_timeout).min(default.max(self.min_timeout)))
    }

    /// The lease of a claim on `queues`: three times the longest p99 of the kinds seen
    /// on them (with `min_runs` runs), within `min_lease..=max_lease`; `configured`
    /// when disabled or nothing is known yet.
    pub fn lease_for(
        &self,
        model: &SketchDuration,
        queues: &[String],
        configured: Duration,
    ) -> Duration {
        if !self.lease {
            return configured;
        }
        let longest = model
            .quantiles_on(queues, 0.99)
            .filter(|(_, runs)| *runs >= self.min_runs)
            .map(|(p99, _)| p99)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        match longest {
            Some(p99) if p99.is_finite() => {
                Duration::from_secs_f64((3.0 * p99 / 1000.0).clamp(0.0, 1e9))
                    .clamp(self.min_lease, self.max_lease)
            }
            _ => configured,
        }
    }
}

/// The lease length a node claims and renews with, following the learned length without
/// letting a lease granted under an earlier, shorter length lapse: until every lease
/// granted before a change is past its end, renewals keep the shortest cadence in use.
/// A learned length is adopted only when it differs from the current one by more than a
/// quarter (leases do not move with every wobble of a p99).
#[derive(Debug, Clone)]
pub struct LeaseLength {
    current: Duration,
    /// The shortest length leases may still be held under, and until when.
    shortest: Duration,
    shortest_until: Millis,
}

impl LeaseLength {
    /// Starts at the configured lease.
    pub fn new(configured: Duration) -> Self {
        Self {
            current: configured,
            shortest: configured,
            shortest_until: Millis(i64::MIN),
        }
    }

    /// The length new claims and renewals use.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Moves to `learned` at `now` (see the type's docs); whether it did.
    pub fn adopt(&mut self, learned: Duration, now: Millis) -> bool {
        let (a, b) = (learned.as_secs_f64(), self.current.as_secs_f64());
        if (a - b).abs() <= b / 4.0 {
            return false;
        }
        // Leases granted until now may be held until now + the current length.
        self.shortest = if now < self.shortest_until {
            self.shortest.min(self.current)
        } else {
            self.current
        };
        self.shortest_until = self.shortest_until.max(now.plus(self.current));
        self.current = learned;
        true
    }

    /// How often held leases must be renewed at `now`: a third of the shortest length
    /// a held lease may have.
    pub fn renew_every(&self, now: Millis) -> Duration {
        if now < self.shortest_until {
            self.current.min(self.shortest) / 3
        } else {
            self.current / 3
        }
    }
}

/// The predicted finish of an attempt that started at `started_at`, from the median
/// duration `p50_ms` of its (kind, queue): `started_at + p50`, or `now` once that has
/// passed (a run past its median is predicted to end any moment, not in the past).
pub fn eta(started_at: Millis, p50_ms: f64, now: Millis) -> Millis {
    let p50 = if p50_ms.is_finite() {
        p50_ms.clamp(0.0, 1e15)
    } else {
        0.0
    };
    Millis(started_at.0.saturating_add(p50 as i64).max(now.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::DurationPredictor;
    use crate::predict::duration::SketchSettings;

    const KEY: DurationKey<'static> = DurationKey {
        kind: "resize",
        queue: "default",
        payload_bytes: 100,
    };

    fn model_of(runs: usize, ms: f64) -> SketchDuration {
        let mut m = SketchDuration::new(SketchSettings::default());
        for i in 0..runs {
            m.observe(KEY, i as i64, ms + (i % 10) as f64);
        }
        m
    }

    fn on() -> DurationPolicy {
        DurationPolicy {
            timeout: true,
            lease: true,
            ..DurationPolicy::default()
        }
    }

    #[test]
    fn a_fast_kind_gets_a_tight_timeout_within_the_bounds() {
        let m = model_of(200, 200.0);
        let default = Duration::from_secs(300);
        let t = on().attempt_timeout(&m, KEY, None, default);
        // p99.9 ~ 209 ms times 3, but never below the 1 s floor.
        assert_eq!(t, Duration::from_secs(1));
        let p = DurationPolicy {
            min_timeout: Duration::from_millis(100),
            ..on()
        };
        let t = p.attempt_timeout(&m, KEY, None, default);
        assert!(
            (Duration::from_millis(600)..Duration::from_millis(660)).contains(&t),
            "{t:?}"
        );
        // Never above the configured default.
        let slow = model_of(200, 200_000.0);
        assert_eq!(on().attempt_timeout(&slow, KEY, None, default), default);
    }

    #[test]
    fn the_jobs_own_timeout_and_the_switch_win() {
        let m = model_of(200, 200.0);
        let own = Duration::from_secs(42);
        let default = Duration::from_secs(300);
        assert_eq!(on().attempt_timeout(&m, KEY, Some(own), default), own);
        let off = DurationPolicy::default();
        assert_eq!(off.attempt_timeout(&m, KEY, None, default), default);
        // Too few runs: the default.
        let few = model_of(10, 200.0);
        assert_eq!(on().attempt_timeout(&few, KEY, None, default), default);
    }

    #[test]
    fn the_lease_outlives_most_runs_within_bounds() {
        let queues = vec!["default".to_string()];
        let configured = Duration::from_secs(30);
        let m = model_of(200, 10_000.0);
        let lease = on().lease_for(&m, &queues, configured);
        assert!(
            (Duration::from_secs(29)..Duration::from_secs(32)).contains(&lease),
            "{lease:?}"
        );
        assert_eq!(
            on().lease_for(&model_of(200, 10.0), &queues, configured),
            on().min_lease
        );
        assert_eq!(
            on().lease_for(&model_of(200, 600_000.0), &queues, configured),
            on().max_lease
        );
        // Other queues, or off: the configured lease.
        assert_eq!(
            on().lease_for(&m, &["other".to_string()], configured),
            configured
        );
        assert_eq!(
            DurationPolicy::default().lease_for(&m, &queues, configured),
            configured
        );
    }

    #[test]
    fn a_longer_lease_is_renewed_on_the_old_cadence_until_old_leases_end() {
        let mut l = LeaseLength::new(Duration::from_secs(30));
        assert!(!l.adopt(Duration::from_secs(33), Millis(0)), "a wobble");
        assert!(l.adopt(Duration::from_secs(90), Millis(1_000)));
        assert_eq!(l.current(), Duration::from_secs(90));
        assert_eq!(l.renew_every(Millis(1_000)), Duration::from_secs(10));
        assert_eq!(l.renew_every(Millis(30_999)), Duration::from_secs(10));
        assert_eq!(l.renew_every(Millis(31_000)), Duration::from_secs(30));
        // Shorter again: the new cadence at once.
        assert!(l.adopt(Duration::from_secs(6), Millis(40_000)));
        assert_eq!(l.renew_every(Millis(40_000)), Duration::from_secs(2));
        // And back up: the 6 s leases set the cadence until they end.
        assert!(l.adopt(Duration::from_secs(60), Millis(41_000)));
        assert_eq!(l.renew_every(Millis(41_000)), Duration::from_secs(2));
        assert_eq!(l.renew_every(Millis(131_000)), Duration::from_secs(20));
    }

    #[test]
    fn eta_is_start_plus_median_never_in_the_past() {
        assert_eq!(eta(Millis(1_000), 500.0, Millis(1_200)), Millis(1_500));
        assert_eq!(eta(Millis(1_000), 500.0, Millis(9_000)), Millis(9_000));
        assert_eq!(eta(Millis(1_000), f64::NAN, Millis(1_000)), Millis(1_000));
    }

    #[test]
    fn bad_settings_are_named() {
        for (p, key) in [
            (
                DurationPolicy {
                    timeout_margin: 0.5,
                    ..on()
                },
                "timeout_margin",
            ),
            (
                DurationPolicy {
                    min_lease: Duration::from_secs(600),
                    ..on()
                },
                "min_lease",
            ),
            (
                DurationPolicy {
                    min_timeout: Duration::ZERO,
                    ..on()
                },
                "min_timeout",
            ),
        ] {
            assert!(p.validate().unwrap_err().contains(key), "{key}");
        }
    }
}
