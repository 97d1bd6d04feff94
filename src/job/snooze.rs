//! Snoozes: a handler asks to run its job again later without spending an attempt
//! (a polling job waiting for something outside: "not yet, look again in a minute").
//!
//! The decision is made here, once: a snooze within the limits becomes
//! [`Outcome::Snoozed`] (the store schedules the job, gives the attempt back and counts
//! the snooze); a job that has already snoozed `max_snoozes` times is dead-lettered with
//! a reason saying so, so a job that never gets what it waits for ends up where an
//! operator looks; a delay beyond `max_delay` is a handler bug and fails the attempt
//! like any error, counting it.

use std::time::Duration;

use super::Outcome;
use crate::clock::Millis;

/// Snoozes allowed per job by default (`workers.max_snoozes`).
pub const DEFAULT_MAX_SNOOZES: u32 = 1000;
/// Longest snooze by default (`workers.max_snooze`): seven days.
pub const DEFAULT_MAX_SNOOZE: Duration = Duration::from_secs(7 * 86_400);

/// The bounds of snoozes (from `[workers]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnoozeLimits {
    /// Snoozes allowed per job; the next one dead-letters it.
    pub max_snoozes: u32,
    /// Longest delay one snooze may ask for.
    pub max_delay: Duration,
}

impl Default for SnoozeLimits {
    fn default() -> Self {
        Self {
            max_snoozes: DEFAULT_MAX_SNOOZES,
            max_delay: DEFAULT_MAX_SNOOZE,
        }
    }
}

/// What a snooze of `delay` asked by an attempt of a job that has snoozed `snoozes`
/// times already becomes: `Ok` with the outcome to record ([`Outcome::Snoozed`], or
/// [`Outcome::Discard`] once the job is out of snoozes), or `Err` with the error of a
/// failed attempt when the delay is beyond the limit (the caller fails the attempt
/// with it, as for any handler error).
pub fn decide_snooze(
    snoozes: u32,
    delay: Duration,
    limits: &SnoozeLimits,
    now: Millis,
) -> Result<Outcome, String> {
    if delay > limits.max_delay {
        return Err(format!(
            "snooze of {} exceeds the limit of {} (workers.max_snooze)",
            humantime_serde::re::humantime::format_duration(delay),
            humantime_serde::re::humantime::format_duration(limits.max_delay)
        ));
    }
    if snoozes >= limits.max_snoozes {
        return Ok(Outcome::Discard {
            error: format!(
                "snoozed {snoozes} times, the limit (workers.max_snoozes): not run again"
            ),
        });
    }
    Ok(Outcome::Snoozed {
        run_at: now.plus(delay),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = Millis(1_000_000);

    #[test]
    fn snoozes_within_limits_schedule_the_job() {
        let l = SnoozeLimits::default();
        assert_eq!(
            decide_snooze(3, Duration::from_secs(2), &l, NOW),
            Ok(Outcome::Snoozed {
                run_at: Millis(1_002_000)
            })
        );
        assert_eq!(
            decide_snooze(0, Duration::ZERO, &l, NOW),
            Ok(Outcome::Snoozed { run_at: NOW })
        );
    }

    #[test]
    fn the_snooze_past_the_cap_dead_letters_and_a_long_delay_fails() {
        let l = SnoozeLimits {
            max_snoozes: 2,
            max_delay: Duration::from_secs(60),
        };
        assert!(matches!(
            decide_snooze(1, Duration::from_secs(1), &l, NOW),
            Ok(Outcome::Snoozed { .. })
        ));
        match decide_snooze(2, Duration::from_secs(1), &l, NOW) {
            Ok(Outcome::Discard { error }) => {
                assert!(error.contains("snoozed 2 times"), "{error}")
            }
            other => panic!("expected a discard, got {other:?}"),
        }
        let e = decide_snooze(0, Duration::from_secs(61), &l, NOW).unwrap_err();
        assert_eq!(
            e,
            "snooze of 1m 1s exceeds the limit of 1m (workers.max_snooze)"
        );
    }
}
