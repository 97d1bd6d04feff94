//! The requests a [`Client`](super::Client) sends the event loop, each with the sender
//! of its answer (rust-libp2p's file-sharing example), and the types they carry.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, gossipsub::MessageId};
use tokio::sync::oneshot;

use super::error::{ClientError, ProbeError};

/// The application's verdict on a received gossip message (see
/// [`MeshEvent::Message`](super::MeshEvent::Message)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver and forward to the mesh.
    Accept,
    /// Objectively invalid (bad signature, non-member, not an assigned observer): drop and
    /// penalise the propagation source's gossipsub score.
    Reject,
    /// Not useful (stale, duplicate vote): drop without penalty and without forwarding.
    Ignore,
}

impl From<Validation> for libp2p::gossipsub::MessageAcceptance {
    fn from(v: Validation) -> Self {
        match v {
            Validation::Accept => Self::Accept,
            Validation::Reject => Self::Reject,
            Validation::Ignore => Self::Ignore,
        }
    }
}

/// A successful probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    /// Round-trip time from sending the request to decoding the answer, including opening
    /// the stream (and dialling, if the peer was not connected).
    pub rtt: Duration,
    /// The responder's incarnation, so refutations are seen by the prober.
    pub incarnation: u64,
}

/// Where the event loop sends a command's answer.
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// A request from a [`Client`](super::Client) to the event loop; each carries the sender of its answer.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs(Reply<Vec<Multiaddr>>),
    Dial(Multiaddr, Reply<Result<PeerId, ClientError>>),
    Disconnect(PeerId, Reply<bool>),
    Subscribe(String, Reply<Result<bool, ClientError>>),
    Publish(String, Vec<u8>, Reply<Result<MessageId, ClientError>>),
    ReportValidation(MessageId, PeerId, Validation, Reply<bool>),
    SetAppScore(PeerId, f64, Reply<bool>),
    PeerScore(PeerId, Reply<Option<f64>>),
    SetIncarnation(u64, Reply<()>),
    Probe(PeerId, Reply<Result<ProbeReply, ProbeError>>),
    ConnectedPeers(Reply<Vec<PeerId>>),
    MeshPeers(String, Reply<Vec<PeerId>>),
    Shutdown(Reply<()>),
}
