//! The baseline of the failure replay: a node is given up once its heartbeat has been
//! silent for a fixed timeout, which says nothing until the node has already stopped.

use std::collections::HashMap;

use super::{FailurePredictor, NodeSignal};

/// Baseline: a node is given up when no heartbeat came for `timeout_ms`.
#[derive(Debug, Clone)]
pub struct HeartbeatTimeout {
    timeout_ms: i64,
    last: HashMap<String, i64>,
}

impl HeartbeatTimeout {
    /// Suspects a node `timeout_ms` after its last heartbeat.
    pub fn new(timeout_ms: i64) -> Self {
        Self {
            timeout_ms,
            last: HashMap::new(),
        }
    }

    fn silent_for(&self, node: &str, now_ms: i64) -> i64 {
        self.last.get(node).map_or(0, |t| now_ms - t)
    }
}

impl FailurePredictor for HeartbeatTimeout {
    fn name(&self) -> &'static str {
        "heartbeat timeout"
    }

    fn observe(&mut self, node: &str, at_ms: i64, signal: NodeSignal<'_>) {
        if matches!(signal, NodeSignal::Heartbeat) {
            match self.last.get_mut(node) {
                Some(t) => *t = (*t).max(at_ms),
                None => {
                    self.last.insert(node.to_owned(), at_ms);
                }
            }
        }
    }

    fn should_drain(&mut self, node: &str, now_ms: i64) -> bool {
        self.silent_for(node, now_ms) > self.timeout_ms
    }

    fn score(&self, node: &str, now_ms: i64) -> f64 {
        self.silent_for(node, now_ms) as f64 / self.timeout_ms.max(1) as f64
    }
}
