//! The limits every chaos cluster runs under, and the sampler that reads what runs
//! under them from the store while the faults play, so the checker can judge "no limit
//! exceeded at any sampled moment" in every scenario.
//!
//! A third of the workload's jobs go to the queue [`LIMITED_QUEUE`], which every node
//! works beside `default` under a queue limit of one running job per node (binding
//! whenever those jobs pile up). A queue limit rather than a kind limit keeps the
//! `default` queue on the production store's Redis claim path, which the store
//! scenarios are about (while a kind has a limit, every queue is claimed through
//! Postgres).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::store::SharedStore;
use serde::{Deserialize, Serialize};

use super::cluster::now_ms;

/// How often the sampler reads the running counts.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How long one sample may take before it is skipped (a store outage is a fault).
const SAMPLE_DEADLINE: Duration = Duration::from_millis(500);

/// The queue under a limit.
pub const LIMITED_QUEUE: &str = "limited";

/// The `max_running` of [`LIMITED_QUEUE`] for a cluster of `n` nodes.
pub fn queue_limit(n: usize) -> u64 {
    n.max(2) as u64
}

/// The `[[limit]]` entry of a chaos node's config for a cluster of `n` nodes.
pub fn node_limits(n: usize) -> String {
    format!(
        "[[limit]]\nqueue = \"{LIMITED_QUEUE}\"\nmax_running = {}\n",
        queue_limit(n)
    )
}

/// A limit's bound, as the checker compares samples with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitBound {
    /// The limit's name (`kind:sleep`).
    pub limit: String,
    /// Its `max_running`.
    pub max_running: u64,
}

/// The busiest key of one limit at one sampled moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSample {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The limit's name.
    pub limit: String,
    /// The key.
    pub key: String,
    /// Running jobs under it.
    pub running: u64,
}

/// Samples taken so far.
pub type Samples = Arc<Mutex<Vec<LimitSample>>>;

/// Samples the store's running counts every [`SAMPLE_EVERY`] until aborted, keeping
/// the busiest key of each limit per sample (a failed or slow read is skipped).
pub fn start_sampler(store: SharedStore) -> (tokio::task::JoinHandle<()>, Samples) {
    let samples: Samples = Arc::default();
    let out = samples.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let Ok(Ok(usage)) = tokio::time::timeout(SAMPLE_DEADLINE, store.limit_usage()).await
            else {
                continue;
            };
            let at_ms = now_ms();
            let mut busiest: Vec<LimitSample> = Vec::new();
            for u in usage {
                match busiest.iter_mut().find(|s| s.limit == u.limit) {
                    Some(s) if s.running >= u.running => {}
                    Some(s) => {
                        s.key = u.key;
                        s.running = u.running;
                    }
                    None => busiest.push(LimitSample {
                        at_ms,
                        limit: u.limit,
                        key: u.key,
                        running: u.running,
                    }),
                }
            }
            out.lock().expect("samples lock").extend(busiest);
        }
    });
    (task, samples)
}
