//! Lifecycle events: every change in the life of a job, a worker or a node, as it is
//! persisted to the durable record and published to live watchers.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::Millis;
use crate::job::{Completion, JobId, NodeId, Outcome, ProgressReport, WorkerId};

/// What happened. Serialised as its dotted name (`job.succeeded`), as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum EventKind {
    /// A job was accepted by the store.
    JobEnqueued,
    /// A worker took a lease on a job.
    JobClaimed,
    /// An attempt succeeded.
    JobSucceeded,
    /// An attempt failed (followed by a retry or a discard).
    JobFailed,
    /// A failed job was scheduled to run again.
    JobRetryScheduled,
    /// A job went to the dead-letter queue.
    JobDiscarded,
    /// A job was cancelled.
    JobCancelled,
    /// A dead-lettered job was sent back to its queue.
    JobRedriven,
    /// A job whose lease lapsed or was revoked went back to its queue.
    JobRescued,
    /// A running attempt reported progress (at most one event per job per
    /// `workers.progress_interval`, and the attempt's last report).
    JobProgress,
    /// A handler snoozed its job: it runs again later without spending an attempt.
    JobSnoozed,
    /// A worker started.
    WorkerStarted,
    /// A worker crashed (panic or error).
    WorkerCrashed,
    /// A supervisor restarted a crashed worker.
    WorkerRestarted,
    /// A worker stopped for good (node shutdown or restart budget exhausted).
    WorkerStopped,
    /// A node started or joined the mesh.
    NodeJoined,
    /// A node is suspected of having failed.
    NodeSuspected,
    /// A node was evicted by a certificate of votes.
    NodeEvicted,
    /// A node left cleanly.
    NodeLeft,
    /// A queue was paused: no node claims from it until it is resumed.
    QueuePaused,
    /// A paused queue was resumed.
    QueueResumed,
    /// A node's claim gate closed for a reason (no quorum heard, its failure score):
    /// it claims nothing and has given back the jobs it claimed but did not start.
    NodeGateClosed,
    /// A reason stopped holding a node's claim gate closed (`detail.open`: whether the
    /// node claims again, or another reason still holds it).
    NodeGateOpened,
    /// The congestion model predicts that a queue's jobs will wait longer than its
    /// `wait_slo` (at most one event per queue per minute, with the workers advised).
    QueueBreachPredicted,
}

impl EventKind {
    /// All kinds.
    pub const ALL: [EventKind; 24] = [
        EventKind::JobEnqueued,
        EventKind::JobClaimed,
        EventKind::JobSucceeded,
        EventKind::JobFailed,
        EventKind::JobRetryScheduled,
        EventKind::JobDiscarded,
        EventKind::JobCancelled,
        EventKind::JobRedriven,
        EventKind::JobRescued,
        EventKind::JobProgress,
        EventKind::JobSnoozed,
        EventKind::WorkerStarted,
        EventKind::WorkerCrashed,
        EventKind::WorkerRestarted,
        EventKind::WorkerStopped,
        EventKind::NodeJoined,
        EventKind::NodeSuspected,
        EventKind::NodeEvicted,
        EventKind::NodeLeft,
        EventKind::QueuePaused,
        EventKind::QueueResumed,
        EventKind::NodeGateClosed,
        EventKind::NodeGateOpened,
        EventKind::QueueBreachPredicted,
    ];

    /// The dotted name used in storage and streams, e.g. `job.succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::JobEnqueued => "job.enqueued",
            EventKind::JobClaimed => "job.claimed",
            EventKind::JobSucceeded => "job.succeeded",
            EventKind::JobFailed => "job.failed",
            EventKind::JobRetryScheduled => "job.retry_scheduled",
            EventKind::JobDiscarded => "job.discarded",
            EventKind::JobCancelled => "job.cancelled",
            EventKind::JobRedriven => "job.redriven",
            EventKind::JobRescued => "job.rescued",
            EventKind::JobProgress => "job.progress",
            EventKind::JobSnoozed => "job.snoozed",
            EventKind::WorkerStarted => "worker.started",
            EventKind::WorkerCrashed => "worker.crashed",
            EventKind::WorkerRestarted => "worker.restarted",
            EventKind::WorkerStopped => "worker.stopped",
            EventKind::NodeJoined => "node.joined",
            EventKind::NodeSuspected => "node.suspected",
            EventKind::NodeEvicted => "node.evicted",
            EventKind::NodeLeft => "node.left",
            EventKind::QueuePaused => "queue.paused",
            EventKind::QueueResumed => "queue.resumed",
            EventKind::NodeGateClosed => "node.gate_closed",
            EventKind::NodeGateOpened => "node.gate_opened",
            EventKind::QueueBreachPredicted => "queue.breach_predicted",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<EventKind> for &'static str {
    fn from(k: EventKind) -> Self {
        k.as_str()
    }
}

impl TryFrom<String> for EventKind {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind `{s}`"))
    }
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// When it happened.
    pub at: Millis,
    /// What happened.
    pub kind: EventKind,
    /// The job concerned, if any.
    pub job: Option<JobId>,
    /// The attempt concerned, if any.
    pub attempt: Option<u32>,
    /// The worker concerned, if any.
    pub worker: Option<WorkerId>,
    /// The node concerned, if any.
    pub node: Option<NodeId>,
    /// Free-form details (error text, certificate, restart count ...).
    pub detail: serde_json::Value,
}

impl LifecycleEvent {
    /// An event with no subject yet; add them with the builder methods.
    pub fn new(kind: EventKind, at: Millis) -> Self {
        Self {
            at,
            kind,
            job: None,
            attempt: None,
            worker: None,
            node: None,
            detail: serde_json::Value::Null,
        }
    }

    /// Sets the job and attempt.
    pub fn job(mut self, job: JobId, attempt: Option<u32>) -> Self {
        self.job = Some(job);
        self.attempt = attempt;
        self
    }

    /// Sets the worker.
    pub fn worker(mut self, worker: WorkerId) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Sets the node.
    pub fn node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// Sets the details.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// The events an applied completion records: what stores write with the
    /// transition and what a node publishes live.
    pub fn of_completion(c: &Completion) -> Vec<LifecycleEvent> {
        let base = |kind| {
            LifecycleEvent::new(kind, c.finished_at)
                .job(c.lease.job, Some(c.lease.attempt))
                .worker(c.lease.worker.clone())
                .node(c.lease.node.clone())
        };
        match &c.outcome {
            Outcome::Succeeded { .. } => vec![base(EventKind::JobSucceeded)],
            Outcome::Retry { error, run_at } => vec![
                base(EventKind::JobFailed).detail(json!({ "error": error })),
                base(EventKind::JobRetryScheduled).detail(json!({ "run_at": run_at.0 })),
            ],
            Outcome::Discard { error } => vec![
                base(EventKind::JobFailed).detail(json!({ "error": error })),
                base(EventKind::JobDiscarded).detail(json!({ "reason": error })),
            ],
            Outcome::Cancelled { reason } => {
                vec![base(EventKind::JobCancelled).detail(json!({ "reason": reason }))]
            }
            Outcome::Snoozed { run_at } => {
                vec![base(EventKind::JobSnoozed).detail(json!({ "run_at": run_at.0 }))]
            }
        }
    }

    /// The `job.progress` event of a recorded progress report.
    pub fn of_progress(r: &ProgressReport) -> LifecycleEvent {
        LifecycleEvent::new(EventKind::JobProgress, r.progress.at)
            .job(r.lease.job, Some(r.lease.attempt))
            .worker(r.lease.worker.clone())
            .node(r.lease.node.clone())
            .detail(json!({
                "fraction": r.progress.fraction,
                "message": r.progress.message,
            }))
    }
}

/// A stored event with its sequence number in the store's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log, increasing.
    pub seq: i64,
    /// The event.
    #[serde(flatten)]
    pub event: LifecycleEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_dotted_names() {
        for k in EventKind::ALL {
            let text = serde_json::to_string(&k).unwrap();
            assert_eq!(text, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&text).unwrap(), k);
        }
        assert!(serde_json::from_str::<EventKind>("\"job.exploded\"").is_err());
    }
}
