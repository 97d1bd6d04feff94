//! The voter: this node's member in the Byzantine-tolerant health vote. It drives the
//! sans-IO protocol core (`jobmesh::membership`) with the mesh's events, a timer and
//! probe results, and turns the core's outputs into gossip, probes and consequences: an
//! eviction revokes the evicted node's leases in the store (fencing: its late
//! completions are refused) so its jobs run again at once, and is recorded with its
//! certificate and the jobs re-queued as a `node.evicted` event. Once a second it also
//! feeds the phi it computes for each member it monitors to the node's failure model
//! (`jobmesh::predict::failure`, whose vitals explain how an observer's phi counts).
//!
//! Named for what it does in the domain: it probes, votes and applies certificates.
//! (`membership` names the protocol core it drives; the Lifeguard score it keeps is its
//! local `health`.)
//!
//! It runs under the node supervisor, which restarts it after a crash with a fresh core
//! (a higher incarnation, as after a process restart) through a [`VoterSpec`]. Its
//! traffic passes an [`Interceptor`] ([`Untouched`] in production).

mod eviction;
mod intercept;
mod status;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jobmesh::claim_gate::QuorumSeen;
use jobmesh::clock::Millis;
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::NodeId;
use jobmesh::membership::{
    Acceptance, JoinCertificate, MEMBERSHIP_TOPIC, Membership, MembershipConfig, MembershipEvent,
    Output,
};
use libp2p::identity::Keypair;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::context::Ctx;
use crate::mesh::{Client, MeshEvent, PeerId, Validation};

pub(crate) use intercept::{Interceptor, Untouched};
pub use status::{MeshStatus, PeerStatus};

/// Messages to the voter.
pub enum VoterMsg {
    /// Something happened on the mesh.
    Mesh(MeshEvent),
    /// The protocol's timer fired.
    Tick,
    /// A direct probe finished: the peer, whether it answered, the round trip.
    Probed(PeerId, bool, Duration),
}

/// The voter actor; `I` is where its traffic passes.
pub(crate) struct Voter<I>(std::marker::PhantomData<I>);

/// Everything needed to start the voter, and to start it again after a crash.
pub(crate) struct VoterSpec<I> {
    /// Members, f and the detector's timings.
    pub config: MembershipConfig,
    /// The node key (the core signs with it).
    pub keypair: Keypair,
    /// The join certificate, for a node admitted by the cluster key.
    pub join: Option<JoinCertificate>,
    /// Seed of the core's randomness (each restart derives its own from it).
    pub seed: u64,
    pub client: Client,
    pub interceptor: Arc<I>,
    pub ctx: Arc<Ctx>,
    /// The snapshot `jobmesh mesh peers` reads; it outlives restarts.
    pub status: Arc<Mutex<MeshStatus>>,
}

/// Starts a voter linked to a supervisor: the supervisor holds this without knowing the
/// interceptor's type.
pub(crate) trait StartVoter: Send + Sync + 'static {
    /// Starts life number `life` (0 at node start) under `supervisor`, with a fresh core.
    fn start(
        &self,
        supervisor: ActorCell,
        life: u64,
    ) -> BoxFuture<'_, Result<ActorRef<VoterMsg>, ActorProcessingErr>>;
}

impl<I: Interceptor> StartVoter for VoterSpec<I> {
    fn start(
        &self,
        supervisor: ActorCell,
        life: u64,
    ) -> BoxFuture<'_, Result<ActorRef<VoterMsg>, ActorProcessingErr>> {
        Box::pin(async move {
            // A fresh core announces a higher incarnation (the clock's), so the members
            // take the restarted voter for the node coming back, not for a replay.
            let core = Membership::new(
                self.config.clone(),
                self.keypair.clone(),
                self.join.clone(),
                self.seed ^ life.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                self.ctx.now(),
            )
            .map_err(|e| format!("membership: {e}"))?;
            let args = VoterArgs {
                core,
                client: self.client.clone(),
                interceptor: self.interceptor.clone(),
                ctx: self.ctx.clone(),
                status: self.status.clone(),
                allowlist: self.config.allowlist.iter().copied().collect(),
            };
            let (voter, _) =
                Actor::spawn_linked(None, Voter(std::marker::PhantomData), args, supervisor)
                    .await?;
            Ok(voter)
        })
    }
}

/// Forwards the mesh's events (as the interceptor lets them through) to whichever voter
/// runs now. While none does (a restart), gossip is reported `Ignore` so gossipsub
/// neither waits for a verdict nor forwards it; other events are lost, as frames on a
/// link that is down.
pub(crate) fn pump(
    mut events: mpsc::Receiver<MeshEvent>,
    voter: watch::Receiver<Option<ActorRef<VoterMsg>>>,
    client: Client,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let current = voter.borrow().clone();
            let undelivered = match current {
                Some(v) => v.cast(VoterMsg::Mesh(e)).err().and_then(|err| match err {
                    ractor::MessagingErr::SendErr(VoterMsg::Mesh(e)) => Some(e),
                    _ => None,
                }),
                None => Some(e),
            };
            if let Some(MeshEvent::Message {
                message_id,
                propagation_source,
                ..
            }) = undelivered
            {
                let _ = client
                    .report_validation(message_id, propagation_source, Validation::Ignore)
                    .await;
            }
        }
    })
}

/// Its wiring.
pub(crate) struct VoterArgs<I> {
    core: Membership,
    client: Client,
    interceptor: Arc<I>,
    ctx: Arc<Ctx>,
    status: Arc<Mutex<MeshStatus>>,
    allowlist: Vec<PeerId>,
}

/// Its state.
pub(crate) struct VoterState<I> {
    core: Membership,
    client: Client,
    interceptor: Arc<I>,
    ctx: Arc<Ctx>,
    status: Arc<Mutex<MeshStatus>>,
    allowlist: Vec<PeerId>,
    timer: Option<JoinHandle<()>>,
    /// When the pending timer should fire; how late it fires measures our own health.
    timer_due: Option<Millis>,
    /// Lifeguard-style local health: grows while our timers fire late (we are
    /// overloaded or paused), shrinks while they are punctual. At the core's threshold
    /// this node abstains from Down votes: its silence is its own fault, not the peers'.
    health: u32,
    /// The incarnation the mesh answers probes with, to update it only when it changes.
    announced: Option<u64>,
    /// Objectively invalid input per peer outside gossip (junk direct frames and
    /// probes), which gossipsub's own invalid-message penalty does not see.
    penalties: std::collections::HashMap<PeerId, u32>,
    /// When this node last announced itself because of each member (its subscription or
    /// admission): at most once per peer per [`ANNOUNCE_AGAIN_AFTER`].
    announced_for: std::collections::HashMap<PeerId, std::time::Instant>,
    /// The view digest the mesh was last told the members of.
    members_told: Option<u64>,
    /// The core's count of votes received, as last added to the metrics.
    votes_counted: u64,
    /// When the phi of the members observed was last fed to the failure model.
    phi_fed: Option<Millis>,
}

/// How often the phi this node computes for each member it observes is fed to the
/// failure model (which smooths it over half a minute): often enough to see late
/// heartbeats at the default 500 ms interval, rarely enough to cost nothing.
const PHI_EVERY_MS: i64 = 1_000;

/// A member's subscription (or admission) makes this node announce itself at once, at most
/// once per member per this long; others wait for the periodic announcement. Outsiders'
/// subscriptions never reach this actor.
const ANNOUNCE_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Gossipsub application score taken per invalid direct input (below -10 a peer gets no
/// gossip from us, below -80 it is graylisted).
const PENALTY: f64 = -20.0;
/// Peers remembered with penalties (bounded, like everything fed by the network).
const MAX_PENALISED: usize = 1024;

/// Timer lateness that counts against local health.
const LATE: i64 = 250;
/// Highest local health score kept.
const MAX_HEALTH: u32 = 8;

impl<I: Interceptor> Actor for Voter<I> {
    type Msg = VoterMsg;
    type State = VoterState<I>;
    type Arguments = VoterArgs<I>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: VoterArgs<I>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut s = VoterState {
            core: args.core,
            client: args.client,
            interceptor: args.interceptor,
            ctx: args.ctx,
            status: args.status,
            allowlist: args.allowlist,
            timer: None,
            timer_due: None,
            health: 0,
            announced: None,
            penalties: std::collections::HashMap::new(),
            announced_for: std::collections::HashMap::new(),
            members_told: None,
            votes_counted: 0,
            phi_fed: None,
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
            VoterMsg::Tick => {
                if let Some(due) = s.timer_due.take() {
                    s.health = if now.0 - due.0 > LATE {
                        (s.health + 1).min(MAX_HEALTH)
                    } else {
                        s.health.saturating_sub(1)
                    };
                    s.core.local_health(s.health);
                }
                s.core.handle_tick(now);
                s.feed_phi(now);
            }
            VoterMsg::Probed(peer, ok, rtt) => s.core.probe_result(peer, ok, rtt, now),
            VoterMsg::Mesh(MeshEvent::Message {
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
            VoterMsg::Mesh(MeshEvent::Direct { peer, data }) => {
                if let Acceptance::Reject(why) = s.core.handle_direct(peer, &data, now) {
                    tracing::debug!(%peer, ?why, "rejected direct frame");
                    s.penalise(peer).await;
                }
            }
            VoterMsg::Mesh(MeshEvent::Subscribed { peer, topic }) if topic == MEMBERSHIP_TOPIC => {
                if !s.announce_for(peer, now) {
                    return Ok(());
                }
            }
            VoterMsg::Mesh(MeshEvent::MalformedInput {
                peer,
                protocol,
                reason,
            }) => {
                tracing::debug!(%peer, protocol, reason, "malformed input");
                s.penalise(peer).await;
                return Ok(());
            }
            VoterMsg::Mesh(_) => return Ok(()),
        }
        s.flush(&myself).await;
        Ok(())
    }
}

impl<I: Interceptor> VoterState<I> {
    /// Publishes on the membership topic; gossip is best effort.
    async fn publish(&self, bytes: Vec<u8>) {
        if let Err(e) = self.client.publish(MEMBERSHIP_TOPIC, bytes).await {
            // No peer yet, or the mesh is stopping.
            tracing::debug!(error = %e, "membership broadcast not sent");
        }
    }

    /// Announces this node because of `peer` (it subscribed, or was admitted), if it is a
    /// member and this was not done for it lately; returns whether it announced. The cost
    /// of announcements is so bounded by the number of members, not by anyone's rate.
    fn announce_for(&mut self, peer: PeerId, now: Millis) -> bool {
        if !self.core.is_member(&peer) || peer == self.core.me() {
            return false;
        }
        let at = std::time::Instant::now();
        if self
            .announced_for
            .get(&peer)
            .is_some_and(|last| at.duration_since(*last) < ANNOUNCE_AGAIN_AFTER)
        {
            return false;
        }
        // Bounded by the view: forget peers that are no longer members.
        let core = &self.core;
        self.announced_for.retain(|p, _| core.is_member(p));
        self.announced_for.insert(peer, at);
        self.core.announce(now);
        true
    }

    /// Feeds the phi of every member this node monitors and has heard from to the
    /// failure model, at most every [`PHI_EVERY_MS`] (a member not heard yet is in its
    /// join grace: its silence is no evidence). While this node's own timers run late
    /// (its local health above zero) nothing is fed: the lateness is its own, and would
    /// raise every member alike anyway.
    fn feed_phi(&mut self, now: Millis) {
        if self
            .phi_fed
            .is_some_and(|t| now.0 - t.0 < PHI_EVERY_MS && now >= t)
        {
            return;
        }
        self.phi_fed = Some(now);
        if self.health > 0 || !self.ctx.feed.is_on() {
            return;
        }
        let core = &self.core;
        let samples: Vec<(String, f64)> = core
            .monitored()
            .iter()
            .filter(|p| core.heard(p))
            .filter_map(|p| Some((p.to_string(), core.phi(p, now)?)))
            .collect();
        self.ctx
            .feed
            .phi(samples.iter().map(|(n, p)| (n.as_str(), *p)), now.0);
    }

    /// Tells the mesh who the members are (allowlist and current view), when it changed:
    /// everyone else is an outsider there.
    fn tell_members(&mut self) {
        let digest = self.core.view().digest();
        if self.members_told == Some(digest) {
            return;
        }
        self.members_told = Some(digest);
        let members = self
            .allowlist
            .iter()
            .copied()
            .chain(self.core.view().members().map(|(p, _)| *p));
        self.client.set_members(members);
    }

    /// Lowers `peer`'s gossipsub score for objectively invalid input that gossipsub did
    /// not see (direct frames, probes), so a junk sender ends up graylisted.
    async fn penalise(&mut self, peer: PeerId) {
        if !self.penalties.contains_key(&peer) && self.penalties.len() >= MAX_PENALISED {
            return;
        }
        let n = self.penalties.entry(peer).or_insert(0);
        *n = n.saturating_add(1);
        let score = (PENALTY * f64::from(*n)).max(-1000.0);
        let _ = self.client.set_app_score(peer, score).await;
    }

    /// Carries out what the core asked for, then refreshes the status snapshot.
    async fn flush(&mut self, myself: &ActorRef<VoterMsg>) {
        // Outputs may produce outputs (an admission announces this node): drain until none.
        loop {
            let outputs = self.core.drain_outputs();
            if outputs.is_empty() {
                break;
            }
            let outputs = self
                .interceptor
                .outgoing(outputs, &self.core, self.ctx.now());
            // The status shows what the core decided before the mesh hears of it: a peer
            // that saw this node's new incarnation never finds the node's own status older.
            self.refresh_status();
            self.carry_out(outputs, myself).await;
        }
        self.tell_members();
        let received = self.core.votes_received();
        if received > self.votes_counted {
            self.ctx
                .metrics
                .mesh
                .votes_received
                .inc_by(received - self.votes_counted);
            self.votes_counted = received;
        }
        self.refresh_status();
        let incarnation = self.core.incarnation();
        if self.announced != Some(incarnation)
            && self.client.set_incarnation(incarnation).await.is_ok()
        {
            self.announced = Some(incarnation);
        }
        // The claim gate closes while no quorum is heard (it wakes only on a change).
        self.ctx.gate.report_quorum(QuorumSeen {
            quorum: self.core.has_quorum(),
            live: self.core.live_members(self.ctx.now()),
            members: self.core.view().len(),
        });
    }

    /// Writes the status snapshot that `Node::mesh_status` reads.
    fn refresh_status(&self) {
        let snapshot = status::snapshot(
            &self.core,
            &self.allowlist,
            self.client.stats(),
            &self.client.traffic_by_peer(),
            self.ctx.now(),
        );
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Carries out one batch of the core's outputs.
    async fn carry_out(&mut self, outputs: Vec<Output>, myself: &ActorRef<VoterMsg>) {
        for out in outputs {
            match out {
                Output::Broadcast(bytes) => self.publish(bytes).await,
                Output::Probe(peer) => {
                    let client = self.client.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let (ok, rtt) = match client.probe(peer).await {
                            Ok(r) => (true, r.rtt),
                            Err(_) => (false, Duration::ZERO),
                        };
                        let _ = me.cast(VoterMsg::Probed(peer, ok, rtt));
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
                        let _ = me.cast(VoterMsg::Tick);
                    }));
                }
                Output::Event(e) => self.on_event(e).await,
                Output::Send { to, bytes } => {
                    // Best effort: a dropped frame is a missed arrival, as on the wire.
                    self.client.send_direct(to, bytes);
                }
            }
        }
    }

    async fn on_event(&mut self, e: MembershipEvent) {
        let now = self.ctx.now();
        let node_of = |p: &PeerId| NodeId(p.to_string());
        match e {
            MembershipEvent::Joined { peer, incarnation } => {
                // The newcomer hears this node at once rather than at the next periodic
                // announcement (its subscription came while it was still an outsider).
                self.announce_for(peer, now);
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
                self.ctx.metrics.mesh.evictions.inc();
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
                // The event is written after the revocation: it names the jobs this
                // node took back.
                let detail = match self
                    .ctx
                    .store
                    .revoke_node(&node_of(&subject), now, detail.clone())
                    .await
                {
                    Ok(rescued) => {
                        tracing::warn!(%subject, rescued = rescued.len(), "node evicted by certificate; its jobs re-queued");
                        eviction::event_detail(detail, Ok(&rescued))
                    }
                    Err(e) => {
                        tracing::error!(%subject, error = %e, "evicted node's leases not revoked; lease expiry will rescue them");
                        eviction::event_detail(detail, Err(e.to_string()))
                    }
                };
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
            cast @ MembershipEvent::VoteCast { .. } => {
                self.ctx.metrics.mesh.votes_cast.inc();
                tracing::debug!(?cast, "membership");
            }
            other => tracing::debug!(?other, "membership"),
        }
    }
}
