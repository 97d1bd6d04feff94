//! The Membership actor: drives the sans-IO protocol core (`jobmesh::membership`) with
//! the mesh's events, a timer and probe results, and turns its outputs into gossip,
//! probes and consequences: an eviction revokes the evicted node's leases in the store
//! (fencing: its late completions are refused) so its jobs run again at once, and is
//! recorded with its certificate as a `node.evicted` event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::NodeId;
use jobmesh::membership::{Acceptance, MEMBERSHIP_TOPIC, Membership, MembershipEvent, Output};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::context::Ctx;
use crate::mesh::{Client, MeshEvent, PeerId, Validation};

/// Messages to the membership actor.
pub enum MembershipMsg {
    /// Something happened on the mesh.
    Mesh(MeshEvent),
    /// The protocol's timer fired.
    Tick,
    /// A direct probe finished.
    Probed(PeerId, bool, Duration),
}

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
    /// When this snapshot was taken (ms since the epoch).
    pub at_ms: i64,
}

/// The membership actor.
pub(crate) struct MembershipActor;

/// Its wiring.
pub(crate) struct MembershipArgs {
    pub core: Membership,
    pub client: Client,
    pub ctx: Arc<Ctx>,
    pub status: Arc<Mutex<MeshStatus>>,
    pub allowlist: Vec<PeerId>,
}

/// Its state.
pub(crate) struct MembershipState {
    core: Membership,
    client: Client,
    ctx: Arc<Ctx>,
    status: Arc<Mutex<MeshStatus>>,
    allowlist: Vec<PeerId>,
    timer: Option<JoinHandle<()>>,
    /// When the pending timer should fire; how late it fires measures our own health.
    timer_due: Option<jobmesh::clock::Millis>,
    /// Lifeguard-style local health: grows while our timers fire late (we are
    /// overloaded or paused), shrinks while they are punctual. At the core's threshold
    /// this node abstains from Down votes: its silence is its own fault, not the peers'.
    health: u32,
    /// The incarnation the mesh answers probes with, to update it only when it changes.
    announced: Option<u64>,
}

/// Timer lateness that counts against local health.
const LATE: i64 = 250;
/// Highest local health score kept.
const MAX_HEALTH: u32 = 8;

impl Actor for MembershipActor {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MembershipArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut s = MembershipState {
            core: args.core,
            client: args.client,
            ctx: args.ctx,
            status: args.status,
            allowlist: args.allowlist,
            timer: None,
            timer_due: None,
            health: 0,
            announced: None,
        };
        let now = s.ctx.now();
        s.core.handle_tick(now);
        s.flush(&myself).await;
        Ok(s)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = s.timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = s.ctx.now();
        match msg {
            MembershipMsg::Tick => {
                if let Some(due) = s.timer_due.take() {
                    s.health = if now.0 - due.0 > LATE {
                        (s.health + 1).min(MAX_HEALTH)
                    } else {
                        s.health.saturating_sub(1)
                    };
                    s.core.local_health(s.health);
                }
                s.core.handle_tick(now)
            }
            MembershipMsg::Probed(peer, ok, rtt) => s.core.probe_result(peer, ok, rtt, now),
            MembershipMsg::Mesh(MeshEvent::Message {
                propagation_source,
                author,
                message_id,
                topic,
                data,
            }) => {
                let verdict = if topic != MEMBERSHIP_TOPIC {
                    Validation::Ignore
                } else {
                    // StrictSign: the author is authenticated; a message without one is
                    // not ours to judge.
                    match author {
                        Some(from) => match s.core.handle_message(from, &data, now) {
                            Acceptance::Accept => Validation::Accept,
                            Acceptance::Ignore(_) => Validation::Ignore,
                            Acceptance::Reject(why) => {
                                tracing::debug!(%propagation_source, ?why, "rejected membership message");
                                Validation::Reject
                            }
                        },
                        None => Validation::Reject,
                    }
                };
                let _ = s
                    .client
                    .report_validation(message_id, propagation_source, verdict)
                    .await;
            }
            MembershipMsg::Mesh(MeshEvent::Direct { peer, data }) => {
                if let Acceptance::Reject(why) = s.core.handle_direct(peer, &data, now) {
                    tracing::debug!(%peer, ?why, "rejected direct frame");
                }
            }
            MembershipMsg::Mesh(MeshEvent::Subscribed { topic, .. })
                if topic == MEMBERSHIP_TOPIC =>
            {
                s.core.announce(now);
            }
            MembershipMsg::Mesh(_) => return Ok(()),
        }
        s.flush(&myself).await;
        Ok(())
    }
}

impl MembershipState {
    /// Carries out what the core asked for, then refreshes the status snapshot.
    async fn flush(&mut self, myself: &ActorRef<MembershipMsg>) {
        for out in self.core.drain_outputs() {
            match out {
                Output::Broadcast(bytes) => {
                    if let Err(e) = self.client.publish(MEMBERSHIP_TOPIC, bytes).await {
                        // No peer yet, or the mesh is stopping: gossip is best effort.
                        tracing::debug!(error = %e, "membership broadcast not sent");
                    }
                }
                Output::Probe(peer) => {
                    let client = self.client.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let (ok, rtt) = match client.probe(peer).await {
                            Ok(r) => (true, r.rtt),
                            Err(_) => (false, Duration::ZERO),
                        };
                        let _ = me.cast(MembershipMsg::Probed(peer, ok, rtt));
                    });
                }
                Output::SetTimer(at) => {
                    if let Some(t) = self.timer.take() {
                        t.abort();
                    }
                    let delay =
                        Duration::from_millis(at.0.saturating_sub(self.ctx.now().0).max(0) as u64);
                    let me = myself.clone();
                    self.timer = Some(tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = me.cast(MembershipMsg::Tick);
                    }));
                }
                Output::Event(e) => self.on_event(e).await,
                Output::Send { to, bytes } => {
                    // Best effort: a dropped frame is a missed arrival, as on the wire.
                    self.client.send_direct(to, bytes);
                }
            }
        }
        let incarnation = self.core.incarnation();
        if self.announced != Some(incarnation)
            && self.client.set_incarnation(incarnation).await.is_ok()
        {
            self.announced = Some(incarnation);
        }
        let snapshot = self.snapshot();
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    async fn on_event(&mut self, e: MembershipEvent) {
        let now = self.ctx.now();
        let node_of = |p: &PeerId| NodeId(p.to_string());
        match e {
            MembershipEvent::Joined { peer, incarnation } => {
                let ev = LifecycleEvent::new(EventKind::NodeJoined, now)
                    .node(node_of(&peer))
                    .detail(json!({ "incarnation": incarnation, "seen_by": self.ctx.node }));
                self.ctx.events.emit(ev).await;
            }
            MembershipEvent::Suspected { peer, incarnation } => {
                let ev = LifecycleEvent::new(EventKind::NodeSuspected, now)
                    .node(node_of(&peer))
                    .detail(json!({ "incarnation": incarnation, "by": self.ctx.node }));
                self.ctx.events.emit(ev).await;
            }
            MembershipEvent::Evicted {
                subject,
                incarnation,
                certificate,
            } => {
                let cert = serde_json::to_value(&certificate).unwrap_or_default();
                let signers: Vec<String> = certificate
                    .votes
                    .iter()
                    .map(|v| v.vote.observer.to_string())
                    .collect();
                let detail = json!({
                    "incarnation": incarnation,
                    "signers": signers,
                    "certificate": cert,
                });
                // Every member that applies the certificate revokes: the store's fencing
                // makes the second and later revocations no-ops.
                match self
                    .ctx
                    .store
                    .revoke_node(&node_of(&subject), now, detail.clone())
                    .await
                {
                    Ok(rescued) => {
                        tracing::warn!(%subject, rescued = rescued.len(), "node evicted by certificate; its jobs re-queued");
                    }
                    Err(e) => {
                        tracing::error!(%subject, error = %e, "evicted node's leases not revoked; lease expiry will rescue them");
                    }
                }
                self.client.forget_direct(&subject);
                let ev = LifecycleEvent::new(EventKind::NodeEvicted, now)
                    .node(node_of(&subject))
                    .detail(detail);
                self.ctx.events.emit(ev).await;
            }
            MembershipEvent::SelfEvicted { incarnation, .. } => {
                // Our leases were revoked: stop running what we hold; the store refuses
                // our completions anyway.
                tracing::warn!(
                    incarnation,
                    "this node was evicted; dropping its running attempts and rejoining"
                );
                for lease in self.ctx.inflight.leases() {
                    self.ctx.inflight.interrupt(lease.job, Some(lease.token));
                }
            }
            other => tracing::debug!(?other, "membership"),
        }
    }

    fn snapshot(&self) -> MeshStatus {
        let now = self.ctx.now();
        let me = self.core.me();
        let mut members: Vec<PeerStatus> = self
            .core
            .view()
            .members()
            .map(|(peer, info)| PeerStatus {
                peer: peer.to_string(),
                state: if *peer == me {
                    "self"
                } else if self.core.is_suspected(peer) {
                    "suspected"
                } else {
                    "alive"
                }
                .to_string(),
                incarnation: info.incarnation,
                phi: self.core.phi(peer, now).filter(|p| p.is_finite()),
                rtt_ms: self.core.rtt(peer).map(|d| d.as_secs_f64() * 1000.0),
                heard: self.core.heard(peer),
                down_votes: self.core.down_votes(peer),
                evicted_by: Vec::new(),
            })
            .collect();
        for peer in &self.allowlist {
            if let Some((incarnation, cert)) = self.core.view().eviction(peer) {
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
        let traffic = self.client.stats().traffic;
        MeshStatus {
            bytes_in: traffic.bytes_in,
            bytes_out: traffic.bytes_out,
            at_ms: now.0,
            me: me.to_string(),
            incarnation: self.core.incarnation(),
            epoch: self.core.epoch(),
            quorum: self.core.has_quorum(),
            members,
        }
    }
}
