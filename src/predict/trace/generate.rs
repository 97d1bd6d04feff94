//! A seeded trace generator: a small discrete-event simulation of a cluster running
//! five kinds of jobs, each standing for a regime the predictors exist for.
//!
//! - `email.send` (queue `mail`): stable durations; its SMTP dependency is down for ten
//!   minutes (every attempt fails fast with `smtp_unavailable`, the class its rare
//!   transient failures also have).
//! - `report.render` (`reports`): bimodal durations (cache hit or miss).
//! - `image.resize` (`media`): duration proportional to the payload size, with a heavy
//!   (Pareto) tail.
//! - `etl.load` (`batch`): durations drifting from 2 s to 8 s over the trace.
//! - `webhook.deliver` (`default`): some jobs fail permanently (`http_410`), others
//!   transiently (`http_503`).
//!
//! Arrivals follow a daily cycle (compressed to `cycle_hours`) with random bursts.
//! Workers are slots spread over the nodes; two nodes degrade (slower runs and lease
//! renewals, more errors and timeouts) for a few minutes before they die, one dies
//! without warning, and each restarts three minutes later; every node has short blips
//! (a minute of slower runs and some errors) that are not failures. The runtime's
//! shipped retry policy (`attempt^4` s with 10 % jitter, 25 attempts) schedules
//! retries; a lost attempt's job is rescued 30 s after its node died.

use std::collections::{BinaryHeap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{TraceOutcome, TraceRecord};

/// 2026-01-01T00:00:00Z, where generated traces start.
pub const TRACE_START_MS: i64 = 1_767_225_600_000;

/// Most hours one trace may simulate.
pub const MAX_HOURS: f64 = 24.0 * 14.0;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// Simulated hours.
    pub hours: f64,
    /// Period of the arrival cycle ("a day"), in hours.
    pub cycle_hours: f64,
    /// Nodes in the cluster (at least 4).
    pub nodes: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            hours: 4.0,
            cycle_hours: 2.0,
            nodes: 6,
        }
    }
}

/// What the generator put in a trace (the evaluation does not see this; tests and
/// readers may).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    /// The dependency outage: error class, start, end (ms).
    pub outage: (String, i64, i64),
    /// Node deaths: node, time, whether it degraded first.
    pub deaths: Vec<(String, i64, bool)>,
}

/// Kinds of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Email,
    Report,
    Resize,
    Etl,
    Webhook,
}

const KINDS: [Kind; 5] = [
    Kind::Email,
    Kind::Report,
    Kind::Resize,
    Kind::Etl,
    Kind::Webhook,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Email => "email.send",
            Kind::Report => "report.render",
            Kind::Resize => "image.resize",
            Kind::Etl => "etl.load",
            Kind::Webhook => "webhook.deliver",
        }
    }

    fn queue(self) -> usize {
        self as usize
    }

    /// Arrivals per second at the mean of the cycle.
    fn rate(self) -> f64 {
        match self {
            Kind::Email => 1.0,
            Kind::Report => 0.8,
            Kind::Resize => 0.9,
            Kind::Etl => 0.12,
            Kind::Webhook => 1.0,
        }
    }

    fn timeout_ms(self) -> f64 {
        match self {
            Kind::Email | Kind::Webhook => 10_000.0,
            Kind::Report => 30_000.0,
            Kind::Resize => 60_000.0,
            Kind::Etl => 120_000.0,
        }
    }

    /// Worker slots of the kind's queue across the cluster.
    fn slots(self) -> usize {
        match self {
            Kind::Report => 4,
            _ => 2,
        }
    }

    /// Share of attempts failing transiently, and their class.
    fn transient(self) -> (f64, &'static str) {
        match self {
            Kind::Email => (0.02, "smtp_unavailable"),
            Kind::Report => (0.01, "render_error"),
            Kind::Resize => (0.01, "decode_error"),
            Kind::Etl => (0.02, "db_deadlock"),
            Kind::Webhook => (0.06, "http_503"),
        }
    }
}

const QUEUES: [&str; 5] = ["mail", "reports", "media", "batch", "default"];

fn normal(rng: &mut StdRng) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * rng.random_range(f64::EPSILON..1.0).ln()
}

#[derive(Debug, Clone)]
struct Job {
    id: i64,
    kind: Kind,
    payload_bytes: u64,
    permanent: bool,
    attempt: u32,
}

#[derive(Debug, Clone)]
struct Running {
    job: Job,
    enqueued_at: i64,
    started_at: i64,
    token: u64,
    record: TraceRecord,
}

#[derive(Debug)]
struct Slot {
    node: usize,
    running: Option<Running>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A new job (index into the arrivals).
    Arrive(usize),
    /// A job became due again (index into the parked jobs).
    Due(usize),
    /// The attempt in a slot finished (slot, token).
    Finish(usize, u64),
    NodeDown(usize),
    NodeUp(usize),
}

#[derive(Debug, Clone, Copy)]
struct NodePlan {
    /// (degradation start, death, restart) of each failure.
    failures: [(i64, i64, i64); 2],
    /// Starts of one-minute blips.
    blips: [i64; 4],
}

struct Sim {
    cfg: GenConfig,
    rng: StdRng,
    start: i64,
    end: i64,
    heap: BinaryHeap<std::cmp::Reverse<(i64, u64, Ev)>>,
    seq: u64,
    queues: Vec<VecDeque<(Job, i64)>>,
    slots: Vec<Vec<Slot>>,
    alive: Vec<bool>,
    plans: Vec<NodePlan>,
    arrivals: Vec<Job>,
    parked: Vec<Option<(Job, i64)>>,
    outage: (i64, i64),
    token: u64,
    out: Vec<TraceRecord>,
}

/// Generates a trace (records in the order they finished) and what was put in it.
pub fn generate(cfg: GenConfig) -> (Vec<TraceRecord>, Truth) {
    let cfg = GenConfig {
        hours: cfg.hours.clamp(0.1, MAX_HOURS),
        cycle_hours: cfg.cycle_hours.max(0.01),
        nodes: cfg.nodes.clamp(4, 1000),
        ..cfg
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let start = TRACE_START_MS;
    let span = (cfg.hours * 3_600_000.0) as i64;
    let end = start + span;
    let at = |rng: &mut StdRng, lo: f64, hi: f64| {
        start + (span as f64 * rng.random_range(lo..hi)) as i64
    };

    // Failures in the last part of the trace (where the evaluation scores, with the
    // default split), on three different nodes.
    let mut victims: Vec<usize> = (0..cfg.nodes).collect();
    for i in 0..3 {
        let j = rng.random_range(i..victims.len());
        victims.swap(i, j);
    }
    let never = (i64::MAX / 4, i64::MAX / 4, i64::MAX / 4);
    let mut plans = vec![
        NodePlan {
            failures: [never, never],
            blips: [0; 4],
        };
        cfg.nodes
    ];
    let mut truth = Truth::default();
    for (i, &node) in victims.iter().take(3).enumerate() {
        let death = at(&mut rng, 0.74, 0.97);
        let degrade = if i < 2 {
            rng.random_range(240_000..360_000)
        } else {
            0
        };
        plans[node].failures[0] = (death - degrade, death, death + 180_000);
        truth
            .deaths
            .push((format!("node-{}", node + 1), death, degrade > 0));
    }
    // A failure early on too, so history holds one, on a node that fails once.
    let early = victims[3 % cfg.nodes];
    if plans[early].failures[0] == never {
        let death = at(&mut rng, 0.2, 0.6);
        plans[early].failures[0] = (death - 300_000, death, death + 180_000);
        truth
            .deaths
            .push((format!("node-{}", early + 1), death, true));
    }
    truth.deaths.sort_by_key(|d| d.1);
    for p in &mut plans {
        for b in &mut p.blips {
            *b = at(&mut rng, 0.0, 1.0);
        }
    }
    let outage_start = at(&mut rng, 0.73, 0.85);
    let outage = (outage_start, outage_start + 600_000);
    truth.outage = ("smtp_unavailable".into(), outage.0, outage.1);

    // Arrivals: a thinned Poisson process per kind following the cycle, plus bursts.
    let cycle_ms = cfg.cycle_hours * 3_600_000.0;
    let mut times: Vec<(i64, Kind)> = Vec::new();
    for kind in KINDS {
        let peak = kind.rate() * 1.5 / 1000.0;
        let mut t = start as f64;
        loop {
            t += exponential(&mut rng, 1.0 / peak);
            if t >= end as f64 {
                break;
            }
            let phase = std::f64::consts::TAU * (t - start as f64) / cycle_ms;
            let rate = kind.rate() * (1.0 + 0.5 * phase.sin()) / 1000.0;
            if rng.random::<f64>() < rate / peak {
                times.push((t as i64, kind));
            }
        }
    }
    let mut t = start as f64;
    loop {
        t += exponential(&mut rng, 45.0 * 60_000.0);
        if t >= end as f64 {
            break;
        }
        let kind = [Kind::Email, Kind::Report, Kind::Resize, Kind::Webhook][rng.random_range(0..4)];
        let n = rng.random_range(100..300);
        for _ in 0..n {
            times.push((t as i64 + rng.random_range(0..30_000), kind));
        }
    }
    times.sort();
    let arrivals: Vec<Job> = times
        .iter()
        .enumerate()
        .map(|(i, &(_, kind))| {
            let payload_bytes = match kind {
                Kind::Resize => (rng.random_range(2e3f64.ln()..2e7f64.ln())).exp() as u64,
                Kind::Email => rng.random_range(300..2000),
                Kind::Report => rng.random_range(200..800),
                Kind::Etl => rng.random_range(400..600),
                Kind::Webhook => rng.random_range(200..5000),
            };
            Job {
                id: i as i64 + 1,
                kind,
                payload_bytes,
                permanent: kind == Kind::Webhook && rng.random::<f64>() < 0.04,
                attempt: 0,
            }
        })
        .collect();

    let slots = KINDS
        .iter()
        .map(|k| {
            (0..k.slots())
                .map(|i| Slot {
                    node: (i * 2 + k.queue()) % cfg.nodes,
                    running: None,
                })
                .collect()
        })
        .collect();
    let mut sim = Sim {
        cfg,
        rng,
        start,
        end,
        heap: BinaryHeap::new(),
        seq: 0,
        queues: vec![VecDeque::new(); KINDS.len()],
        slots,
        alive: vec![true; cfg.nodes],
        plans,
        arrivals,
        parked: Vec::new(),
        outage,
        token: 0,
        out: Vec::new(),
    };
    for (i, &(t, _)) in times.iter().enumerate() {
        sim.push(t, Ev::Arrive(i));
    }
    for n in 0..cfg.nodes {
        for (_, death, restart) in sim.plans[n].failures {
            if death < end {
                sim.push(death, Ev::NodeDown(n));
                sim.push(restart, Ev::NodeUp(n));
            }
        }
    }
    sim.run();
    (sim.out, truth)
}

impl Sim {
    fn push(&mut self, at: i64, ev: Ev) {
        self.seq += 1;
        self.heap.push(std::cmp::Reverse((at, self.seq, ev)));
    }

    fn run(&mut self) {
        while let Some(std::cmp::Reverse((now, _, ev))) = self.heap.pop() {
            if now >= self.end {
                break;
            }
            match ev {
                Ev::Arrive(i) => {
                    let job = self.arrivals[i].clone();
                    let q = job.kind.queue();
                    self.queues[q].push_back((job, now));
                    self.dispatch(q, now);
                }
                Ev::Due(i) => {
                    if let Some((job, _)) = self.parked[i].take() {
                        let q = job.kind.queue();
                        self.queues[q].push_back((job, now));
                        self.dispatch(q, now);
                    }
                }
                Ev::Finish(q, slot) => self.finish(q, slot, now),
                Ev::NodeDown(n) => self.node_down(n, now),
                Ev::NodeUp(n) => {
                    self.alive[n] = true;
                    for q in 0..KINDS.len() {
                        self.dispatch(q, now);
                    }
                }
            }
        }
    }

    /// How degraded `node` is at `now`: 0 healthy, 1 about to die; and whether a blip
    /// is on.
    fn health(&self, node: usize, now: i64) -> (f64, bool) {
        let p = &self.plans[node];
        let mut degraded: f64 = 0.0;
        for (from, death, _) in p.failures {
            if now >= from && now < death && death > from {
                degraded = degraded.max((now - from) as f64 / (death - from) as f64);
            }
        }
        let blip = p.blips.iter().any(|b| now >= *b && now < b + 60_000);
        (degraded, blip)
    }

    fn dispatch(&mut self, q: usize, now: i64) {
        while !self.queues[q].is_empty() {
            // The free slot on a live node, rotating so the work spreads.
            let n = self.slots[q].len();
            let offset = self.rng.random_range(0..n);
            let Some(s) = (0..n)
                .map(|i| (i + offset) % n)
                .find(|&s| self.slots[q][s].running.is_none() && self.alive[self.slots[q][s].node])
            else {
                return;
            };
            let (mut job, enqueued_at) = self.queues[q].pop_front().expect("not empty");
            job.attempt += 1;
            self.start(q, s, job, enqueued_at, now);
        }
    }

    fn start(&mut self, q: usize, s: usize, job: Job, enqueued_at: i64, now: i64) {
        let node = self.slots[q][s].node;
        let (degraded, blip) = self.health(node, now);
        let kind = job.kind;
        let frac = (now - self.start) as f64 / (self.end - self.start).max(1) as f64;
        let rng = &mut self.rng;
        let mut d = match kind {
            Kind::Email => lognormal(rng, 250.0, 0.25),
            Kind::Report => {
                if rng.random::<f64>() < 0.75 {
                    lognormal(rng, 600.0, 0.3)
                } else {
                    lognormal(rng, 9_000.0, 0.3)
                }
            }
            Kind::Resize => {
                let tail = if rng.random::<f64>() < 0.05 {
                    rng.random_range(0.02f64..1.0).powf(-1.0 / 1.5).min(50.0)
                } else {
                    1.0
                };
                (50.0 + job.payload_bytes as f64 / 2000.0) * lognormal(rng, 1.0, 0.25) * tail
            }
            Kind::Etl => lognormal(rng, 2_000.0 + 6_000.0 * frac, 0.2),
            Kind::Webhook => lognormal(rng, 150.0, 0.5),
        };
        d *= 1.0 + 2.0 * degraded + if blip { 0.5 } else { 0.0 };
        let mut error: Option<&'static str> = None;
        let (p_transient, class) = kind.transient();
        let outage = kind == Kind::Email && now >= self.outage.0 && now < self.outage.1;
        if outage {
            error = Some(class);
            d = lognormal(rng, 30.0, 0.3);
        } else if job.permanent {
            error = Some("http_410");
            d = lognormal(rng, 80.0, 0.3);
        } else if rng.random::<f64>() < 0.35 * degraded + if blip { 0.1 } else { 0.0 } {
            error = Some("io_error");
            d *= rng.random_range(0.1..1.0);
        } else if rng.random::<f64>() < 0.25 * degraded {
            error = Some("timeout");
            d = kind.timeout_ms();
        } else if rng.random::<f64>() < p_transient {
            error = Some(class);
            d *= rng.random_range(0.1..1.0);
        }
        if d >= kind.timeout_ms() {
            error = Some("timeout");
            d = kind.timeout_ms();
        }
        let renew =
            lognormal(rng, 15.0, 0.4) * (3.5 * degraded).exp() * if blip { 1.5 } else { 1.0 };
        let finished = now + d.max(1.0) as i64;
        let outcome = match error {
            None => TraceOutcome::Succeeded,
            Some(_) if job.attempt >= 25 => TraceOutcome::Discarded,
            Some(_) => TraceOutcome::Failed,
        };
        self.token += 1;
        let record = TraceRecord {
            job: job.id,
            kind: kind.name().into(),
            queue: QUEUES[q].into(),
            payload_bytes: job.payload_bytes,
            attempt: job.attempt,
            enqueued_at,
            started_at: now,
            finished_at: finished,
            outcome,
            error_class: error.map(str::to_owned),
            node: format!("node-{}", node + 1),
            renew_ms: Some((renew * 10.0).round() / 10.0),
        };
        self.slots[q][s].running = Some(Running {
            job,
            enqueued_at,
            started_at: now,
            token: self.token,
            record,
        });
        let token = self.token;
        self.push(finished, Ev::Finish(q * 1_000_000 + s, token));
    }

    fn finish(&mut self, qs: usize, token: u64, now: i64) {
        let (q, s) = (qs / 1_000_000, qs % 1_000_000);
        let Some(r) = self.slots[q][s].running.take_if(|r| r.token == token) else {
            return;
        };
        let _ = (r.enqueued_at, r.started_at);
        let outcome = r.record.outcome;
        self.out.push(r.record);
        if outcome == TraceOutcome::Failed {
            let base = (r.job.attempt as f64).powi(4) * 1000.0;
            let delay = base * (1.0 + 0.1 * self.rng.random::<f64>());
            self.park(r.job, now + delay as i64);
        }
        self.dispatch(q, now);
    }

    fn park(&mut self, job: Job, due: i64) {
        self.parked.push(Some((job, due)));
        let i = self.parked.len() - 1;
        self.push(due, Ev::Due(i));
    }

    fn node_down(&mut self, n: usize, now: i64) {
        self.alive[n] = false;
        for q in 0..KINDS.len() {
            for s in 0..self.slots[q].len() {
                if self.slots[q][s].node != n {
                    continue;
                }
                if let Some(mut r) = self.slots[q][s].running.take() {
                    r.record.outcome = TraceOutcome::Lost;
                    r.record.finished_at = now;
                    r.record.error_class = None;
                    self.out.push(r.record);
                    // Rescued once the lease lapses.
                    self.park(r.job, now + 30_000);
                }
            }
        }
        let _ = self.cfg;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_trace() {
        let cfg = GenConfig {
            hours: 0.5,
            ..Default::default()
        };
        let (a, ta) = generate(cfg);
        let (b, tb) = generate(cfg);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        let (c, _) = generate(GenConfig { seed: 2, ..cfg });
        assert_ne!(a, c);
    }

    #[test]
    fn every_regime_is_in_the_trace() {
        let (recs, truth) = generate(GenConfig {
            hours: 3.0,
            cycle_hours: 1.0,
            ..Default::default()
        });
        for r in &recs {
            r.check().unwrap();
        }
        let (class, from, to) = truth.outage.clone();
        let in_outage = recs
            .iter()
            .filter(|r| r.kind == "email.send" && r.started_at >= from && r.started_at < to);
        assert!(in_outage.clone().count() > 100);
        assert!(
            in_outage
                .clone()
                .all(|r| r.error_class.as_deref() == Some(class.as_str()))
        );
        assert!(
            recs.iter()
                .any(|r| r.error_class.as_deref() == Some("http_410"))
        );
        // Each death left lost attempts on its node at its time.
        for (node, at, _) in &truth.deaths {
            assert!(
                recs.iter().any(|r| &r.node == node
                    && r.outcome == TraceOutcome::Lost
                    && r.finished_at == *at),
                "{node} at {at}"
            );
        }
        assert!(truth.deaths.iter().filter(|d| d.2).count() >= 2);
        // Retries follow the shipped policy: attempt 2 starts >= 1 s after attempt 1.
        assert!(recs.iter().any(|r| r.attempt >= 4));
    }
}
