//! The event loop: sole owner of the [`Swarm`], driven by swarm events, client commands and
//! the peer-exchange timer. Stays sequential: one task per node is plenty for membership
//! traffic, and it keeps every piece of state single-owner. What peers send (gossip,
//! probes, identify, peer exchange) is handled in `event_loop/inbound.rs`.

mod inbound;

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub,
    multiaddr::Protocol,
    request_response::OutboundRequestId,
    swarm::{ConnectionId, SwarmEvent, dial_opts::DialOpts},
};
use tokio::sync::{mpsc, oneshot};

use super::{
    behaviour::{Gossipsub, MeshBehaviour, MeshBehaviourEvent},
    budget::{LogLimiter, PeerBudget, Rate},
    command::{Command, ProbeReply, Validation},
    direct::Readers,
    error::{ClientError, ProbeError},
    event::MeshEvent,
    ledger::{Input, MeshLedger},
    probe::ProbeRequest,
};

/// Listen addresses reported per identified peer that we keep for re-dialling and peer
/// exchange; identify allows a peer to list arbitrarily many.
const MAX_ADDRS_PER_PEER: usize = 8;

/// Peers remembered per budget (each budget's map is bounded; connected peers are
/// bounded by the connection limits, so this is never the binding limit in practice).
const BUDGET_PEERS: usize = 1024;

/// How often connected outsiders are checked for a graylisting gossipsub score, and
/// unconnected bootstrap peers for a dial that is due.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Per-peer budgets of one input kind: one rate for members, a tighter one for outsiders.
///
/// Gossipsub's own defences (strict signing, peer scoring, the graylist) still apply and
/// still matter: they decide what is forwarded and who is heard. But they cost nothing
/// to a peer that sends requests that are not messages (subscription churn is handled
/// before the graylist check), they start from a neutral score for every new identity,
/// and they do not cover the other protocols at all. These budgets bound the work any one
/// peer can cause, whatever it sends, before anything reaches the application.
struct KindBudget {
    kind: Input,
    member: PeerBudget<PeerId>,
    outsider: PeerBudget<PeerId>,
}

impl KindBudget {
    fn new(kind: Input, member: Rate, outsider: Rate) -> Self {
        Self {
            kind,
            member: PeerBudget::new(member, BUDGET_PEERS),
            outsider: PeerBudget::new(outsider, BUDGET_PEERS),
        }
    }
}

/// Every budgeted input kind. Members' rates are far above what an honest member sends
/// (a few subscriptions at connect, a few probes and gossip messages per second);
/// outsiders' rates fit a joiner (one heartbeat, a probe or two, one peer exchange).
struct Budgets {
    subscriptions: KindBudget,
    messages: KindBudget,
    probes: KindBudget,
    peer_exchange: KindBudget,
    identify: KindBudget,
    direct_streams: KindBudget,
    malformed: KindBudget,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            subscriptions: KindBudget::new(
                Input::Subscription,
                Rate::new(2.0, 8.0),
                Rate::new(1.0, 4.0),
            ),
            messages: KindBudget::new(
                Input::Message,
                Rate::new(200.0, 400.0),
                Rate::new(5.0, 10.0),
            ),
            probes: KindBudget::new(Input::Probe, Rate::new(20.0, 40.0), Rate::new(2.0, 5.0)),
            peer_exchange: KindBudget::new(
                Input::PeerExchange,
                Rate::new(1.0, 4.0),
                Rate::new(0.1, 2.0),
            ),
            identify: KindBudget::new(Input::Identify, Rate::new(1.0, 4.0), Rate::new(0.5, 2.0)),
            direct_streams: KindBudget::new(
                Input::DirectStream,
                Rate::new(2.0, 8.0),
                // Outsiders get no direct stream at all; see `on_direct_stream`.
                Rate::new(0.0, 0.0),
            ),
            malformed: KindBudget::new(Input::Malformed, Rate::new(5.0, 10.0), Rate::new(2.0, 5.0)),
        }
    }
}

/// One log line per second per kind of trouble, with the count of lines held back.
struct Logs {
    refused: LogLimiter,
    full: LogLimiter,
    slow: LogLimiter,
}

impl Default for Logs {
    fn default() -> Self {
        let every = Duration::from_secs(1);
        Self {
            refused: LogLimiter::new(every),
            full: LogLimiter::new(every),
            slow: LogLimiter::new(every),
        }
    }
}

struct PendingProbe {
    peer: PeerId,
    nonce: u64,
    sent: Instant,
    reply: oneshot::Sender<Result<ProbeReply, ProbeError>>,
}

/// What identify told us about a connected peer.
struct PeerInfo {
    addrs: Vec<Multiaddr>,
    speaks_peer_exchange: bool,
}

/// Owns the swarm; run it with [`EventLoop::run`] (as [`spawn_mesh`](super::spawn_mesh) does).
pub struct EventLoop {
    swarm: Swarm<MeshBehaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MeshEvent>,
    ledger: Arc<MeshLedger>,
    max_message_size: usize,
    max_connections: usize,
    peer_exchange_interval: Option<Duration>,
    incarnation: u64,
    listen_addrs: Vec<Multiaddr>,
    /// Listeners not yet closed; `Swarm::listeners` only lists already bound addresses.
    open_listeners: usize,
    /// `listen_addrs` callers that arrived before any listener was bound.
    pending_listen_addrs: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, ClientError>>)>,
    pending_probes: HashMap<OutboundRequestId, PendingProbe>,
    identified: HashMap<PeerId, PeerInfo>,
    incoming: libp2p_stream::IncomingStreams,
    readers: Readers,
    budgets: Budgets,
    logs: Logs,
    /// Bootstrap peers dialled again while they are not connected.
    redial: super::redial::Redial,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<MeshBehaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<MeshEvent>,
        ledger: Arc<MeshLedger>,
        incoming: libp2p_stream::IncomingStreams,
        cfg: &super::MeshConfig,
    ) -> Self {
        Self {
            swarm,
            commands,
            events,
            ledger,
            max_message_size: cfg.max_message_size,
            max_connections: cfg.max_connections as usize,
            peer_exchange_interval: cfg.peer_exchange_interval,
            incarnation: 0,
            listen_addrs: Vec::new(),
            open_listeners: cfg.listen.len(),
            pending_listen_addrs: Vec::new(),
            pending_dials: HashMap::new(),
            pending_probes: HashMap::new(),
            identified: HashMap::new(),
            incoming,
            readers: Readers::default(),
            budgets: Budgets::default(),
            logs: Logs::default(),
            redial: super::redial::Redial::new(&cfg.bootstrap, tokio::time::Instant::now()),
        }
    }

    /// Charges one input to `peer`. Over budget, the input is dropped and counted; an
    /// outsider is also disconnected and banned for a while, so its flood ends at the
    /// gate instead of costing a budget check per input.
    fn charge(&mut self, which: fn(&mut Budgets) -> &mut KindBudget, peer: PeerId) -> bool {
        let now = Instant::now();
        let member = self.ledger.is_member(&peer);
        let budget = which(&mut self.budgets);
        let kind = budget.kind;
        let ok = if member {
            budget.member.try_take(&peer, now)
        } else {
            budget.outsider.try_take(&peer, now)
        };
        if ok {
            return true;
        }
        self.ledger.refused(kind);
        if !member {
            self.ban(peer, now);
        }
        if let Some(held_back) = self.logs.refused.allow(now) {
            tracing::warn!(%peer, member, ?kind, held_back, "input over budget, dropped");
        }
        false
    }

    /// Bans connected outsiders that gossipsub graylisted. Gossipsub then drops their
    /// messages, but still decodes (and checks the signature of, and logs a WARN for each
    /// bad) message they send first: only closing the connection ends that work.
    fn ban_graylisted_outsiders(&mut self) {
        let now = Instant::now();
        let graylisted: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| !self.ledger.is_member(p))
            .filter(|p| {
                self.swarm
                    .behaviour()
                    .gossipsub
                    .peer_score(p)
                    .is_some_and(|s| s < super::config::peer_score_thresholds().graylist_threshold)
            })
            .copied()
            .collect();
        for peer in graylisted {
            self.ban(peer, now);
        }
    }

    /// Disconnects an outsider and refuses it for a while.
    fn ban(&mut self, peer: PeerId, now: Instant) {
        if self.ledger.ban(peer, now) {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Reads a peer's direct stream in a task of its own; frames become
    /// [`MeshEvent::Direct`].
    fn on_direct_stream(&mut self, peer: PeerId, stream: libp2p::Stream) {
        // Liveness frames are between members; an outsider's stream is closed unread.
        if !self.ledger.is_member(&peer) {
            self.ledger.refused(Input::DirectStream);
            return;
        }
        if !self.charge(|b| &mut b.direct_streams, peer) {
            return;
        }
        let (events, ledger) = (self.events.clone(), self.ledger.clone());
        let (events2, ledger2) = (self.events.clone(), self.ledger.clone());
        self.readers.accept(
            peer,
            stream,
            move |peer, data| match events.try_send(MeshEvent::Direct { peer, data }) {
                Ok(()) => {
                    ledger.delivered();
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    ledger.dropped();
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
            move |peer, reason| {
                let event = MeshEvent::MalformedInput {
                    peer,
                    protocol: "/jobmesh/direct/1",
                    reason,
                };
                if events2.try_send(event).is_err() {
                    ledger2.dropped();
                }
            },
        );
    }

    /// Runs until [`Client::shutdown`](super::Client::shutdown) or until every client is
    /// dropped. Dropping the swarm closes all connections.
    pub async fn run(mut self) {
        let period = self
            .peer_exchange_interval
            .unwrap_or(Duration::from_secs(3600));
        let mut exchange_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        exchange_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep_timer = tokio::time::interval(SWEEP_EVERY);
        sweep_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        self.readers.stop();
                        drop(self.swarm);
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.readers.stop();
                        return;
                    }
                },
                Some((peer, stream)) = self.incoming.next() => self.on_direct_stream(peer, stream),
                _ = exchange_timer.tick(), if self.peer_exchange_interval.is_some() => {
                    self.exchange_with_random_peer();
                }
                _ = sweep_timer.tick() => {
                    self.ban_graylisted_outsiders();
                    self.redial_bootstrap();
                }
            }
        }
    }

    /// Dials the bootstrap peers that are not connected, when their backoff is due.
    fn redial_bootstrap(&mut self) {
        let now = tokio::time::Instant::now();
        let swarm = &self.swarm;
        for addr in self.redial.due(now, |peer| swarm.is_connected(peer)) {
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, %e, "cannot dial bootstrap peer again");
            }
        }
    }

    fn emit(&mut self, event: MeshEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => {
                self.ledger.delivered();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.ledger.dropped();
                if let Some(held_back) = self.logs.full.allow(Instant::now()) {
                    tracing::warn!(held_back, "mesh event channel full, dropping events");
                }
                false
            }
            // Nobody listens; that is the application's choice.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn on_command(&mut self, command: Command) {
        let swarm = &mut self.swarm;
        match command {
            Command::ListenAddrs(reply) => {
                if self.listen_addrs.is_empty() && self.open_listeners > 0 {
                    self.pending_listen_addrs.push(reply);
                } else {
                    let _ = reply.send(self.listen_addrs.clone());
                }
            }
            Command::Dial(addr, reply) => self.dial(addr, reply),
            Command::Disconnect(peer, reply) => {
                let _ = reply.send(swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Subscribe(topic, reply) => {
                let _ = reply.send(subscribe(&mut swarm.behaviour_mut().gossipsub, &topic));
            }
            Command::Publish(topic, data, reply) => {
                let result = if data.len() > self.max_message_size {
                    Err(ClientError::TooLarge {
                        size: data.len(),
                        limit: self.max_message_size,
                    })
                } else {
                    swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(gossipsub::IdentTopic::new(&topic), data)
                        .map_err(|e| ClientError::Publish {
                            topic,
                            reason: e.to_string(),
                        })
                };
                if result.is_ok() {
                    self.ledger.published.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(result);
            }
            Command::ReportValidation(id, source, verdict, reply) => {
                if verdict == Validation::Reject {
                    self.ledger
                        .rejected_messages
                        .fetch_add(1, Ordering::Relaxed);
                }
                let found = swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, verdict.into());
                let _ = reply.send(found);
            }
            Command::SetAppScore(peer, score, reply) => {
                let set = swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, score);
                let _ = reply.send(set);
            }
            Command::PeerScore(peer, reply) => {
                let _ = reply.send(swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::SetIncarnation(incarnation, reply) => {
                self.incarnation = incarnation;
                let _ = reply.send(());
            }
            Command::Probe(peer, reply) => {
                if peer == *swarm.local_peer_id() {
                    let _ = reply.send(Err(ProbeError::SelfProbe));
                    return;
                }
                let nonce = rand::random();
                let request_id = swarm.behaviour_mut().probe.send_request(
                    &peer,
                    Ok(ProbeRequest {
                        nonce,
                        incarnation: self.incarnation,
                    }),
                );
                self.pending_probes.insert(
                    request_id,
                    PendingProbe {
                        peer,
                        nonce,
                        sent: Instant::now(),
                        reply,
                    },
                );
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(swarm.connected_peers().copied().collect());
            }
            Command::MeshPeers(topic, reply) => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let peers = swarm.behaviour().gossipsub.mesh_peers(&hash).copied();
                let _ = reply.send(peers.collect());
            }
            // Handled in `run`, which must drop the swarm before answering.
            Command::Shutdown(_) => unreachable!("shutdown is handled by the run loop"),
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, ClientError>>) {
        let opts = match split_peer_id(&addr) {
            Some((peer, transport_addr)) => DialOpts::peer_id(peer)
                .addresses(vec![transport_addr])
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let target = opts.get_peer_id();
        let connection_id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection_id, (addr, reply));
            }
            // The default dial condition refuses when already connected: that is success.
            Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                let _ = reply.send(target.ok_or(ClientError::Dial {
                    addr,
                    reason: "dial condition false".into(),
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(ClientError::Dial {
                    addr,
                    reason: e.to_string(),
                }));
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<MeshBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(MeshBehaviourEvent::Gossipsub(e)) => self.on_gossipsub(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Probe(e)) => self.on_probe(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Peers(e)) => self.on_peer_exchange(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(MeshBehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(MeshBehaviourEvent::Gate(never)) => match never {},
            // Our own pings' results: liveness is the probes' job.
            SwarmEvent::Behaviour(MeshBehaviourEvent::Ping(_)) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .with_p2p(*self.swarm.local_peer_id())
                    .unwrap_or_else(|a| a);
                tracing::info!(%full, "listening");
                self.listen_addrs.push(full.clone());
                for reply in self.pending_listen_addrs.drain(..) {
                    let _ = reply.send(self.listen_addrs.clone());
                }
                self.emit(MeshEvent::ListenAddr(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = address
                    .with_p2p(*self.swarm.local_peer_id())
                    .unwrap_or_else(|a| a);
                self.listen_addrs.retain(|a| *a != full);
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                tracing::warn!(?reason, "listener closed");
                self.open_listeners = self.open_listeners.saturating_sub(1);
                // Do not leave `listen_addrs` callers waiting for a listener that is gone.
                if self.open_listeners == 0 {
                    for reply in self.pending_listen_addrs.drain(..) {
                        let _ = reply.send(self.listen_addrs.clone());
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                // Outsiders' comings and goings are not the application's business (and an
                // outsider churning connections must not fill the event channel).
                if num_established.get() == 1 && self.ledger.is_member(&peer_id) {
                    self.emit(MeshEvent::PeerConnected {
                        peer: peer_id,
                        address: endpoint.get_remote_address().clone(),
                        outbound: endpoint.is_dialer(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.identified.remove(&peer_id);
                if self.ledger.is_member(&peer_id) {
                    self.emit(MeshEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(ClientError::Dial {
                        addr,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed");
            }
            _ => {}
        }
    }
}

/// Splits `/…/p2p/<id>` into the id and the transport part.
fn split_peer_id(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut transport = addr.clone();
    match transport.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, transport)),
        _ => None,
    }
}

/// Subscribes and installs the topic's score parameters (without them, invalid messages on
/// the topic would cost the sender nothing).
pub(crate) fn subscribe(gossipsub: &mut Gossipsub, topic: &str) -> Result<bool, ClientError> {
    let ident = gossipsub::IdentTopic::new(topic);
    let err = |reason: String| ClientError::Subscribe {
        topic: topic.to_string(),
        reason,
    };
    gossipsub
        .set_topic_params(ident.clone(), super::config::topic_score_params())
        .map_err(|e| err(e.to_string()))?;
    gossipsub.subscribe(&ident).map_err(|e| err(e.to_string()))
}
