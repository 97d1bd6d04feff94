//! The Membership actor: drives the sans-IO protocol core (`jobmesh::membership`) with
//! the mesh's events, a timer and probe results, and turns its outputs into gossip,
//! probes and consequences: an eviction revokes the evicted node's leases in the store
//! (fencing: its late completions are refused) so its jobs run again at once, and is
//! recorded with its certificate as a `node.evicted` event.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::NodeId;
use jobmesh::membership::{
    Acceptance, MEMBERSHIP_TOPIC, Membership, MembershipEvent, Message, Output, SignedVote,
    Verdict, Vote, decode, encode,
};
use libp2p::identity::Keypair;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::Ctx;
use crate::faults::{ActiveFaults, Byzantine};
use crate::mesh::{Client, MeshEvent, PeerId, Validation};

/// Messages to the membership actor.
pub enum MembershipMsg {
    /// Something happened on the mesh.
    Mesh(MeshEvent),
    /// The protocol's timer fired.
    Tick,
    /// A direct probe finished.
    Probed(PeerId, bool, Duration),
    /// A mesh event held back by an injected delay: handled without further faults.
    Delayed(MeshEvent),
    /// Time for a Byzantine member's next lie (chaos runs only).
    Lie,
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

/// The membership actor.
pub(crate) struct MembershipActor;

/// Its wiring.
pub(crate) struct MembershipArgs {
    pub core: Membership,
    pub client: Client,
    pub ctx: Arc<Ctx>,
    pub status: Arc<Mutex<MeshStatus>>,
    pub allowlist: Vec<PeerId>,
    /// The node key: a Byzantine member signs its lies with it.
    pub keypair: Keypair,
    /// Injected faults (chaos runs), if the node is under chaos control.
    pub faults: Option<watch::Receiver<ActiveFaults>>,
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
    keypair: Keypair,
    faults_rx: Option<watch::Receiver<ActiveFaults>>,
    /// The faults in force (none outside chaos runs).
    faults: ActiveFaults,
    /// Randomness of injected loss and of lies.
    rng: StdRng,
    /// Recent gossip, for a Byzantine replayer.
    heard: VecDeque<Vec<u8>>,
    lie_ticker: Option<JoinHandle<()>>,
    lies: u64,
    /// Objectively invalid input per peer outside gossip (junk direct frames and
    /// probes), which gossipsub's own invalid-message penalty does not see.
    penalties: std::collections::HashMap<PeerId, u32>,
    /// When this node last announced itself because of each member (its subscription or
    /// admission): at most once per peer per [`ANNOUNCE_AGAIN_AFTER`].
    announced_for: std::collections::HashMap<PeerId, std::time::Instant>,
    /// The view digest the mesh was last told the members of.
    members_told: Option<u64>,
}

/// A member's subscription (or admission) makes this node announce itself at once, at most
/// once per member per this long; others wait for the periodic announcement. Outsiders'
/// subscriptions never reach this actor.
const ANNOUNCE_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Gossipsub application score taken per invalid direct input (below -10 a peer gets no
/// gossip from us, below -80 it is graylisted).
const PENALTY: f64 = -20.0;
/// Peers remembered with penalties (bounded, like everything fed by the network).
const MAX_PENALISED: usize = 1024;

/// Interval between a Byzantine member's lies.
const LIE_EVERY: Duration = Duration::from_millis(500);
/// Gossip kept for replay.
const REPLAY_BUFFER: usize = 64;

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
            keypair: args.keypair,
            faults_rx: args.faults,
            faults: ActiveFaults::default(),
            rng: StdRng::from_rng(&mut rand::rng()),
            heard: VecDeque::new(),
            lie_ticker: None,
            lies: 0,
            penalties: std::collections::HashMap::new(),
            announced_for: std::collections::HashMap::new(),
            members_told: None,
        };
        if s.faults_rx.is_some() {
            let me = myself.clone();
            s.lie_ticker = Some(tokio::spawn(async move {
                let mut every = tokio::time::interval(LIE_EVERY);
                loop {
                    every.tick().await;
                    if me.cast(MembershipMsg::Lie).is_err() {
                        return;
                    }
                }
            }));
        }
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
        for t in [s.timer.take(), s.lie_ticker.take()].into_iter().flatten() {
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
        s.refresh_faults();
        let msg = match msg {
            MembershipMsg::Mesh(event) => match s.inject(&myself, event).await {
                Some(event) => MembershipMsg::Mesh(event),
                None => return Ok(()),
            },
            MembershipMsg::Delayed(event) => MembershipMsg::Mesh(event),
            MembershipMsg::Probed(peer, _, _) if s.faults.drop_from.contains(&peer) => {
                MembershipMsg::Probed(peer, false, Duration::ZERO)
            }
            MembershipMsg::Lie => {
                s.lie(now).await;
                return Ok(());
            }
            other => other,
        };
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
                    s.penalise(peer).await;
                }
            }
            MembershipMsg::Mesh(MeshEvent::Subscribed { peer, topic })
                if topic == MEMBERSHIP_TOPIC =>
            {
                if !s.announce_for(peer, now) {
                    return Ok(());
                }
            }
            MembershipMsg::Mesh(MeshEvent::MalformedInput {
                peer,
                protocol,
                reason,
            }) => {
                tracing::debug!(%peer, protocol, reason, "malformed input");
                s.penalise(peer).await;
                return Ok(());
            }
            MembershipMsg::Mesh(_) | MembershipMsg::Delayed(_) | MembershipMsg::Lie => {
                return Ok(());
            }
        }
        s.flush(&myself).await;
        Ok(())
    }
}

impl MembershipState {
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
    fn announce_for(&mut self, peer: PeerId, now: jobmesh::clock::Millis) -> bool {
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

    /// Takes up a changed faults document (chaos runs).
    fn refresh_faults(&mut self) {
        let Some(rx) = self.faults_rx.as_mut() else {
            return;
        };
        if !rx.has_changed().unwrap_or(false) {
            return;
        }
        self.faults = rx.borrow_and_update().clone();
        tracing::warn!(faults = ?self.faults, "chaos: injected faults changed");
        let silent = self.faults.byzantine == Some(Byzantine::Withhold);
        self.client
            .set_probe_filter(self.faults.drop_from.clone(), silent);
    }

    /// Applies injected drop, loss and delay to an incoming mesh event; `None` if it was
    /// dropped or held back (it then returns as [`MembershipMsg::Delayed`]).
    async fn inject(
        &mut self,
        myself: &ActorRef<MembershipMsg>,
        event: MeshEvent,
    ) -> Option<MeshEvent> {
        if self.faults_rx.is_none() {
            return Some(event);
        }
        let sender = match &event {
            MeshEvent::Message {
                propagation_source,
                data,
                ..
            } => {
                if self.faults.byzantine == Some(Byzantine::Replay) {
                    if self.heard.len() >= REPLAY_BUFFER {
                        self.heard.pop_front();
                    }
                    self.heard.push_back(data.clone());
                }
                *propagation_source
            }
            MeshEvent::Direct { peer, .. } => *peer,
            _ => return Some(event),
        };
        let f = &self.faults;
        let dropped =
            f.drop_from.contains(&sender) || (f.loss > 0.0 && self.rng.random_bool(f.loss));
        if dropped {
            if let MeshEvent::Message {
                message_id,
                propagation_source,
                ..
            } = event
            {
                let _ = self
                    .client
                    .report_validation(message_id, propagation_source, Validation::Ignore)
                    .await;
            }
            return None;
        }
        if !f.delay.is_zero() {
            let (me, delay) = (myself.clone(), f.delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = me.cast(MembershipMsg::Delayed(event));
            });
            return None;
        }
        Some(event)
    }

    /// Signs a vote as this node.
    fn forge(&mut self, subject: PeerId, verdict: Verdict, seq: u64) -> Option<Vec<u8>> {
        let incarnation = self.core.view().get(&subject)?.incarnation;
        let vote = Vote {
            subject,
            epoch: self.core.epoch(),
            view: self.core.view().digest(),
            observer: self.core.me(),
            incarnation,
            verdict,
            seq,
        };
        let sv = SignedVote::sign(vote, &self.keypair)?;
        Some(encode(&Message::Vote(sv)))
    }

    /// A withholder drops its own votes; an equivocator sends each vote together with
    /// its opposite under the same sequence number. Other messages pass.
    async fn misbehave_on_vote(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let Ok(Message::Vote(sv)) = decode(&bytes) else {
            return Some(bytes);
        };
        if self.faults.byzantine == Some(Byzantine::Withhold) {
            return None;
        }
        let v = sv.vote;
        let opposite = match v.verdict {
            Verdict::Up => Verdict::Down,
            Verdict::Down => Verdict::Up,
        };
        if let Some(twin) = self.forge(v.subject, opposite, v.seq) {
            self.publish(twin).await;
        }
        Some(bytes)
    }

    /// One round of the configured Byzantine behaviour.
    async fn lie(&mut self, now: jobmesh::clock::Millis) {
        let Some(behaviour) = self.faults.byzantine else {
            return;
        };
        self.lies += 1;
        let me = self.core.me();
        let others: Vec<PeerId> = self
            .core
            .view()
            .members()
            .map(|(p, _)| *p)
            .filter(|p| *p != me)
            .collect();
        let seq = (now.0.max(0) as u64).saturating_mul(16) + (self.lies % 16);
        match behaviour {
            Byzantine::FalseDown => {
                for subject in others {
                    if let Some(bytes) = self.forge(subject, Verdict::Down, seq) {
                        self.publish(bytes).await;
                    }
                }
            }
            Byzantine::Equivocate => {
                if let Some(subject) = others.iter().copied().choose(&mut self.rng) {
                    for verdict in [Verdict::Down, Verdict::Up] {
                        if let Some(bytes) = self.forge(subject, verdict, seq) {
                            self.publish(bytes).await;
                        }
                    }
                }
            }
            Byzantine::Replay => {
                if let Some(old) = self.heard.iter().choose(&mut self.rng).cloned() {
                    self.publish(old).await;
                }
            }
            Byzantine::Junk => {
                for _ in 0..4 {
                    let mut junk = vec![0u8; self.rng.random_range(1..=200)];
                    self.rng.fill_bytes(&mut junk);
                    self.publish(junk.clone()).await;
                    if let Some(peer) = others.iter().copied().choose(&mut self.rng) {
                        self.client.send_direct(peer, junk);
                    }
                }
            }
            Byzantine::Withhold => {}
        }
    }

    /// Carries out what the core asked for, then refreshes the status snapshot.
    async fn flush(&mut self, myself: &ActorRef<MembershipMsg>) {
        // Outputs may produce outputs (an admission announces this node): drain until none.
        loop {
            let outputs = self.core.drain_outputs();
            if outputs.is_empty() {
                break;
            }
            self.carry_out(outputs, myself).await;
        }
        self.tell_members();
        let incarnation = self.core.incarnation();
        if self.announced != Some(incarnation)
            && self.client.set_incarnation(incarnation).await.is_ok()
        {
            self.announced = Some(incarnation);
        }
        let snapshot = self.snapshot();
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// Carries out one batch of the core's outputs.
    async fn carry_out(&mut self, outputs: Vec<Output>, myself: &ActorRef<MembershipMsg>) {
        for out in outputs {
            match out {
                Output::Broadcast(bytes) => {
                    let bytes = match self.faults.byzantine {
                        Some(Byzantine::Withhold | Byzantine::Equivocate) => {
                            match self.misbehave_on_vote(bytes).await {
                                Some(b) => b,
                                None => continue,
                            }
                        }
                        _ => bytes,
                    };
                    self.publish(bytes).await;
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
        let stats = self.client.stats();
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
            incarnation: self.core.incarnation(),
            epoch: self.core.epoch(),
            quorum: self.core.has_quorum(),
            members,
        }
    }
}
