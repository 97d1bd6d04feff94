//! When a node may rescue lapsed leases.
//!
//! A lease lapses when its holder stops renewing it, which normally means the holder
//! died. But while the store is unreachable nobody can renew or complete anything: when
//! it comes back, every lease that ran out during the outage looks lapsed, and a rescuer
//! that acted at once would take jobs from holders that are alive, and whose finished
//! attempts are still waiting in their completers' retry loops. Those jobs would run a
//! second time. So a node that saw the store fail holds off rescuing for a grace period
//! after it comes back: the outage does not count against anyone's lease. Holders renew
//! (or record their outcome) within the grace; the leases of holders that really died
//! are rescued when it ends.

use std::time::Duration;

use crate::clock::Millis;

/// Decides whether rescuing lapsed leases is safe now, from what this node saw of the
/// store. A plain state machine: the maintenance actor reports store outcomes and asks.
///
/// An outage shows either as failed calls or as silence: a call that waits (for a
/// connection, say) until the store is back succeeds, yet nothing was renewed meanwhile.
/// So an answer that comes more than `silence` after the previous one counts as the end
/// of an outage too.
#[derive(Debug, Clone)]
pub struct RescueGate {
    grace: Duration,
    silence: Duration,
    /// The store failed and has not answered since.
    down: bool,
    /// When the store last answered.
    last_answer: Millis,
    /// No rescue before this instant (the end of the last grace).
    hold_until: Millis,
}

impl RescueGate {
    /// A gate created at `now` that, after an outage, holds rescues back for `grace` (at
    /// least a lease, so every live holder gets a full lease to renew), where a gap of
    /// more than `silence` between answers also counts as an outage (a renewal period:
    /// holders could not renew for that long either).
    pub fn new(grace: Duration, silence: Duration, now: Millis) -> Self {
        Self {
            grace,
            silence,
            down: false,
            last_answer: now,
            hold_until: Millis(i64::MIN),
        }
    }

    /// A store call failed because the store was unreachable.
    pub fn store_failed(&mut self) {
        self.down = true;
    }

    /// A store call answered at `at`; the first answer after a failure or a silence
    /// starts the grace.
    pub fn store_answered(&mut self, at: Millis) {
        if self.down || at.since(self.last_answer) > self.silence {
            self.hold_until = at.plus(self.grace);
        }
        self.down = false;
        self.last_answer = self.last_answer.max(at);
    }

    /// Whether lapsed leases may be rescued at `now`.
    pub fn may_rescue(&self, now: Millis) -> bool {
        !self.down && now >= self.hold_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);
    const SILENCE: Duration = Duration::from_secs(10);

    fn gate() -> RescueGate {
        RescueGate::new(GRACE, SILENCE, Millis(0))
    }

    #[test]
    fn a_node_that_saw_no_outage_rescues_at_once() {
        let mut g = gate();
        assert!(g.may_rescue(Millis(0)));
        g.store_answered(Millis(500));
        assert!(g.may_rescue(Millis(500)));
    }

    #[test]
    fn no_rescue_while_the_store_is_down_nor_within_the_grace_after_it_answers() {
        let mut g = gate();
        g.store_failed();
        assert!(!g.may_rescue(Millis(1_000)));
        g.store_answered(Millis(5_000));
        assert!(!g.may_rescue(Millis(5_000)));
        assert!(!g.may_rescue(Millis(34_999)));
        assert!(g.may_rescue(Millis(35_000)));
    }

    #[test]
    fn a_long_silence_between_answers_counts_as_an_outage() {
        let mut g = gate();
        g.store_answered(Millis(1_000));
        // A call that hung until the store came back, with nothing failing.
        g.store_answered(Millis(12_000));
        assert!(!g.may_rescue(Millis(12_000)));
        assert!(g.may_rescue(Millis(42_000)));
    }

    #[test]
    fn answers_within_the_silence_do_not_restart_the_grace() {
        let mut g = gate();
        g.store_failed();
        g.store_answered(Millis(0));
        for t in (1..=6).map(|i| Millis(i * 5_000)) {
            g.store_answered(t);
        }
        assert!(g.may_rescue(Millis(30_000)));
    }

    #[test]
    fn a_second_outage_within_the_grace_extends_it() {
        let mut g = gate();
        g.store_failed();
        g.store_answered(Millis(0));
        g.store_failed();
        g.store_answered(Millis(10_000));
        assert!(!g.may_rescue(Millis(30_000)));
        assert!(g.may_rescue(Millis(40_000)));
    }
}
