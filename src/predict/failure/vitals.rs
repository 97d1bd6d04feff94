//! The node's vitals beside its jobs: its host's load per core and memory pressure (the
//! node samples its own, [`NodeSignal::Host`]) and the phi accrual its mesh observers
//! compute from its heartbeats ([`NodeSignal::Phi`]). Each is smoothed over time and
//! counts only where it sits above the cluster's, as the attempt signals do.
//!
//! Host: a node's smoothed load per core and memory pressure (`-ln(1 - share in
//! use)`, so 50% is 0.7, 90% is 2.3 and 99% is 4.6: what matters is how close to full)
//! are measured against the median of every node's. A load the whole cluster carries
//! (or nodes sharing one machine, which see the same load) raises no one.
//!
//! Phi, in three steps:
//! 1. An observer (this node's voter) samples the phi it computes for each member it
//!    monitors; the model keeps a smoothed phi per subject ([`Vitals::observed`]).
//! 2. An observer's *excess* about a subject is that subject's smoothed phi above the
//!    observer's baseline: the lower median of its smoothed phi over all the members
//!    it observes. An observer that is itself overloaded (its timers late, every
//!    arrival looks late) or a network that delays everyone raises every subject alike
//!    and so no excess; an observer of a single member has no baseline and never
//!    accuses it.
//! 3. The evidence about a subject is the lower median of its observers' excesses: this
//!    node's own (when it observes the subject) and those of the other nodes, adopted
//!    from their saved models with their own states (`observed` is saved with the
//!    model; [`NodeScore::adopt_peers`](super::NodeScore::adopt_peers) keeps, per subject, the other observers'
//!    excesses). The lower median needs at least half of the observers (more than half
//!    of an even number) to see the subject irregular, so one lying or confused
//!    observer moves nothing. A node never observes itself: its own score learns of its
//!    phi only from the others' saved models, which is how a node whose heartbeats reach
//!    the others irregularly learns of it and drains.
//!
//! Without a mesh no phi is fed and without samples no host levels exist: the score is
//! what it was without them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::NodeSignal;

/// Weights, allowances and smoothing of the vitals (not saved: a resumed model takes
/// the running version's).
#[derive(Debug, Clone, Copy)]
pub struct VitalSettings {
    /// Weight of load per core above the cluster's median, beyond `load_allowance`.
    pub w_load: f64,
    /// Load per core above the median that counts nothing.
    pub load_allowance: f64,
    /// Load per core counted at most (a runaway load says no more than this).
    pub load_cap: f64,
    /// Weight of memory pressure above the cluster's median, beyond
    /// `memory_allowance`.
    pub w_memory: f64,
    /// Memory pressure above the median that counts nothing.
    pub memory_allowance: f64,
    /// Share of memory in use counted at most (pressure `-ln(1 - 0.99)` = 4.6).
    pub memory_cap: f64,
    /// Weight of the observers' phi excess beyond `phi_allowance`.
    pub w_phi: f64,
    /// Phi excess that counts nothing.
    pub phi_allowance: f64,
    /// Phi counted at most per sample: past the mesh's suspicion threshold the mesh
    /// itself probes and votes, and one long silence must not outweigh minutes.
    pub phi_cap: f64,
    /// Half-life of the smoothing of every vital sample.
    pub half_life_ms: f64,
    /// A vital not sampled for this long is forgotten (a member that left, a node that
    /// stopped sampling).
    pub forget_after_ms: i64,
}

impl Default for VitalSettings {
    fn default() -> Self {
        Self {
            // A node at 2.6 per core where the others sit at 0.5 crosses the drain
            // threshold (1.6) on load alone; at 1.5 it adds 0.5.
            w_load: 1.0,
            load_allowance: 0.5,
            load_cap: 4.0,
            // 97% in use where the others use half: 1.8 alone; 90% adds 0.6.
            w_memory: 1.0,
            memory_allowance: 1.0,
            memory_cap: 0.99,
            // A smoothed phi 2.5 above the others' (heartbeats often late enough to be
            // a tenth of the way to suspicion) crosses the threshold alone.
            w_phi: 0.8,
            phi_allowance: 0.5,
            phi_cap: 8.0,
            half_life_ms: 30_000.0,
            forget_after_ms: 600_000,
        }
    }
}

/// One smoothed vital.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct Level {
    /// The smoothed value.
    pub(super) value: f64,
    /// When it was last sampled.
    pub(super) at: i64,
}

impl Level {
    /// A level that starts warm: at 0 at `at`, then moved by its first sample `v` with
    /// the weight no time since earns (none). A level rises over its half-life as any
    /// moves: one late heartbeat or one loaded instant among the first samples is not
    /// taken as if sustained for a half-life.
    fn first(v: f64, at: i64, half_life_ms: f64) -> Self {
        let mut l = Self { value: 0.0, at };
        l.update(v, at, half_life_ms);
        l
    }

    /// Moves toward `v` by the weight the time since the last sample earns: samples
    /// taken at any rate smooth over the same half-life. A sample dated more than a
    /// half-life before the level's time (the clock stepped back, or the level came
    /// from a clock that was ahead) re-dates the level at `at`: otherwise it would not
    /// move again until the clock caught up, nor be forgotten. A sample less far back
    /// moves nothing.
    fn update(&mut self, v: f64, at: i64, half_life_ms: f64) {
        let half_life_ms = half_life_ms.max(1.0);
        let dt = at.saturating_sub(self.at);
        if (dt as f64) < -half_life_ms {
            self.at = at;
            return;
        }
        let w = 1.0 - (-(dt.max(0) as f64) / half_life_ms).exp2();
        self.value += w * (v - self.value);
        self.at = self.at.max(at);
    }
}

/// A node's smoothed load per core and memory pressure (in this order), each where
/// sampled.
pub(super) type HostLevels = [Option<Level>; 2];

/// What a failure model learned of vitals itself: saved beside the model (format 2 of
/// the saved models; see [`NodeScore::vitals`](super::NodeScore::vitals)), and empty
/// in a model saved before vitals existed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vitals {
    /// Per node, its host's levels (a running node samples only its own).
    pub(super) host: HashMap<String, HostLevels>,
    /// Per member this node observes on the mesh: its smoothed phi.
    pub(super) observed: HashMap<String, Level>,
}

/// Memory pressure of a share in use: how many e-folds from full.
fn pressure(share: f64, cap: f64) -> f64 {
    -(1.0 - share.clamp(0.0, cap)).ln()
}

impl Vitals {
    /// The members this node observes on the mesh, with their smoothed phi.
    pub fn observed(&self) -> impl Iterator<Item = (&str, f64)> {
        self.observed.iter().map(|(n, l)| (n.as_str(), l.value))
    }

    /// Whether nothing was learned (a model saved before vitals existed, a node with
    /// no mesh that never sampled its host).
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.observed.is_empty()
    }

    /// Learns a host or phi signal about `node` at `at_ms`; other signals are not
    /// vitals and are ignored.
    pub(super) fn observe(
        &mut self,
        s: &VitalSettings,
        node: &str,
        at_ms: i64,
        signal: NodeSignal<'_>,
    ) {
        match signal {
            NodeSignal::Host {
                load_per_core,
                memory_used,
            } => {
                let values = [
                    load_per_core
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .map(|v| v.min(s.load_cap)),
                    memory_used
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .map(|v| pressure(v, s.memory_cap)),
                ];
                let levels = match self.host.get_mut(node) {
                    Some(l) => l,
                    None => self.host.entry(node.to_owned()).or_default(),
                };
                for (level, v) in levels.iter_mut().zip(values) {
                    let Some(v) = v else { continue };
                    match level {
                        Some(l) => l.update(v, at_ms, s.half_life_ms),
                        None => *level = Some(Level::first(v, at_ms, s.half_life_ms)),
                    }
                }
            }
            NodeSignal::Phi { phi } if !phi.is_nan() => {
                let v = phi.clamp(0.0, s.phi_cap);
                match self.observed.get_mut(node) {
                    Some(l) => l.update(v, at_ms, s.half_life_ms),
                    None => {
                        self.observed
                            .insert(node.to_owned(), Level::first(v, at_ms, s.half_life_ms));
                    }
                }
            }
            _ => {}
        }
    }

    /// Forgets vitals last sampled before `before_ms` or dated after `after_ms` (a
    /// level from a clock that was ahead, no longer sampled: it would otherwise never
    /// be forgotten).
    pub(super) fn forget_outside(&mut self, before_ms: i64, after_ms: i64) {
        self.retain(|l| (before_ms..=after_ms).contains(&l.at));
    }

    /// Drops what a resumed model cannot use: levels dated after `now_ms` (saved by a
    /// clock that was ahead) and values that are not finite (a corrupt row).
    pub(super) fn drop_unusable(&mut self, now_ms: i64) {
        self.retain(|l| l.at <= now_ms && l.value.is_finite());
    }

    /// Keeps the levels `keep` accepts, and the nodes with a level left.
    fn retain(&mut self, keep: impl Fn(&Level) -> bool) {
        self.observed.retain(|_, l| keep(l));
        self.host.retain(|_, levels| {
            for level in levels.iter_mut() {
                if level.is_some_and(|l| !keep(&l)) {
                    *level = None;
                }
            }
            levels.iter().any(Option::is_some)
        });
    }

    /// Forgets what is known of `node`'s host (it came back after a silence: a
    /// restarted node starts from a clean slate).
    pub(super) fn forget_host(&mut self, node: &str) {
        self.host.remove(node);
    }

    /// This observer's baseline: the lower median of its smoothed phi over the members
    /// it observes (`None` with fewer than two: one member has nothing to be compared
    /// with).
    pub(super) fn phi_baseline(&self) -> Option<f64> {
        phi_baseline(self.observed.values().map(|l| l.value))
    }

    /// Each observed member's excess over this observer's baseline.
    pub(super) fn phi_excesses(&self) -> impl Iterator<Item = (&str, f64)> {
        let base = self.phi_baseline();
        self.observed.iter().filter_map(move |(node, l)| {
            let base = base?;
            Some((node.as_str(), (l.value - base).max(0.0)))
        })
    }

    /// Whether every number is finite (a hostile or corrupt row's are not adopted).
    pub(super) fn is_finite(&self) -> bool {
        let host = self
            .host
            .values()
            .flatten()
            .flatten()
            .all(|l| l.value.is_finite());
        host && self.observed.values().all(|l| l.value.is_finite())
    }
}

/// The lower median of `values` (`None` with fewer than two).
fn phi_baseline(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    if v.len() < 2 {
        return None;
    }
    super::lower_median(v)
}

/// The lower median of `sorted` (ascending) with `extra` added, without building the
/// merged list: the value at least half of the observers (more than half of an even
/// number) reach.
pub(super) fn lower_median_with(sorted: &[f64], extra: Option<f64>) -> Option<f64> {
    let Some(e) = extra else {
        return sorted.get(sorted.len().checked_sub(1)? / 2).copied();
    };
    let k = sorted.len() / 2; // (len + 1 - 1) / 2
    let pos = sorted.partition_point(|v| *v < e);
    Some(match k.cmp(&pos) {
        std::cmp::Ordering::Less => sorted[k],
        std::cmp::Ordering::Equal => e,
        std::cmp::Ordering::Greater => sorted[k - 1],
    })
}

/// What was adopted from the other nodes' saved vitals (never saved).
#[derive(Debug, Clone, Default)]
pub(super) struct AdoptedVitals {
    /// Per other node, its own host levels.
    pub(super) host: HashMap<String, HostLevels>,
    /// Per subject, the other observers' excesses, ascending.
    pub(super) phi: HashMap<String, Vec<f64>>,
}

impl AdoptedVitals {
    /// Adopts `peer`'s own host levels and its phi excesses about every subject it
    /// observes, each at most `phi_cap` as an honest node's are (skipped when any number
    /// is not finite); whether it had any.
    pub(super) fn add(&mut self, peer: &str, vitals: &Vitals, phi_cap: f64) -> bool {
        if !vitals.is_finite() {
            return false;
        }
        let mut any = false;
        if let Some(levels) = vitals.host.get(peer) {
            self.host.insert(peer.to_owned(), *levels);
            any = true;
        }
        // A row's word about its own node is no observation.
        for (subject, excess) in vitals.phi_excesses().filter(|(s, _)| *s != peer) {
            let excess = excess.min(phi_cap);
            any = true;
            match self.phi.get_mut(subject) {
                Some(v) => v.push(excess),
                None => {
                    self.phi.insert(subject.to_owned(), vec![excess]);
                }
            }
        }
        any
    }

    /// Sorts the excesses (after the last [`add`](Self::add)).
    pub(super) fn finish(&mut self) {
        for v in self.phi.values_mut() {
            v.sort_unstable_by(f64::total_cmp);
        }
    }
}

/// The medians the vitals are measured against, recomputed with the model's others.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct VitalMedians {
    /// Median host level over the nodes that have it, per host vital.
    pub(super) host: [Option<f64>; 2],
    /// This observer's phi baseline.
    pub(super) phi_base: Option<f64>,
}

impl VitalMedians {
    /// The medians over `own` and `adopted` now.
    pub(super) fn compute(own: &Vitals, adopted: &AdoptedVitals) -> Self {
        let host = std::array::from_fn(|k| {
            super::upper_median(
                own.host
                    .values()
                    .chain(adopted.host.values())
                    .filter_map(|l| l[k].map(|l| l.value))
                    .collect(),
            )
        });
        Self {
            host,
            phi_base: own.phi_baseline(),
        }
    }
}

/// `node`'s vitals' part of its score, measured against `medians`.
pub(super) fn vitals_score(
    s: &VitalSettings,
    own: &Vitals,
    adopted: &AdoptedVitals,
    medians: &VitalMedians,
    node: &str,
) -> f64 {
    let mut score = 0.0;
    let host = own.host.get(node).or_else(|| adopted.host.get(node));
    if let Some(levels) = host {
        let weights = [
            (s.w_load, s.load_allowance),
            (s.w_memory, s.memory_allowance),
        ];
        for (k, (w, allowance)) in weights.into_iter().enumerate() {
            if let (Some(l), Some(m)) = (levels[k], medians.host[k]) {
                score += w * (l.value - m - allowance).max(0.0);
            }
        }
    }
    let own_excess = own
        .observed
        .get(node)
        .zip(medians.phi_base)
        .map(|(l, base)| (l.value - base).max(0.0));
    let others = adopted.phi.get(node).map_or(&[][..], Vec::as_slice);
    if let Some(excess) = lower_median_with(others, own_excess) {
        score += s.w_phi * (excess - s.phi_allowance).max(0.0);
    }
    score
}

#[cfg(test)]
mod tests {
    use super::super::{FailurePredictor, NodeScore, PeerModel, ScoreSettings};
    use super::*;

    fn model() -> NodeScore {
        NodeScore::new(ScoreSettings::default())
    }

    fn host(load: f64, memory: f64) -> NodeSignal<'static> {
        NodeSignal::Host {
            load_per_core: Some(load),
            memory_used: Some(memory),
        }
    }

    /// Feeds `sample(node)` for every node every 5 s for `secs`, from `from_ms`; the
    /// time it ends at.
    fn feed_for(
        m: &mut NodeScore,
        nodes: &[&str],
        from_ms: i64,
        secs: i64,
        sample: impl Fn(&str) -> NodeSignal<'static>,
    ) -> i64 {
        let mut t = from_ms;
        while t < from_ms + secs * 1_000 {
            for n in nodes {
                m.observe(n, t, sample(n));
            }
            t += 5_000;
        }
        t
    }

    #[test]
    fn a_node_loaded_where_its_peers_are_not_drains_and_a_cluster_wide_load_drains_none() {
        let nodes = ["a", "b", "c"];
        let mut m = model();
        let t = feed_for(&mut m, &nodes, 0, 60, |_| host(0.4, 0.5));
        assert!(nodes.iter().all(|n| !m.should_drain(n, t)));
        let t = feed_for(&mut m, &nodes, t, 120, |n| {
            host(if n == "a" { 3.0 } else { 0.4 }, 0.5)
        });
        assert!(m.should_drain("a", t), "{}", m.score("a", t));
        assert!(!m.should_drain("b", t) && !m.should_drain("c", t));
        // The whole cluster loaded alike, memory nearly full everywhere: no one.
        let mut m = model();
        let t = feed_for(&mut m, &nodes, 0, 180, |_| host(4.0, 0.99));
        for n in nodes {
            assert!(!m.should_drain(n, t), "{n}: {}", m.score(n, t));
            assert_eq!(m.score(n, t), 0.0);
        }
    }

    #[test]
    fn a_node_short_of_memory_where_its_peers_are_not_drains() {
        let nodes = ["a", "b", "c"];
        let mut m = model();
        let t = feed_for(&mut m, &nodes, 0, 180, |n| {
            host(0.4, if n == "a" { 0.98 } else { 0.5 })
        });
        assert!(m.should_drain("a", t), "{}", m.score("a", t));
        assert!(!m.should_drain("b", t));
        // 80% in use is no reason on its own.
        let mut m = model();
        let t = feed_for(&mut m, &nodes, 0, 180, |n| {
            host(0.4, if n == "a" { 0.8 } else { 0.5 })
        });
        assert!(!m.should_drain("a", t), "{}", m.score("a", t));
    }

    #[test]
    fn a_member_whose_phi_rises_where_the_others_do_not_scores_and_drains() {
        let members = ["a", "b", "c", "d"];
        let phi = |late: f64| {
            move |n: &str| NodeSignal::Phi {
                phi: if n == "a" { late } else { 0.1 },
            }
        };
        // This node ("o") observes four members; a's heartbeats come late.
        let mut o = model();
        let t = feed_for(&mut o, &members, 0, 120, phi(4.0));
        assert!(o.score("a", t) > 1.6, "{}", o.score("a", t));
        assert!(o.should_drain("a", t));
        assert_eq!(o.score("b", t), 0.0);
        // The same rise everywhere (the observer itself slow, or the network): no one.
        let mut o = model();
        let t = feed_for(&mut o, &members, 0, 120, |_| NodeSignal::Phi { phi: 4.0 });
        for n in members {
            assert_eq!(o.score(n, t), 0.0, "{n}");
        }
        // One member observed has nothing to be compared with.
        let mut o = model();
        let t = feed_for(&mut o, &["a"], 0, 120, phi(6.0));
        assert_eq!(o.score("a", t), 0.0);
    }

    /// The saved model of observer `me`, having seen `late` as late as `phi` and the
    /// other members on time.
    fn observer(me: &str, members: &[&str], late: &str, phi: f64) -> NodeScore {
        let mut m = model();
        let others: Vec<&str> = members.iter().copied().filter(|n| *n != me).collect();
        feed_for(&mut m, &others, 0, 120, |n| NodeSignal::Phi {
            phi: if n == late { phi } else { 0.1 },
        });
        m
    }

    #[test]
    fn a_node_its_observers_see_late_learns_it_from_their_saved_models_and_drains() {
        let members = ["a", "b", "c", "d"];
        let observers: Vec<(&str, NodeScore)> = ["b", "c", "d"]
            .into_iter()
            .map(|o| (o, observer(o, &members, "a", 5.0)))
            .collect();
        let adopt = |a: &mut NodeScore, rows: &[(&str, NodeScore)], at: i64| {
            a.adopt_peers(
                "a",
                rows.iter().map(|(node, model)| PeerModel {
                    node,
                    saved_at_ms: at,
                    model,
                }),
            )
        };
        let mut a = observer("a", &members, "-", 0.0);
        assert_eq!(a.score("a", 120_000), 0.0, "a never observes itself");
        adopt(&mut a, &observers, 120_000);
        assert!(a.score("a", 120_000) > 1.6, "{}", a.score("a", 120_000));
        // The rise waits for states saved after it, as any other.
        assert!(!a.should_drain("a", 121_000));
        assert!(a.awaits_peers("a"));
        adopt(&mut a, &observers, 122_000);
        assert!(a.should_drain("a", 123_000));
        // The members seen on time score nothing.
        assert_eq!(a.score("b", 123_000), 0.0);
        // One observer alone (a liar, or a bad link) is outvoted by the others.
        let one_liar: Vec<(&str, NodeScore)> = vec![
            ("b", observer("b", &members, "a", 8.0)),
            ("c", observer("c", &members, "-", 0.0)),
            ("d", observer("d", &members, "-", 0.0)),
        ];
        let mut a = observer("a", &members, "-", 0.0);
        adopt(&mut a, &one_liar, 120_000);
        assert_eq!(a.score("a", 120_000), 0.0);
        // Without any observer's row (no mesh), nothing changes.
        adopt(&mut a, &[], 120_000);
        assert_eq!(a.score("a", 120_000), 0.0);
    }

    #[test]
    fn non_finite_vitals_are_not_adopted() {
        let members = ["a", "b", "c", "d"];
        let mut b = observer("b", &members, "a", 5.0);
        b.vitals.observed.get_mut("c").unwrap().value = f64::NAN;
        let mut a = observer("a", &members, "-", 0.0);
        let row = PeerModel {
            node: "b",
            saved_at_ms: 0,
            model: &b,
        };
        a.adopt_peers("a", [row]);
        assert!(a.peer_vitals.phi.is_empty());
        assert_eq!(a.peers_as_of, None);
    }

    #[test]
    fn vitals_not_sampled_for_long_are_forgotten() {
        let mut m = model();
        let t = feed_for(&mut m, &["a", "b", "c"], 0, 60, |n| NodeSignal::Phi {
            phi: if n == "a" { 6.0 } else { 0.0 },
        });
        assert!(m.score("a", t) > 0.0);
        let later = t + VitalSettings::default().forget_after_ms + 1;
        m.should_drain("b", later);
        assert!(m.vitals.observed.is_empty());
        assert_eq!(m.score("a", later), 0.0);
    }

    #[test]
    fn the_lower_median_with_one_more_matches_sorting() {
        let lists: [&[f64]; 4] = [&[], &[1.0], &[1.0, 3.0], &[0.0, 2.0, 4.0, 6.0]];
        for sorted in lists {
            for extra in [None, Some(-1.0), Some(1.0), Some(2.5), Some(9.0)] {
                let mut all: Vec<f64> = sorted.iter().copied().chain(extra).collect();
                all.sort_by(f64::total_cmp);
                let want = all.get(all.len().saturating_sub(1) / 2).copied();
                assert_eq!(
                    lower_median_with(sorted, extra),
                    want,
                    "{sorted:?} {extra:?}"
                );
            }
        }
    }

    #[test]
    fn levels_smooth_over_time_not_samples() {
        let mut l = Level::first(0.0, 0, 30_000.0);
        l.update(1.0, 30_000, 30_000.0);
        assert!((l.value - 0.5).abs() < 1e-12);
        // A second sample at the same instant moves nothing.
        l.update(5.0, 30_000, 30_000.0);
        assert!((l.value - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_new_level_starts_warm() {
        let mut l = Level::first(8.0, 1_000, 30_000.0);
        assert_eq!((l.value, l.at), (0.0, 1_000));
        l.update(8.0, 31_000, 30_000.0);
        assert!((l.value - 4.0).abs() < 1e-12);
        // One late heartbeat in a member's first sample accuses no one; the same phi
        // sustained for a minute does.
        let mut m = model();
        for (n, phi) in [("a", 8.0), ("b", 0.0), ("c", 0.0)] {
            m.observe(n, 0, NodeSignal::Phi { phi });
        }
        assert_eq!(m.score("a", 0), 0.0);
        let t = feed_for(&mut m, &["a", "b", "c"], 5_000, 60, |n| NodeSignal::Phi {
            phi: if n == "a" { 8.0 } else { 0.0 },
        });
        assert!(m.score("a", t) > ScoreSettings::default().enter);
    }

    #[test]
    fn a_level_dated_in_the_future_is_re_dated_by_a_sample_well_before_it() {
        let hl = 30_000.0;
        // Less than a half-life back (samples out of order): nothing moves.
        let mut l = Level {
            value: 1.0,
            at: 100_000,
        };
        l.update(5.0, 80_000, hl);
        assert_eq!((l.value, l.at), (1.0, 100_000));
        // More than a half-life back (the clock stepped back): re-dated, value kept,
        // and the next sample moves it by the time since.
        l.update(5.0, 10_000, hl);
        assert_eq!((l.value, l.at), (1.0, 10_000));
        l.update(5.0, 40_000, hl);
        assert!((l.value - 3.0).abs() < 1e-12, "{}", l.value);
        assert_eq!(l.at, 40_000);
    }

    #[test]
    fn corrupt_times_do_not_overflow() {
        let hl = 30_000.0;
        let mut l = Level {
            value: 1.0,
            at: i64::MAX,
        };
        l.update(5.0, i64::MIN, hl);
        assert_eq!((l.value, l.at), (1.0, i64::MIN));
        l.update(5.0, i64::MAX, hl);
        assert_eq!((l.value, l.at), (5.0, i64::MAX));
        let mut m = model();
        m.vitals.observed.insert(
            "a".into(),
            Level {
                value: 1.0,
                at: i64::MIN,
            },
        );
        m.vitals.observed.insert(
            "b".into(),
            Level {
                value: 1.0,
                at: i64::MAX,
            },
        );
        m.should_drain("a", 1_000_000);
        assert!(m.vitals.observed.is_empty());
    }

    #[test]
    fn a_level_dated_ahead_of_now_and_no_longer_sampled_is_forgotten() {
        let mut m = model();
        let now = 10_000_000;
        let s = VitalSettings::default();
        let ahead = now + s.half_life_ms as i64 + 1;
        m.vitals.observed.insert(
            "a".into(),
            Level {
                value: 3.0,
                at: ahead,
            },
        );
        m.vitals.observed.insert(
            "b".into(),
            Level {
                value: 0.0,
                at: now,
            },
        );
        m.vitals.host.insert(
            "a".into(),
            [
                Some(Level {
                    value: 1.0,
                    at: ahead,
                }),
                None,
            ],
        );
        m.should_drain("b", now);
        assert!(!m.vitals.observed.contains_key("a"));
        assert!(m.vitals.observed.contains_key("b"));
        assert!(m.vitals.host.is_empty());
    }

    #[test]
    fn a_resumed_model_drops_levels_after_now_or_not_finite() {
        let mut v = Vitals::default();
        let at = |value, at| Level { value, at };
        v.observed.insert("future".into(), at(1.0, 2_000));
        v.observed.insert("nan".into(), at(f64::NAN, 0));
        v.observed.insert("inf".into(), at(f64::INFINITY, 0));
        v.observed.insert("ok".into(), at(1.0, 1_000));
        v.host
            .insert("x".into(), [Some(at(1.0, 2_000)), Some(at(0.5, 0))]);
        v.host.insert("y".into(), [Some(at(f64::NAN, 0)), None]);
        v.drop_unusable(1_000);
        assert_eq!(v.observed().map(|(n, _)| n).collect::<Vec<_>>(), ["ok"]);
        assert_eq!(v.host.len(), 1);
        assert!(v.host["x"][0].is_none());
        assert_eq!(v.host["x"][1].map(|l| l.value), Some(0.5));
        assert!(v.is_finite());
    }

    #[test]
    fn memory_pressure_grows_near_full() {
        assert!((pressure(0.5, 0.99) - 2f64.ln()).abs() < 1e-12);
        assert!((pressure(1.0, 0.99) - 100f64.ln()).abs() < 1e-9);
        assert_eq!(pressure(-3.0, 0.99), 0.0);
    }
}
