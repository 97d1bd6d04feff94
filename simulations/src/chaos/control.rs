//! Turning faults into what the nodes see: the chaos control document each node polls
//! (`jobmesh node --chaos-control FILE`; the document is the node's own type,
//! [`Faults`], so runner and node cannot disagree on its shape), kept per node and
//! changed fault by fault.

use jobmesh_actors::chaos::Faults;

use super::plan::{Fault, NodeIx};

/// The control document of every node, changed fault by fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Controls {
    peers: Vec<String>,
    controls: Vec<Faults>,
}

impl Controls {
    /// All clear, for nodes with these peer ids (by index).
    pub fn new(peers: Vec<String>) -> Self {
        let controls = vec![Faults::default(); peers.len()];
        Self { peers, controls }
    }

    /// The control of one node.
    pub fn control(&self, node: NodeIx) -> &Faults {
        &self.controls[node]
    }

    /// Applies a fault; returns the nodes whose control changed. Process faults (kill,
    /// pause) change nothing here.
    pub fn apply(&mut self, fault: &Fault) -> Vec<NodeIx> {
        let before = self.controls.clone();
        match fault {
            Fault::Partition { minority } => {
                for i in 0..self.peers.len() {
                    let inside = minority.contains(&i);
                    let others = (0..self.peers.len())
                        .filter(|j| minority.contains(j) != inside)
                        .map(|j| self.peers[j].clone());
                    add_all(&mut self.controls[i].drop_from, others);
                }
            }
            Fault::OneWay { from, to } => {
                add_all(
                    &mut self.controls[*to].drop_from,
                    [self.peers[*from].clone()],
                );
            }
            Fault::Lossy { delay_ms, loss } => {
                for c in &mut self.controls {
                    c.delay_ms = *delay_ms;
                    c.loss = *loss;
                }
            }
            Fault::Byzantine { node, mode } => self.controls[*node].byzantine = Some(*mode),
            Fault::HealAll => self.controls.fill(Faults::default()),
            Fault::Kill { .. }
            | Fault::Restart { .. }
            | Fault::Pause { .. }
            | Fault::Resume { .. } => {}
            // Store faults act on the servers, not on the nodes' control files.
            Fault::PostgresStop
            | Fault::PostgresStart
            | Fault::RedisKill
            | Fault::RedisRestart
            | Fault::RedisFlush
            | Fault::SlowStores { .. }
            | Fault::FastStores => {}
        }
        (0..self.controls.len())
            .filter(|&i| self.controls[i] != before[i])
            .collect()
    }
}

fn add_all(set: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !set.contains(&item) {
            set.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use jobmesh::membership::adversary::Behaviour;

    use super::*;

    fn net() -> Controls {
        Controls::new(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    }

    #[test]
    fn a_partition_drops_both_ways_and_heal_clears_it() {
        let mut n = net();
        let changed = n.apply(&Fault::Partition { minority: vec![1] });
        assert_eq!(changed, vec![0, 1, 2, 3]);
        assert_eq!(n.control(1).drop_from, ["a", "c", "d"]);
        assert_eq!(n.control(0).drop_from, ["b"]);
        n.apply(&Fault::HealAll);
        assert_eq!(n.control(1), &Faults::default());
    }

    #[test]
    fn a_one_way_loss_is_dropped_by_the_receiver_only() {
        let mut n = net();
        assert_eq!(n.apply(&Fault::OneWay { from: 0, to: 2 }), vec![2]);
        assert_eq!(n.control(2).drop_from, ["a"]);
        assert!(n.control(0).drop_from.is_empty());
        assert!(n.apply(&Fault::Kill { node: 0 }).is_empty());
    }

    #[test]
    fn byzantine_faults_turn_one_node_into_a_liar_until_the_heal() {
        let mut n = net();
        let fault = Fault::Byzantine {
            node: 3,
            mode: Behaviour::Equivocate,
        };
        assert_eq!(n.apply(&fault), vec![3]);
        assert_eq!(n.control(3).byzantine, Some(Behaviour::Equivocate));
        assert_eq!(n.control(2), &Faults::default());
        assert_eq!(n.apply(&Fault::HealAll), vec![3]);
        assert_eq!(n.control(3), &Faults::default());
    }
}
