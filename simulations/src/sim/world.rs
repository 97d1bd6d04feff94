//! The event loop: a virtual clock, one seeded RNG, and a priority queue of
//! deliveries, probe legs, timers, scenario operations and liar actions ordered by
//! (time, sequence number). Every node runs the real protocol core
//! ([`Membership`]); the world only carries bytes between them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use jobmesh::clock::Millis;
use jobmesh::membership::adversary::Adversary;
use jobmesh::membership::{
    Acceptance, Membership, MembershipConfig, MembershipEvent, Monitoring, Output,
};
use libp2p::identity::{Keypair, PeerId};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::SimError;
use super::config::{SimConfig, keypair};
use super::metrics::{Kind, Measurements, Milestone, Recorder};
use super::network::Network;
use super::script::{Op, Scenario};
use super::trace::{Trace, TraceRecord};

/// Something that happens at a point of simulated time.
#[derive(Debug)]
pub(crate) enum Event {
    /// Bytes arrive at `to` (if it is still in life `life`).
    Deliver {
        to: usize,
        life: u32,
        /// The authenticated source handed to the core.
        from: usize,
        bytes: Rc<[u8]>,
        kind: Kind,
        /// Sent by the protocol core of an honest node (not a liar's own action).
        honest: bool,
    },
    /// A probe reaches its target, which answers if it is up.
    ProbeArrive {
        prober: usize,
        life: u32,
        target: usize,
        sent: Millis,
    },
    /// A probe answer reaches the prober.
    ProbeReply {
        prober: usize,
        life: u32,
        target: usize,
        sent: Millis,
    },
    /// The node's timer (ignored unless `generation` is its latest).
    Timer { node: usize, generation: u64 },
    /// Scenario step number.
    Op(usize),
    /// Byzantine members act.
    Lie,
}

#[derive(Debug)]
struct Scheduled {
    at: Millis,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One simulated node.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) core: Option<Membership>,
    /// Bumped on crash and restart: deliveries addressed to an earlier life are lost
    /// (the connection they travelled on is gone).
    pub(crate) life: u32,
    pub(crate) timer_gen: u64,
    pub(crate) restarts: u64,
}

/// A simulated cluster.
pub struct World {
    pub(crate) config: SimConfig,
    pub(crate) membership: MembershipConfig,
    pub(crate) now: Millis,
    start: Millis,
    pub(crate) rng: StdRng,
    pub(crate) keys: Vec<Keypair>,
    pub(crate) ids: Vec<PeerId>,
    index: HashMap<PeerId, usize>,
    pub(crate) nodes: Vec<Node>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    /// The links; scenarios change them.
    pub network: Network,
    /// The Byzantine members by node, each with the core's adversary model.
    pub(crate) liars: BTreeMap<usize, Adversary>,
    pub(crate) lie_scheduled: bool,
    pub(crate) recorder: Recorder,
    pub(crate) trace: Trace,
    steps: Vec<Op>,
    events: u64,
    /// Wall-clock seconds [`World::new`] took (the cores' start-up work).
    setup_secs: f64,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The cluster's settings.
    pub config: SimConfig,
    /// Simulated seconds.
    pub sim_secs: f64,
    /// Wall-clock seconds building the cluster took (each core computes its observer
    /// assignments at start: O(n^2) hashes per node under sampled monitoring).
    pub setup_secs: f64,
    /// Wall-clock seconds the run took (after setup).
    pub wall_secs: f64,
    /// Events processed.
    pub events: u64,
    /// Outputs of all cores (trace length).
    pub outputs: u64,
    /// Hash of the trace, hex.
    pub trace_hash: String,
    /// The numbers.
    pub metrics: Measurements,
    /// Pairs of live nodes (i, j) where i's final view lacks j (see
    /// [`World::view_gaps`]).
    pub view_gaps: usize,
    /// Command line that replays this run.
    pub replay: String,
}

impl World {
    /// Builds and starts `config.nodes` nodes at simulated time 1 000 000 ms.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let wall = Instant::now();
        let n = config.nodes;
        if n == 0 {
            return Err(SimError::NoNodes);
        }
        let keys: Vec<Keypair> = (0..n).map(|i| keypair(config.seed, i)).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let membership = config.membership_config(&ids);
        membership.validate()?;
        let start = Millis(1_000_000);
        let mut world = Self {
            membership,
            now: start,
            start,
            rng: StdRng::seed_from_u64(config.seed ^ 0x0005_eed0_fa11),
            index: ids.iter().enumerate().map(|(i, p)| (*p, i)).collect(),
            nodes: (0..n)
                .map(|_| Node {
                    core: None,
                    life: 0,
                    timer_gen: 0,
                    restarts: 0,
                })
                .collect(),
            queue: BinaryHeap::new(),
            seq: 0,
            network: Network::new(n, &config.network),
            liars: BTreeMap::new(),
            lie_scheduled: false,
            recorder: Recorder::new(n, (start, start), config.gossip_amplification),
            trace: Trace::new(start, config.keep_trace),
            steps: Vec::new(),
            events: 0,
            setup_secs: 0.0,
            keys,
            ids,
            config,
        };
        for i in 0..n {
            world.boot(i)?;
        }
        world.setup_secs = wall.elapsed().as_secs_f64();
        Ok(world)
    }

    /// The current simulated time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        self.now.since(self.start)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes (never: [`World::new`] refuses).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s protocol core, if it is up.
    pub fn core(&self, i: usize) -> Option<&Membership> {
        self.nodes.get(i).and_then(|n| n.core.as_ref())
    }

    /// Node `i`'s peer id.
    pub fn id(&self, i: usize) -> PeerId {
        self.ids[i]
    }

    /// Index of a peer id.
    pub fn index_of(&self, p: &PeerId) -> Option<usize> {
        self.index.get(p).copied()
    }

    /// Whether node `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.core(i).is_some()
    }

    /// Nodes that are up.
    pub fn live(&self) -> Vec<usize> {
        (0..self.len()).filter(|i| self.is_up(*i)).collect()
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Readable trace records kept (see [`SimConfig::keep_trace`]).
    pub fn trace_records(&self) -> &[TraceRecord] {
        self.trace.records()
    }

    /// Sets the window over which traffic per node per second is measured (absolute
    /// offsets from the start of the run).
    pub fn measure_traffic(&mut self, from: Duration, to: Duration) {
        let (a, b) = (self.start.plus(from), self.start.plus(to));
        self.recorder.set_window((a, b));
    }

    /// Counts of pairs (i, j) of live nodes where `i`'s view lacks `j`: after healing
    /// and convergence this should be 0.
    pub fn view_gaps(&self) -> usize {
        let live = self.live();
        let mut gaps = 0;
        for &i in &live {
            let core = self.core(i).expect("live");
            gaps += live
                .iter()
                .filter(|&&j| j != i && !core.is_member(&self.ids[j]))
                .count();
        }
        gaps
    }

    // ----- running -----------------------------------------------------------------

    /// Runs a scenario to its end and reports.
    pub fn run(&mut self, scenario: &Scenario) -> Result<Report, SimError> {
        let wall = Instant::now();
        let (wa, wb) = scenario.window;
        self.measure_traffic(wa, wb);
        for step in &scenario.steps {
            self.check_op(&step.op)?;
            let at = self.start.plus(step.at);
            let k = self.steps.len();
            self.steps.push(step.op.clone());
            self.push(at, Event::Op(k));
        }
        let end = self.start.plus(scenario.duration);
        self.run_until(end);
        Ok(self.report(&scenario.name, wall.elapsed().as_secs_f64()))
    }

    /// The report of what ran so far.
    pub fn report(&self, scenario: &str, wall_secs: f64) -> Report {
        let c = &self.config;
        Report {
            scenario: scenario.to_string(),
            config: c.clone(),
            sim_secs: self.elapsed().as_secs_f64(),
            setup_secs: self.setup_secs,
            wall_secs,
            events: self.events,
            outputs: self.trace.outputs(),
            trace_hash: format!("{:016x}", self.trace.hash()),
            metrics: self.recorder.report(self.now),
            view_gaps: self.view_gaps(),
            replay: format!(
                "cargo run -p jobmesh-sim --release -- --nodes {} --seed {} --scenario {} --f {} --k {}",
                c.nodes,
                c.seed,
                scenario,
                c.f,
                match c.monitoring {
                    Monitoring::AllToAll => 0,
                    Monitoring::Observers { k } => k,
                }
            ),
        }
    }

    /// Applies one scenario operation now.
    pub fn apply(&mut self, op: Op) -> Result<(), SimError> {
        self.check_op(&op)?;
        self.do_op(op);
        Ok(())
    }

    /// Processes events until `end` (inclusive), then sets the clock to `end`.
    pub fn run_until(&mut self, end: Millis) {
        while let Some(top) = self.queue.peek() {
            if top.at > end {
                break;
            }
            let Some(s) = self.queue.pop() else { break };
            self.now = self.now.max(s.at);
            self.events += 1;
            self.handle(s.event);
        }
        self.now = self.now.max(end);
    }

    /// Runs for `d` more simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now.plus(d);
        self.run_until(end);
    }

    pub(crate) fn push(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Deliver {
                to,
                life,
                from,
                bytes,
                kind,
                honest,
            } => {
                if self.nodes[to].life != life {
                    return;
                }
                if kind == Kind::Gossip
                    && let Some(liar) = self.liars.get_mut(&to)
                {
                    liar.observe(self.ids[from], &bytes, now);
                }
                let from_id = self.ids[from];
                let Some(core) = self.nodes[to].core.as_mut() else {
                    return;
                };
                let acceptance = match kind {
                    Kind::Direct => core.handle_direct(from_id, &bytes, now),
                    _ => core.handle_message(from_id, &bytes, now),
                };
                if let Acceptance::Reject(reason) = acceptance
                    && honest
                {
                    self.recorder
                        .honest_reject(now, from, to, reason.to_string());
                }
                self.flush(to);
            }
            Event::ProbeArrive {
                prober,
                life,
                target,
                sent,
            } => {
                // A live target answers; the answer needs the reverse link.
                if self.is_up(target) && self.network.link_up(target, prober) {
                    self.recorder.sent(now, Kind::Probe, 0);
                    if let Some(d) = self.network.direct_delay(&mut self.rng) {
                        self.push(
                            now.plus(d),
                            Event::ProbeReply {
                                prober,
                                life,
                                target,
                                sent,
                            },
                        );
                    }
                }
            }
            Event::ProbeReply {
                prober,
                life,
                target,
                sent,
            } => {
                if self.nodes[prober].life != life {
                    return;
                }
                let peer = self.ids[target];
                if let Some(core) = self.nodes[prober].core.as_mut() {
                    core.probe_result(peer, true, now.since(sent), now);
                    self.flush(prober);
                }
            }
            Event::Timer { node, generation } => {
                if self.nodes[node].timer_gen != generation {
                    return;
                }
                if let Some(core) = self.nodes[node].core.as_mut() {
                    core.handle_tick(now);
                    self.flush(node);
                }
            }
            Event::Op(k) => {
                let op = self.steps[k].clone();
                self.do_op(op);
            }
            Event::Lie => {
                self.liars_act();
                let next = now.plus(self.config.lie_interval);
                self.push(next, Event::Lie);
            }
        }
    }

    /// Hands a core's outputs to the network.
    pub(crate) fn flush(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let outputs = core.drain_outputs();
        let now = self.now;
        for o in outputs {
            {
                let index = &self.index;
                self.trace
                    .record(now, i, &o, |p| index.get(p).copied().unwrap_or(usize::MAX));
            }
            if self.liars.get(&i).is_some_and(|l| l.withholds(&o)) {
                continue;
            }
            match o {
                Output::Broadcast(bytes) => self.broadcast(i, i, bytes.into(), true),
                Output::Send { to, bytes } => {
                    if let Some(j) = self.index_of(&to) {
                        self.send(i, j, i, bytes.into(), Kind::Direct, true);
                    }
                }
                Output::Probe(peer) => {
                    if let Some(j) = self.index_of(&peer) {
                        self.probe(i, j);
                    }
                }
                Output::SetTimer(t) => {
                    let node = &mut self.nodes[i];
                    node.timer_gen += 1;
                    let generation = node.timer_gen;
                    self.push(
                        t,
                        Event::Timer {
                            node: i,
                            generation,
                        },
                    );
                }
                Output::Event(e) => self.on_event(i, e),
            }
        }
    }

    fn on_event(&mut self, i: usize, e: MembershipEvent) {
        let now = self.now;
        match e {
            MembershipEvent::Evicted {
                subject,
                incarnation,
                ..
            } => {
                if let Some(s) = self.index_of(&subject) {
                    self.recorder.evicted(now, i, s, incarnation);
                }
            }
            MembershipEvent::Suspected { peer, incarnation } => {
                if let Some(s) = self.index_of(&peer) {
                    self.recorder.suspected(now, i, s, incarnation);
                }
            }
            MembershipEvent::SelfRefuted { .. } => self.recorder.milestone(Milestone::SelfRefuted),
            MembershipEvent::SelfEvicted { .. } => self.recorder.milestone(Milestone::SelfEvicted),
            MembershipEvent::Joined { .. } => self.recorder.milestone(Milestone::Joined),
            _ => {}
        }
    }
}
