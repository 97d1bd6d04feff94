//! The windows during which a node was legitimately unreachable (killed, paused, cut
//! off, Byzantine): the checker's ground truth for false evictions.

use serde::{Deserialize, Serialize};

use super::plan::{Fault, NodeIx};

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
