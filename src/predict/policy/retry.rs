//! The retry decision with the retry model: what a failed attempt becomes when
//! `[retry] learned = true`.
//!
//! The model ([`PosteriorRetry::advise`](crate::predict::PosteriorRetry::advise))
//! chooses the delay (longer when retries of the kind and error class only succeed
//! later, as during a dependency's outage), holds retries to the kind's retry budget (a
//! held retry is delayed, never dropped) and, with `give_up_early`, dead-letters a job
//! whose retries are not expected to ever succeed, saying why. What it never overrides:
//! a permanent error and the job's `max_attempts` dead-letter as always (through
//! [`decide_failure`]), and `retry.max_delay` bounds every delay.

use std::time::Duration;

use rand::Rng;

use crate::clock::Millis;
use crate::job::{Outcome, RetryPolicy, decide_failure};
use crate::predict::LiveModels;
use crate::predict::retry::{FailedAttempt, RetryAdvice};
use crate::predict::trace::error_class;

/// A failed attempt, as the worker that ran it knows it.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// The job's kind.
    pub kind: &'a str,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Attempts the job may make.
    pub max_attempts: u32,
    /// When the job was enqueued: the model's "time since the first failure" is
    /// measured from here for later attempts whose first failure is not known (the job
    /// holds no first-failure time; for a job run soon after its enqueue the two differ
    /// by one wait and one run).
    pub created_at: Millis,
    /// When the job first failed, where the node knows it (the feed's record of the
    /// failures applied here, [`FeedState::first_failure`](crate::predict::live::FeedState::first_failure)):
    /// the time the model learned its retries from, so it is asked about the same.
    pub first_failure: Option<Millis>,
    /// The error, as the handler gave it (redacted here).
    pub error: String,
    /// Whether the error allows a retry at all.
    pub retryable: bool,
}

/// What `failure` becomes: with `policy.learned`, the model's advice (see the module
/// docs); otherwise, and for permanent errors and exhausted attempts,
/// [`decide_failure`] with `policy`'s polynomial backoff.
pub fn decide(
    models: &mut LiveModels,
    policy: &RetryPolicy,
    failure: Failure<'_>,
    now: Millis,
    rng: &mut impl Rng,
) -> Outcome {
    let Failure {
        kind,
        attempt,
        max_attempts,
        created_at,
        first_failure,
        error,
        retryable,
    } = failure;
    if !policy.learned || !retryable || attempt >= max_attempts {
        return decide_failure(attempt, max_attempts, error, retryable, policy, now, rng);
    }
    let error = crate::redact::redact(&error).into_owned();
    let class = error_class(&error);
    let first_failure_ms = if attempt <= 1 {
        now.0
    } else {
        first_failure.unwrap_or(created_at).0.min(now.0)
    };
    let advice = models.retry.advise(
        FailedAttempt {
            kind,
            error_class: &class,
            attempt,
            max_attempts,
            first_failure_ms,
            now_ms: now.0,
        },
        rng.random::<f64>(),
        policy.give_up_early,
    );
    match advice {
        RetryAdvice::Retry { delay_ms, .. } => {
            let delay = Duration::from_millis(delay_ms.max(0) as u64).min(policy.max_delay);
            Outcome::Retry {
                error,
                run_at: now.plus(delay),
            }
        }
        RetryAdvice::Hopeless { observations } => Outcome::Discard {
            error: format!(
                "{error} (gave up early at attempt {attempt} of {max_attempts}: retries of \
                 kind `{kind}` failing with `{class}` have not been succeeding \
                 ({observations:.0}+ observed); retry.give_up_early)"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::RetryPredictor;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const NOW: Millis = Millis(10_000_000);

    fn learned(give_up_early: bool) -> RetryPolicy {
        RetryPolicy {
            learned: true,
            give_up_early,
            ..RetryPolicy::default()
        }
    }

    fn failure(attempt: u32, error: &str) -> Failure<'_> {
        Failure {
            kind: "mail",
            attempt,
            max_attempts: 25,
            created_at: Millis(NOW.0 - 5_000),
            first_failure: None,
            error: error.into(),
            retryable: true,
        }
    }

    /// Retries of `class` at every attempt and time bucket: all fail, or all succeed
    /// only from ten minutes after the first failure on.
    fn teach(m: &mut LiveModels, class: &str, late_success: bool) {
        for i in 0..20 {
            for since in [
                0, 20_000, 45_000, 90_000, 200_000, 400_000, 800_000, 1_500_000, 3_000_000,
            ] {
                for attempt in [2, 3, 4, 6, 10] {
                    let ok = late_success && since >= 600_000;
                    m.retry
                        .observe_retry("mail", class, attempt, since, ok, NOW.0 - i);
                }
            }
        }
    }

    fn delay_of(o: &Outcome) -> i64 {
        match o {
            Outcome::Retry { run_at, .. } => run_at.0 - NOW.0,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn off_by_default_it_is_the_polynomial() {
        let mut m = LiveModels::default();
        teach(&mut m, "gone", false);
        let mut rng = StdRng::seed_from_u64(1);
        let p = RetryPolicy::default();
        let o = decide(&mut m, &p, failure(3, "gone"), NOW, &mut rng);
        let d = delay_of(&o);
        assert!((81_000..=89_100).contains(&d), "{d}");
    }

    #[test]
    fn it_waits_into_the_time_retries_succeed() {
        let mut m = LiveModels::default();
        teach(&mut m, "smtp_down", true);
        let mut rng = StdRng::seed_from_u64(1);
        let o = decide(
            &mut m,
            &learned(false),
            failure(2, "smtp down"),
            NOW,
            &mut rng,
        );
        // Enqueued 5 s ago: success comes from 10 min after the first failure on.
        assert!(delay_of(&o) >= 595_000, "{o:?}");
    }

    #[test]
    fn the_time_since_the_first_failure_is_the_one_the_feed_learned_from() {
        let mut m = LiveModels::default();
        teach(&mut m, "smtp_down", true);
        let mut rng = StdRng::seed_from_u64(1);
        // Enqueued an hour ago, failed first 5 s ago: retries succeed from 10 min after
        // the first failure, not after the enqueue (which would retry at once).
        let f = Failure {
            created_at: Millis(NOW.0 - 3_600_000),
            first_failure: Some(Millis(NOW.0 - 5_000)),
            ..failure(2, "smtp down")
        };
        let o = decide(&mut m, &learned(false), f.clone(), NOW, &mut rng);
        assert!(delay_of(&o) >= 595_000, "{o:?}");
        // Without it, the enqueue stands in.
        let unknown = Failure {
            first_failure: None,
            ..f
        };
        let o = decide(&mut m, &learned(false), unknown, NOW, &mut rng);
        assert!(delay_of(&o) < 595_000, "{o:?}");
    }

    #[test]
    fn it_gives_up_early_only_when_allowed_and_says_why() {
        let mut m = LiveModels::default();
        teach(&mut m, "gone", false);
        let mut rng = StdRng::seed_from_u64(1);
        let o = decide(&mut m, &learned(true), failure(2, "gone"), NOW, &mut rng);
        match o {
            Outcome::Discard { error } => {
                assert!(
                    error.starts_with("gone (gave up early at attempt 2 of 25"),
                    "{error}"
                );
                assert!(
                    error.contains("`gone`") && error.contains("give_up_early"),
                    "{error}"
                );
            }
            other => panic!("expected a discard, got {other:?}"),
        }
        // Not allowed: it retries (at the delay the model finds least bad).
        let o = decide(&mut m, &learned(false), failure(2, "gone"), NOW, &mut rng);
        assert!(matches!(o, Outcome::Retry { .. }), "{o:?}");
    }

    #[test]
    fn permanent_errors_and_the_last_attempt_are_not_the_models() {
        let mut m = LiveModels::default();
        let mut rng = StdRng::seed_from_u64(1);
        let f = Failure {
            retryable: false,
            ..failure(1, "bad payload")
        };
        let o = decide(&mut m, &learned(true), f, NOW, &mut rng);
        assert_eq!(
            o,
            Outcome::Discard {
                error: "bad payload".into()
            }
        );
        let o = decide(&mut m, &learned(true), failure(25, "x"), NOW, &mut rng);
        assert!(o.error().unwrap().contains("no attempts left"), "{o:?}");
    }

    #[test]
    fn a_spent_budget_delays_retries_and_drops_none() {
        let mut m = LiveModels::default();
        for i in 0..50 {
            m.retry.observe_first("mail", NOW.0 - 1_000 + i);
        }
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<i64> = (0..50)
            .map(|_| {
                delay_of(&decide(
                    &mut m,
                    &learned(true),
                    failure(1, "e"),
                    NOW,
                    &mut rng,
                ))
            })
            .collect();
        // 20 % of 50 first attempts plus the floor of 10 go soon, the rest wait out the
        // budget's window.
        let soon = delays.iter().filter(|d| **d < 60_000).count();
        assert_eq!(soon, 20, "{delays:?}");
        assert!(delays.iter().all(|d| *d < 60_000 || *d >= 120_000));
    }

    #[test]
    fn errors_are_redacted_on_the_learned_path() {
        let mut m = LiveModels::default();
        let mut rng = StdRng::seed_from_u64(1);
        let o = decide(
            &mut m,
            &learned(true),
            failure(1, "GET http://u:secretpw@h/: 500"),
            NOW,
            &mut rng,
        );
        assert!(!o.error().unwrap().contains("secretpw"), "{o:?}");
    }
}
