//! Scenario operations and node lifecycle: what a crash, restart, partition, link cut,
//! loss change or new liar does to the world.

use std::collections::BTreeMap;

use jobmesh::membership::Membership;
use jobmesh::membership::adversary::Adversary;
use rand::seq::IndexedRandom;

use super::SimError;
use super::script::Op;
use super::world::{Event, World};

impl World {
    pub(crate) fn boot(&mut self, i: usize) -> Result<(), SimError> {
        let node = &mut self.nodes[i];
        let seed = self.config.seed
            ^ (i as u64).wrapping_mul(0x9e37_79b9)
            ^ node.restarts.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let core = Membership::new(
            self.membership.clone(),
            self.keys[i].clone(),
            None,
            seed,
            self.now,
        )?;
        node.core = Some(core);
        node.life += 1;
        node.timer_gen += 1;
        self.flush(i);
        Ok(())
    }

    pub(crate) fn check_op(&self, op: &Op) -> Result<(), SimError> {
        let n = self.len();
        let bad = |i: usize| (i >= n).then_some(SimError::NoSuchNode { index: i, n });
        let err = match op {
            Op::Crash(i) | Op::Restart(i) | Op::SetHealth(i, _) => bad(*i),
            Op::Byzantine { node, target, .. } => bad(*node).or_else(|| target.and_then(bad)),
            Op::CutLink { from, to } | Op::RestoreLink { from, to } => bad(*from).or(bad(*to)),
            Op::Partition(groups) => groups.iter().flatten().find_map(|i| bad(*i)),
            Op::Heal | Op::SetLoss(_) | Op::SetLatency(_) => None,
        };
        err.map_or(Ok(()), Err)
    }

    pub(crate) fn do_op(&mut self, op: Op) {
        let now = self.now;
        self.trace.note(now, &format!("{op:?}"));
        match op {
            Op::Crash(i) => {
                if let Some(core) = self.nodes[i].core.take() {
                    self.nodes[i].life += 1;
                    self.nodes[i].timer_gen += 1;
                    let live = self.live();
                    self.recorder.crashed(now, i, core.incarnation(), live);
                }
            }
            Op::Restart(i) => {
                if self.nodes[i].core.is_none() {
                    self.nodes[i].restarts += 1;
                    // A valid config was validated at start: booting cannot fail.
                    if self.boot(i).is_ok() {
                        self.recorder.restarted(now, i);
                        self.subscribed(i);
                    }
                }
            }
            Op::Partition(groups) => {
                self.network.partition(&groups);
                let n = self.len();
                let mut sizes = BTreeMap::<u32, usize>::new();
                for j in 0..n {
                    *sizes.entry(self.network.side_of(j)).or_default() += 1;
                }
                // Minority sides may be evicted by a majority side, if there is one.
                if sizes.values().any(|s| 2 * s > n) {
                    let minority: Vec<usize> = (0..n)
                        .filter(|j| 2 * sizes[&self.network.side_of(*j)] < n)
                        .collect();
                    self.recorder.excuse(minority);
                }
            }
            // No re-announcements on healing (pessimistic): evicted nodes learn their
            // certificates when their liveness frames reach an observer again.
            Op::Heal => self.network.heal(),
            Op::CutLink { from, to } => self.network.remove_link(from, to),
            Op::RestoreLink { from, to } => self.network.add_link(from, to),
            Op::SetLoss(p) => self.network.set_loss(p),
            Op::SetLatency(l) => self.network.set_latency(l),
            Op::SetHealth(i, score) => {
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.local_health(score);
                }
            }
            Op::Byzantine {
                node,
                behaviour,
                target,
            } => {
                let mut liar = Adversary::new(behaviour);
                if let Some(t) = target {
                    liar = liar.against(self.ids[t]);
                }
                // Replaces an earlier behaviour of the same node.
                self.liars.insert(node, liar);
                if !self.lie_scheduled {
                    self.lie_scheduled = true;
                    self.push(now, Event::Lie);
                }
            }
        }
    }

    /// Node `i` subscribed to the topic: the peers that see it (`subscribe_fanout` of
    /// them, at random) announce themselves to it.
    fn subscribed(&mut self, i: usize) {
        let peers: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|j| *j != i && self.network.same_side(i, *j))
            .collect();
        let chosen: Vec<usize> = match self.config.subscribe_fanout {
            None => peers,
            Some(k) => peers.choose_multiple(&mut self.rng, k).copied().collect(),
        };
        let now = self.now;
        for j in chosen {
            if let Some(core) = self.nodes[j].core.as_mut() {
                core.announce(now);
                self.flush(j);
            }
        }
    }
}
