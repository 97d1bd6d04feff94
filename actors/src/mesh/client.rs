//! The cloneable handle through which the rest of jobmesh talks to the mesh.

use std::{sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId, gossipsub::MessageId};
use tokio::sync::{mpsc, oneshot};

use super::{
    command::{Command, ProbeReply, Reply, Validation},
    error::{ClientError, ProbeError},
    ledger::{MeshLedger, MeshStats},
};

/// Handle to a running mesh node. Cheap to clone; every method sends one command over a
/// bounded channel (so a flood of callers is back-pressured) and awaits its own answer.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) sender: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) probe_timeout: Duration,
    pub(crate) ledger: Arc<MeshLedger>,
    pub(crate) links: super::direct::SharedLinks,
}

impl Client {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.sender
            .send(make(tx))
            .await
            .map_err(|_| ClientError::EventLoopGone)?;
        rx.await.map_err(|_| ClientError::EventLoopGone)
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Wire traffic and dropped-event counters.
    pub fn stats(&self) -> MeshStats {
        self.ledger.stats()
    }

    /// Stream bytes per member, and of outsiders together.
    pub fn traffic_by_peer(&self) -> super::TrafficByPeer {
        self.ledger.traffic_by_peer()
    }

    /// Addresses this node listens on, each ending in `/p2p/<local peer id>` so they can be
    /// handed to another node's `bootstrap` or [`Client::dial`]. Waits for the first listener
    /// to be bound if none is yet.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, ClientError> {
        self.call(Command::ListenAddrs).await
    }

    /// Dials `addr` and resolves once a connection is established, with the remote peer id.
    /// If `addr` ends in `/p2p/<peer id>`, the remote must prove that identity; already being
    /// connected to it counts as success.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, ClientError> {
        self.call(|r| Command::Dial(addr, r)).await?
    }

    /// Closes all connections to `peer` (for example after it was evicted). Returns whether
    /// it was connected.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, ClientError> {
        self.call(|r| Command::Disconnect(peer, r)).await
    }

    /// Joins a gossipsub topic (with jobmesh's scoring parameters). Returns `false` if
    /// already subscribed.
    pub async fn subscribe(&self, topic: impl Into<String>) -> Result<bool, ClientError> {
        let topic = topic.into();
        self.call(|r| Command::Subscribe(topic, r)).await?
    }

    /// Publishes `data` on `topic`, signed with the node key. Fails if the payload exceeds
    /// `max_message_size`, if no peer is subscribed to the topic yet, or if the same payload
    /// was published recently (message ids are content hashes).
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Result<MessageId, ClientError> {
        let (topic, data) = (topic.into(), data.into());
        self.call(|r| Command::Publish(topic, data, r)).await?
    }

    /// Reports the verdict on a message received as
    /// [`MeshEvent::Message`](super::MeshEvent::Message); must be called once per message.
    /// `propagation_source` is the peer that forwarded it. Returns `false` if the message had
    /// already left the cache (then nothing is forwarded or penalised).
    pub async fn report_validation(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        verdict: Validation,
    ) -> Result<bool, ClientError> {
        self.call(|r| Command::ReportValidation(message_id, propagation_source, verdict, r))
            .await
    }

    /// Sets the gossipsub application-specific score of `peer` (weight 1, so the value is
    /// added to its score as-is; below -10 it gets no gossip, below -80 it is graylisted).
    /// Returns `false` if the peer is unknown to gossipsub.
    pub async fn set_app_score(&self, peer: PeerId, score: f64) -> Result<bool, ClientError> {
        self.call(|r| Command::SetAppScore(peer, score, r)).await
    }

    /// The gossipsub score of `peer` as seen locally, if it is known.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, ClientError> {
        self.call(|r| Command::PeerScore(peer, r)).await
    }

    /// Sets the incarnation sent in probes and probe answers.
    pub async fn set_incarnation(&self, incarnation: u64) -> Result<(), ClientError> {
        self.call(|r| Command::SetIncarnation(incarnation, r)).await
    }

    /// Probes `peer` directly (dialling it if needed). Fails within the configured probe
    /// timeout if the peer does not answer.
    pub async fn probe(&self, peer: PeerId) -> Result<ProbeReply, ProbeError> {
        let (tx, rx) = oneshot::channel();
        let send = self.sender.send(Command::Probe(peer, tx));
        // The request-response timeout covers the stream; this one also covers a slow dial
        // and a full command channel, so the caller's bound always holds.
        let answer = tokio::time::timeout(self.probe_timeout, async {
            send.await.map_err(|_| ProbeError::EventLoopGone)?;
            rx.await.map_err(|_| ProbeError::EventLoopGone)?
        });
        answer.await.unwrap_or(Err(ProbeError::Timeout(peer)))
    }

    /// Names the members (allowlist and admitted peers). From then on, every other peer is
    /// an outsider: its connections are capped, its inputs budgeted tightly, it gets no
    /// direct stream, no peer exchange and no subscription events, and it is never handed
    /// to anyone by peer exchange. Until called, every peer is treated as a member.
    pub fn set_members(&self, members: impl IntoIterator<Item = PeerId>) {
        self.ledger.set_members(members);
    }

    /// Sends a frame (1 to [`MAX_FRAME`](super::direct::MAX_FRAME) bytes) to `peer` on its persistent direct stream
    /// (`/jobmesh/direct/1`), opening or reopening the stream as needed; the peer
    /// receives it as [`MeshEvent::Direct`](super::MeshEvent::Direct). Best effort and
    /// non-blocking: returns `false` if the frame was dropped (link queue full, too many
    /// links, bad size). Must be called within a tokio runtime.
    pub fn send_direct(&self, peer: PeerId, frame: Vec<u8>) -> bool {
        self.links.send(peer, frame)
    }

    /// Closes the direct link to `peer` (for example after it was evicted).
    pub fn forget_direct(&self, peer: &PeerId) {
        self.links.forget(peer);
    }

    /// Peers with at least one established connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, ClientError> {
        self.call(Command::ConnectedPeers).await
    }

    /// Peers in the local gossipsub mesh of `topic` (diagnostics and tests).
    pub async fn mesh_peers(&self, topic: impl Into<String>) -> Result<Vec<PeerId>, ClientError> {
        let topic = topic.into();
        self.call(|r| Command::MeshPeers(topic, r)).await
    }

    /// Stops the event loop, closing all connections, and waits until it has stopped.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call(Command::Shutdown).await
    }
}
