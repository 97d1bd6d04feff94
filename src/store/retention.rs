//! Retention: how long finished work is kept, per namespace, and what a purge removed.
//! One node at a time runs the purge, holding a leader lease in the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// `[retention]`: time to live per namespace (as the design's seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Succeeded and cancelled jobs (with their executions and events), and node and
    /// worker events, after they finished.
    #[serde(with = "humantime_serde")]
    pub finished_jobs: Duration,
    /// Dead-lettered jobs, after they were discarded.
    #[serde(with = "humantime_serde")]
    pub dead_letters: Duration,
    /// Worker coordination records (leader leases) after they lapsed.
    #[serde(with = "humantime_serde")]
    pub coordination: Duration,
    /// Rows of the audit log (`audit`), after they were written.
    #[serde(with = "humantime_serde")]
    pub audit: Duration,
    /// Saved models of a node (`models`), after its last save: a node gone for this
    /// long is not coming back with what it learned.
    #[serde(with = "humantime_serde")]
    pub models: Duration,
    /// How often the leader purges.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Jobs removed per purge transaction, so a purge never holds the writer long.
    pub batch: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            finished_jobs: Duration::from_secs(24 * 3600),
            dead_letters: Duration::from_secs(30 * 24 * 3600),
            coordination: Duration::from_secs(3600),
            audit: Duration::from_secs(90 * 24 * 3600),
            models: Duration::from_secs(90 * 24 * 3600),
            interval: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

impl Retention {
    /// Checks the values, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("retention.interval must be greater than zero".into());
        }
        if self.batch == 0 {
            return Err("retention.batch must be at least 1".into());
        }
        Ok(())
    }

    /// The cutoffs of a purge at `now`: what finished, was dead-lettered or lapsed
    /// before each is past its time to live. Every backend purges by these, so a
    /// retention setting means the same on every store.
    pub fn cutoffs(&self, now: Millis) -> Cutoffs {
        let before = |ttl: Duration| Millis(now.0 - ttl.as_millis() as i64);
        Cutoffs {
            finished_before: before(self.finished_jobs),
            dead_before: before(self.dead_letters),
            leases_before: before(self.coordination),
            audit_before: before(self.audit),
            models_before: before(self.models),
        }
    }
}

/// The instants a purge removes records older than (see [`Retention::cutoffs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Succeeded and cancelled jobs finished before this, and node and worker events
    /// recorded before it.
    pub finished_before: Millis,
    /// Dead-lettered jobs discarded before this.
    pub dead_before: Millis,
    /// Leader leases that expired before this.
    pub leases_before: Millis,
    /// Audit rows written before this.
    pub audit_before: Millis,
    /// Saved models last saved before this.
    pub models_before: Millis,
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// Finished (succeeded, cancelled) jobs.
    pub jobs: u64,
    /// Dead-lettered jobs.
    pub dead_letters: u64,
    /// Lifecycle events.
    pub events: u64,
    /// Lapsed leader leases.
    pub leases: u64,
    /// Audit rows.
    pub audit: u64,
    /// Saved models of nodes that stopped saving.
    #[serde(default)]
    pub models: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_are_now_minus_each_time_to_live() {
        let r = Retention {
            finished_jobs: Duration::from_secs(10),
            dead_letters: Duration::from_secs(20),
            coordination: Duration::from_secs(3),
            audit: Duration::from_secs(40),
            models: Duration::from_secs(50),
            ..Retention::default()
        };
        let c = r.cutoffs(Millis(100_000));
        assert_eq!(c.audit_before, Millis(60_000));
        assert_eq!(c.finished_before, Millis(90_000));
        assert_eq!(c.dead_before, Millis(80_000));
        assert_eq!(c.leases_before, Millis(97_000));
        assert_eq!(c.models_before, Millis(50_000));
    }
}
