//! What `jobmesh mesh peers` shows: the mesh as one node's voter sees it.

use jobmesh::clock::Millis;
use jobmesh::membership::Membership;
use serde::{Deserialize, Serialize};

use crate::mesh::{MeshStats, PeerId};

/// One member as `jobmesh mesh peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Its peer id (also its node id in the store).
    pub peer: String,
    /// `self`, `alive`, `suspected` or `evicted`.
    pub state: String,
    /// Its incarnation as last seen.
    pub incarnation: u64,
    /// The local suspicion level (phi accrual), if there are samples.
    pub phi: Option<f64>,
    /// Last probe round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Whether this node ever heard from it.
    pub heard: bool,
    /// Down votes about its current incarnation this node holds (2f+1 evict).
    pub down_votes: usize,
    /// Signers of the eviction certificate, if it was evicted.
    pub evicted_by: Vec<String>,
}

/// The mesh as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct MeshStatus {
    /// This node's peer id.
    pub me: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// The view epoch.
    pub epoch: u64,
    /// Whether it sees a quorum (it only votes Down then).
    pub quorum: bool,
    /// Every member of the view, and evicted ones.
    pub members: Vec<PeerStatus>,
    /// Bytes received on the mesh since start (all connections).
    pub bytes_in: u64,
    /// Bytes sent on the mesh since start.
    pub bytes_out: u64,
    /// Inputs refused by the per-peer budgets and the connection gate since start, all
    /// kinds together (see `MeshStats::refused` for the split).
    #[serde(default)]
    pub refused_inputs: u64,
    /// Outsiders banned since start.
    #[serde(default)]
    pub bans: u64,
    /// Connections with outsiders held now.
    #[serde(default)]
    pub outsider_connections: u64,
    /// When this snapshot was taken (ms since the epoch).
    pub at_ms: i64,
}

/// The mesh as `core` sees it at `now`, with the members of `allowlist` it evicted and
/// the mesh's counters.
pub(super) fn snapshot(
    core: &Membership,
    allowlist: &[PeerId],
    stats: MeshStats,
    now: Millis,
) -> MeshStatus {
    let me = core.me();
    let mut members: Vec<PeerStatus> = core
        .view()
        .members()
        .map(|(peer, info)| PeerStatus {
            peer: peer.to_string(),
            state: if *peer == me {
                "self"
            } else if core.is_suspected(peer) {
                "suspected"
            } else {
                "alive"
            }
            .to_string(),
            incarnation: info.incarnation,
            phi: core.phi(peer, now).filter(|p| p.is_finite()),
            rtt_ms: core.rtt(peer).map(|d| d.as_secs_f64() * 1000.0),
            heard: core.heard(peer),
            down_votes: core.down_votes(peer),
            evicted_by: Vec::new(),
        })
        .collect();
    for peer in allowlist {
        if let Some((incarnation, cert)) = core.view().eviction(peer) {
            members.push(PeerStatus {
                peer: peer.to_string(),
                state: "evicted".to_string(),
                incarnation: *incarnation,
                phi: None,
                rtt_ms: None,
                heard: false,
                down_votes: cert.votes.len(),
                evicted_by: cert
                    .votes
                    .iter()
                    .map(|v| v.vote.observer.to_string())
                    .collect(),
            });
        }
    }
    members.sort_by(|a, b| a.peer.cmp(&b.peer));
    let r = stats.refused;
    MeshStatus {
        bytes_in: stats.traffic.bytes_in,
        bytes_out: stats.traffic.bytes_out,
        refused_inputs: r.subscriptions
            + r.messages
            + r.probes
            + r.peer_exchange
            + r.identify
            + r.direct_streams
            + r.malformed
            + r.connections
            + r.streams,
        bans: stats.bans,
        outsider_connections: stats.outsider_connections,
        at_ms: now.0,
        me: me.to_string(),
        incarnation: core.incarnation(),
        epoch: core.epoch(),
        quorum: core.has_quorum(),
        members,
    }
}
