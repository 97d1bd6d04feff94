//! OTP-style restart intensity: at most `max_restarts` restarts of one child within a
//! sliding `window`, with exponential backoff between quick successive restarts. A
//! plain state machine so the policy is tested without actors.

use std::collections::VecDeque;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::config::RestartSection;

/// Smallest delay once backoff starts, when `backoff_min` is zero.
const BACKOFF_FLOOR: Duration = Duration::from_millis(10);

/// What a supervisor does about a child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the child after this delay (zero: at once).
    RestartAfter(Duration),
    /// Too many restarts in the window: give up and fail upwards.
    Escalate,
}

/// The restart history of one child.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    policy: RestartSection,
    recent: VecDeque<Millis>,
}

impl RestartBudget {
    /// A budget with no failures yet.
    pub fn new(policy: RestartSection) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure at `now` and decides. The first failure in a quiet window
    /// restarts at once (a single panic costs nothing); each further one within the
    /// window doubles the delay, from `backoff_min` (at least 10 ms) up to `backoff_max`.
    pub fn on_failure(&mut self, now: Millis) -> RestartDecision {
        let window = self.policy.window.as_millis() as i64;
        while let Some(&t) = self.recent.front() {
            if now.0.saturating_sub(t.0) >= window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() as u32 >= self.policy.max_restarts {
            return RestartDecision::Escalate;
        }
        self.recent.push_back(now);
        let n = self.recent.len() as u32;
        if n <= 1 {
            return RestartDecision::RestartAfter(Duration::ZERO);
        }
        let base = self.policy.backoff_min.max(BACKOFF_FLOOR);
        let delay = base
            .saturating_mul(1u32 << (n - 2).min(20))
            .min(self.policy.backoff_max.max(self.policy.backoff_min));
        RestartDecision::RestartAfter(delay)
    }

    /// Restarts counted in the current window.
    pub fn recent(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32) -> RestartSection {
        RestartSection {
            max_restarts: max,
            window: Duration::from_secs(10),
            backoff_min: Duration::ZERO,
            backoff_max: Duration::from_millis(100),
        }
    }

    #[test]
    fn first_failure_restarts_at_once_then_backs_off() {
        let mut b = RestartBudget::new(policy(10));
        assert_eq!(
            b.on_failure(Millis(0)),
            RestartDecision::RestartAfter(Duration::ZERO)
        );
        assert_eq!(
            b.on_failure(Millis(1)),
            RestartDecision::RestartAfter(Duration::from_millis(10))
        );
        assert_eq!(
            b.on_failure(Millis(2)),
            RestartDecision::RestartAfter(Duration::from_millis(20))
        );
        for t in 3..9 {
            b.on_failure(Millis(t));
        }
        assert_eq!(
            b.on_failure(Millis(9)),
            RestartDecision::RestartAfter(Duration::from_millis(100)),
            "capped at backoff_max"
        );
    }

    #[test]
    fn too_many_restarts_in_the_window_escalate() {
        let mut b = RestartBudget::new(policy(3));
        for t in 0..3 {
            assert!(matches!(
                b.on_failure(Millis(t)),
                RestartDecision::RestartAfter(_)
            ));
        }
        assert_eq!(b.on_failure(Millis(5)), RestartDecision::Escalate);
    }

    #[test]
    fn failures_older_than_the_window_are_forgiven() {
        let mut b = RestartBudget::new(policy(2));
        b.on_failure(Millis(0));
        b.on_failure(Millis(1));
        assert_eq!(b.on_failure(Millis(2)), RestartDecision::Escalate);
        assert_eq!(
            b.on_failure(Millis(10_001)),
            RestartDecision::RestartAfter(Duration::ZERO)
        );
        assert_eq!(b.recent(), 1);
    }
}
