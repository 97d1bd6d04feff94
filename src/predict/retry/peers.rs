//! The other nodes' retry counts in a node's model: Beta counts add up, and so do the
//! first attempts and retries a budget window holds, so every node of a mesh decides
//! from what all of them saw, and N nodes share one retry budget rather than N.
//!
//! The node keeps the sum of the other nodes' own counts (as each saved them, from the
//! rows saved recently: the caller passes only fresh ones) apart from its own, adds the
//! two when it is asked, and saves only its own (so nothing is counted twice). A peer's
//! budget counts are those of its last window as of its save: between saves they stand
//! for the load it puts on the dependency now (a storm lasts longer than a save
//! interval; one that ended is forgotten at the peer's next save).

use std::collections::HashMap;

use super::{Beta, N_ATTEMPT, N_TIME, PosteriorRetry};

/// One (kind, error class)'s buckets.
pub(super) type Buckets = [[Beta; N_TIME]; N_ATTEMPT];

/// The sum of the other nodes' counts.
#[derive(Debug, Clone, Default)]
pub(super) struct PeerCounts {
    /// Their posteriors, per kind and error class.
    pub posteriors: HashMap<String, HashMap<String, Buckets>>,
    /// Per kind, the first attempts and retries of their last budget windows.
    pub budgets: HashMap<String, (f64, f64)>,
    /// How many nodes the sum is of.
    pub nodes: usize,
}

/// `a` and `b` added, both decayed to the later of their times.
pub(super) fn plus(a: Beta, b: Beta, half_life_ms: f64) -> Beta {
    let at = a.at_ms.max(b.at_ms);
    let (mut a, mut b) = (a, b);
    a.decay_to(at, half_life_ms);
    b.decay_to(at, half_life_ms);
    Beta {
        ok: a.ok + b.ok,
        fail: a.fail + b.fail,
        at_ms: at,
    }
}

fn add_buckets(into: &mut Buckets, from: &Buckets, half_life_ms: f64) {
    for (row, other) in into.iter_mut().zip(from) {
        for (b, o) in row.iter_mut().zip(other) {
            *b = plus(*b, *o, half_life_ms);
        }
    }
}

impl PosteriorRetry {
    /// Replaces what the model holds of the other nodes with their own models, each
    /// with the time its node saved it (see the module docs). Returns how many.
    pub fn adopt_peers<'a>(
        &mut self,
        peers: impl IntoIterator<Item = (i64, &'a PosteriorRetry)>,
    ) -> usize {
        let hl = self.s.half_life_ms;
        let mut sum = PeerCounts::default();
        for (saved_at_ms, peer) in peers {
            sum.nodes += 1;
            for (kind, classes) in &peer.posteriors {
                let into = sum.posteriors.entry(kind.clone()).or_default();
                for (class, buckets) in classes {
                    let b = into
                        .entry(class.clone())
                        .or_insert([[Beta::default(); N_TIME]; N_ATTEMPT]);
                    add_buckets(b, buckets, hl);
                }
            }
            for kind in peer.budgets.keys() {
                if let Some(used) = peer.budget_use_own(kind, saved_at_ms) {
                    let b = sum.budgets.entry(kind.clone()).or_default();
                    b.0 += used.firsts;
                    b.1 += used.retries;
                }
            }
        }
        self.peers = sum;
        self.peers.nodes
    }

    /// How many other nodes' counts the model holds.
    pub fn peers(&self) -> usize {
        self.peers.nodes
    }

    /// The buckets of (`kind`, `class`): this node's and the other nodes' added.
    pub(super) fn buckets(&self, kind: &str, class: &str) -> Option<Buckets> {
        let own = self.posteriors.get(kind).and_then(|m| m.get(class));
        let theirs = self.peers.posteriors.get(kind).and_then(|m| m.get(class));
        match (own, theirs) {
            (None, None) => None,
            (Some(b), None) | (None, Some(b)) => Some(*b),
            (Some(a), Some(b)) => {
                let mut sum = *a;
                add_buckets(&mut sum, b, self.s.half_life_ms);
                Some(sum)
            }
        }
    }

    /// The other nodes' first attempts and retries of `kind` in their last windows.
    pub(super) fn peer_budget(&self, kind: &str) -> (f64, f64) {
        self.peers.budgets.get(kind).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FailedAttempt, PosteriorSettings, RetryAdvice, RetryPredictor};
    use super::*;

    fn failed(now: i64) -> FailedAttempt<'static> {
        FailedAttempt {
            kind: "mail",
            error_class: "smtp",
            attempt: 1,
            max_attempts: 25,
            first_failure_ms: now,
            now_ms: now,
        }
    }

    #[test]
    fn the_other_nodes_counts_add_to_the_own_and_are_never_saved() {
        let mut a = PosteriorRetry::new(PosteriorSettings::default());
        let mut b = PosteriorRetry::new(PosteriorSettings::default());
        for i in 0..10 {
            a.observe_retry("mail", "smtp", 2, 1_000, true, i);
            b.observe_retry("mail", "smtp", 2, 1_000, false, i);
            b.observe_retry("mail", "tls", 2, 1_000, false, i);
        }
        assert_eq!(a.adopt_peers([(10, &b)]), 1);
        let (p, n) = a.success_probability("mail", "smtp", 2, 1_000).unwrap();
        assert!((n - 20.0).abs() < 0.01 && (p - 0.5).abs() < 0.01, "{p} {n}");
        // A class only a peer saw is known.
        let (_, n) = a.success_probability("mail", "tls", 2, 1_000).unwrap();
        assert!((n - 10.0).abs() < 0.01, "{n}");
        // Adopting again replaces (never adds twice); none left: its own alone.
        a.adopt_peers([(10, &b)]);
        let (_, n) = a.success_probability("mail", "smtp", 2, 1_000).unwrap();
        assert!((n - 20.0).abs() < 0.01, "{n}");
        let bytes = bincode::serde::encode_to_vec(&a, bincode::config::standard()).unwrap();
        let (saved, _): (PosteriorRetry, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(saved.peers(), 0);
        let (_, n) = saved.success_probability("mail", "smtp", 2, 1_000).unwrap();
        assert!((n - 10.0).abs() < 0.01, "only its own is saved: {n}");
        a.adopt_peers([]);
        assert!(a.success_probability("mail", "tls", 2, 1_000).is_none());
    }

    #[test]
    fn nodes_share_one_retry_budget() {
        let now = 1_000_000;
        // Each of three nodes saw 50 first attempts and made 15 retries this window.
        let mut peer = PosteriorRetry::new(PosteriorSettings::default());
        for i in 0..50 {
            peer.observe_first("mail", now - 10_000 + i);
        }
        for _ in 0..15 {
            assert!(matches!(
                peer.advise(failed(now - 5_000), 0.0, false),
                RetryAdvice::Retry {
                    budget_held: false,
                    ..
                }
            ));
        }
        let mut me = peer.clone();
        me.adopt_peers([(now, &peer), (now, &peer)]);
        // 150 first attempts allow 0.2 * 150 + 10 = 40 retries; 45 were made.
        assert!(matches!(
            me.advise(failed(now), 0.0, false),
            RetryAdvice::Retry {
                budget_held: true,
                ..
            }
        ));
        // Alone it would have allowed 20 - 15 = 5 more.
        let mut alone = peer.clone();
        assert!(matches!(
            alone.advise(failed(now), 0.0, false),
            RetryAdvice::Retry {
                budget_held: false,
                ..
            }
        ));
    }
}
