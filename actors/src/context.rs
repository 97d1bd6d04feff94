//! What every actor of a node shares: the store, the handlers, the clock, the settings,
//! the running-attempt table and the channels to the completer and the event sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jobmesh::clock::{Clock, Millis};
use jobmesh::config::{PredictSection, WorkersSection};
use jobmesh::handler::Registry;
use jobmesh::job::{Completion, NodeId, ProgressReport, RetryPolicy, WorkerId};
use jobmesh::metrics::{JobTag, Metrics};
use jobmesh::predict::live::{LiveFeed, SharedModels};
use jobmesh::store::SharedStore;
use tokio::sync::mpsc;

use crate::claim_gate::GateLink;
use crate::event_sink::EventSink;
use crate::inflight::InFlight;

/// Counters a node keeps about itself.
#[derive(Debug, Default)]
pub struct Counters {
    /// Attempts handed to workers.
    pub started: AtomicU64,
    /// Attempts whose completion the store applied.
    pub completed: AtomicU64,
    /// Completions the store refused because the lease had moved on.
    pub stale: AtomicU64,
    /// Worker crashes.
    pub crashes: AtomicU64,
    /// Worker restarts.
    pub restarts: AtomicU64,
    /// Voter restarts (after a crash).
    pub voter_restarts: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of a node's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NodeStats {
    /// Attempts handed to workers.
    pub started: u64,
    /// Attempts whose completion the store applied.
    pub completed: u64,
    /// Completions refused as stale.
    pub stale: u64,
    /// Worker crashes.
    pub crashes: u64,
    /// Worker restarts.
    pub restarts: u64,
    /// Voter restarts (after a crash; mesh mode).
    pub voter_restarts: u64,
    /// Attempts running now.
    pub running: u64,
}

/// A finished attempt on its way to the completer, with its metric labels (computed
/// when it was handed out, so recording its outcome looks nothing up).
#[derive(Clone)]
pub(crate) struct Finished {
    pub completion: Completion,
    pub tag: JobTag,
    /// The attempt's last progress report, not yet recorded: the completer records it
    /// before the completion, so the last report always reaches the store.
    pub progress: Option<ProgressReport>,
}

/// The node's shared context.
pub(crate) struct Ctx {
    pub node: NodeId,
    pub store: SharedStore,
    pub registry: Arc<Registry>,
    pub clock: Arc<dyn Clock>,
    pub workers: WorkersSection,
    pub retry: RetryPolicy,
    pub inflight: InFlight,
    pub completions: mpsc::Sender<Finished>,
    pub events: EventSink,
    pub counters: Counters,
    pub retention: Option<jobmesh::store::retention::Retention>,
    /// The process's metrics (the store above is already wrapped to record into them).
    pub metrics: Arc<Metrics>,
    /// The claim gate: the voter reports the quorum into it, the node shows it.
    pub gate: GateLink,
    /// The node's live models: the one set every part of the node feeds and asks where
    /// a decision is made (the claim gate, [`crate::decide`]).
    pub models: SharedModels,
    /// What feeds them (the same models, and the feed's memory of attempts).
    pub feed: LiveFeed,
    /// Whether the live models are on, and how often they are saved.
    pub predict: PredictSection,
    /// The queues' wait SLOs and their warnings.
    pub slo: crate::decide::QueueSlo,
    /// The lease length claims and renewals use (`workers.lease`, or the learned one).
    pub lease: std::sync::Mutex<jobmesh::predict::policy::duration::LeaseLength>,
}

impl Ctx {
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// The id of worker `slot`.
    pub fn worker_id(&self, slot: usize) -> WorkerId {
        WorkerId(format!("{}/w{slot}", self.node))
    }

    /// The lease holder name the dispatcher claims under.
    pub fn pool_id(&self) -> WorkerId {
        WorkerId(format!("{}/pool", self.node))
    }

    pub fn stats(&self) -> NodeStats {
        let c = &self.counters;
        NodeStats {
            started: c.started.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            crashes: c.crashes.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
            voter_restarts: c.voter_restarts.load(Ordering::Relaxed),
            running: self.inflight.busy() as u64,
        }
    }
}
