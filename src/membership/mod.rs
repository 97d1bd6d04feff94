//! Membership and Byzantine-tolerant health voting as a sans-IO state machine.
//!
//! A [`Membership`] owns no sockets, timers or clocks. The driver (the ractor
//! `Membership` actor, or the deterministic simulator) feeds it inputs —
//! [`handle_message`](Membership::handle_message) for bytes received on
//! [`MEMBERSHIP_TOPIC`], [`handle_tick`](Membership::handle_tick) when the last requested
//! timer fires, [`probe_result`](Membership::probe_result) for direct probes it was asked
//! to send, [`local_health`](Membership::local_health) for the node's own load — and
//! after each input drains [`drain_outputs`](Membership::drain_outputs): messages to
//! broadcast, probes to send, the next timer, and events.
//!
//! Driving it (what the actor does):
//! 1. `Membership::new(config, keypair, join_cert, seed, clock.now())`; subscribe to
//!    [`MEMBERSHIP_TOPIC`] with gossipsub in `ValidationMode::Strict` and
//!    `validate_messages()`; drain outputs.
//! 2. On a gossipsub message: `handle_message(source, &data, now)` with the message's
//!    authenticated `source`, then report the [`Acceptance`] (Accept / Ignore / Reject)
//!    through `report_message_validation_result`; drain outputs. When a peer subscribes
//!    to the topic, call [`announce`](Membership::announce).
//! 3. On [`Output::SetTimer`]: keep one timer (replace the previous one); when it fires,
//!    `handle_tick(now)`; drain outputs.
//! 4. On [`Output::Send`]: write the frame to the peer on a persistent direct stream;
//!    frames arriving on such streams go to [`handle_direct`](Membership::handle_direct).
//! 5. On [`Output::Probe`]: send a request-response ping to the peer; on the answer call
//!    `probe_result(peer, true, rtt, now)` (failures may be reported with `false` or
//!    left to the built-in timeout). Answer other nodes' probes directly in the driver.
//! 6. Feed the node's own load into [`local_health`](Membership::local_health).
//! 7. On [`Output::Broadcast`]: publish on the topic. On [`Output::Event`]: act (e.g.
//!    [`MembershipEvent::Evicted`] revokes leases and persists the certificate).
//!
//! Protocol, in short:
//! - Members (allowlisted or holding a [`JoinCertificate`]) gossip signed heartbeats
//!   with their incarnation: at start, on every incarnation change, when a peer
//!   subscribes, and every `announce_interval` (stretched in proportion above
//!   [`ANNOUNCE_FULL_RATE_MEMBERS`] members). Liveness itself travels as tiny
//!   unsigned frames ([`Liveness`]) every `heartbeat_interval`, straight to each
//!   observer over an authenticated stream: gossiping it would cost every node
//!   O(n) signed messages per interval, several times over. Every observer runs a
//!   phi-accrual detector per monitored member over liveness, heartbeat and
//!   probe-success arrivals.
//! - An observer (every other member, or K pseudo-random ones per subject) that
//!   suspects a subject probes it directly; if the probe fails, and the observer is
//!   healthy and sees a quorum of the last view, it broadcasts a signed Down vote.
//! - `2f + 1` distinct Down votes for the same (subject, incarnation, epoch) form a
//!   [`Certificate`]; any node evicts on a valid certificate, even without having voted.
//!   Eviction increments the view epoch.
//! - A live subject that sees Down votes about itself bumps its incarnation and
//!   broadcasts a heartbeat (refutation); votes about older incarnations are stale. An
//!   evicted node that sees its own certificate bumps its incarnation and re-announces;
//!   members readmit it only with an incarnation above the evicted one.
//!
//! Safety argument: with at most `f` Byzantine members, a certificate contains at least
//! `f + 1` honest Down votes, and an honest node votes Down only after its own probe
//! failed while it saw a quorum (more than half of its view and at least `2f + 1`
//! members) alive, so `f` liars alone never evict and a minority side never does.

pub mod adversary;
mod assign;
mod bounded;
mod certificate;
mod config;
mod crypto;
mod error;
mod phi;
mod view;
mod vote;
mod wire;

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p::identity::{KeyType, Keypair, PeerId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

pub use assign::Assignment;
pub use certificate::{Certificate, JoinCertificate};
pub use config::{MembershipConfig, Monitoring};
pub use crypto::public_key_of;
pub use error::{CertificateError, ConfigError, IgnoreReason, RejectReason};
pub use phi::{PhiAccrual, deviation_for_phi};
pub use view::{MemberInfo, View};
pub use vote::{SignedVote, Verdict, Vote, VoteTally};
pub use wire::{
    Direct, Heartbeat, Liveness, MAX_DIRECT_BYTES, MAX_MESSAGE_BYTES, MEMBERSHIP_TOPIC, Message,
    SignedHeartbeat, WIRE_VERSION, decode, decode_direct, encode, encode_direct,
};

use crate::clock::Millis;

/// Up to this many members every node announces itself every `announce_interval`;
/// above it the interval grows with the view (see `Membership::announce_every`).
pub const ANNOUNCE_FULL_RATE_MEMBERS: usize = 100;

/// The verdict on one received message, for gossipsub validation
/// (`report_message_validation_result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid and new: propagate.
    Accept,
    /// Valid but stale, duplicate or irrelevant: do not propagate, do not penalise.
    Ignore(IgnoreReason),
    /// Objectively invalid: do not propagate and penalise the sender's score.
    Reject(RejectReason),
}

/// What the protocol asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Publish these bytes on [`MEMBERSHIP_TOPIC`].
    Broadcast(Vec<u8>),
    /// Send these bytes (a [`Direct`] frame: liveness, or an evicted node's certificate)
    /// straight to this peer over a direct, authenticated stream; the receiver hands them
    /// to [`handle_direct`](Membership::handle_direct). Best effort: drop rather than
    /// queue when the link is slow, a late frame is worth nothing.
    Send {
        /// The observer to send to.
        to: PeerId,
        /// The encoded frame.
        bytes: Vec<u8>,
    },
    /// Send a direct probe to this peer and report with
    /// [`probe_result`](Membership::probe_result). A probe not reported within the
    /// configured timeout counts as failed.
    Probe(PeerId),
    /// Call [`handle_tick`](Membership::handle_tick) at this time. Replaces any earlier
    /// timer: the driver keeps one.
    SetTimer(Millis),
    /// Something the rest of the node should know.
    Event(MembershipEvent),
}

/// Membership changes and protocol milestones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A peer was admitted (allowlisted or by join certificate) or readmitted after an
    /// eviction with a higher incarnation.
    Joined {
        /// The member.
        peer: PeerId,
        /// Its incarnation.
        incarnation: u64,
    },
    /// The local detector suspects a monitored peer; a direct probe follows.
    Suspected {
        /// The suspect.
        peer: PeerId,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A suspected peer answered our own direct probe: suspicion cleared.
    Alive {
        /// The peer.
        peer: PeerId,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A suspected peer announced a higher incarnation: suspicion cancelled.
    Refuted {
        /// The peer.
        peer: PeerId,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// This node cast a vote.
    VoteCast {
        /// The subject.
        subject: PeerId,
        /// The subject's incarnation voted on.
        incarnation: u64,
        /// The verdict.
        verdict: Verdict,
    },
    /// A member was evicted on a valid certificate: revoke its leases (bump fencing),
    /// re-queue its jobs and persist the certificate with the event.
    Evicted {
        /// The evicted member.
        subject: PeerId,
        /// The incarnation evicted.
        incarnation: u64,
        /// The proof.
        certificate: Certificate,
    },
    /// This node saw Down votes about its current incarnation and refuted them by
    /// bumping its incarnation.
    SelfRefuted {
        /// The new incarnation.
        incarnation: u64,
    },
    /// This node learned it was evicted; it re-announces itself with a higher
    /// incarnation. Leases it held are void: stop running jobs.
    SelfEvicted {
        /// The certificate that evicted it.
        certificate: Certificate,
        /// The incarnation it rejoins with.
        incarnation: u64,
    },
    /// This node no longer sees a quorum of its view alive: it stops voting Down.
    QuorumLost {
        /// Members it sees alive (itself included).
        live: usize,
        /// Members in its view.
        view: usize,
    },
    /// This node sees a quorum again.
    QuorumRegained {
        /// Members it sees alive (itself included).
        live: usize,
        /// Members in its view.
        view: usize,
    },
}

/// Local knowledge about one other member.
#[derive(Debug, Clone)]
struct PeerState {
    detector: PhiAccrual,
    /// Whether we ever heard from it (heartbeat or probe answer). A member never heard
    /// is not suspected before `join_grace` has passed: at start-up silence means "not
    /// connected yet", not "dead" (lease expiry still rescues a node that never came).
    heard: bool,
    /// When we started tracking it.
    added_at: Millis,
    suspected: bool,
    probe_deadline: Option<Millis>,
    /// When our last direct probe of this peer failed.
    last_failure: Option<Millis>,
    /// Whether we saw a quorum when the pending probe was sent.
    quorum_at_send: bool,
    /// The last liveness frame accepted from it: (incarnation, seq).
    liveness: Option<(u64, u64)>,
    last_rtt: Option<Duration>,
    /// Our standing Down vote: (incarnation, epoch, when last sent).
    down_vote: Option<(u64, u64, Millis)>,
}

/// The membership protocol state of one node. See the module documentation.
#[derive(Debug)]
pub struct Membership {
    config: MembershipConfig,
    keypair: Keypair,
    me: PeerId,
    join: Option<JoinCertificate>,
    incarnation: u64,
    heartbeat_seq: u64,
    vote_seq: u64,
    view: View,
    peers: BTreeMap<PeerId, PeerState>,
    monitored: Vec<PeerId>,
    /// The members that observe this node: liveness frames go to them.
    observers_of_me: Vec<PeerId>,
    /// Counter of liveness frames sent (never reset: receivers order by
    /// (incarnation, seq)).
    liveness_seq: u64,
    probe_order: Vec<PeerId>,
    tally: VoteTally,
    /// Ring assignments under sampled monitoring by (epoch, member-set digest); a few
    /// recent epochs' worth.
    assignments: BTreeMap<(u64, u64), Assignment>,
    cert_resent: BTreeMap<PeerId, Millis>,
    local_health: u32,
    suspicion_deviation: f64,
    next_heartbeat: Millis,
    next_announce: Millis,
    /// Whether this node has announced itself at least once.
    announced: bool,
    next_probe: Millis,
    last_tick: Option<Millis>,
    timer: Option<Millis>,
    quorum: bool,
    rng: StdRng,
    outputs: Vec<Output>,
    /// Valid votes accepted from other members since start (for metrics).
    votes_received: u64,
}

impl Membership {
    /// A node with identity `keypair` (ed25519) starting at `now`. `join` is its join
    /// certificate if it is not allowlisted. `seed` drives the only randomness
    /// (heartbeat jitter, probe order): same seed and inputs, same outputs.
    ///
    /// The initial incarnation and vote counter are `now` in milliseconds, so a
    /// restarted node always announces a higher incarnation than before its crash
    /// (assuming the wall clock does not go back).
    pub fn new(
        config: MembershipConfig,
        keypair: Keypair,
        join: Option<JoinCertificate>,
        seed: u64,
        now: Millis,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if keypair.key_type() != KeyType::Ed25519 {
            return Err(ConfigError::NotEd25519);
        }
        let me = keypair.public().to_peer_id();
        let admitted = config.allowlist.contains(&me)
            || match (&join, &config.cluster_key) {
                (Some(jc), Some(key)) => jc.peer == me && jc.verify(key, now),
                _ => false,
            };
        if !admitted {
            return Err(ConfigError::NotAdmitted);
        }
        let mut view = View::new(config.allowlist.iter().copied());
        let incarnation = now.0.max(0) as u64;
        view.admit(me, incarnation);
        let mut m = Self {
            suspicion_deviation: deviation_for_phi(config.phi_threshold),
            next_heartbeat: now,
            next_announce: now,
            announced: false,
            next_probe: now.plus(config.probe_interval),
            keypair,
            me,
            join,
            incarnation,
            heartbeat_seq: 0,
            vote_seq: incarnation,
            view,
            peers: BTreeMap::new(),
            monitored: Vec::new(),
            observers_of_me: Vec::new(),
            liveness_seq: 0,
            probe_order: Vec::new(),
            tally: VoteTally::new(),
            assignments: BTreeMap::new(),
            cert_resent: BTreeMap::new(),
            local_health: 0,
            last_tick: None,
            timer: None,
            quorum: true,
            rng: StdRng::seed_from_u64(seed),
            outputs: Vec::new(),
            votes_received: 0,
            config,
        };
        let others: Vec<PeerId> = m.view.members().map(|(p, _)| *p).collect();
        for p in others {
            if p != me {
                m.track(p, now);
            }
        }
        m.refresh_monitoring(now);
        m.schedule_timer(now);
        Ok(m)
    }

    // ----- inputs -------------------------------------------------------------------

    /// Handles bytes received on [`MEMBERSHIP_TOPIC`] whose (authenticated) source is
    /// `from`. Never panics. Report the result to gossipsub.
    pub fn handle_message(&mut self, from: PeerId, bytes: &[u8], now: Millis) -> Acceptance {
        let result = match decode(bytes) {
            Err(e) => Acceptance::Reject(e),
            Ok(Message::Heartbeat(h)) => self.on_heartbeat(from, h, now),
            Ok(Message::Vote(v)) => {
                let r = self.on_vote(from, v, now);
                if r == Acceptance::Accept {
                    self.votes_received += 1;
                }
                r
            }
            Ok(Message::Certificate(c)) => self.on_certificate(c, now),
        };
        self.schedule_timer(now);
        result
    }

    /// Handles the timer requested by the last [`Output::SetTimer`] (calling it more
    /// often is harmless).
    pub fn handle_tick(&mut self, now: Millis) {
        if let Some(last) = self.last_tick
            && now.since(last) > self.config.pause_reset
        {
            // We were paused (GC, SIGSTOP, overload): the silence we measured is ours,
            // not the peers'. Restart their clocks rather than accuse them.
            for ps in self.peers.values_mut() {
                ps.detector.reset_last(now);
                // A probe that "timed out" while we were paused proves nothing.
                ps.probe_deadline = None;
            }
        }
        self.last_tick = Some(now);

        if now >= self.next_heartbeat {
            self.send_liveness();
            let base = self.config.heartbeat_interval.as_millis() as i64;
            let jitter = self.rng.random_range(-(base / 10)..=(base / 10));
            self.next_heartbeat = Millis(now.0.saturating_add((base + jitter).max(1)));
        }
        if now >= self.next_announce {
            self.announce(now);
        }

        // Probes that timed out count as failed.
        let mut failed = Vec::new();
        for (p, ps) in self.peers.iter_mut() {
            if ps.probe_deadline.is_some_and(|d| d <= now) {
                ps.probe_deadline = None;
                failed.push(*p);
            }
        }

        // Suspicion of monitored peers.
        let monitored = self.monitored.clone();
        for subject in &monitored {
            let Some(ps) = self.peers.get_mut(subject) else {
                continue;
            };
            let in_grace = !ps.heard && now < ps.added_at.plus(self.config.join_grace);
            if !ps.suspected && !in_grace && ps.detector.phi(now) >= self.config.phi_threshold {
                ps.suspected = true;
                let incarnation = self.view.get(subject).map_or(0, |m| m.incarnation);
                self.outputs.push(Output::Event(MembershipEvent::Suspected {
                    peer: *subject,
                    incarnation,
                }));
                self.start_probe(*subject, now);
            }
        }

        self.update_quorum(now);

        for peer in failed {
            self.on_probe_failed(peer, now);
        }

        // Keep probing suspects: every Down vote (first, refreshed, or re-cast after an
        // epoch change) rests on a probe failure of that moment.
        let reprobe = self.config.probe_interval.min(self.config.revote_interval);
        for subject in &monitored {
            let due = self.peers.get(subject).is_some_and(|ps| {
                ps.suspected
                    && ps.probe_deadline.is_none()
                    && ps.last_failure.is_none_or(|f| now >= f.plus(reprobe))
            });
            if due {
                self.start_probe(*subject, now);
            }
        }

        if now >= self.next_probe {
            self.round_robin_probe(now);
            self.next_probe = now.plus(self.config.probe_interval);
        }
        self.schedule_timer(now);
    }

    /// Reports the outcome of a direct probe requested by [`Output::Probe`]. Success is
    /// fresh first-hand evidence: it clears suspicion and withdraws our Down vote.
    pub fn probe_result(&mut self, peer: PeerId, ok: bool, rtt: Duration, now: Millis) {
        let incarnation = self.view.get(&peer).map_or(0, |m| m.incarnation);
        let Some(ps) = self.peers.get_mut(&peer) else {
            return;
        };
        let was_pending = ps.probe_deadline.take().is_some();
        if ok {
            ps.last_rtt = Some(rtt);
            ps.heard = true;
            ps.detector.heartbeat(now);
            let was_suspected = std::mem::replace(&mut ps.suspected, false);
            let withdrawn = ps.down_vote.take();
            if was_suspected {
                self.outputs
                    .push(Output::Event(MembershipEvent::Alive { peer, incarnation }));
            }
            if let Some((inc, _, _)) = withdrawn {
                self.cast(peer, inc, Verdict::Up, now);
            }
        } else if was_pending {
            self.on_probe_failed(peer, now);
        }
        self.schedule_timer(now);
    }

    /// Handles a frame received on the direct liveness stream from `from` (authenticated
    /// by the connection). Never panics. The verdict is for the driver's logs and
    /// scoring; direct frames are not forwarded.
    pub fn handle_direct(&mut self, from: PeerId, bytes: &[u8], now: Millis) -> Acceptance {
        let result = match decode_direct(bytes) {
            Err(e) => Acceptance::Reject(e),
            Ok(Direct::Liveness(frame)) => self.on_liveness(from, frame, now),
            Ok(Direct::Certificate(cert)) => self.on_certificate(cert, now),
        };
        self.schedule_timer(now);
        result
    }

    /// Gossips a signed heartbeat now (and restarts the announce interval). The driver
    /// calls it when a peer subscribes to the membership topic, so a joiner learns about
    /// this node at once rather than at the next periodic announcement.
    pub fn announce(&mut self, now: Millis) {
        self.broadcast_heartbeat();
        let every = self.announce_every();
        // The first periodic announcement comes after a random part of the interval,
        // so nodes started together do not announce in bursts.
        let wait = if self.announced {
            every
        } else {
            every.mul_f64(self.rng.random_range(0.0..1.0))
        };
        self.announced = true;
        self.next_announce = now.plus(wait);
        self.schedule_timer(now);
    }

    /// The periodic announcement interval at the current view size: `announce_interval`
    /// up to [`ANNOUNCE_FULL_RATE_MEMBERS`] members, stretched in proportion above, so
    /// each node receives a bounded number of periodic announcements per second (and
    /// checks as many signatures) however large the view grows.
    fn announce_every(&self) -> Duration {
        let scale = (self.view.len() as f64 / ANNOUNCE_FULL_RATE_MEMBERS as f64).max(1.0);
        self.config.announce_interval.mul_f64(scale)
    }

    /// Sets the local health score (Lifeguard's local health multiplier: 0 is healthy,
    /// higher means this node is slow: missed ticks, full queues, late probe answers).
    /// At or above the configured threshold the node abstains from Down votes.
    pub fn local_health(&mut self, score: u32) {
        self.local_health = score;
    }

    /// Takes the outputs produced so far. Drain after every input: the queue is not
    /// otherwise bounded.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    // ----- queries ------------------------------------------------------------------

    /// This node's peer id.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The view epoch (number of evictions applied, or adopted from f+1 members).
    pub fn epoch(&self) -> u64 {
        self.view.epoch()
    }

    /// The current view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether `peer` is a member in the local view.
    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.view.is_member(peer)
    }

    /// Down votes we hold about `peer`'s current incarnation at the current epoch.
    pub fn down_votes(&self, peer: &PeerId) -> usize {
        let incarnation = self.view.get(peer).map_or(0, |m| m.incarnation);
        self.tally.downs(peer, incarnation, self.view.epoch()).len()
    }

    /// The observers whose Down votes about `peer`'s current incarnation at the current
    /// epoch we hold (the signers [`down_votes`](Self::down_votes) counts).
    pub fn down_voters(&self, peer: &PeerId) -> Vec<PeerId> {
        let incarnation = self.view.get(peer).map_or(0, |m| m.incarnation);
        self.tally
            .downs(peer, incarnation, self.view.epoch())
            .into_iter()
            .map(|v| v.vote.observer)
            .collect()
    }

    /// The members that observe `subject` in the current view at the current epoch: every
    /// other member with all-to-all monitoring, its assigned observers on the epoch's
    /// rings otherwise (from the cached assignment when there is one). Empty for a
    /// non-member.
    pub fn observers_of(&self, subject: &PeerId) -> Vec<PeerId> {
        if !self.view.is_member(subject) {
            return Vec::new();
        }
        let epoch = self.view.epoch();
        if let Monitoring::Observers { .. } = self.config.monitoring
            && let Some(a) = self.assignments.get(&(epoch, self.view.digest()))
        {
            return a.observers_of(subject);
        }
        self.view
            .observers_of(subject, epoch, self.config.monitoring)
    }

    /// Whether we ever heard from `peer` (heartbeat or probe answer).
    pub fn heard(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|ps| ps.heard)
    }

    /// Whether the local detector suspects `peer`.
    pub fn is_suspected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.suspected)
    }

    /// Suspicion level of `peer` at `now`.
    pub fn phi(&self, peer: &PeerId, now: Millis) -> Option<f64> {
        self.peers.get(peer).map(|p| p.detector.phi(now))
    }

    /// Last round-trip time of a successful probe to `peer`.
    pub fn rtt(&self, peer: &PeerId) -> Option<Duration> {
        self.peers.get(peer).and_then(|p| p.last_rtt)
    }

    /// Whether this node saw a quorum of its view alive (by phi) at its last tick. Down
    /// votes further require quorum evidence newer than the suspicion they act on.
    pub fn has_quorum(&self) -> bool {
        self.quorum
    }

    /// Members (this node included) whose arrivals keep them below the suspicion
    /// threshold at `now`: the count [`has_quorum`](Self::has_quorum) judges.
    pub fn live_members(&self, now: Millis) -> usize {
        self.live_count(now)
    }

    /// The certificate by which `peer` was evicted, if it is currently evicted.
    pub fn eviction(&self, peer: &PeerId) -> Option<&Certificate> {
        if self.view.is_member(peer) {
            return None;
        }
        self.view.eviction(peer).map(|(_, c)| c)
    }

    /// Valid votes accepted from other members since this core started.
    pub fn votes_received(&self) -> u64 {
        self.votes_received
    }

    /// Peers this node observes (probes and votes about).
    pub fn monitored(&self) -> &[PeerId] {
        &self.monitored
    }

    // ----- message handlers -----------------------------------------------------------

    fn on_heartbeat(&mut self, from: PeerId, sh: SignedHeartbeat, now: Millis) -> Acceptance {
        let hb = &sh.heartbeat;
        let member = hb.member;
        if member != from {
            return Acceptance::Reject(RejectReason::SignerMismatch {
                from: from.to_string(),
                signer: member.to_string(),
            });
        }
        if member == self.me {
            return Acceptance::Ignore(IgnoreReason::Own);
        }
        // Cheap staleness checks before the signature.
        if let Some(info) = self.view.get(&member)
            && (hb.incarnation < info.incarnation
                || (hb.incarnation == info.incarnation
                    && info.heartbeat_seq.is_some_and(|s| hb.seq <= s)))
        {
            return Acceptance::Ignore(IgnoreReason::Replay);
        }
        let evicted_at = if self.view.is_member(&member) {
            None
        } else {
            self.view.eviction(&member).map(|(inc, _)| *inc)
        };
        if let Some(inc) = evicted_at
            && hb.incarnation <= inc
        {
            self.remind_evicted(member, now);
            return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
        }
        if let Err(e) = sh.verify() {
            return Acceptance::Reject(e);
        }
        if !self.view.is_member(&member) {
            // New or readmitted: check admission.
            let allowlisted = self.config.allowlist.contains(&member);
            if !allowlisted {
                match (&hb.join, &self.config.cluster_key) {
                    (Some(jc), Some(key)) => {
                        if jc.peer != member || !jc.verify(key, now) {
                            return Acceptance::Reject(RejectReason::BadJoinCertificate);
                        }
                    }
                    (Some(_), None) | (None, _) => {
                        return Acceptance::Ignore(IgnoreReason::NotMember);
                    }
                }
            }
            self.view.admit(member, hb.incarnation);
            self.track(member, now);
            self.refresh_monitoring(now);
            self.outputs.push(Output::Event(MembershipEvent::Joined {
                peer: member,
                incarnation: hb.incarnation,
            }));
        }
        let (incarnation, seq, epoch) = (hb.incarnation, hb.seq, hb.epoch);
        self.alive(member, incarnation, epoch, now);
        if let Some(info) = self.view.get_mut(&member) {
            info.heartbeat_seq = Some(seq);
        }
        Acceptance::Accept
    }

    fn on_liveness(&mut self, from: PeerId, frame: Liveness, now: Millis) -> Acceptance {
        if from == self.me {
            return Acceptance::Ignore(IgnoreReason::Own);
        }
        let Some(known) = self.view.get(&from).map(|m| m.incarnation) else {
            // Admission needs the signed heartbeat (allowlist or join certificate). An
            // evicted node still using its evicted incarnation is shown its certificate.
            if let Some((inc, _)) = self.view.eviction(&from)
                && frame.incarnation <= *inc
            {
                self.remind_evicted(from, now);
                return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
            }
            return Acceptance::Ignore(IgnoreReason::NotMember);
        };
        if frame.incarnation < known {
            return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
        }
        let last = self.peers.get(&from).and_then(|ps| ps.liveness);
        if last.is_some_and(|l| (frame.incarnation, frame.seq) <= l) {
            return Acceptance::Ignore(IgnoreReason::Replay);
        }
        if let Some(ps) = self.peers.get_mut(&from) {
            ps.liveness = Some((frame.incarnation, frame.seq));
        }
        self.alive(from, frame.incarnation, frame.epoch, now);
        Acceptance::Accept
    }

    /// First-hand or signed evidence that `member` (already in the view) is alive at
    /// `incarnation`: feeds its detector, records its epoch, and a higher incarnation
    /// refutes suspicion of the old one. A suspect's evidence that is not a refutation
    /// is confirmed by our own probe before suspicion is cleared.
    fn alive(&mut self, member: PeerId, incarnation: u64, epoch: u64, now: Millis) {
        let mut refuted = false;
        if let Some(info) = self.view.get_mut(&member) {
            if incarnation > info.incarnation {
                info.incarnation = incarnation;
                // Announcement counters restart with each incarnation.
                info.heartbeat_seq = None;
                refuted = true;
            }
            info.epoch = epoch;
        }
        if let Some(ps) = self.peers.get_mut(&member) {
            ps.heard = true;
            ps.detector.heartbeat(now);
            if refuted {
                let was = ps.suspected || ps.down_vote.is_some();
                ps.suspected = false;
                ps.down_vote = None;
                if was {
                    self.outputs.push(Output::Event(MembershipEvent::Refuted {
                        peer: member,
                        incarnation,
                    }));
                }
            } else if ps.suspected && ps.probe_deadline.is_none() {
                // A heartbeat is second-hand: confirm with our own probe before
                // clearing suspicion or withdrawing a vote.
                self.start_probe(member, now);
            }
        }
        self.adopt_epoch(now);
    }

    fn on_vote(&mut self, from: PeerId, sv: SignedVote, now: Millis) -> Acceptance {
        let v = &sv.vote;
        if v.observer != from {
            return Acceptance::Reject(RejectReason::SignerMismatch {
                from: from.to_string(),
                signer: v.observer.to_string(),
            });
        }
        if v.observer == self.me {
            return Acceptance::Ignore(IgnoreReason::Own);
        }
        if v.subject == v.observer {
            return Acceptance::Reject(RejectReason::SelfVote);
        }
        if !self.view.is_member(&v.observer) {
            // An ex-member, or (with a cluster key) possibly a joiner we have not
            // heard yet: our view may lag, so not the sender's fault.
            if self.view.eviction(&v.observer).is_some() || self.config.cluster_key.is_some() {
                return Acceptance::Ignore(IgnoreReason::NotMember);
            }
            return Acceptance::Reject(RejectReason::NonMemberVoter(v.observer.to_string()));
        }
        let epoch = self.view.epoch();
        let w = self.config.epoch_window;
        if v.epoch.saturating_add(w) < epoch || v.epoch > epoch.saturating_add(w) {
            return Acceptance::Ignore(IgnoreReason::StaleEpoch);
        }
        if self.tally.contains(&sv) {
            return Acceptance::Ignore(IgnoreReason::Replay);
        }
        if let Err(e) = sv.verify() {
            return Acceptance::Reject(e);
        }
        if v.subject == self.me {
            return self.on_vote_about_me(&sv, now);
        }
        let Some(known) = self.view.get(&v.subject).map(|m| m.incarnation) else {
            return Acceptance::Ignore(IgnoreReason::UnknownSubject);
        };
        if let Monitoring::Observers { k } = self.config.monitoring
            && !self
                .assignment(v.epoch, k)
                .observes(&v.observer, &v.subject)
        {
            // Same epoch and member set: the voter knew it was not assigned.
            if v.epoch == epoch && v.view == self.view.digest() {
                return Acceptance::Reject(RejectReason::NotAssignedObserver(
                    v.observer.to_string(),
                ));
            }
            // Otherwise not counted, but not penalised either: the epoch is a count of
            // evictions, and after a partition heals two honest nodes can sit at the same
            // epoch number with different member sets, so different observer assignments
            // (the deterministic simulator found honest votes rejected this way).
            return Acceptance::Ignore(if v.epoch == epoch {
                IgnoreReason::ViewMismatch
            } else {
                IgnoreReason::StaleEpoch
            });
        }
        if v.incarnation < known {
            return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
        }
        let (subject, incarnation, vepoch, verdict) =
            (v.subject, v.incarnation, v.epoch, v.verdict);
        if let Err(reason) = self.tally.record(sv) {
            return Acceptance::Ignore(reason);
        }
        if verdict == Verdict::Down {
            self.check_certificate(subject, incarnation, vepoch, now);
        }
        Acceptance::Accept
    }

    fn on_vote_about_me(&mut self, sv: &SignedVote, _now: Millis) -> Acceptance {
        let v = &sv.vote;
        if v.incarnation < self.incarnation {
            return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
        }
        if v.incarnation > self.incarnation {
            // Nobody honest knows a newer incarnation of us than we do.
            return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
        }
        if v.verdict == Verdict::Down {
            self.bump_incarnation(self.incarnation);
            self.outputs
                .push(Output::Event(MembershipEvent::SelfRefuted {
                    incarnation: self.incarnation,
                }));
            self.broadcast_heartbeat();
        }
        Acceptance::Accept
    }

    fn on_certificate(&mut self, cert: Certificate, now: Millis) -> Acceptance {
        let subject = cert.subject;
        if subject == self.me {
            if cert.incarnation != self.incarnation {
                return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
            }
            if let Err(verdict) = self.verify_certificate(&cert) {
                return verdict;
            }
            self.bump_incarnation(cert.incarnation);
            self.view.advance_epoch_to(cert.epoch.saturating_add(1));
            self.outputs
                .push(Output::Event(MembershipEvent::SelfEvicted {
                    certificate: cert,
                    incarnation: self.incarnation,
                }));
            self.broadcast_heartbeat();
            self.on_epoch_change(now);
            return Acceptance::Accept;
        }
        match self.view.get(&subject) {
            None => {
                return if self.view.eviction(&subject).is_some() {
                    Acceptance::Ignore(IgnoreReason::AlreadyApplied)
                } else {
                    Acceptance::Ignore(IgnoreReason::UnknownSubject)
                };
            }
            Some(info) if info.incarnation > cert.incarnation => {
                return Acceptance::Ignore(IgnoreReason::StaleIncarnation);
            }
            Some(_) => {}
        }
        if let Err(verdict) = self.verify_certificate(&cert) {
            return verdict;
        }
        self.apply_eviction(cert, false, now);
        Acceptance::Accept
    }

    // ----- protocol steps -------------------------------------------------------------

    /// Verifies a certificate against the local view. `Err(Reject)` if it is invalid
    /// under any view we could share with the sender (a signer never was a member, bad
    /// signature, duplicates, too few); `Err(Ignore)` if it is valid only counting
    /// signers that are no longer members or observers here.
    fn verify_certificate(&mut self, cert: &Certificate) -> Result<(), Acceptance> {
        // With a cluster key, an unknown signer may be a joiner we have not heard yet.
        let open = self.config.cluster_key.is_some();
        let known = |p: &PeerId| {
            open || self.view.is_member(p)
                || self.view.eviction(p).is_some()
                || self.config.allowlist.contains(p)
        };
        let f = self.config.f;
        let cached = |sv: &SignedVote| self.tally.contains(sv);
        if let Err(e) = cert.verify_cached(known, f, cached) {
            return Err(Acceptance::Reject(RejectReason::BadCertificate(e)));
        }
        let observers = self.observers(&cert.subject, cert.epoch);
        let strict = |p: &PeerId| match &observers {
            Some(obs) => obs.contains(p),
            None => self.view.is_member(p),
        };
        // Signatures were checked above: only membership is rechecked. A certificate
        // whose votes all name our epoch and member set was assembled under our very
        // assignment, so failing it is the sender's fault; otherwise views differ.
        let ours = (self.view.epoch(), self.view.digest());
        let same_view = cert
            .votes
            .iter()
            .all(|sv| (sv.vote.epoch, sv.vote.view) == ours);
        cert.verify_cached(strict, f, |_| true).map_err(|e| {
            if same_view {
                Acceptance::Reject(RejectReason::BadCertificate(e))
            } else {
                Acceptance::Ignore(IgnoreReason::ViewMismatch)
            }
        })?;
        if cert.votes.iter().any(|sv| self.tally.withdrawn(sv)) {
            return Err(Acceptance::Ignore(IgnoreReason::Withdrawn));
        }
        Ok(())
    }

    /// Starts tracking a member's liveness.
    fn track(&mut self, peer: PeerId, now: Millis) {
        let c = &self.config;
        self.peers.insert(
            peer,
            PeerState {
                heard: false,
                added_at: now,
                detector: PhiAccrual::new(
                    now,
                    c.heartbeat_interval,
                    c.phi_window,
                    c.min_std_dev,
                    c.acceptable_pause,
                ),
                suspected: false,
                probe_deadline: None,
                last_failure: None,
                quorum_at_send: false,
                liveness: None,
                last_rtt: None,
                down_vote: None,
            },
        );
    }

    /// The assigned observers of `subject` at `epoch` under sampled monitoring (`None`
    /// for all-to-all), from the cached ring assignment of that epoch.
    fn observers(&mut self, subject: &PeerId, epoch: u64) -> Option<Vec<PeerId>> {
        let Monitoring::Observers { k } = self.config.monitoring else {
            return None;
        };
        Some(self.assignment(epoch, k).observers_of(subject))
    }

    /// The ring assignment of the current members at `epoch`, built once per member set
    /// and epoch. Votes can name a few recent epochs, so a few are kept.
    fn assignment(&mut self, epoch: u64, k: usize) -> &Assignment {
        let key = (epoch, self.view.digest());
        if !self.assignments.contains_key(&key) && self.assignments.len() >= 4 {
            self.assignments.clear();
        }
        let view = &self.view;
        self.assignments
            .entry(key)
            .or_insert_with(|| view.assignment(epoch, k))
    }

    /// Recomputes which members this node observes (after view or epoch changes). A
    /// member newly observed gets a fresh detector: until now only the slow signed
    /// announcements reached us from it (its liveness frames went to its previous
    /// observers), and a detector trained on those intervals would take tens of seconds
    /// to notice a crash.
    fn refresh_monitoring(&mut self, now: Millis) {
        let before = std::mem::take(&mut self.monitored);
        let epoch = self.view.epoch();
        let me = self.me;
        let (monitored, observers_of_me) = match self.config.monitoring {
            Monitoring::AllToAll => {
                let others: Vec<PeerId> = self
                    .view
                    .members()
                    .map(|(p, _)| *p)
                    .filter(|p| *p != me)
                    .collect();
                (others.clone(), others)
            }
            Monitoring::Observers { k } => {
                let a = self.assignment(epoch, k);
                (a.observed_by(&me), a.observers_of(&me))
            }
        };
        self.monitored = monitored;
        self.observers_of_me = observers_of_me;
        let c = &self.config;
        for p in self.monitored.iter().filter(|p| !before.contains(p)) {
            if let Some(ps) = self.peers.get_mut(p) {
                ps.detector = PhiAccrual::new(
                    now,
                    c.heartbeat_interval,
                    c.phi_window,
                    c.min_std_dev,
                    c.acceptable_pause,
                );
            }
        }
        self.probe_order.retain(|p| self.monitored.contains(p));
    }

    fn bump_incarnation(&mut self, above: u64) {
        self.incarnation = self.incarnation.max(above).saturating_add(1);
        self.heartbeat_seq = 0;
        let me = self.me;
        let inc = self.incarnation;
        if let Some(info) = self.view.get_mut(&me) {
            info.incarnation = inc;
        } else {
            self.view.admit(me, inc);
        }
    }

    fn broadcast_heartbeat(&mut self) {
        self.heartbeat_seq = self.heartbeat_seq.saturating_add(1);
        let hb = Heartbeat {
            member: self.me,
            incarnation: self.incarnation,
            seq: self.heartbeat_seq,
            epoch: self.view.epoch(),
            join: self.join.clone(),
        };
        if let Some(sh) = SignedHeartbeat::sign(hb, &self.keypair) {
            self.outputs
                .push(Output::Broadcast(encode(&Message::Heartbeat(sh))));
        }
    }

    /// Sends a liveness frame to every observer of this node.
    fn send_liveness(&mut self) {
        self.liveness_seq = self.liveness_seq.saturating_add(1);
        let bytes = encode_direct(&Direct::Liveness(Liveness {
            incarnation: self.incarnation,
            seq: self.liveness_seq,
            epoch: self.view.epoch(),
        }));
        for to in &self.observers_of_me {
            self.outputs.push(Output::Send {
                to: *to,
                bytes: bytes.clone(),
            });
        }
    }

    fn start_probe(&mut self, peer: PeerId, now: Millis) {
        let timeout = self.config.probe_timeout;
        if self
            .peers
            .get(&peer)
            .is_none_or(|ps| ps.probe_deadline.is_some())
        {
            return;
        }
        let quorum = self.quorum_heard(now);
        if let Some(ps) = self.peers.get_mut(&peer) {
            ps.probe_deadline = Some(now.plus(timeout));
            ps.quorum_at_send = quorum;
            self.outputs.push(Output::Probe(peer));
        }
    }

    /// Whether a quorum of the view was heard within `quorum_window` before `now`.
    fn quorum_heard(&self, now: Millis) -> bool {
        let since = Millis(
            now.0
                .saturating_sub(self.config.quorum_window.as_millis() as i64),
        );
        self.is_quorum(self.live_since(since))
    }

    /// SWIM-style: probe monitored peers one at a time in a shuffled round.
    fn round_robin_probe(&mut self, now: Millis) {
        if self.probe_order.is_empty() {
            self.probe_order = self.monitored.clone();
            self.probe_order.shuffle(&mut self.rng);
        }
        if let Some(peer) = self.probe_order.pop() {
            self.start_probe(peer, now);
        }
    }

    /// The members whose liveness this node measures, for its quorum judgement: the
    /// whole view with all-to-all monitoring, the monitored sample otherwise (liveness
    /// frames only reach a subject's observers, so other members' detectors only see
    /// the slow announcements).
    fn quorum_peers(&self) -> impl Iterator<Item = (&PeerId, &PeerState)> {
        self.monitored
            .iter()
            .filter_map(|p| self.peers.get(p).map(|ps| (p, ps)))
    }

    /// Live members (self included, by phi) among [`quorum_peers`](Self::quorum_peers).
    fn live_count(&self, now: Millis) -> usize {
        1 + self
            .quorum_peers()
            .filter(|(_, ps)| !ps.suspected && ps.detector.phi(now) < self.config.phi_threshold)
            .count()
    }

    fn update_quorum(&mut self, now: Millis) {
        let live = self.live_count(now);
        let view = self.quorum_base();
        let quorum = self.is_quorum(live);
        if quorum != self.quorum {
            self.quorum = quorum;
            let event = if quorum {
                MembershipEvent::QuorumRegained { live, view }
            } else {
                MembershipEvent::QuorumLost { live, view }
            };
            self.outputs.push(Output::Event(event));
        }
    }

    /// Members (self included) heard from at or after `since`.
    fn live_since(&self, since: Millis) -> usize {
        1 + self
            .quorum_peers()
            .filter(|(_, ps)| ps.detector.last_arrival() >= since)
            .count()
    }

    /// How many members a quorum is a majority of: the view, or with sampled
    /// monitoring the monitored sample plus this node.
    fn quorum_base(&self) -> usize {
        match self.config.monitoring {
            Monitoring::AllToAll => self.view.len(),
            Monitoring::Observers { .. } => self.monitored.len() + 1,
        }
    }

    /// Whether `live` members form a quorum: more than half of the
    /// [`quorum_base`](Self::quorum_base), and with all-to-all monitoring at least
    /// `2f + 1`. (A sample may hold fewer than `2f + 1` members; its majority is the
    /// statistical stand-in for the view's.)
    fn is_quorum(&self, live: usize) -> bool {
        let majority = 2 * live > self.quorum_base();
        match self.config.monitoring {
            Monitoring::AllToAll => majority && live >= self.config.certificate_threshold(),
            Monitoring::Observers { .. } => majority,
        }
    }

    /// Our direct probe of `subject` just failed. Votes Down if every condition holds:
    /// monitored, suspected (phi still over the threshold), we are healthy, no current
    /// vote (or it is due for refresh or from an older epoch or incarnation), and a
    /// quorum of the view was heard within `quorum_window` both before the probe was
    /// sent and before it failed: we stayed connected to a quorum throughout.
    ///
    /// The vote is decided at the instant of failure, never later, so the quorum
    /// evidence and the failure describe the same moment: at the onset of a partition
    /// the other side has been silent for longer than the window at failure time
    /// (suspicion takes longer than a heartbeat interval); when a partition heals while
    /// a probe is in flight, the probe was sent without a quorum and does not count.
    fn on_probe_failed(&mut self, subject: PeerId, now: Millis) {
        if let Some(ps) = self.peers.get_mut(&subject) {
            ps.last_failure = Some(now);
        }
        if self.local_health >= self.config.abstain_health || !self.monitored.contains(&subject) {
            return;
        }
        let Some(incarnation) = self.view.get(&subject).map(|m| m.incarnation) else {
            return;
        };
        let epoch = self.view.epoch();
        let Some(ps) = self.peers.get(&subject) else {
            return;
        };
        let vote_due = ps.down_vote.is_none_or(|(inc, e, sent)| {
            inc != incarnation || e != epoch || now >= sent.plus(self.config.revote_interval)
        });
        if !ps.suspected
            || !vote_due
            || !ps.quorum_at_send
            || ps.detector.phi(now) < self.config.phi_threshold
        {
            return;
        }
        if !self.quorum_heard(now) {
            return;
        }
        if let Some(ps) = self.peers.get_mut(&subject) {
            ps.down_vote = Some((incarnation, epoch, now));
        }
        self.cast(subject, incarnation, Verdict::Down, now);
        self.check_certificate(subject, incarnation, epoch, now);
    }

    /// Signs, records and broadcasts our vote.
    fn cast(&mut self, subject: PeerId, incarnation: u64, verdict: Verdict, now: Millis) {
        self.vote_seq = self.vote_seq.saturating_add(1).max(now.0.max(0) as u64);
        let vote = Vote {
            subject,
            epoch: self.view.epoch(),
            view: self.view.digest(),
            observer: self.me,
            incarnation,
            verdict,
            seq: self.vote_seq,
        };
        let Some(sv) = SignedVote::sign(vote, &self.keypair) else {
            return;
        };
        // Our own vote is always newer than our previous one.
        let _ = self.tally.record(sv.clone());
        self.outputs
            .push(Output::Broadcast(encode(&Message::Vote(sv))));
        self.outputs.push(Output::Event(MembershipEvent::VoteCast {
            subject,
            incarnation,
            verdict,
        }));
    }

    /// Assembles and applies a certificate if `2f + 1` current observers' Down votes
    /// agree on (subject, incarnation, epoch).
    fn check_certificate(&mut self, subject: PeerId, incarnation: u64, epoch: u64, now: Millis) {
        if self.view.get(&subject).map(|m| m.incarnation) != Some(incarnation) {
            return;
        }
        let observers = self.observers(&subject, epoch);
        let mut votes: Vec<SignedVote> = self
            .tally
            .downs(&subject, incarnation, epoch)
            .into_iter()
            .filter(|sv| match &observers {
                Some(obs) => obs.contains(&sv.vote.observer),
                None => self.view.is_member(&sv.vote.observer),
            })
            .collect();
        let need = self.config.certificate_threshold();
        if votes.len() < need {
            return;
        }
        votes.truncate(need);
        let cert = Certificate {
            subject,
            incarnation,
            epoch,
            votes,
        };
        self.apply_eviction(cert, true, now);
    }

    fn apply_eviction(&mut self, cert: Certificate, broadcast: bool, now: Millis) {
        let subject = cert.subject;
        let incarnation = cert.incarnation;
        if broadcast {
            self.outputs
                .push(Output::Broadcast(encode(&Message::Certificate(
                    cert.clone(),
                ))));
            self.cert_resent.insert(subject, now);
        }
        self.view.evict(cert.clone());
        self.peers.remove(&subject);
        self.tally.forget(&subject);
        self.outputs.push(Output::Event(MembershipEvent::Evicted {
            subject,
            incarnation,
            certificate: cert,
        }));
        self.on_epoch_change(now);
    }

    /// After the epoch moved: recompute observers and probe the subjects of standing
    /// Down votes at once, so a failure re-casts them at the new epoch and the votes for
    /// one subject converge on one epoch.
    fn on_epoch_change(&mut self, now: Millis) {
        self.refresh_monitoring(now);
        let standing: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, ps)| ps.down_vote.is_some())
            .map(|(p, _)| *p)
            .collect();
        for subject in standing {
            self.start_probe(subject, now);
        }
    }

    /// Adopts the highest epoch reported by at least `f + 1` members (so at least one
    /// honest member reached it): catches up after missed certificates.
    fn adopt_epoch(&mut self, now: Millis) {
        let e = self.view.reported_epoch(&self.me, self.config.f + 1);
        if e > self.view.epoch() {
            self.view.advance_epoch_to(e);
            self.on_epoch_change(now);
        }
    }

    /// An evicted peer still announces its evicted incarnation: show it its certificate
    /// (at most once per revote interval) so it bumps its incarnation and rejoins.
    fn remind_evicted(&mut self, peer: PeerId, now: Millis) {
        let due = self
            .cert_resent
            .get(&peer)
            .is_none_or(|t| now >= t.plus(self.config.revote_interval));
        if !due {
            return;
        }
        if let Some((_, cert)) = self.view.eviction(&peer) {
            let bytes = encode_direct(&Direct::Certificate(cert.clone()));
            self.outputs.push(Output::Send { to: peer, bytes });
            self.cert_resent.insert(peer, now);
        }
    }

    /// Requests a wake-up at the earliest pending deadline.
    fn schedule_timer(&mut self, now: Millis) {
        let y = self.suspicion_deviation;
        let mut next = self
            .next_heartbeat
            .min(self.next_probe)
            .min(self.next_announce);
        for subject in &self.monitored {
            if let Some(ps) = self.peers.get(subject) {
                if let Some(d) = ps.probe_deadline {
                    next = next.min(d);
                }
                if !ps.suspected {
                    next = next.min(ps.detector.suspect_at(y));
                }
                if ps.suspected && ps.probe_deadline.is_none() {
                    let reprobe = self.config.probe_interval.min(self.config.revote_interval);
                    next = next.min(ps.last_failure.map_or(now, |f| f.plus(reprobe)));
                }
            }
        }
        let next = next.max(Millis(now.0.saturating_add(1)));
        if self.timer != Some(next) {
            self.timer = Some(next);
            self.outputs.push(Output::SetTimer(next));
        }
    }
}

#[cfg(test)]
mod tests;
