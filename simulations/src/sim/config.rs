//! Settings of a simulated cluster, and the identity of its nodes.

use std::time::Duration;

use jobmesh::membership::{MembershipConfig, Monitoring};
use libp2p::identity::{Keypair, PeerId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::network::NetworkConfig;

/// Settings of a simulated cluster.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// Number of nodes (all allowlisted).
    pub nodes: usize,
    /// Tolerated Byzantine members.
    pub f: usize,
    /// Observer selection, as in [`MembershipConfig::monitoring`].
    #[serde(serialize_with = "monitoring_name")]
    pub monitoring: Monitoring,
    /// Seed of everything: keys, the cores' RNGs, the network.
    pub seed: u64,
    /// Links.
    pub network: NetworkConfig,
    /// Wire copies per gossip delivery. 1.0 counts what the application receives
    /// (gossipsub delivers each message once per node); a gossipsub mesh of degree D
    /// carries up to about D copies per node (eager push, before IDONTWANT), so D
    /// estimates the wire cost. An assumption, not a measurement.
    pub gossip_amplification: f64,
    /// How many live peers re-announce when a node (re)starts: the driver calls
    /// `announce` when a peer subscribes, and only directly connected peers see the
    /// subscription. `None`: all of them.
    pub subscribe_fanout: Option<usize>,
    /// How often Byzantine members act.
    pub lie_interval: Duration,
    /// Readable trace records to keep (the hash covers everything regardless).
    pub keep_trace: usize,
}

fn monitoring_name<S: serde::Serializer>(m: &Monitoring, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&describe_monitoring(*m))
}

/// `all-to-all` or `k=<k>`.
pub fn describe_monitoring(m: Monitoring) -> String {
    match m {
        Monitoring::AllToAll => "all-to-all".into(),
        Monitoring::Observers { k } => format!("k={k}"),
    }
}

impl SimConfig {
    /// Defaults for `nodes` nodes: all-to-all monitoring with the largest `f` up to 3
    /// for small clusters; from 32 nodes on, `f = 3` and `k = 10` sampled observers
    /// (K >= 3f + 1).
    pub fn new(nodes: usize, seed: u64) -> Self {
        let (f, monitoring) = if nodes < 32 {
            (nodes.saturating_sub(1) / 3, Monitoring::AllToAll)
        } else {
            (3, Monitoring::Observers { k: 10 })
        };
        Self {
            nodes,
            f: f.min(3),
            monitoring,
            seed,
            network: NetworkConfig::default(),
            gossip_amplification: 1.0,
            subscribe_fanout: Some(8),
            lie_interval: Duration::from_millis(500),
            keep_trace: 0,
        }
    }

    /// The protocol configuration every node runs.
    pub fn membership_config(&self, ids: &[PeerId]) -> MembershipConfig {
        let mut c = MembershipConfig::new(ids.iter().copied(), self.f);
        c.monitoring = self.monitoring;
        c
    }
}

/// The identity of node `i` under `seed` (stable across runs).
pub fn keypair(seed: u64, i: usize) -> Keypair {
    let mut r = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    let mut b = [0u8; 32];
    r.fill(&mut b);
    // 32 bytes are always a valid ed25519 secret.
    Keypair::ed25519_from_bytes(b).expect("32-byte ed25519 secret")
}
