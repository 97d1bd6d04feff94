//! What the mesh reports to the application.

use libp2p::{Multiaddr, PeerId, gossipsub};

/// What the mesh observed. Delivered on a bounded channel; when the application falls
/// behind, events are dropped (and counted in [`MeshStats::dropped_events`](super::MeshStats::dropped_events)) instead of
/// stalling the swarm, because a stalled swarm would also stall the very commands the
/// application may be awaiting. A dropped gossip message is reported `Ignore` to gossipsub.
#[derive(Debug, Clone, PartialEq)]
pub enum MeshEvent {
    /// A new listen address, ending in `/p2p/<local peer id>`.
    ListenAddr(Multiaddr),
    /// First connection to `peer` established.
    PeerConnected {
        /// The remote peer.
        peer: PeerId,
        /// Its address on this connection.
        address: Multiaddr,
        /// Whether we dialled.
        outbound: bool,
    },
    /// Last connection to `peer` closed.
    PeerDisconnected {
        /// The remote peer.
        peer: PeerId,
    },
    /// The peer told us about itself (identify).
    PeerIdentified {
        /// The remote peer.
        peer: PeerId,
        /// Its identify protocol version (`/jobmesh/1.0.0` for jobmesh nodes).
        protocol_version: String,
        /// Its software.
        agent_version: String,
        /// Its listen addresses (truncated to a few).
        listen_addrs: Vec<Multiaddr>,
    },
    /// A remote peer joined a topic.
    Subscribed {
        /// The remote peer.
        peer: PeerId,
        /// The topic name.
        topic: String,
    },
    /// A gossip message with a valid signature, awaiting the application's verdict via
    /// [`Client::report_validation`](super::Client::report_validation). It is neither
    /// forwarded nor penalised until then.
    Message {
        /// The peer that forwarded it to us; pass it to `report_validation`.
        propagation_source: PeerId,
        /// The author (signer).
        author: Option<PeerId>,
        /// The content id; pass it to `report_validation`.
        message_id: gossipsub::MessageId,
        /// The topic name.
        topic: String,
        /// The payload.
        data: Vec<u8>,
    },
    /// A frame arrived on a peer's direct stream (see [`Client::send_direct`](super::Client::send_direct)).
    Direct {
        /// The sender (authenticated by the connection).
        peer: PeerId,
        /// The frame.
        data: Vec<u8>,
    },
    /// A peer probed us; it was answered with our incarnation already.
    ProbeRequest {
        /// The prober.
        peer: PeerId,
        /// The prober's incarnation.
        incarnation: u64,
    },
    /// A peer sent bytes that do not decode: a junk probe request, or an undecodable probe
    /// or peer-exchange answer. The stream was dropped; the connection and other peers are
    /// unaffected. A fact for scoring. (Junk peer-exchange *requests* are only logged:
    /// request-response does not say who sent them.)
    MalformedInput {
        /// The sender.
        peer: PeerId,
        /// The protocol name.
        protocol: &'static str,
        /// The decoding error.
        reason: String,
    },
}
