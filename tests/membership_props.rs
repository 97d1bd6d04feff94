//! Property tests of the membership protocol: several `Membership` instances driven
//! through an in-test message router with manual time and a seeded RNG. No sockets.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use jobmesh::clock::{Clock, ManualClock, Millis};
use jobmesh::membership::{
    Acceptance, Certificate, Membership, MembershipConfig, MembershipEvent, Message, Output,
    SignedVote, Verdict, Vote, decode, encode,
};
use libp2p::identity::{Keypair, PeerId};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a Byzantine member does besides running the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liar {
    /// Broadcasts Down votes about this node and forged certificates.
    Accuse(usize),
    /// Withholds its own Down votes (never helps evict).
    Withhold,
}

enum Delivery {
    Msg {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
        /// A liveness frame on the direct stream (else gossip).
        direct: bool,
    },
    ProbeOk {
        to: usize,
        peer: usize,
        rtt: Duration,
    },
}

/// The router: nodes, links (partition groups), in-flight deliveries, timers.
struct Sim {
    clock: ManualClock,
    rng: StdRng,
    seed: u64,
    config: MembershipConfig,
    keys: Vec<Keypair>,
    ids: Vec<PeerId>,
    index: BTreeMap<PeerId, usize>,
    nodes: Vec<Option<Membership>>,
    timers: Vec<Option<Millis>>,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    pending: BTreeMap<u64, Delivery>,
    next_id: u64,
    group: Vec<u32>,
    liars: BTreeMap<usize, Liar>,
    next_lie: Millis,
    lie_seq: u64,
    events: Vec<(Millis, usize, MembershipEvent)>,
    trace: Vec<(Millis, usize, Output)>,
    honest_rejected: Vec<(usize, usize, String)>,
    messages: u64,
    bytes: u64,
}

fn keypair(seed: u64, i: usize) -> Keypair {
    let mut r = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    let mut b = [0u8; 32];
    r.fill(&mut b);
    Keypair::ed25519_from_bytes(b).expect("32 bytes")
}

impl Sim {
    fn new(n: usize, f: usize, seed: u64) -> Self {
        let keys: Vec<Keypair> = (0..n).map(|i| keypair(seed, i)).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let config = MembershipConfig::new(ids.iter().copied(), f);
        Self::with_config(config, keys, seed)
    }

    fn with_config(config: MembershipConfig, keys: Vec<Keypair>, seed: u64) -> Self {
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let n = keys.len();
        let clock = ManualClock::new(Millis(1_000_000));
        let mut sim = Self {
            rng: StdRng::seed_from_u64(seed),
            seed,
            index: ids.iter().enumerate().map(|(i, p)| (*p, i)).collect(),
            nodes: (0..n).map(|_| None).collect(),
            timers: vec![None; n],
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            next_id: 0,
            group: vec![0; n],
            liars: BTreeMap::new(),
            next_lie: Millis(0),
            lie_seq: 0,
            events: Vec::new(),
            trace: Vec::new(),
            honest_rejected: Vec::new(),
            messages: 0,
            bytes: 0,
            clock,
            config,
            keys,
            ids,
        };
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn start(&mut self, i: usize) {
        let now = self.now();
        let m = Membership::new(
            self.config.clone(),
            self.keys[i].clone(),
            None,
            self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9),
            now,
        )
        .expect("valid config");
        self.nodes[i] = Some(m);
        self.flush(i);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.timers[i] = None;
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    fn schedule(&mut self, at: Millis, d: Delivery) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, d);
        self.queue.push(Reverse((at, id)));
    }

    fn latency(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(1..=20))
    }

    fn broadcast(&mut self, from: usize, bytes: Vec<u8>) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.deliver(from, to, bytes.clone(), false);
            }
        }
    }

    /// Delivers `bytes` after a random latency if `to` is up and linked to `from`.
    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>, direct: bool) {
        if self.nodes[to].is_some() && self.connected(from, to) {
            let at = self.now().plus(self.latency());
            self.messages += 1;
            self.bytes += bytes.len() as u64;
            self.schedule(
                at,
                Delivery::Msg {
                    to,
                    from,
                    bytes,
                    direct,
                },
            );
        }
    }

    fn flush(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let outputs = node.drain_outputs();
        let now = self.now();
        for o in outputs {
            self.trace.push((now, i, o.clone()));
            match o {
                Output::Broadcast(bytes) => {
                    if self.liars.get(&i) == Some(&Liar::Withhold)
                        && matches!(decode(&bytes), Ok(Message::Vote(ref v)) if v.vote.verdict == Verdict::Down)
                    {
                        continue;
                    }
                    self.broadcast(i, bytes);
                }
                Output::Send { to, bytes } => {
                    let j = self.index[&to];
                    self.deliver(i, j, bytes, true);
                }
                Output::Probe(peer) => {
                    let j = self.index[&peer];
                    if self.nodes[j].is_some() && self.connected(i, j) {
                        let rtt = self.latency() + self.latency();
                        self.schedule(
                            now.plus(rtt),
                            Delivery::ProbeOk {
                                to: i,
                                peer: j,
                                rtt,
                            },
                        );
                    }
                }
                Output::SetTimer(t) => self.timers[i] = Some(t),
                Output::Event(e) => self.events.push((now, i, e)),
            }
        }
    }

    fn lie(&mut self) {
        let liars: Vec<(usize, Liar)> = self.liars.iter().map(|(a, b)| (*a, *b)).collect();
        let mut coalition = Vec::new();
        let mut target_id = None;
        for (i, liar) in liars {
            let Liar::Accuse(target) = liar else { continue };
            let Some(node) = self.nodes[i].as_ref() else {
                continue;
            };
            let subject = self.ids[target];
            let incarnation = node.view().get(&subject).map_or(0, |m| m.incarnation);
            self.lie_seq += 1;
            let vote = Vote {
                subject,
                epoch: node.epoch(),
                view: node.view().digest(),
                observer: self.ids[i],
                incarnation,
                verdict: Verdict::Down,
                seq: u64::MAX / 2 + self.lie_seq,
            };
            let sv = SignedVote::sign(vote, &self.keys[i]).expect("sign");
            coalition.push(sv.clone());
            target_id = Some((subject, incarnation, node.epoch()));
            self.broadcast(i, encode(&Message::Vote(sv)));
        }
        // The coalition also forges a certificate, padding its f votes with duplicates.
        if let (Some((subject, incarnation, epoch)), Some(first)) =
            (target_id, coalition.first().cloned())
        {
            let liar = self.index[&first.vote.observer];
            let mut votes: Vec<SignedVote> = coalition
                .into_iter()
                .filter(|v| v.vote.incarnation == incarnation && v.vote.epoch == epoch)
                .collect();
            while votes.len() < self.config.certificate_threshold() {
                votes.push(first.clone());
            }
            let cert = Certificate {
                subject,
                incarnation,
                epoch,
                votes,
            };
            self.broadcast(liar, encode(&Message::Certificate(cert)));
        }
    }

    /// Runs until `end`, processing deliveries before timers at equal times.
    fn run_until(&mut self, end: Millis) {
        loop {
            let next_delivery = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_timer = self
                .timers
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (t, i)))
                .min();
            let lie_at = if self.liars.values().any(|l| matches!(l, Liar::Accuse(_))) {
                Some(self.next_lie)
            } else {
                None
            };
            let candidates = [next_delivery, next_timer.map(|(t, _)| t), lie_at];
            let Some(next) = candidates.iter().flatten().min().copied() else {
                break;
            };
            if next > end {
                break;
            }
            self.clock.set(next.max(self.now()));
            let now = self.now();
            if next_delivery == Some(next) {
                let Some(Reverse((_, id))) = self.queue.pop() else {
                    break;
                };
                match self.pending.remove(&id) {
                    Some(Delivery::Msg {
                        to,
                        from,
                        bytes,
                        direct,
                    }) => {
                        let from_id = self.ids[from];
                        let honest = !self.liars.contains_key(&from);
                        if let Some(node) = self.nodes[to].as_mut() {
                            let acc = if direct {
                                node.handle_direct(from_id, &bytes, now)
                            } else {
                                node.handle_message(from_id, &bytes, now)
                            };
                            if let Acceptance::Reject(r) = acc
                                && honest
                            {
                                self.honest_rejected.push((from, to, r.to_string()));
                            }
                            self.flush(to);
                        }
                    }
                    Some(Delivery::ProbeOk { to, peer, rtt }) => {
                        let peer_id = self.ids[peer];
                        if let Some(node) = self.nodes[to].as_mut() {
                            node.probe_result(peer_id, true, rtt, now);
                            self.flush(to);
                        }
                    }
                    None => {}
                }
            } else if let Some((t, i)) = next_timer
                && t == next
            {
                self.timers[i] = None;
                if let Some(node) = self.nodes[i].as_mut() {
                    node.handle_tick(now);
                    self.flush(i);
                }
            } else {
                self.lie();
                self.next_lie = now.plus(Duration::from_millis(200));
            }
        }
        self.clock.set(end.max(self.now()));
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now().plus(d);
        self.run_until(end);
    }

    fn evictions(&self) -> Vec<(Millis, usize, PeerId)> {
        self.events
            .iter()
            .filter_map(|(t, i, e)| match e {
                MembershipEvent::Evicted { subject, .. } => Some((*t, *i, *subject)),
                _ => None,
            })
            .collect()
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    fn node(&self, i: usize) -> &Membership {
        self.nodes[i].as_ref().expect("alive")
    }
}

/// Cases per property: 12 by default (simulations are not free), more with
/// `MEMBERSHIP_PROPTEST_CASES=200`.
fn cases() -> u32 {
    std::env::var("MEMBERSHIP_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

fn max_f(n: usize) -> usize {
    (n - 1) / 3
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// At most f liars broadcasting Down votes (and forged certificates) about a healthy
    /// node never evict it; the target refutes by bumping its incarnation.
    #[test]
    fn liars_never_evict_a_healthy_node(n in 4usize..=10, seed in any::<u64>(), liars_frac in 0.0f64..=1.0) {
        let f = max_f(n);
        let liars = ((f as f64 * liars_frac).ceil() as usize).clamp(1, f);
        let mut sim = Sim::new(n, f, seed);
        let target = n - 1;
        for l in 0..liars {
            sim.liars.insert(l, Liar::Accuse(target));
        }
        sim.run_for(Duration::from_secs(12));
        prop_assert!(sim.evictions().is_empty(), "false evictions: {:?}", sim.evictions());
        let refuted = sim.events.iter().any(|(_, i, e)| *i == target && matches!(e, MembershipEvent::SelfRefuted { .. }));
        prop_assert!(refuted, "the accused node refutes");
        prop_assert!(sim.honest_rejected.is_empty(), "honest messages rejected: {:?}", sim.honest_rejected);
        for i in 0..n {
            prop_assert_eq!(sim.node(i).view().len(), n);
        }
    }

    /// A crashed node is evicted by every live node when at least 2f+1 honest members
    /// remain, even with f members withholding their votes.
    #[test]
    fn crashed_node_is_evicted(n in 4usize..=9, seed in any::<u64>(), f_frac in 0.0f64..=1.0) {
        // n - 1 - f >= 2f + 1 honest observers remain.
        let f_cap = (n - 2) / 3;
        let f = (f_cap as f64 * f_frac).round() as usize;
        let mut sim = Sim::new(n, f, seed);
        for l in 0..f {
            sim.liars.insert(l, Liar::Withhold);
        }
        sim.run_for(Duration::from_secs(3));
        let crashed = n - 1;
        let crashed_id = sim.ids[crashed];
        let crash_at = sim.now();
        sim.crash(crashed);
        sim.run_for(Duration::from_secs(10));
        for i in sim.alive() {
            prop_assert!(!sim.node(i).is_member(&crashed_id), "node {} still has the crashed node", i);
            prop_assert!(sim.node(i).eviction(&crashed_id).is_some());
        }
        let evs = sim.evictions();
        prop_assert!(evs.iter().all(|(_, _, s)| *s == crashed_id), "only the crashed node is evicted: {:?}", evs);
        let last = evs.iter().map(|(t, _, _)| *t).max().unwrap();
        prop_assert!(last.since(crash_at) < Duration::from_secs(4), "evicted after {:?}", last.since(crash_at));
        prop_assert!(sim.honest_rejected.is_empty(), "{:?}", sim.honest_rejected);
    }

    /// A minority partition never evicts the majority; the majority evicts the minority
    /// only if it holds a quorum (> half the view and >= 2f+1). After healing, evicted
    /// nodes learn their certificates and rejoin with higher incarnations.
    #[test]
    fn minority_never_evicts_majority(n in 5usize..=9, seed in any::<u64>(), f_frac in 0.0f64..=1.0, m_frac in 0.0f64..=1.0) {
        let f = (max_f(n) as f64 * f_frac).round() as usize;
        let minority = 1 + ((((n - 1) / 2 - 1) as f64) * m_frac).round() as usize;
        let mut sim = Sim::new(n, f, seed);
        sim.run_for(Duration::from_secs(3));
        for i in 0..minority {
            sim.group[i] = 1;
        }
        sim.run_for(Duration::from_secs(15));
        let majority = n - minority;
        let can_evict = majority > 2 * f;
        for (_, by, subject) in sim.evictions() {
            let s = sim.index[&subject];
            prop_assert!(s < minority, "majority member {} evicted by {}", s, by);
            prop_assert!(by >= minority, "minority member {} evicted someone", by);
        }
        for i in minority..n {
            for j in 0..minority {
                prop_assert_eq!(sim.node(i).is_member(&sim.ids[j]), !can_evict,
                    "node {} view of minority node {} (majority {}, f {})", i, j, majority, f);
            }
        }
        // Heal: everyone ends up a member of everyone's view again.
        sim.group = vec![0; n];
        sim.run_for(Duration::from_secs(15));
        for i in 0..n {
            for j in 0..n {
                prop_assert!(sim.node(i).is_member(&sim.ids[j]), "after healing, {} lacks {}", i, j);
            }
        }
        prop_assert!(sim.honest_rejected.is_empty(), "{:?}", sim.honest_rejected);
    }

}

proptest! {
    // Cheap properties (no simulation): many cases.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Certificates with fewer than 2f+1 distinct signers, or padded with duplicates,
    /// never verify.
    #[test]
    fn short_or_duplicate_certificates_never_verify(n in 4usize..=10, seed in any::<u64>(), short in 0usize..=6, dups in 1usize..=3) {
        let f = max_f(n);
        let keys: Vec<Keypair> = (0..n).map(|i| keypair(seed, i)).collect();
        let members = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let subject = keys[0].public().to_peer_id();
        let down = |k: &Keypair| SignedVote::sign(Vote {
            subject, epoch: 1, view: 0, observer: k.public().to_peer_id(), incarnation: 5,
            verdict: Verdict::Down, seq: 1,
        }, k).unwrap();
        let h = 2 * f + 1;
        let distinct = short.min(h - 1);
        let mut votes: Vec<SignedVote> = keys[1..=distinct].iter().map(down).collect();
        let cert = Certificate { subject, incarnation: 5, epoch: 1, votes: votes.clone() };
        prop_assert!(cert.verify(&members, f).is_err());
        if let Some(first) = votes.first().cloned() {
            for _ in 0..(h - distinct).max(dups) {
                votes.push(first.clone());
            }
            let padded = Certificate { subject, incarnation: 5, epoch: 1, votes };
            prop_assert!(padded.verify(&members, f).is_err());
        }
        let full = Certificate { subject, incarnation: 5, epoch: 1, votes: keys[1..=h].iter().map(down).collect() };
        prop_assert!(full.verify(&members, f).is_ok());
    }

    /// Random bytes (with or without a valid version byte) never panic and are never
    /// accepted.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), versioned in any::<bool>()) {
        let keys: Vec<Keypair> = (0..4).map(|i| keypair(1, i)).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let mut m = Membership::new(MembershipConfig::new(ids.clone(), 1), keys[0].clone(), None, 1, Millis(0)).unwrap();
        let mut input = bytes;
        if versioned {
            input.insert(0, 1);
        }
        let acc = m.handle_message(ids[1], &input, Millis(10));
        prop_assert!(acc != Acceptance::Accept);
        // Direct frames are unsigned (the connection authenticates the sender), so a
        // random frame may decode; it must never panic.
        let _ = m.handle_direct(ids[1], &input, Millis(15));
        m.handle_tick(Millis(20));
        let _ = m.drain_outputs();
    }

    /// Flipping any bit of a valid vote or certificate never panics and never yields an
    /// accepted message different from the original.
    #[test]
    fn tampered_messages_are_not_accepted(seed in any::<u64>(), pos in any::<usize>(), bit in 0u8..8, cert in any::<bool>()) {
        let keys: Vec<Keypair> = (0..4).map(|i| keypair(seed, i)).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let mut m = Membership::new(MembershipConfig::new(ids.clone(), 1), keys[0].clone(), None, 1, Millis(0)).unwrap();
        let down = |k: &Keypair| SignedVote::sign(Vote {
            subject: ids[3], epoch: 0, view: 0, observer: k.public().to_peer_id(), incarnation: 0,
            verdict: Verdict::Down, seq: 1,
        }, k).unwrap();
        let msg = if cert {
            Message::Certificate(Certificate { subject: ids[3], incarnation: 0, epoch: 0, votes: keys[0..3].iter().map(down).collect() })
        } else {
            Message::Vote(down(&keys[1]))
        };
        let mut bytes = encode(&msg);
        let p = pos % bytes.len();
        bytes[p] ^= 1 << bit;
        let acc = m.handle_message(ids[1], &bytes, Millis(10));
        if acc == Acceptance::Accept {
            prop_assert_eq!(decode(&bytes).ok(), Some(msg));
        }
    }
}

/// The same seed gives the same sequence of outputs, across crashes and liars.
#[test]
fn same_seed_same_outputs() {
    let run = |seed: u64| {
        let mut sim = Sim::new(5, 1, seed);
        sim.liars.insert(0, Liar::Accuse(1));
        sim.run_for(Duration::from_secs(3));
        sim.crash(4);
        sim.run_for(Duration::from_secs(5));
        sim.trace
    };
    let a = run(42);
    let b = run(42);
    assert!(a.len() > 100);
    assert_eq!(a, b);
    assert_ne!(a, run(43));
}

/// Crash-to-eviction time on a 5-node mesh with the default configuration.
#[test]
fn crash_detection_time_n5_default_config() {
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    let mut traffic = Vec::new();
    for seed in 0..10u64 {
        let mut sim = Sim::new(5, 1, seed);
        sim.run_for(Duration::from_secs(10));
        let steady = (sim.bytes, sim.messages);
        traffic.push(steady.0 as f64 / 5.0 / 10.0);
        let crashed = sim.ids[4];
        let at = sim.now();
        sim.crash(4);
        sim.run_for(Duration::from_secs(10));
        let evs: Vec<Millis> = sim
            .evictions()
            .iter()
            .filter(|(_, _, s)| *s == crashed)
            .map(|(t, _, _)| *t)
            .collect();
        assert_eq!(evs.len(), 4, "all four survivors evict (seed {seed})");
        firsts.push(evs.iter().min().unwrap().since(at).as_millis());
        lasts.push(evs.iter().max().unwrap().since(at).as_millis());
    }
    firsts.sort_unstable();
    lasts.sort_unstable();
    eprintln!(
        "n=5 default config: crash-to-first-eviction ms min {} median {} max {}; crash-to-all-evicted ms max {}; steady received bytes/node/s ~{:.0}",
        firsts[0],
        firsts[firsts.len() / 2],
        firsts[firsts.len() - 1],
        lasts[lasts.len() - 1],
        traffic.iter().sum::<f64>() / traffic.len() as f64,
    );
    assert!(*lasts.last().unwrap() < 3000, "crash-to-eviction under 3 s");
}

/// A 40-node cluster with K = 7 sampled observers per subject evicts a crashed node.
#[test]
fn sampled_observers_evict_crashed_node() {
    let n = 40;
    let f = 2;
    let seed = 9;
    let keys: Vec<Keypair> = (0..n).map(|i| keypair(seed, i)).collect();
    let mut config = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), f);
    config.monitoring = jobmesh::membership::Monitoring::Observers { k: 7 };
    let mut sim = Sim::with_config(config, keys, seed);
    sim.run_for(Duration::from_secs(3));
    sim.crash(n - 1);
    let crashed = sim.ids[n - 1];
    sim.run_for(Duration::from_secs(8));
    for i in sim.alive() {
        assert!(!sim.node(i).is_member(&crashed), "node {i} still has it");
    }
    assert!(sim.evictions().iter().all(|(_, _, s)| *s == crashed));
    assert!(sim.honest_rejected.is_empty(), "{:?}", sim.honest_rejected);
}

/// A crashed and evicted node that restarts rejoins with a higher incarnation.
#[test]
fn restarted_node_rejoins() {
    let mut sim = Sim::new(5, 1, 11);
    sim.run_for(Duration::from_secs(3));
    let old_incarnation = sim.node(4).incarnation();
    sim.crash(4);
    sim.run_for(Duration::from_secs(5));
    let id4 = sim.ids[4];
    for i in 0..4 {
        assert!(!sim.node(i).is_member(&id4));
    }
    sim.start(4);
    sim.run_for(Duration::from_secs(5));
    assert!(sim.node(4).incarnation() > old_incarnation);
    for i in 0..5 {
        for j in 0..5 {
            assert!(sim.node(i).is_member(&sim.ids[j]), "{i} lacks {j}");
        }
    }
    let joined = sim
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, MembershipEvent::Joined { peer, .. } if *peer == id4))
        .count();
    assert_eq!(joined, 4, "each survivor readmits it once");
}
