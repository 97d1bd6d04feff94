//! Protocol settings. Defaults aim at the design's targets: crash-to-eviction well under
//! 3 s on a 5-node mesh and steady traffic well under 1 KB/s per node.

use std::collections::BTreeSet;
use std::time::Duration;

use libp2p::identity::{PeerId, PublicKey};

use super::error::ConfigError;

/// How observers are chosen for each subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitoring {
    /// Every member observes every other member (K = n - 1). Right for small n.
    AllToAll,
    /// `k` pseudo-random observers per subject, its successors on `k` rings ordered by
    /// `hash(epoch, ring, member)` (Rapid-style, see [`Assignment`](super::Assignment)),
    /// so every member computes the same set. For large n.
    Observers {
        /// Observers per subject; must be at least `3f + 1`.
        k: usize,
    },
}

/// Settings of a [`Membership`](super::Membership).
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Tolerated Byzantine members; certificates need `2f + 1` Down votes.
    pub f: usize,
    /// Peers admitted without a join certificate.
    pub allowlist: BTreeSet<PeerId>,
    /// Cluster public key that signs [`JoinCertificate`](super::JoinCertificate)s; `None`
    /// admits only the allowlist.
    pub cluster_key: Option<PublicKey>,
    /// How observers are chosen.
    pub monitoring: Monitoring,
    /// Interval between liveness frames sent directly to each of this node's observers
    /// (the arrivals its observers' phi detectors measure).
    pub heartbeat_interval: Duration,
    /// Interval between signed heartbeats gossiped to every member (admission, epoch and
    /// incarnation announcements). One is also sent at once on every incarnation change
    /// and when the driver calls [`announce`](super::Membership::announce) (a new peer
    /// subscribed); the periodic one only covers lost gossip, so it can be slow. Above
    /// [`ANNOUNCE_FULL_RATE_MEMBERS`](super::ANNOUNCE_FULL_RATE_MEMBERS) members it is
    /// stretched by `members / 100`, keeping the announcements each node receives per
    /// second bounded.
    pub announce_interval: Duration,
    /// Interval between round-robin direct probes of monitored peers (RTT measurement
    /// and a second liveness path; suspects are re-probed every `revote_interval`).
    pub probe_interval: Duration,
    /// A direct probe without an answer after this long counts as failed.
    pub probe_timeout: Duration,
    /// Phi above which a monitored peer is suspected.
    pub phi_threshold: f64,
    /// Floor for the standard deviation of arrival intervals (avoids hair-trigger
    /// suspicion when arrivals are very regular).
    pub min_std_dev: Duration,
    /// Extra delay tolerated beyond the mean interval (GC pauses, scheduling).
    pub acceptable_pause: Duration,
    /// Arrival intervals remembered per peer (1 to 10 000).
    pub phi_window: usize,
    /// Local health score (Lifeguard LHM) at or above which this node abstains from
    /// voting Down: an overloaded observer's suspicions are not trustworthy.
    pub abstain_health: u32,
    /// Votes are accepted for epochs up to this far from the local epoch; older ones are
    /// stale (views converge within a few evictions).
    pub epoch_window: u64,
    /// How often a standing Down vote is re-broadcast while the subject stays suspected
    /// and uncertified (covers lost gossip and epoch changes).
    pub revote_interval: Duration,
    /// A Down vote needs a quorum of the view heard within this window before the
    /// failed probe. Must exceed the largest gap between a live member's heartbeats
    /// (interval, jitter, delay) and stay below the time from a member's silence to a
    /// failed probe (suspicion delay plus probe timeout) minus a heartbeat interval, so
    /// that at a partition's onset the other side no longer counts.
    pub quorum_window: Duration,
    /// If ticks arrive this much later than requested, the node was paused: arrival
    /// history is no evidence about peers, so detectors restart.
    pub pause_reset: Duration,
    /// How long a member never heard from is given to appear before it can be
    /// suspected (start-up, joins).
    pub join_grace: Duration,
}

impl MembershipConfig {
    /// A configuration with default timings for the given allowlist and `f`.
    pub fn new(allowlist: impl IntoIterator<Item = PeerId>, f: usize) -> Self {
        Self {
            f,
            allowlist: allowlist.into_iter().collect(),
            cluster_key: None,
            monitoring: Monitoring::AllToAll,
            heartbeat_interval: Duration::from_millis(500),
            announce_interval: Duration::from_secs(20),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_millis(300),
            phi_threshold: 8.0,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::from_millis(200),
            phi_window: 64,
            abstain_health: 4,
            epoch_window: 4,
            revote_interval: Duration::from_millis(1000),
            quorum_window: Duration::from_millis(650),
            pause_reset: Duration::from_millis(2000),
            join_grace: Duration::from_secs(10),
        }
    }

    /// Certificate size: `2f + 1` distinct Down votes.
    pub fn certificate_threshold(&self) -> usize {
        2 * self.f + 1
    }

    /// Checks that the settings can give the protocol's guarantees: `n >= 3f + 1` for
    /// the allowlist (unless a cluster key admits further members), `K >= 3f + 1` with
    /// sampled observers, positive timings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let need = 3 * self.f + 1;
        if self.cluster_key.is_none() && self.allowlist.len() < need {
            return Err(ConfigError::TooFewMembers {
                n: self.allowlist.len(),
                f: self.f,
                need,
            });
        }
        if let Monitoring::Observers { k } = self.monitoring
            && k < need
        {
            return Err(ConfigError::TooFewObservers { k, f: self.f, need });
        }
        for (name, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("announce_interval", self.announce_interval),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("min_std_dev", self.min_std_dev),
            ("revote_interval", self.revote_interval),
            ("quorum_window", self.quorum_window),
            ("pause_reset", self.pause_reset),
        ] {
            if d.is_zero() {
                return Err(ConfigError::InvalidSetting(name));
            }
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(ConfigError::InvalidSetting("phi_threshold"));
        }
        if self.quorum_window < self.heartbeat_interval {
            return Err(ConfigError::InvalidSetting("quorum_window"));
        }
        if self.phi_window == 0 || self.phi_window > 10_000 {
            return Err(ConfigError::InvalidSetting("phi_window"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect()
    }

    #[test]
    fn requires_3f_plus_1() {
        assert!(MembershipConfig::new(peers(4), 1).validate().is_ok());
        assert_eq!(
            MembershipConfig::new(peers(3), 1).validate(),
            Err(ConfigError::TooFewMembers {
                n: 3,
                f: 1,
                need: 4
            })
        );
        assert!(MembershipConfig::new(peers(1), 0).validate().is_ok());
    }

    #[test]
    fn requires_enough_observers() {
        let mut c = MembershipConfig::new(peers(10), 1);
        c.monitoring = Monitoring::Observers { k: 3 };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooFewObservers { .. })
        ));
        c.monitoring = Monitoring::Observers { k: 4 };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_zero_timings() {
        let mut c = MembershipConfig::new(peers(4), 1);
        c.probe_timeout = Duration::ZERO;
        assert_eq!(
            c.validate(),
            Err(ConfigError::InvalidSetting("probe_timeout"))
        );
    }
}
