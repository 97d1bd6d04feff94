//! The congestion model's baselines: the last wait seen (for the wait estimate) and a
//! per-queue backlog threshold (for breach alarms).

use std::collections::HashMap;

use super::CongestionPredictor;

/// Baseline for the wait: the wait of the last job that started on the queue.
#[derive(Debug, Clone, Default)]
pub struct LastWait {
    last: HashMap<String, f64>,
}

impl CongestionPredictor for LastWait {
    fn name(&self) -> &'static str {
        "last wait"
    }

    fn on_enqueue(&mut self, _: &str, _: i64) {}

    fn on_start(&mut self, queue: &str, _at_ms: i64, waited_ms: f64) {
        match self.last.get_mut(queue) {
            Some(w) => *w = waited_ms,
            None => {
                self.last.insert(queue.to_owned(), waited_ms);
            }
        }
    }

    fn on_finish(&mut self, _: &str, _: i64, _: f64) {}

    fn predict_wait(&self, queue: &str, _: i64, _: i64) -> Option<f64> {
        self.last.get(queue).copied()
    }
}

/// Baseline for breach alarms: a breach is predicted whenever the queue holds more
/// than a fixed number of jobs (per queue; fitted on past data by the evaluation).
#[derive(Debug, Clone, Default)]
pub struct QueueLengthThreshold {
    backlog: HashMap<String, f64>,
    /// The threshold per queue; queues without one never alarm.
    pub thresholds: HashMap<String, f64>,
}

impl QueueLengthThreshold {
    /// The backlog of `queue` as counted from its events.
    pub fn backlog(&self, queue: &str) -> f64 {
        self.backlog.get(queue).copied().unwrap_or(0.0)
    }
}

impl CongestionPredictor for QueueLengthThreshold {
    fn name(&self) -> &'static str {
        "queue-length threshold"
    }

    fn on_enqueue(&mut self, queue: &str, _: i64) {
        *self.backlog.entry(queue.to_owned()).or_default() += 1.0;
    }

    fn on_start(&mut self, queue: &str, _: i64, _: f64) {
        if let Some(b) = self.backlog.get_mut(queue) {
            *b = (*b - 1.0).max(0.0);
        }
    }

    fn on_finish(&mut self, _: &str, _: i64, _: f64) {}

    fn predict_wait(&self, _: &str, _: i64, _: i64) -> Option<f64> {
        None
    }

    fn set_thresholds(&mut self, thresholds: &HashMap<String, f64>) {
        self.thresholds = thresholds.clone();
    }

    fn predict_breach(&self, queue: &str, _: i64, _: i64, _: f64) -> bool {
        self.thresholds
            .get(queue)
            .is_some_and(|t| self.backlog(queue) > *t)
    }
}
