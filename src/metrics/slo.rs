//! Metrics of the queues' wait SLOs: predicted breaches, the workers advised, and the
//! enqueues admission control deferred or refused (see
//! [`crate::predict::policy::congestion`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Label, Metrics};

/// A queue's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueLabel {
    /// The queue (or `other`).
    pub queue: Label,
}

/// The SLO metrics, registered into a process's [`Metrics`].
#[derive(Debug, Clone)]
pub struct SloMetrics {
    /// Breach warnings emitted.
    pub breaches: Family<QueueLabel, Counter>,
    /// Workers the last warning advised adding.
    pub workers_advised: Family<QueueLabel, Gauge>,
    /// Enqueues deferred by admission control.
    pub deferred: Family<QueueLabel, Counter>,
    /// Enqueues refused by admission control.
    pub rejected: Family<QueueLabel, Counter>,
}

impl SloMetrics {
    /// Registers the SLO metrics into `metrics` (once per process).
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            breaches: Family::default(),
            workers_advised: Family::default(),
            deferred: Family::default(),
            rejected: Family::default(),
        };
        metrics.with_registry(|r| {
            r.register(
                "jobmesh_queue_breach_predicted",
                "Predicted breaches of a queue's wait_slo (at most one per queue per minute)",
                m.breaches.clone(),
            );
            r.register(
                "jobmesh_queue_workers_advised",
                "More workers that would hold the queue's wait_slo, as of its last predicted breach",
                m.workers_advised.clone(),
            );
            r.register(
                "jobmesh_queue_admission_deferred",
                "Low-priority enqueues deferred while the queue's breach was certain",
                m.deferred.clone(),
            );
            r.register(
                "jobmesh_queue_admission_rejected",
                "Low-priority enqueues refused while the queue's breach was certain",
                m.rejected.clone(),
            );
        });
        m
    }

    /// The series of `queue`.
    pub fn label(metrics: &Metrics, queue: &str) -> QueueLabel {
        QueueLabel {
            queue: metrics.queue_label(queue),
        }
    }
}
