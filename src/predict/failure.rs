//! Node failure: a score per node from its own recent signals, compared with the rest of
//! the cluster, and a drain decision with hysteresis; the baseline is a fixed heartbeat
//! timeout, which says nothing until the node has already stopped.
//!
//! Every signal is measured against the cluster's running level for the same job kind,
//! so a dependency outage that fails every node's jobs raises no node's score, while a
//! node whose jobs fail, time out, run slow or renew their leases slowly *where the
//! others' do not* accumulates evidence. The evidence is a one-sided CUSUM: each
//! attempt adds its excess over an allowance `k`, the sum never drops below zero, so a
//! short blip is forgiven and a sustained drift crosses the threshold.
//!
//! A running node feeds only its own attempts, so its model alone knows one node. At
//! each save round it adopts the other nodes' own states from their saved models
//! (`peers`): the median it is measured against, and the kinds' levels, are then
//! the cluster's.
//!
//! Beside its jobs, a node's vitals count the same way (`vitals`): its host's load
//! per core and memory pressure, which the node samples itself, above the cluster's
//! median; and the phi accrual its mesh observers compute for it, above what each
//! observer sees of the other members, which a node learns of from its observers'
//! saved models.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

mod baseline;
mod peers;
mod vitals;

pub use baseline::HeartbeatTimeout;
pub use peers::PeerModel;
pub use vitals::{VitalSettings, Vitals};

use vitals::{AdoptedVitals, VitalMedians};

/// One thing learned about a node.
#[derive(Debug, Clone, Copy)]
pub enum NodeSignal<'a> {
    /// An attempt that ran on the node finished.
    Attempt {
        /// Its job kind.
        kind: &'a str,
        /// Whether it failed.
        failed: bool,
        /// Whether it failed by timing out.
        timed_out: bool,
        /// How long it ran, in milliseconds.
        duration_ms: f64,
        /// Mean latency of its lease renewals, where known.
        renew_ms: Option<f64>,
    },
    /// A worker of the node crashed and was restarted.
    Restart,
    /// A store call of the node failed.
    StoreError,
    /// The node's heartbeat arrived.
    Heartbeat,
    /// A sample of the node's host (each where the OS gives it).
    Host {
        /// Its load average (1 minute) per core.
        load_per_core: Option<f64>,
        /// The share of its memory in use (0 to 1): its cgroup's against the cgroup's
        /// limit, else the machine's.
        memory_used: Option<f64>,
    },
    /// The phi accrual this model's node computes, as a mesh observer, for the node:
    /// how late its heartbeats are against their usual intervals.
    Phi {
        /// The phi sampled (the mesh suspects a member at 8 by default).
        phi: f64,
    },
}

/// A failure predictor: the model and its baseline alike.
pub trait FailurePredictor {
    /// A short name for tables.
    fn name(&self) -> &'static str;
    /// Learns a signal about `node` at `at_ms`.
    fn observe(&mut self, node: &str, at_ms: i64, signal: NodeSignal<'_>);
    /// Whether `node` should drain (stop claiming, finish what it holds) at `now_ms`.
    fn should_drain(&mut self, node: &str, now_ms: i64) -> bool;
    /// The node's current score (higher is worse; what operators see).
    fn score(&self, node: &str, now_ms: i64) -> f64;
}

/// Weights and thresholds of [`NodeScore`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ScoreSettings {
    /// Weight of the failure rate beyond the kind's and the peers'.
    pub w_error: f64,
    /// Weight of the timeout rate beyond the kind's and the peers'.
    pub w_timeout: f64,
    /// Weight of `ln(duration / kind's level)` beyond the peers' (clamped to -1..3 per
    /// attempt).
    pub w_slow: f64,
    /// Weight of `ln(renewal latency)` beyond the peers' (clamped to -1..3 above the
    /// cluster level per attempt).
    pub w_renew: f64,
    /// Added per worker restart (fading with `events_half_life_ms`).
    pub w_restart: f64,
    /// Added per store error (fading with `events_half_life_ms`).
    pub w_store: f64,
    /// Half-life of restarts and store errors.
    pub events_half_life_ms: f64,
    /// Smoothing of a node's levels per attempt.
    pub node_alpha: f64,
    /// Smoothing of each kind's duration level per attempt.
    pub kind_alpha: f64,
    /// Smoothing of each kind's failure and timeout shares per attempt.
    pub kind_rate_alpha: f64,
    /// Drain when the score rises above this.
    pub enter: f64,
    /// Stop draining when it falls below this.
    pub exit: f64,
    /// The heartbeat timeout also applied (the model never knows less than the
    /// baseline).
    pub heartbeat_timeout_ms: i64,
}

impl Default for ScoreSettings {
    fn default() -> Self {
        Self {
            w_error: 2.0,
            w_timeout: 3.0,
            w_slow: 0.6,
            w_renew: 0.8,
            w_restart: 0.5,
            w_store: 0.25,
            events_half_life_ms: 120_000.0,
            node_alpha: 0.05,
            kind_alpha: 0.01,
            kind_rate_alpha: 0.05,
            enter: 1.6,
            exit: 0.8,
            heartbeat_timeout_ms: 10_000,
        }
    }
}

/// How often the peers' medians are recomputed.
const MEDIANS_EVERY_MS: i64 = 1_000;

/// Signals smoothed per node: failure, timeout, slowness, renewal latency.
const SIGNALS: usize = 4;

/// The cluster's levels for one kind.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct KindLevel {
    /// Smoothed `ln(duration)` of succeeded attempts.
    ln_duration: f64,
    /// Smoothed failure share.
    fail: f64,
    /// Smoothed timeout share.
    timeout: f64,
}

/// One node's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct NodeState {
    /// Smoothed signals (failure share, timeout share, ln slowness, ln renewal).
    levels: [f64; SIGNALS],
    /// Whether each signal has been seen.
    seen: [bool; SIGNALS],
    /// Restarts and store errors, weighted, as of `events_at`.
    events: f64,
    events_at: i64,
    draining: bool,
    last_heartbeat: Option<i64>,
    /// Since when the score has been above the entry threshold (this node's own state;
    /// not saved).
    #[serde(skip)]
    above_since: Option<i64>,
}

/// The model: per node, smoothed failure and timeout shares, slowness (against the
/// kind's level) and lease renewal latency; the score is how far they sit above the
/// median of all nodes' (so what hits every node, an outage or a drifting kind, scores
/// nothing), plus fading restarts and store errors; drains with hysteresis.
///
/// What it observes itself is kept apart from what it adopted from other nodes' saved
/// models ([`NodeScore::adopt_peers`]): only the former is serialized, so a node saves
/// only its own and nothing is counted twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeScore {
    s: ScoreSettings,
    /// Per kind: the levels of the attempts observed here.
    kinds: HashMap<String, KindLevel>,
    nodes: HashMap<String, NodeState>,
    /// Other nodes' own states, as they saved them; replaced wholesale at each
    /// adoption (a peer that stopped saving is forgotten), never saved.
    #[serde(skip)]
    peers: HashMap<String, NodeState>,
    /// Per kind: the mean of the adopted peers' own levels and how many peers it is
    /// over; an attempt is judged against the blend of these and the levels above.
    #[serde(skip)]
    peer_kinds: HashMap<String, (KindLevel, usize)>,
    /// When the oldest of the adopted peers' states was saved (`None`: none adopted).
    #[serde(skip)]
    peers_as_of: Option<i64>,
    /// The peers' medians per signal as last computed, and when: recomputed at most
    /// once a second by [`FailurePredictor::should_drain`], so a decision costs the same
    /// however many nodes there are.
    medians: [f64; SIGNALS],
    medians_at: Option<i64>,
    /// Settings of the vitals (not saved: the running version's).
    #[serde(skip)]
    vs: VitalSettings,
    /// Vitals learned here: saved beside the model, not in it (see [`Self::vitals`]),
    /// so models saved before vitals existed still load.
    #[serde(skip)]
    vitals: Vitals,
    /// The other nodes' vitals, adopted with their states.
    #[serde(skip)]
    peer_vitals: AdoptedVitals,
    /// The vitals' medians, recomputed with `medians`.
    #[serde(skip)]
    vital_medians: VitalMedians,
}

impl NodeScore {
    /// A model with these settings.
    pub fn new(s: ScoreSettings) -> Self {
        Self {
            s,
            kinds: HashMap::new(),
            nodes: HashMap::new(),
            peers: HashMap::new(),
            peer_kinds: HashMap::new(),
            peers_as_of: None,
            medians: [0.0; SIGNALS],
            medians_at: None,
            vs: VitalSettings::default(),
            vitals: Vitals::default(),
            peer_vitals: AdoptedVitals::default(),
            vital_medians: VitalMedians::default(),
        }
    }

    /// This model with `vs` for the vitals.
    pub fn with_vitals(mut self, vs: VitalSettings) -> Self {
        self.vs = vs;
        self
    }

    /// The vitals learned here (host samples, phi of the members this node observes):
    /// saved beside the model.
    pub fn vitals(&self) -> &Vitals {
        &self.vitals
    }

    /// Puts back vitals saved beside this model (see [`Self::vitals`]).
    pub fn set_vitals(&mut self, vitals: Vitals) {
        self.vitals = vitals;
    }

    /// Drops the vitals a model resumed at `now_ms` cannot use: dated after `now_ms`
    /// (saved by a clock that was ahead: they would not move until the clock caught
    /// up) or not finite.
    pub fn drop_unusable_vitals(&mut self, now_ms: i64) {
        self.vitals.drop_unusable(now_ms);
    }

    /// The nodes the model has a state for, observed or adopted (a snapshot accessor
    /// for operators' views).
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .keys()
            .chain(self.peers.keys())
            .map(String::as_str)
    }

    /// A node's state, observed here or adopted.
    fn state(&self, node: &str) -> Option<&NodeState> {
        self.nodes.get(node).or_else(|| self.peers.get(node))
    }

    fn node(&mut self, node: &str) -> &mut NodeState {
        if !self.nodes.contains_key(node) {
            self.nodes.insert(node.to_owned(), NodeState::default());
        }
        self.nodes.get_mut(node).expect("inserted above")
    }

    fn events_at(&self, n: &NodeState, now_ms: i64) -> f64 {
        let dt = (now_ms - n.events_at).max(0) as f64;
        n.events * (-dt / self.s.events_half_life_ms.max(1.0)).exp2()
    }

    /// How many nodes other than `node` the model has learned about (the peers its
    /// score is measured against, and that could take over its work).
    pub fn peers_of(&self, node: &str) -> usize {
        self.nodes().filter(|n| *n != node).count()
    }

    /// The median of signal `k` over the nodes that have it.
    fn peer_median(&self, k: usize) -> f64 {
        let v: Vec<f64> = self
            .nodes
            .values()
            .chain(self.peers.values())
            .filter(|n| n.seen[k])
            .map(|n| n.levels[k])
            .collect();
        upper_median(v).unwrap_or(0.0)
    }
}

/// The median of `v` (the upper one of an even count), `None` when it is empty.
fn upper_median(v: Vec<f64>) -> Option<f64> {
    let mid = v.len() / 2;
    nth_smallest(v, mid)
}

/// The median of `v` (the lower one of an even count), `None` when it is empty.
fn lower_median(v: Vec<f64>) -> Option<f64> {
    let mid = v.len().checked_sub(1)? / 2;
    nth_smallest(v, mid)
}

/// The `n`th smallest of `v` (from 0) without sorting it.
fn nth_smallest(mut v: Vec<f64>, n: usize) -> Option<f64> {
    if n >= v.len() {
        return None;
    }
    let (_, m, _) = v.select_nth_unstable_by(n, f64::total_cmp);
    Some(*m)
}

impl FailurePredictor for NodeScore {
    fn name(&self) -> &'static str {
        "peer-relative score"
    }

    fn observe(&mut self, node: &str, at_ms: i64, signal: NodeSignal<'_>) {
        let s = self.s;
        match signal {
            NodeSignal::Attempt {
                kind,
                failed,
                timed_out,
                duration_ms,
                renew_ms,
            } => {
                let ln_d = duration_ms.max(1.0).ln();
                let (f, t) = (f64::from(u8::from(failed)), f64::from(u8::from(timed_out)));
                let level = match self.kinds.get_mut(kind) {
                    Some(l) => l,
                    None => self.kinds.entry(kind.to_owned()).or_insert(KindLevel {
                        ln_duration: ln_d,
                        fail: 0.0,
                        timeout: 0.0,
                    }),
                };
                // Failures and timeouts count beyond what the kind has everywhere (a
                // dependency outage fails the kind on whichever nodes run it): the
                // levels seen here blended with the peers' (each node weighs the same,
                // so a node failing alone cannot make its failures the cluster's norm).
                let cluster = blend(*level, self.peer_kinds.get(kind));
                let excess_fail = f - cluster.fail;
                let excess_timeout = t - cluster.timeout;
                level.fail += s.kind_rate_alpha * (f - level.fail);
                level.timeout += s.kind_rate_alpha * (t - level.timeout);
                let mut slow = None;
                if !failed {
                    slow = Some((ln_d - cluster.ln_duration).clamp(-1.0, 3.0));
                    level.ln_duration += s.kind_alpha * (ln_d - level.ln_duration);
                }
                let values = [
                    Some(excess_fail),
                    Some(excess_timeout),
                    slow,
                    renew_ms
                        .filter(|r| r.is_finite() && *r >= 0.0)
                        .map(|r| r.max(1.0).ln()),
                ];
                let n = self.node(node);
                for (k, v) in values.into_iter().enumerate() {
                    let Some(v) = v else { continue };
                    if n.seen[k] {
                        n.levels[k] += s.node_alpha * (v - n.levels[k]);
                    } else if k == 3 {
                        // A level, not a share: start from the first value.
                        n.levels[k] = v;
                        n.seen[k] = true;
                    } else {
                        n.levels[k] = s.node_alpha * v;
                        n.seen[k] = true;
                    }
                }
            }
            NodeSignal::Restart | NodeSignal::StoreError => {
                let w = if matches!(signal, NodeSignal::Restart) {
                    s.w_restart
                } else {
                    s.w_store
                };
                let n = self.node(node).clone();
                let now = self.events_at(&n, at_ms) + w;
                let n = self.node(node);
                n.events = now;
                n.events_at = n.events_at.max(at_ms);
            }
            NodeSignal::Heartbeat => {
                let n = self.node(node);
                let back = n
                    .last_heartbeat
                    .is_some_and(|t| at_ms - t > s.heartbeat_timeout_ms);
                if back {
                    // Back after a silence: a restarted node starts from a clean slate.
                    *n = NodeState::default();
                }
                n.last_heartbeat = Some(n.last_heartbeat.map_or(at_ms, |t| t.max(at_ms)));
                if back {
                    self.vitals.forget_host(node);
                }
            }
            NodeSignal::Host { .. } => {
                // A node sampling its host is known (a peer that could take work over)
                // before its first attempt ends.
                self.node(node);
                self.vitals.observe(&self.vs, node, at_ms, signal);
            }
            NodeSignal::Phi { .. } => {
                // No state: the member observed has its own, adopted from its row.
                self.vitals.observe(&self.vs, node, at_ms, signal);
            }
        }
    }

    fn should_drain(&mut self, node: &str, now_ms: i64) -> bool {
        let s = self.s;
        if self
            .medians_at
            .is_none_or(|t| now_ms - t >= MEDIANS_EVERY_MS || now_ms < t)
        {
            self.medians = std::array::from_fn(|k| self.peer_median(k));
            // Dated more than a half-life ahead of now: a clock that stepped back.
            let ahead = now_ms.saturating_add(self.vs.half_life_ms.max(1.0) as i64);
            self.vitals
                .forget_outside(now_ms.saturating_sub(self.vs.forget_after_ms), ahead);
            self.vital_medians = VitalMedians::compute(&self.vitals, &self.peer_vitals);
            self.medians_at = Some(now_ms);
        }
        let score = self.score(node, now_ms);
        let peers_as_of = self.peers_as_of;
        if score > 0.0 && !self.nodes.contains_key(node) && !self.peers.contains_key(node) {
            // Known only by its vitals (no attempt finished here yet): a state to drain.
            self.node(node);
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        if score > s.enter {
            n.above_since.get_or_insert(now_ms);
        } else {
            n.above_since = None;
        }
        // Measured against adopted peers, a drain starts only once every peer's state
        // was saved after the score rose: until then the node compares its fresh state
        // with older ones, and a cause that hits every node (an outage) would look like
        // its own for up to a save interval.
        let confirmed = match (peers_as_of, n.above_since) {
            (Some(as_of), Some(since)) => as_of >= since,
            _ => true,
        };
        n.draining = if n.draining {
            score >= s.exit
        } else {
            score > s.enter && confirmed
        };
        let silent = n
            .last_heartbeat
            .is_some_and(|t| now_ms - t > s.heartbeat_timeout_ms);
        n.draining || silent
    }

    fn score(&self, node: &str, now_ms: i64) -> f64 {
        let vital_medians = if self.medians_at.is_some() {
            self.vital_medians
        } else {
            VitalMedians::compute(&self.vitals, &self.peer_vitals)
        };
        // A member observed on the mesh may have no state here (it saves no models):
        // its vitals still count.
        let vitals = vitals::vitals_score(
            &self.vs,
            &self.vitals,
            &self.peer_vitals,
            &vital_medians,
            node,
        );
        let Some(n) = self.state(node) else {
            return vitals;
        };
        let s = self.s;
        let weights = [s.w_error, s.w_timeout, s.w_slow, s.w_renew];
        let mut score = vitals + self.events_at(n, now_ms);
        for (k, weight) in weights.iter().enumerate() {
            if n.seen[k] {
                let median = if self.medians_at.is_some() {
                    self.medians[k]
                } else {
                    self.peer_median(k)
                };
                let excess = n.levels[k] - median;
                let excess = if k == 3 { excess.min(3.0) } else { excess };
                score += weight * excess.max(0.0);
            }
        }
        score
    }
}

/// A kind's level seen here blended with the mean of the peers' (`n` of them): each
/// node weighs the same.
fn blend(own: KindLevel, peers: Option<&(KindLevel, usize)>) -> KindLevel {
    let Some((p, n)) = peers.filter(|(_, n)| *n > 0) else {
        return own;
    };
    let (n, all) = (*n as f64, *n as f64 + 1.0);
    KindLevel {
        ln_duration: (own.ln_duration + n * p.ln_duration) / all,
        fail: (own.fail + n * p.fail) / all,
        timeout: (own.timeout + n * p.timeout) / all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: &str, d: f64, renew: f64) -> NodeSignal<'_> {
        NodeSignal::Attempt {
            kind,
            failed: false,
            timed_out: false,
            duration_ms: d,
            renew_ms: Some(renew),
        }
    }

    fn warm(m: &mut NodeScore) {
        for i in 0..300 {
            for n in ["a", "b", "c"] {
                m.observe(n, i, ok("k", 100.0, 15.0));
            }
        }
    }

    #[test]
    fn a_node_slower_than_the_others_drains_and_recovers() {
        let mut m = NodeScore::new(ScoreSettings::default());
        warm(&mut m);
        assert!(!m.should_drain("a", 300));
        let mut t = 300;
        while !m.should_drain("a", t) {
            t += 1;
            assert!(t < 400, "never drained: score {}", m.score("a", t));
            m.observe("a", t, ok("k", 400.0, 500.0));
            m.observe("b", t, ok("k", 100.0, 15.0));
        }
        assert!(!m.should_drain("b", t));
        // Hysteresis: a few good attempts do not end the drain at once ...
        m.observe("a", t, ok("k", 100.0, 15.0));
        assert!(m.should_drain("a", t));
        // ... a steady run of them does.
        for i in 0..200 {
            m.observe("a", t + i, ok("k", 100.0, 15.0));
        }
        assert!(!m.should_drain("a", t + 200));
    }

    #[test]
    fn failures_everywhere_raise_no_node() {
        let mut m = NodeScore::new(ScoreSettings::default());
        warm(&mut m);
        for i in 0..500 {
            for n in ["a", "b", "c"] {
                m.observe(
                    n,
                    1000 + i,
                    NodeSignal::Attempt {
                        kind: "k",
                        failed: true,
                        timed_out: false,
                        duration_ms: 5.0,
                        renew_ms: Some(15.0),
                    },
                );
                assert!(
                    !m.should_drain(n, 1000 + i),
                    "{n} at {i}: {}",
                    m.score(n, 0)
                );
            }
        }
    }

    #[test]
    fn a_short_blip_is_forgiven() {
        let mut m = NodeScore::new(ScoreSettings::default());
        warm(&mut m);
        for i in 0..5 {
            m.observe("a", 400 + i, ok("k", 300.0, 15.0));
        }
        assert!(!m.should_drain("a", 405));
    }

    #[test]
    fn the_heartbeat_timeout_is_the_floor() {
        let mut m = NodeScore::new(ScoreSettings::default());
        let mut b = HeartbeatTimeout::new(10_000);
        for p in [&mut m as &mut dyn FailurePredictor, &mut b] {
            p.observe("a", 0, NodeSignal::Heartbeat);
            assert!(!p.should_drain("a", 10_000));
            assert!(p.should_drain("a", 10_001));
            p.observe("a", 10_500, NodeSignal::Heartbeat);
            assert!(!p.should_drain("a", 11_000));
        }
        assert!(b.score("a", 15_500) > 0.4);
    }

    #[test]
    fn restarts_and_store_errors_add_up() {
        let mut m = NodeScore::new(ScoreSettings::default());
        for _ in 0..4 {
            m.observe("a", 0, NodeSignal::Restart);
        }
        assert!(m.should_drain("a", 0));
        // They fade: two half-lives later the score is a quarter.
        assert!((m.score("a", 240_000) - 0.5).abs() < 1e-9);
        let mut m = NodeScore::new(ScoreSettings::default());
        m.observe("a", 0, NodeSignal::StoreError);
        assert!(!m.should_drain("a", 0));
        assert_eq!(m.score("a", 0), 0.25);
    }
}
