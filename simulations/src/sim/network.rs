//! The simulated network: link latency, loss, partitions as groups and one-way link
//! cuts. Links are data (as chitchat's `ChannelTransport` with `add_link` /
//! `remove_link`), so scenarios change them between events.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

/// One-way delay of a single link hop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Latency {
    /// Uniform between `min` and `max` (inclusive), in milliseconds.
    Uniform {
        /// Smallest delay.
        min_ms: u64,
        /// Largest delay.
        max_ms: u64,
    },
    /// `base_ms` plus an exponential tail of mean `mean_ms`, capped at `cap_ms`: a few
    /// slow deliveries, as on a loaded network.
    Exponential {
        /// Floor (propagation).
        base_ms: u64,
        /// Mean of the queueing tail.
        mean_ms: f64,
        /// Largest delay.
        cap_ms: u64,
    },
}

impl Latency {
    /// Draws one hop's delay.
    pub fn sample(&self, rng: &mut StdRng) -> Duration {
        let ms = match *self {
            Latency::Uniform { min_ms, max_ms } => rng.random_range(min_ms..=max_ms.max(min_ms)),
            Latency::Exponential {
                base_ms,
                mean_ms,
                cap_ms,
            } => {
                // Inverse-CDF sampling; 1 - u avoids ln(0).
                let u: f64 = rng.random();
                let tail = -mean_ms * (1.0 - u).ln();
                (base_ms as f64 + tail).min(cap_ms as f64) as u64
            }
        };
        Duration::from_millis(ms.max(1))
    }
}

/// Initial network settings.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkConfig {
    /// Delay of one hop.
    pub latency: Latency,
    /// Probability that one delivery is lost (each delivery, gossip or direct, draws
    /// independently).
    pub loss: f64,
    /// Hops a gossip message travels before reaching a receiver; its delay is the sum
    /// of that many hop delays. `None`: about `log_6(n)` (gossipsub mesh degree 6).
    pub gossip_hops: Option<u32>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            latency: Latency::Uniform {
                min_ms: 1,
                max_ms: 20,
            },
            loss: 0.0,
            gossip_hops: None,
        }
    }
}

/// Links between `n` nodes: who can reach whom, with what delay and loss.
#[derive(Debug, Clone)]
pub struct Network {
    latency: Latency,
    loss: f64,
    gossip_hops: u32,
    /// Partition group per node: nodes in different groups reach each other by no path.
    group: Vec<u32>,
    /// One-way cuts (from, to): the direct link is down in that direction only. Gossip
    /// routes around a single cut link (other mesh paths exist), direct frames and
    /// probes do not.
    cut: BTreeSet<(usize, usize)>,
}

impl Network {
    /// A fully connected network of `n` nodes.
    pub fn new(n: usize, config: &NetworkConfig) -> Self {
        let default_hops = ((n.max(2) as f64).ln() / 6f64.ln()).ceil().max(1.0) as u32;
        Self {
            latency: config.latency,
            loss: config.loss.clamp(0.0, 1.0),
            gossip_hops: config.gossip_hops.unwrap_or(default_hops).max(1),
            group: vec![0; n],
            cut: BTreeSet::new(),
        }
    }

    /// Whether `a` and `b` are on the same side of every partition.
    pub fn same_side(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    /// Whether the direct link `from -> to` is up (same side, not cut that way).
    pub fn link_up(&self, from: usize, to: usize) -> bool {
        self.same_side(from, to) && !self.cut.contains(&(from, to))
    }

    /// Splits the nodes: each listed group becomes its own side; unlisted nodes stay
    /// together on side 0. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.group.iter_mut().for_each(|g| *g = 0);
        for (k, members) in groups.iter().enumerate() {
            for &i in members {
                if let Some(g) = self.group.get_mut(i) {
                    *g = k as u32 + 1;
                }
            }
        }
    }

    /// Removes every partition (one-way cuts stay).
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    /// Cuts the direct link `from -> to` (one way).
    pub fn remove_link(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    /// Restores the direct link `from -> to`.
    pub fn add_link(&mut self, from: usize, to: usize) {
        self.cut.remove(&(from, to));
    }

    /// Sets the loss probability.
    pub fn set_loss(&mut self, p: f64) {
        self.loss = p.clamp(0.0, 1.0);
    }

    /// Sets the hop latency.
    pub fn set_latency(&mut self, latency: Latency) {
        self.latency = latency;
    }

    /// The side sizes, largest first.
    pub fn side_sizes(&self) -> Vec<usize> {
        let mut sizes = std::collections::BTreeMap::<u32, usize>::new();
        for g in &self.group {
            *sizes.entry(*g).or_default() += 1;
        }
        let mut v: Vec<usize> = sizes.into_values().collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    /// The side a node is on.
    pub fn side_of(&self, i: usize) -> u32 {
        self.group[i]
    }

    /// Delay of one direct delivery, or `None` if it is lost. Always draws the same
    /// number of random values, so loss settings do not shift later draws.
    pub fn direct_delay(&self, rng: &mut StdRng) -> Option<Duration> {
        let lost = rng.random::<f64>() < self.loss;
        let d = self.latency.sample(rng);
        (!lost).then_some(d)
    }

    /// Delay of one gossip delivery (several hops), or `None` if it is lost. Loss is
    /// drawn once per delivery: pessimistic, since gossipsub's redundant mesh paths
    /// and IHAVE/IWANT repair would recover many single losses.
    pub fn gossip_delay(&self, rng: &mut StdRng) -> Option<Duration> {
        let lost = rng.random::<f64>() < self.loss;
        let mut d = Duration::ZERO;
        for _ in 0..self.gossip_hops {
            d += self.latency.sample(rng);
        }
        (!lost).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn partitions_and_cuts() {
        let mut net = Network::new(5, &NetworkConfig::default());
        assert!(net.link_up(0, 4));
        net.partition(&[vec![0, 1]]);
        assert!(!net.link_up(0, 4) && net.link_up(0, 1) && net.link_up(2, 4));
        assert_eq!(net.side_sizes(), vec![3, 2]);
        net.heal();
        net.remove_link(2, 3);
        assert!(!net.link_up(2, 3) && net.link_up(3, 2));
        net.add_link(2, 3);
        assert!(net.link_up(2, 3));
    }

    #[test]
    fn latency_is_bounded() {
        let mut rng = StdRng::seed_from_u64(1);
        let l = Latency::Exponential {
            base_ms: 5,
            mean_ms: 20.0,
            cap_ms: 200,
        };
        for _ in 0..1000 {
            let d = l.sample(&mut rng).as_millis();
            assert!((5..=200).contains(&d));
        }
    }
}
