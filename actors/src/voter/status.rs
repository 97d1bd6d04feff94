//! What `jobmesh mesh peers` shows: the mesh as one node's voter sees it.

use std::collections::HashMap;

use jobmesh::clock::Millis;
use jobmesh::membership::Membership;
use serde::{Deserialize, Serialize};

use crate::mesh::{MeshStats, PeerId, TrafficByPeer};

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
    /// The observers whose Down votes about its current incarnation this node holds
    /// (for an evicted member, its certificate's signers).
    #[serde(default)]
    pub down_voters: Vec<String>,
    /// The members that observe it in the current view (probe it, vote about it), the
    /// first [`MAX_OBSERVERS_SHOWN`]; none once it is evicted.
    #[serde(default)]
    pub observers: Vec<String>,
    /// How many members observe it (`observers` may hold fewer).
    #[serde(default)]
    pub observer_count: usize,
    /// Bytes received from it on the mesh's streams since this node started (above
    /// encryption and multiplexing).
    #[serde(default)]
    pub bytes_in: u64,
    /// Bytes sent to it on the mesh's streams since this node started.
    #[serde(default)]
    pub bytes_out: u64,
}

/// Observers listed per member, at most: a sampled mesh has a few per member, an
/// all-to-all one has every other member, and a status of n members must not hold n²
/// names.
pub const MAX_OBSERVERS_SHOWN: usize = 32;

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
    /// Stream bytes received from outsiders since start, all together.
    #[serde(default)]
    pub outsider_bytes_in: u64,
    /// Stream bytes sent to outsiders since start, all together.
    #[serde(default)]
    pub outsider_bytes_out: u64,
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

/// The mesh as `core` sees it at `now`, with the members of `allowlist` it evicted, the
/// mesh's counters and its traffic per peer.
pub(super) fn snapshot(
    core: &Membership,
    allowlist: &[PeerId],
    stats: MeshStats,
    traffic: &TrafficByPeer,
    now: Millis,
) -> MeshStatus {
    let me = core.me();
    // Each id is encoded once, however many edges name it.
    let mut names: HashMap<PeerId, String> = HashMap::new();
    let mut name = |p: &PeerId| names.entry(*p).or_insert_with(|| p.to_string()).clone();
    let bytes = |p: &PeerId| traffic.members.get(p).copied().unwrap_or_default();
    let mut members: Vec<PeerStatus> = Vec::with_capacity(core.view().len());
    for (peer, info) in core.view().members() {
        let observers = core.observers_of(peer);
        let t = bytes(peer);
        members.push(PeerStatus {
            peer: name(peer),
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
            down_voters: core.down_voters(peer).iter().map(&mut name).collect(),
            observer_count: observers.len(),
            observers: observers
                .iter()
                .take(MAX_OBSERVERS_SHOWN)
                .map(&mut name)
                .collect(),
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
        });
    }
    for peer in allowlist {
        if let Some(cert) = core.eviction(peer) {
            let signers: Vec<String> = cert.votes.iter().map(|v| name(&v.vote.observer)).collect();
            let t = bytes(peer);
            members.push(PeerStatus {
                peer: name(peer),
                state: "evicted".to_string(),
                incarnation: cert.incarnation,
                phi: None,
                rtt_ms: None,
                heard: false,
                down_votes: signers.len(),
                down_voters: signers.clone(),
                evicted_by: signers,
                observers: Vec::new(),
                observer_count: 0,
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
            });
        }
    }
    members.sort_by(|a, b| a.peer.cmp(&b.peer));
    let r = stats.refused;
    MeshStatus {
        bytes_in: stats.traffic.bytes_in,
        bytes_out: stats.traffic.bytes_out,
        outsider_bytes_in: traffic.outsiders.bytes_in,
        outsider_bytes_out: traffic.outsiders.bytes_out,
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

#[cfg(test)]
mod tests {
    use jobmesh::membership::{
        Acceptance, Certificate, Membership, MembershipConfig, Message, SignedVote, Verdict, Vote,
        encode,
    };
    use libp2p::identity::Keypair;

    use super::*;
    use crate::mesh::Traffic;

    fn key(i: u8) -> Keypair {
        Keypair::ed25519_from_bytes([i + 1; 32]).unwrap()
    }

    fn id(i: u8) -> PeerId {
        key(i).public().to_peer_id()
    }

    fn down(observer: u8, subject: u8) -> SignedVote {
        let vote = Vote {
            subject: id(subject),
            epoch: 0,
            view: 0,
            observer: id(observer),
            incarnation: 0,
            verdict: Verdict::Down,
            seq: 1,
        };
        SignedVote::sign(vote, &key(observer)).unwrap()
    }

    fn member(s: &MeshStatus, i: u8) -> &PeerStatus {
        s.members
            .iter()
            .find(|m| m.peer == id(i).to_string())
            .unwrap()
    }

    #[test]
    fn members_carry_observers_down_voters_signers_and_traffic() {
        let allowlist: Vec<PeerId> = (0..4).map(id).collect();
        let config = MembershipConfig::new(allowlist.clone(), 1);
        let mut core = Membership::new(config, key(0), None, 7, Millis(0)).unwrap();
        let mut traffic = TrafficByPeer::default();
        traffic.members.insert(
            id(1),
            Traffic {
                bytes_in: 100,
                bytes_out: 40,
            },
        );
        traffic.outsiders.bytes_in = 9;
        let now = Millis(1);
        let s = snapshot(&core, &allowlist, MeshStats::default(), &traffic, now);
        let one = member(&s, 1);
        assert_eq!((one.bytes_in, one.bytes_out), (100, 40));
        assert_eq!(s.outsider_bytes_in, 9);
        let mut observers = one.observers.clone();
        observers.sort();
        let mut expected: Vec<String> = [0, 2, 3].map(|i| id(i).to_string()).to_vec();
        expected.sort();
        assert_eq!(observers, expected, "all-to-all: every other member");
        assert_eq!(one.observer_count, 3);

        // Two Down votes about member 3: their signers are listed.
        for o in [1, 2] {
            let bytes = encode(&Message::Vote(down(o, 3)));
            assert_eq!(core.handle_message(id(o), &bytes, now), Acceptance::Accept);
        }
        let s = snapshot(&core, &allowlist, MeshStats::default(), &traffic, now);
        let three = member(&s, 3);
        assert_eq!(three.down_votes, 2);
        let mut voters = three.down_voters.clone();
        voters.sort();
        let mut expected: Vec<String> = [1, 2].map(|i| id(i).to_string()).to_vec();
        expected.sort();
        assert_eq!(voters, expected);

        // A certificate evicts it: its signers, no observers.
        let cert = Certificate {
            subject: id(3),
            incarnation: 0,
            epoch: 0,
            votes: vec![down(0, 3), down(1, 3), down(2, 3)],
        };
        core.handle_message(id(1), &encode(&Message::Certificate(cert)), now);
        let s = snapshot(&core, &allowlist, MeshStats::default(), &traffic, now);
        let three = member(&s, 3);
        assert_eq!(three.state, "evicted");
        assert_eq!(three.evicted_by.len(), 3);
        assert_eq!(three.down_voters, three.evicted_by);
        assert!(three.observers.is_empty());
        assert_eq!(
            member(&s, 1).observer_count,
            2,
            "the evicted member observes no one"
        );
    }
}
