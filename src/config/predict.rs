//! `[predict]`: the node's live models (see `jobmesh::predict::live`): whether it keeps
//! them at all, and how often it saves them and reads the other nodes' saved ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Shortest `predict.save_interval`: every save also reads every node's row.
pub const MIN_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest `predict.save_interval`: peers' states are adopted at each save, so a node
/// learns of a failing peer no later than this.
pub const MAX_SAVE_INTERVAL: Duration = Duration::from_secs(3600);
/// A peer whose saved models are older than this many save intervals has stopped
/// saving (it died or left): its state is no longer adopted.
pub const PEER_STALE_AFTER_SAVES: u32 = 3;

/// `[predict]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredictSection {
    /// Whether the node keeps live models: fed from its own lifecycle, saved, read back
    /// and asked for the drain. `false` turns them off entirely (no feed, no saves, no
    /// failure-score drain); the learned decisions, which need them, are refused then.
    pub feed: bool,
    /// How often the node saves its models and reads the other nodes' (merging their
    /// durations, adopting their failure states).
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
}

impl Default for PredictSection {
    fn default() -> Self {
        Self {
            feed: true,
            save_interval: Duration::from_secs(60),
        }
    }
}

impl PredictSection {
    /// Age past which a peer's saved models are a stopped node's
    /// ([`PEER_STALE_AFTER_SAVES`] save intervals).
    pub fn peer_max_age(&self) -> Duration {
        self.save_interval.saturating_mul(PEER_STALE_AFTER_SAVES)
    }

    /// [`Self::peer_max_age`] in milliseconds, as the models compare saved times.
    pub fn peer_max_age_ms(&self) -> i64 {
        i64::try_from(self.peer_max_age().as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        Config::load(Some(f.path()), []).map_err(|e| e.to_string())
    }

    #[test]
    fn the_predict_section_and_the_budget_are_read() {
        let c = load(
            "[predict]\nfeed = false\nsave_interval = \"5s\"\n\
             [retry]\nbudget_ratio = 0.5\nbudget_window = \"2m\"\nbudget_min = 3\n",
        )
        .unwrap();
        assert!(!c.predict.feed);
        assert_eq!(c.predict.save_interval, Duration::from_secs(5));
        assert_eq!(c.predict.peer_max_age(), Duration::from_secs(15));
        assert_eq!(c.retry.budget_ratio, 0.5);
        assert_eq!(c.retry.budget_window, Duration::from_secs(120));
        assert_eq!(c.retry.budget_min, 3);
        let d = Config::load(None, []).unwrap();
        assert!(d.predict.feed);
        assert_eq!(d.predict.save_interval, Duration::from_secs(60));
        assert_eq!(
            (
                d.retry.budget_ratio,
                d.retry.budget_min,
                d.retry.budget_window
            ),
            (0.2, 10, Duration::from_secs(60))
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        for (text, expected) in [
            (
                "[predict]\nsave_interval = \"100ms\"\n",
                "predict.save_interval: must be at least 1s, got 100ms",
            ),
            (
                "[predict]\nsave_interval = \"2h\"\n",
                "predict.save_interval: must be at most 1h, got 2h",
            ),
            ("[predict]\nfeed = \"yes\"\n", "predict.feed: invalid type"),
            ("[predict]\nsave = \"1m\"\n", "unknown field `save`"),
            (
                "[retry]\nbudget_ratio = -0.1\n",
                "retry.budget_ratio must be a number within 0.0..=100, got -0.1",
            ),
            (
                "[retry]\nbudget_ratio = nan\n",
                "retry.budget_ratio must be a number within 0.0..=100, got NaN",
            ),
            (
                "[retry]\nbudget_min = 2000000\n",
                "retry.budget_min must be within 0..=1000000, got 2000000",
            ),
            (
                "[retry]\nbudget_min = -1\n",
                "retry.budget_min: invalid value",
            ),
            (
                "[retry]\nbudget_window = \"0s\"\n",
                "retry.budget_window must be within 1s..=24h, got 0s",
            ),
            (
                "[retry]\nbudget_window = \"soon\"\n",
                "retry.budget_window: ",
            ),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn decisions_that_need_the_models_are_refused_without_them() {
        let err = load(
            "[predict]\nfeed = false\n[retry]\nlearned = true\n\
             [workers.learned]\nlease = true\n[queues.mail]\nwait_slo = \"30s\"\n",
        )
        .unwrap_err();
        for key in [
            "retry.learned: needs the live models, but predict.feed = false",
            "workers.learned.lease: needs the live models",
            "queues.mail.wait_slo: needs the live models",
        ] {
            assert!(err.contains(key), "{err}");
        }
        // With the models on, the same is accepted.
        load("[retry]\nlearned = true\n[workers.learned]\nlease = true\n").unwrap();
    }
}
