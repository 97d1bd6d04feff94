//! The other nodes, as a running node's failure model learns of them: at each save
//! round the node reads every node's saved model and adopts each other node's own state
//! (its smoothed levels, fading events and drain flag) and its levels per kind, so its
//! score is measured against the cluster's median and its attempts against the
//! cluster's failure and timeout shares and durations.
//!
//! A node whose score rises above the entry threshold drains only once every adopted
//! peer's state was saved after the rise (see [`FailurePredictor::should_drain`] on
//! [`NodeScore`]): its own state is fresh, the peers' are up to a save interval old,
//! and an outage that hits every node must not look like this node's own failure while
//! the others' saved states predate it.
//!
//! Adoption replaces what was adopted the round before (nothing is counted twice, and a
//! node whose row is no longer passed in, because it stopped saving, is forgotten); the
//! node's own state, observed here, is never replaced by a copy from anyone's row, and
//! only it is saved (the adopted maps are not serialized).
//!
//! With a peer's state come its vitals (see [`super::vitals`]): its own host levels, and
//! how far above its baseline each member it observes on the mesh sits. The latter are
//! kept per subject, so the evidence about a node (this one included) is its observers'
//! lower median.

use std::collections::{HashMap, HashSet};

use super::{AdoptedVitals, FailurePredictor, KindLevel, NodeScore, NodeState};

/// One other node's saved failure model.
#[derive(Debug, Clone, Copy)]
pub struct PeerModel<'a> {
    /// The node that saved it.
    pub node: &'a str,
    /// When it was saved (ms since the epoch, the saving node's clock).
    pub saved_at_ms: i64,
    /// Its model as saved: its own state and its own levels per kind.
    pub model: &'a NodeScore,
}

fn finite_state(n: &NodeState) -> bool {
    n.levels.iter().all(|v| v.is_finite()) && n.events.is_finite()
}

fn finite_level(l: &KindLevel) -> bool {
    l.ln_duration.is_finite() && l.fail.is_finite() && l.timeout.is_finite()
}

impl NodeScore {
    /// Whether `node`'s score is above the entry threshold and the model waits for
    /// fresher peer states before acting on it: it knows no other node, or an adopted
    /// state was saved before the score rose (see [`FailurePredictor::should_drain`],
    /// which sets the rise). A node asks the others to save theirs at once instead of
    /// waiting for their next save round.
    pub fn awaits_peers(&self, node: &str) -> bool {
        let Some(n) = self.nodes.get(node) else {
            return false;
        };
        let Some(since) = n.above_since else {
            return false;
        };
        self.peers_of(node) == 0 || (!n.draining && self.peers_as_of.is_some_and(|t| t < since))
    }

    /// Adopts, from each of `peers`, that node's own state and levels per kind, in place
    /// of those adopted before; returns how many peers the model knows now. A row of
    /// `own` (this node) is skipped, as is a second row of the same peer; non-finite
    /// numbers (a hostile or corrupt row) are left out.
    pub fn adopt_peers<'a>(
        &mut self,
        own: &str,
        peers: impl IntoIterator<Item = PeerModel<'a>>,
    ) -> usize {
        self.peers.clear();
        self.peers_as_of = None;
        self.peer_vitals = AdoptedVitals::default();
        let mut sums: HashMap<String, (KindLevel, usize)> = HashMap::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for p in peers {
            if p.node == own || self.nodes.contains_key(p.node) || !seen.insert(p.node) {
                continue;
            }
            let state = p.model.nodes.get(p.node).filter(|s| finite_state(s));
            if let Some(state) = state {
                let mut state = state.clone();
                state.above_since = None;
                self.peers.insert(p.node.to_owned(), state);
            }
            // Its vitals (its host, what it observes of the others) count like its state,
            // and so does the time they were saved.
            let vitals = self
                .peer_vitals
                .add(p.node, &p.model.vitals, self.vs.phi_cap);
            if state.is_some() || vitals {
                self.peers_as_of = Some(
                    self.peers_as_of
                        .map_or(p.saved_at_ms, |t| t.min(p.saved_at_ms)),
                );
            }
            for (kind, l) in p.model.kinds.iter().filter(|(_, l)| finite_level(l)) {
                let (sum, n) = sums.entry(kind.clone()).or_insert((
                    KindLevel {
                        ln_duration: 0.0,
                        fail: 0.0,
                        timeout: 0.0,
                    },
                    0,
                ));
                sum.ln_duration += l.ln_duration;
                sum.fail += l.fail;
                sum.timeout += l.timeout;
                *n += 1;
            }
        }
        self.peer_kinds = sums
            .into_iter()
            .map(|(kind, (sum, n))| {
                let k = n as f64;
                let mean = KindLevel {
                    ln_duration: sum.ln_duration / k,
                    fail: sum.fail / k,
                    timeout: sum.timeout / k,
                };
                (kind, (mean, n))
            })
            .collect();
        self.peer_vitals.finish();
        // The medians include the new peers from the next decision on.
        self.medians_at = None;
        self.peers.len()
    }

    /// How many nodes other than `own` would drain at `now_ms` as this model sees them:
    /// their score above the entry threshold, or, for one that was draining when it
    /// saved, not yet below the exit threshold (the same hysteresis as its own).
    pub fn peers_draining(&self, own: &str, now_ms: i64) -> usize {
        self.nodes
            .iter()
            .chain(self.peers.iter())
            .filter(|(name, _)| name.as_str() != own)
            .filter(|(name, state)| {
                let score = self.score(name, now_ms);
                if state.draining {
                    score >= self.s.exit
                } else {
                    score > self.s.enter
                }
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NodeSignal, ScoreSettings};
    use super::*;

    fn attempt(m: &mut NodeScore, node: &str, bad: bool) {
        let signal = NodeSignal::Attempt {
            kind: "k",
            failed: bad,
            timed_out: bad,
            duration_ms: 50.0,
            renew_ms: None,
        };
        m.observe(node, 0, signal);
    }

    /// A node's own model after `n` attempts of its own, failing or not.
    fn own_model(node: &str, bad: bool, n: usize) -> NodeScore {
        let mut m = NodeScore::new(ScoreSettings::default());
        for _ in 0..n {
            attempt(&mut m, node, bad);
        }
        m
    }

    fn adopt(m: &mut NodeScore, own: &str, peers: &[(&str, &NodeScore)]) -> usize {
        adopt_at(m, own, peers, 0)
    }

    fn adopt_at(m: &mut NodeScore, own: &str, peers: &[(&str, &NodeScore)], at: i64) -> usize {
        m.adopt_peers(
            own,
            peers.iter().map(|(node, model)| PeerModel {
                node,
                saved_at_ms: at,
                model,
            }),
        )
    }

    #[test]
    fn a_drain_waits_for_peer_states_saved_after_the_rise() {
        let (b, c) = (own_model("b", false, 100), own_model("c", false, 100));
        let mut a = own_model("a", false, 100);
        adopt_at(&mut a, "a", &[("b", &b), ("c", &c)], 500);
        for _ in 0..60 {
            attempt(&mut a, "a", true);
        }
        // The score rose at 1 000; the peers' states are from 500.
        assert!(!a.awaits_peers("a"), "no rise seen yet");
        assert!(!a.should_drain("a", 1_000), "{}", a.score("a", 1_000));
        assert!(a.awaits_peers("a"), "the rise waits for the peers");
        assert!(!a.should_drain("a", 1_400));
        // Both saved again after the rise, and still not failing: drain.
        adopt_at(&mut a, "a", &[("b", &b), ("c", &c)], 1_200);
        assert!(!a.awaits_peers("a"), "the peers' states postdate the rise");
        assert!(a.should_drain("a", 1_500));
        assert!(!a.awaits_peers("a"), "draining");
    }

    #[test]
    fn a_node_failing_alone_drains_once_it_knows_its_peers() {
        let (b, c) = (own_model("b", false, 100), own_model("c", false, 100));
        let mut a = own_model("a", true, 5);
        // Alone, its failures become its kind's norm: it never stands out.
        let mut alone = a.clone();
        for _ in 0..200 {
            attempt(&mut alone, "a", true);
        }
        assert!(!alone.should_drain("a", 0), "{}", alone.score("a", 0));
        assert_eq!(adopt(&mut a, "a", &[("b", &b), ("c", &c)]), 2);
        assert_eq!(a.peers_of("a"), 2);
        for _ in 0..60 {
            attempt(&mut a, "a", true);
        }
        assert!(a.should_drain("a", 0), "{}", a.score("a", 0));
        assert_eq!(a.peers_draining("a", 0), 0);
    }

    #[test]
    fn the_own_state_is_kept_and_only_it_is_saved() {
        let mut a = own_model("a", false, 50);
        let before = a.nodes["a"].levels;
        // A row claiming to be `a` with other numbers, and b's row holding a copy of a.
        let fake_a = own_model("a", true, 200);
        let mut b = own_model("b", true, 50);
        b.nodes.insert("a".into(), fake_a.nodes["a"].clone());
        assert_eq!(
            adopt(&mut a, "a", &[("a", &fake_a), ("b", &b), ("b", &b)]),
            1
        );
        assert_eq!(a.nodes["a"].levels, before, "own state untouched");
        assert!(a.peers.contains_key("b") && !a.peers.contains_key("a"));
        assert_eq!(a.peer_kinds["k"].1, 1, "b's levels counted once");
        // Saved: only what a observed.
        let bytes = bincode::serde::encode_to_vec(&a, bincode::config::standard()).unwrap();
        let (saved, _): (NodeScore, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(saved.nodes().collect::<Vec<_>>(), ["a"]);
        assert!(saved.peer_kinds.is_empty());
    }

    #[test]
    fn peers_missing_from_the_next_round_are_forgotten() {
        let (b, c) = (own_model("b", false, 10), own_model("c", false, 10));
        let mut a = own_model("a", false, 10);
        assert_eq!(adopt(&mut a, "a", &[("b", &b), ("c", &c)]), 2);
        // Adopting again replaces, it does not add up.
        assert_eq!(adopt(&mut a, "a", &[("b", &b), ("c", &c)]), 2);
        assert_eq!(a.peer_kinds["k"].1, 2);
        assert_eq!(adopt(&mut a, "a", &[("b", &b)]), 1);
        assert_eq!(a.peers_of("a"), 1);
        assert_eq!(adopt(&mut a, "a", &[]), 0);
        assert!(a.peer_kinds.is_empty());
    }

    #[test]
    fn non_finite_numbers_are_not_adopted() {
        let mut b = own_model("b", false, 10);
        b.nodes.get_mut("b").unwrap().levels[0] = f64::NAN;
        b.kinds.get_mut("k").unwrap().fail = f64::INFINITY;
        let mut a = own_model("a", false, 10);
        assert_eq!(adopt(&mut a, "a", &[("b", &b)]), 0);
        assert!(a.peer_kinds.is_empty());
    }

    #[test]
    fn failing_alike_raises_no_node_and_peers_draining_counts_the_others() {
        let models: Vec<NodeScore> = ["a", "b", "c"]
            .iter()
            .map(|n| own_model(n, true, 200))
            .collect();
        let mut a = models[0].clone();
        adopt(&mut a, "a", &[("b", &models[1]), ("c", &models[2])]);
        for _ in 0..100 {
            attempt(&mut a, "a", true);
        }
        assert!(!a.should_drain("a", 0), "{}", a.score("a", 0));
        // Two of five nodes failing where the others do not: as a sees them, both
        // would drain.
        let ok = own_model("a", false, 200);
        let (d, e) = (own_model("d", false, 200), own_model("e", false, 200));
        let (b, c) = (own_model("b", true, 5), own_model("c", true, 5));
        let mut b2 = b.clone();
        let mut c2 = c.clone();
        adopt(&mut b2, "b", &[("a", &ok), ("c", &c), ("d", &d), ("e", &e)]);
        adopt(&mut c2, "c", &[("a", &ok), ("b", &b), ("d", &d), ("e", &e)]);
        for _ in 0..100 {
            attempt(&mut b2, "b", true);
            attempt(&mut c2, "c", true);
        }
        let mut a = ok.clone();
        adopt(&mut a, "a", &[("b", &b2), ("c", &c2), ("d", &d), ("e", &e)]);
        assert!(!a.should_drain("a", 0));
        assert_eq!(a.peers_draining("a", 0), 2, "{}", a.score("b", 0));
        assert_eq!(a.peers_draining("b", 0), 1, "b counts c, not itself");
    }
}
