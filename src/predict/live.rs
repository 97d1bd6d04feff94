//! The node's live models: the four predictors as the runtime holds them, one set per
//! node, fed by the node's own lifecycle events and asked where a decision is made.
//!
//! One [`SharedModels`] is made per node and cloned into every place that feeds or asks
//! it. The lock is a plain mutex held only for an observation or a prediction (each
//! well under 5 µs), never across an await.
//!
//! [`feed`] maps the node's lifecycle to observations ([`host`] reads the node's own
//! load and memory for it), [`persist`] saves and resumes
//! them (versioned, merged with the other nodes' where a model merges), [`view`] turns
//! saved models into what operators read (`jobmesh predict show`, the API).

use std::sync::{Arc, Mutex, MutexGuard};

pub mod feed;
pub mod host;
pub mod persist;
pub mod view;

pub use feed::{FeedState, LiveFeed};
pub use persist::{ModelsError, Snapshot};
pub use view::Predictions;

use super::congestion::{FluidQueue, FluidSettings};
use super::duration::{SketchDuration, SketchSettings};
use super::failure::{NodeScore, ScoreSettings};
use super::retry::{PosteriorRetry, PosteriorSettings};

/// The four models of one node.
#[derive(Debug, Clone)]
pub struct LiveModels {
    /// Attempt durations per (kind, queue).
    pub duration: SketchDuration,
    /// Failure scores per node.
    pub failure: NodeScore,
    /// Retry outcomes per (kind, error class) and the retry budget per kind.
    pub retry: PosteriorRetry,
    /// Arrival and service rates per queue.
    pub congestion: FluidQueue,
}

impl Default for LiveModels {
    fn default() -> Self {
        Self {
            duration: SketchDuration::new(SketchSettings::default()),
            failure: NodeScore::new(ScoreSettings::default()),
            retry: PosteriorRetry::new(PosteriorSettings::default()),
            congestion: FluidQueue::new(FluidSettings::default()),
        }
    }
}

impl LiveModels {
    /// Applies what the node's configuration sets in its models: the retry budget of
    /// `[retry]` (`budget_ratio`, `budget_min`, `budget_window`).
    pub fn configure(&mut self, retry: &crate::job::RetryPolicy) {
        let window_ms = i64::try_from(retry.budget_window.as_millis()).unwrap_or(i64::MAX);
        self.retry
            .set_budget(retry.budget_ratio, f64::from(retry.budget_min), window_ms);
    }
}

/// The models shared by the parts of one node.
#[derive(Debug, Clone, Default)]
pub struct SharedModels(Arc<Mutex<LiveModels>>);

impl SharedModels {
    /// A fresh set, having learned nothing.
    pub fn new(models: LiveModels) -> Self {
        Self(Arc::new(Mutex::new(models)))
    }

    /// The models, locked. Hold the guard only for an observation or a prediction.
    pub fn lock(&self) -> MutexGuard<'_, LiveModels> {
        // A panic while holding the lock leaves plain numbers behind, never a broken
        // invariant worth stopping the node for: keep using them.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
