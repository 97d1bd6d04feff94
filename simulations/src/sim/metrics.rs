//! What a run measured: suspicion latency (crash to the first live node's detector
//! suspecting it), detection latency (crash to the first eviction certificate applied
//! by a live node), convergence (crash to every live node having applied it), false
//! evictions, and traffic per node per second over a steady window.

use std::collections::{BTreeMap, BTreeSet};

use jobmesh::clock::Millis;
use serde::Serialize;

/// Bytes assumed for one direct probe or its answer (a libp2p ping payload): the core
/// does not encode probes, the driver does.
pub const PROBE_BYTES: u64 = 32;

/// p50 / p99 / max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median (nearest rank).
    pub p50_ms: Option<u64>,
    /// 99th percentile (nearest rank).
    pub p99_ms: Option<u64>,
    /// Largest sample.
    pub max_ms: Option<u64>,
}

impl Summary {
    /// Summarises samples in milliseconds.
    pub fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let rank = |q: f64| -> Option<u64> {
            if samples.is_empty() {
                return None;
            }
            // Nearest rank: the smallest sample with at least q of the samples at or
            // below it.
            let r = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            Some(samples[r - 1])
        };
        Self {
            count: samples.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: samples.last().copied(),
        }
    }
}

/// Messages and bytes carried by the network, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Gossip deliveries (one per receiving node per published message).
    pub gossip_msgs: u64,
    /// Their bytes (times the gossip amplification factor).
    pub gossip_bytes: u64,
    /// Direct liveness frames.
    pub direct_msgs: u64,
    /// Their bytes.
    pub direct_bytes: u64,
    /// Probes and probe answers.
    pub probe_msgs: u64,
    /// Their bytes ([`PROBE_BYTES`] each).
    pub probe_bytes: u64,
}

impl Traffic {
    /// All messages.
    pub fn msgs(&self) -> u64 {
        self.gossip_msgs + self.direct_msgs + self.probe_msgs
    }

    /// All bytes.
    pub fn bytes(&self) -> u64 {
        self.gossip_bytes + self.direct_bytes + self.probe_bytes
    }
}

/// What kind of traffic a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Published on the membership topic.
    Gossip,
    /// A liveness frame on a direct stream.
    Direct,
    /// A probe or its answer.
    Probe,
}

/// One crash and who applied its eviction when.
#[derive(Debug, Clone)]
struct Crash {
    node: usize,
    at: Millis,
    /// The incarnation it crashed at: certificates about it (or older ones) are
    /// expected; about a later incarnation (after a restart) they are not.
    incarnation: u64,
    /// Nodes live when it crashed (the subject excluded).
    live: Vec<usize>,
    /// Node -> time it applied an eviction of the crashed node.
    applied: BTreeMap<usize, Millis>,
    /// The first time a live node's detector suspected the crashed node.
    suspected: Option<Millis>,
    restarted: Option<Millis>,
}

/// Collects observations during a run; [`Recorder::report`] turns them into numbers.
#[derive(Debug, Clone)]
pub struct Recorder {
    n: usize,
    /// Start of the run (reject samples print times relative to it).
    start: Millis,
    window: (Millis, Millis),
    window_traffic: Traffic,
    total_traffic: Traffic,
    gossip_amplification: f64,
    crashes: Vec<Crash>,
    excused: BTreeSet<usize>,
    /// (subject, incarnation) of every certificate applied, with the first time.
    evictions: BTreeMap<(usize, u64), Millis>,
    eviction_events: u64,
    false_evictions: BTreeSet<(usize, u64)>,
    false_eviction_events: u64,
    honest_rejects: u64,
    reject_samples: Vec<String>,
    self_refuted: u64,
    self_evicted: u64,
    joined: u64,
}

impl Recorder {
    /// A recorder for `n` nodes measuring traffic within `window` (whose start is taken
    /// as the start of the run).
    pub fn new(n: usize, window: (Millis, Millis), gossip_amplification: f64) -> Self {
        Self {
            n,
            start: window.0,
            window,
            window_traffic: Traffic::default(),
            total_traffic: Traffic::default(),
            gossip_amplification,
            crashes: Vec::new(),
            excused: BTreeSet::new(),
            evictions: BTreeMap::new(),
            eviction_events: 0,
            false_evictions: BTreeSet::new(),
            false_eviction_events: 0,
            honest_rejects: 0,
            reject_samples: Vec::new(),
            self_refuted: 0,
            self_evicted: 0,
            joined: 0,
        }
    }

    /// Moves the traffic window (counts recorded so far stay).
    pub fn set_window(&mut self, window: (Millis, Millis)) {
        self.window = window;
    }

    /// Counts one delivery put on the network at `now` (lost ones included: the
    /// sender paid for them).
    pub fn sent(&mut self, now: Millis, kind: Kind, bytes: usize) {
        let add = |t: &mut Traffic| match kind {
            Kind::Gossip => {
                t.gossip_msgs += 1;
                t.gossip_bytes += (bytes as f64 * self.gossip_amplification).round() as u64;
            }
            Kind::Direct => {
                t.direct_msgs += 1;
                t.direct_bytes += bytes as u64;
            }
            Kind::Probe => {
                t.probe_msgs += 1;
                t.probe_bytes += PROBE_BYTES;
            }
        };
        add(&mut self.total_traffic);
        if now >= self.window.0 && now < self.window.1 {
            add(&mut self.window_traffic);
        }
    }

    /// A node crashed at `now` at `incarnation`; `live` are the other nodes live at
    /// that moment.
    pub fn crashed(&mut self, now: Millis, node: usize, incarnation: u64, live: Vec<usize>) {
        self.crashes.push(Crash {
            node,
            at: now,
            incarnation,
            live,
            applied: BTreeMap::new(),
            suspected: None,
            restarted: None,
        });
    }

    /// A crashed node restarted.
    pub fn restarted(&mut self, now: Millis, node: usize) {
        if let Some(c) = self
            .crashes
            .iter_mut()
            .rev()
            .find(|c| c.node == node && c.restarted.is_none())
        {
            c.restarted = Some(now);
        }
    }

    /// Nodes cut off on a minority side: evicting them is expected, not false.
    pub fn excuse(&mut self, nodes: impl IntoIterator<Item = usize>) {
        self.excused.extend(nodes);
    }

    /// Node `by`'s detector suspects `subject` at `incarnation`. Only suspicions of a
    /// crashed node (at or after its crash, about its crashed incarnation or an older
    /// one) are timed; the others are the detector's ordinary false alarms, which a
    /// probe clears.
    pub fn suspected(&mut self, now: Millis, by: usize, subject: usize, incarnation: u64) {
        let crash = self
            .crashes
            .iter_mut()
            .rev()
            .find(|c| c.node == subject && c.at <= now && incarnation <= c.incarnation);
        if let Some(c) = crash
            && c.live.contains(&by)
        {
            c.suspected.get_or_insert(now);
        }
    }

    /// Node `by` applied a certificate evicting `subject` at `incarnation`.
    pub fn evicted(&mut self, now: Millis, by: usize, subject: usize, incarnation: u64) {
        self.eviction_events += 1;
        self.evictions.entry((subject, incarnation)).or_insert(now);
        let crash = self
            .crashes
            .iter_mut()
            .rev()
            .find(|c| c.node == subject && c.at <= now && incarnation <= c.incarnation);
        match crash {
            Some(c) => {
                c.applied.entry(by).or_insert(now);
            }
            None if self.excused.contains(&subject) => {}
            None => {
                self.false_eviction_events += 1;
                self.false_evictions.insert((subject, incarnation));
            }
        }
    }

    /// A delivery from an honest sender was rejected as objectively invalid: a
    /// protocol bug (or a simulator bug).
    pub fn honest_reject(&mut self, now: Millis, from: usize, to: usize, reason: String) {
        self.honest_rejects += 1;
        if self.reject_samples.len() < 10 {
            self.reject_samples.push(format!(
                "t={} ms {from}->{to}: {reason}",
                now.0 - self.start.0
            ));
        }
    }

    /// Counts other protocol milestones.
    pub fn milestone(&mut self, what: Milestone) {
        match what {
            Milestone::SelfRefuted => self.self_refuted += 1,
            Milestone::SelfEvicted => self.self_evicted += 1,
            Milestone::Joined => self.joined += 1,
        }
    }

    /// The numbers. `end` is when the run stopped.
    pub fn report(&self, end: Millis) -> Measurements {
        let mut suspicion = Vec::new();
        let mut detection = Vec::new();
        let mut propagation = Vec::new();
        let mut convergence = Vec::new();
        let mut undetected = 0;
        let mut unconverged = 0;
        for c in &self.crashes {
            // Nodes that stayed up from the crash to the end must all apply it, unless
            // the subject came back first (then readmission may overtake eviction).
            let stayed: Vec<usize> = c
                .live
                .iter()
                .copied()
                .filter(|j| !self.crashes.iter().any(|d| d.node == *j && d.at >= c.at))
                .collect();
            if let Some(t) = c.suspected {
                suspicion.push(t.since(c.at).as_millis() as u64);
            }
            match c.applied.values().min() {
                Some(first) => detection.push(first.since(c.at).as_millis() as u64),
                None if c.restarted.is_none() => undetected += 1,
                None => {}
            }
            for t in c.applied.values() {
                propagation.push(t.since(c.at).as_millis() as u64);
            }
            let all = stayed.iter().all(|j| c.applied.contains_key(j));
            if all && !stayed.is_empty() {
                let last = stayed.iter().filter_map(|j| c.applied.get(j)).max();
                if let Some(last) = last {
                    convergence.push(last.since(c.at).as_millis() as u64);
                }
            } else if c.restarted.is_none() {
                unconverged += 1;
            }
        }
        let secs = self.window.1.min(end).since(self.window.0).as_secs_f64();
        let per = |v: u64| {
            if secs > 0.0 && self.n > 0 {
                v as f64 / self.n as f64 / secs
            } else {
                0.0
            }
        };
        let w = self.window_traffic;
        Measurements {
            crashes: self.crashes.len(),
            undetected,
            unconverged,
            suspicion: Summary::of(suspicion),
            detection: Summary::of(detection),
            propagation: Summary::of(propagation),
            convergence: Summary::of(convergence),
            evictions: self.evictions.len(),
            eviction_events: self.eviction_events,
            false_evictions: self.false_evictions.len(),
            false_eviction_events: self.false_eviction_events,
            honest_rejects: self.honest_rejects,
            reject_samples: self.reject_samples.clone(),
            self_refuted: self.self_refuted,
            self_evicted: self.self_evicted,
            joined: self.joined,
            window_secs: secs,
            msgs_per_node_s: per(w.msgs()),
            bytes_per_node_s: per(w.bytes()),
            gossip_msgs_per_node_s: per(w.gossip_msgs),
            gossip_bytes_per_node_s: per(w.gossip_bytes),
            direct_msgs_per_node_s: per(w.direct_msgs),
            direct_bytes_per_node_s: per(w.direct_bytes),
            probe_msgs_per_node_s: per(w.probe_msgs),
            window_traffic: w,
            total_traffic: self.total_traffic,
        }
    }
}

/// Protocol milestones counted but not timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// A node refuted Down votes about itself.
    SelfRefuted,
    /// A node learned it was evicted.
    SelfEvicted,
    /// A node admitted or readmitted a member.
    Joined,
}

/// The numbers of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// Crashes injected.
    pub crashes: usize,
    /// Crashes (not restarted) whose eviction no live node applied.
    pub undetected: usize,
    /// Crashes (not restarted) that some node live throughout never applied.
    pub unconverged: usize,
    /// Crash to the first live node suspecting the crashed node (its detector's
    /// verdict, before any probe or vote).
    pub suspicion: Summary,
    /// Crash to the first live node applying the eviction.
    pub detection: Summary,
    /// Crash to each live node applying it (one sample per node and crash).
    pub propagation: Summary,
    /// Crash to the last live node applying it.
    pub convergence: Summary,
    /// Distinct (subject, incarnation) evictions.
    pub evictions: usize,
    /// Eviction events (one per node applying a certificate).
    pub eviction_events: u64,
    /// Distinct evictions of nodes never crashed nor cut off on a minority side.
    pub false_evictions: usize,
    /// Their events.
    pub false_eviction_events: u64,
    /// Honest messages rejected as invalid (must be 0).
    pub honest_rejects: u64,
    /// The first few of them.
    pub reject_samples: Vec<String>,
    /// Refutations of Down votes by their subject.
    pub self_refuted: u64,
    /// Nodes that learned of their own eviction.
    pub self_evicted: u64,
    /// (Re)admissions.
    pub joined: u64,
    /// Length of the traffic window.
    pub window_secs: f64,
    /// Messages per node per second in the window (all kinds).
    pub msgs_per_node_s: f64,
    /// Bytes per node per second in the window (all kinds).
    pub bytes_per_node_s: f64,
    /// Gossip deliveries per node per second.
    pub gossip_msgs_per_node_s: f64,
    /// Gossip bytes per node per second.
    pub gossip_bytes_per_node_s: f64,
    /// Direct liveness frames per node per second.
    pub direct_msgs_per_node_s: f64,
    /// Their bytes per node per second.
    pub direct_bytes_per_node_s: f64,
    /// Probes and answers per node per second.
    pub probe_msgs_per_node_s: f64,
    /// Raw counts in the window.
    pub window_traffic: Traffic,
    /// Raw counts over the whole run.
    pub total_traffic: Traffic,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Summary::of((1..=100).collect());
        assert_eq!(
            (s.p50_ms, s.p99_ms, s.max_ms),
            (Some(50), Some(99), Some(100))
        );
        let one = Summary::of(vec![7]);
        assert_eq!((one.p50_ms, one.p99_ms), (Some(7), Some(7)));
        assert_eq!(Summary::of(vec![]).p50_ms, None);
    }

    #[test]
    fn false_and_expected_evictions() {
        let mut r = Recorder::new(4, (Millis(0), Millis(10)), 1.0);
        r.crashed(Millis(5), 3, 1, vec![0, 1, 2]);
        r.suspected(Millis(4), 1, 3, 1);
        r.suspected(Millis(6), 2, 3, 1);
        r.suspected(Millis(7), 0, 3, 1);
        r.evicted(Millis(8), 0, 3, 1);
        r.evicted(Millis(9), 1, 3, 1);
        r.excuse([2]);
        r.evicted(Millis(9), 1, 2, 1);
        r.evicted(Millis(9), 0, 1, 1);
        let m = r.report(Millis(20));
        assert_eq!(m.detection.p50_ms, Some(3));
        assert_eq!(
            (m.suspicion.count, m.suspicion.p50_ms),
            (1, Some(1)),
            "the first suspicion after the crash, not the false alarm before it"
        );
        assert_eq!(m.false_evictions, 1);
        assert_eq!(m.unconverged, 1, "node 2 never applied the crash");
    }
}
