//! Turning faults into what the nodes see: the `--chaos-control` file each node polls
//! (network faults and Byzantine behaviour), and the windows during which a node was
//! legitimately unreachable (the checker's ground truth for false evictions).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::scenario::{ByzantineMode, Fault, NodeIx};

/// The control file a node started with `--chaos-control <path>` polls (the node-side
/// contract): whose membership traffic to drop, delay and loss on incoming membership
/// traffic, and a Byzantine behaviour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// Peer ids whose membership traffic this node ignores.
    pub drop_from: Vec<String>,
    /// Delay added to incoming membership traffic.
    pub delay_ms: u64,
    /// Share of incoming membership traffic dropped at random, 0..1.
    pub loss: f64,
    /// Byzantine behaviour, if any.
    pub byzantine: Option<ByzantineMode>,
}

/// Writes a control file atomically (write, then rename), so a polling node never reads
/// half of it.
pub fn write_control(path: &Path, control: &Control) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(control).map_err(io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The control state of every node, changed fault by fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    peers: Vec<String>,
    controls: Vec<Control>,
}

impl Network {
    /// All clear, for nodes with these peer ids (by index).
    pub fn new(peers: Vec<String>) -> Self {
        let controls = vec![Control::default(); peers.len()];
        Self { peers, controls }
    }

    /// The control of one node.
    pub fn control(&self, node: NodeIx) -> &Control {
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
            Fault::HealAll => self.controls.fill(Control::default()),
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

/// A span of time during which a node may rightly be evicted: it was killed, paused,
/// cut off on the minority side of a partition, or Byzantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// The node.
    pub node: NodeIx,
    /// Why (`killed`, `paused`, `partitioned`, `byzantine`).
    pub why: String,
    /// Start, ms since the Unix epoch.
    pub from_ms: i64,
    /// End, ms since the Unix epoch; `None` while open (the run ended first).
    pub to_ms: Option<i64>,
}

/// Records fault windows as faults are applied.
#[derive(Debug, Clone, Default)]
pub struct WindowLog {
    windows: Vec<FaultWindow>,
}

impl WindowLog {
    /// Notes a fault applied at `now_ms`.
    pub fn apply(&mut self, fault: &Fault, now_ms: i64) {
        match fault {
            Fault::Kill { node } => self.open(*node, "killed", now_ms),
            Fault::Restart { node } => self.close(*node, "killed", now_ms),
            Fault::Pause { node } => self.open(*node, "paused", now_ms),
            Fault::Resume { node } => self.close(*node, "paused", now_ms),
            Fault::Partition { minority } => {
                for &n in minority {
                    self.open(n, "partitioned", now_ms);
                }
            }
            Fault::Byzantine { node, .. } => self.open(*node, "byzantine", now_ms),
            // No node is at fault when a link or a store is: evicting one for it is false.
            Fault::OneWay { .. } | Fault::Lossy { .. } => {}
            Fault::PostgresStop
            | Fault::PostgresStart
            | Fault::RedisKill
            | Fault::RedisRestart
            | Fault::RedisFlush
            | Fault::SlowStores { .. }
            | Fault::FastStores => {}
            Fault::HealAll => {
                for w in &mut self.windows {
                    w.to_ms.get_or_insert(now_ms);
                }
            }
        }
    }

    fn open(&mut self, node: NodeIx, why: &str, now_ms: i64) {
        let already = self
            .windows
            .iter()
            .any(|w| w.node == node && w.why == why && w.to_ms.is_none());
        if !already {
            self.windows.push(FaultWindow {
                node,
                why: why.to_string(),
                from_ms: now_ms,
                to_ms: None,
            });
        }
    }

    fn close(&mut self, node: NodeIx, why: &str, now_ms: i64) {
        for w in &mut self.windows {
            if w.node == node && w.why == why && w.to_ms.is_none() {
                w.to_ms = Some(now_ms);
            }
        }
    }

    /// The windows recorded so far.
    pub fn windows(&self) -> &[FaultWindow] {
        &self.windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network::new(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    }

    #[test]
    fn a_partition_drops_both_ways_and_heal_clears_it() {
        let mut n = net();
        let changed = n.apply(&Fault::Partition { minority: vec![1] });
        assert_eq!(changed, vec![0, 1, 2, 3]);
        assert_eq!(n.control(1).drop_from, ["a", "c", "d"]);
        assert_eq!(n.control(0).drop_from, ["b"]);
        n.apply(&Fault::HealAll);
        assert_eq!(n.control(1), &Control::default());
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
    fn control_file_has_the_contract_shape() {
        let c = Control {
            drop_from: vec!["x".into()],
            delay_ms: 5,
            loss: 0.5,
            byzantine: Some(ByzantineMode::FalseDown),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"drop_from": ["x"], "delay_ms": 5, "loss": 0.5, "byzantine": "false-down"})
        );
        let clear = serde_json::to_value(Control::default()).unwrap();
        assert_eq!(clear["byzantine"], serde_json::Value::Null);
    }

    #[test]
    fn windows_open_on_faults_and_close_on_recovery_or_heal() {
        let mut log = WindowLog::default();
        log.apply(&Fault::Kill { node: 1 }, 100);
        log.apply(&Fault::Restart { node: 1 }, 300);
        log.apply(&Fault::Partition { minority: vec![2] }, 400);
        log.apply(&Fault::HealAll, 900);
        let w = log.windows();
        assert_eq!((w[0].from_ms, w[0].to_ms), (100, Some(300)));
        assert_eq!((w[1].node, w[1].to_ms), (2, Some(900)));
    }
}
