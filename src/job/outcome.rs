//! What a worker reports when an attempt ends, and the retry-or-discard decision.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Lease, RetryPolicy};
use crate::clock::Millis;

/// How an attempt ended, as the store should record it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The handler succeeded.
    Succeeded {
        /// Optional JSON output kept with the job.
        output: Option<serde_json::Value>,
    },
    /// The attempt failed; run again at `run_at`.
    Retry {
        /// Why the attempt failed.
        error: String,
        /// When to run again.
        run_at: Millis,
    },
    /// The attempt failed for good: dead-letter the job.
    Discard {
        /// Why the job was discarded.
        error: String,
    },
    /// The job was cancelled while running.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The handler asked to run again later (see [`super::decide_snooze`]): the job is
    /// scheduled for `run_at`, the attempt is given back (the next run has the same
    /// attempt number) and the job's snooze count goes up by one.
    Snoozed {
        /// When to run again.
        run_at: Millis,
    },
}

impl Outcome {
    /// The error text, if the attempt failed.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Retry { error, .. } | Outcome::Discard { error } => Some(error),
            Outcome::Cancelled { reason } => Some(reason),
            Outcome::Succeeded { .. } | Outcome::Snoozed { .. } => None,
        }
    }
}

/// One finished attempt, to be applied under its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The lease the attempt ran under; stale leases are refused.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// When the attempt started.
    pub started_at: Millis,
    /// When the attempt ended.
    pub finished_at: Millis,
}

/// What the store did with a [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionResult {
    /// Recorded.
    Applied,
    /// Refused: the lease is no longer current (rescued, revoked or cancelled).
    StaleLease,
}

/// Decides what a failed attempt becomes: a retry after a jittered backoff while
/// attempts remain and the error is retryable, else a discard into the dead-letter queue.
///
/// Every failed attempt's error passes through here on its way to `last_error`, the
/// `job.failed` event and the event stream, so this is where credentials a handler
/// quoted (a URL's `user:password@`, an `Authorization` value) are masked
/// ([`crate::redact`]).
pub fn decide_failure(
    attempt: u32,
    max_attempts: u32,
    error: String,
    retryable: bool,
    policy: &RetryPolicy,
    now: Millis,
    rng: &mut impl Rng,
) -> Outcome {
    let error = crate::redact::redact(&error).into_owned();
    if !retryable {
        return Outcome::Discard { error };
    }
    if attempt >= max_attempts {
        return Outcome::Discard {
            error: format!("{error} (attempt {attempt} of {max_attempts}: no attempts left)"),
        };
    }
    Outcome::Retry {
        error,
        run_at: now.plus(policy.delay(attempt, rng)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn failure_errors_are_redacted() {
        let mut rng = StdRng::seed_from_u64(1);
        let error = "GET http://u:secretpw@h/: 401, Authorization: Bearer t0k".to_string();
        for (attempt, retryable) in [(1, true), (3, true), (1, false)] {
            let out = decide_failure(
                attempt,
                3,
                error.clone(),
                retryable,
                &RetryPolicy::default(),
                Millis(0),
                &mut rng,
            );
            let e = out.error().unwrap();
            assert!(!e.contains("secretpw") && !e.contains("t0k"), "{e}");
            assert!(e.starts_with("GET http://***@h/: 401"), "{e}");
        }
    }

    #[test]
    fn retries_until_attempts_run_out() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let now = Millis(1_000);
        match decide_failure(1, 3, "boom".into(), true, &p, now, &mut rng) {
            Outcome::Retry { run_at, error } => {
                assert_eq!(error, "boom");
                assert!(run_at >= now.plus(p.base_delay(1)));
            }
            other => panic!("expected retry, got {other:?}"),
        }
        match decide_failure(3, 3, "boom".into(), true, &p, now, &mut rng) {
            Outcome::Discard { error } => assert!(error.contains("no attempts left")),
            other => panic!("expected discard, got {other:?}"),
        }
    }

    #[test]
    fn non_retryable_errors_discard_at_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let out = decide_failure(
            1,
            25,
            "bad payload".into(),
            false,
            &RetryPolicy::default(),
            Millis(0),
            &mut rng,
        );
        assert_eq!(
            out,
            Outcome::Discard {
                error: "bad payload".into()
            }
        );
    }
}
