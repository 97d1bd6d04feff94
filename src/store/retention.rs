//! Retention: how long finished work is kept, per namespace, and what a purge removed.
//! One node at a time runs the purge, holding a leader lease in the store.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}
