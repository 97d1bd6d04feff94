//! The JSON of the read-side views: a job with its attempts and timeline, the activity
//! of queues, nodes and workers, and the mesh as a node sees it. Times are
//! milliseconds since the Unix epoch, durations milliseconds, as in [`crate::model`].

use jobmesh::store::activity::{NodeRecord, NodeState, WorkerRecord, WorkerState};
use jobmesh::store::presence::CurrentJob;
use jobmesh::store::{Attempt, AttemptOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::mesh_view::{MeshMember, MeshSource, MeshView};
use crate::model::{EventView, JobView};

/// A job with its finished attempts and its lifecycle events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Its finished attempts, in the order they finished (a running attempt shows in
    /// the job's lease fields, a lost one as a `job.rescued` event).
    pub attempts: Vec<AttemptView>,
    /// Whether it had more attempts than listed (at most 1000 are).
    pub attempts_truncated: bool,
    /// Its lifecycle events, oldest first, at most `events` of the request.
    pub events: Vec<EventView>,
    /// Whether it has more events than listed (ask for more with `events`).
    pub events_truncated: bool,
    /// When a queued or running job is predicted to start and finish, from the models
    /// the nodes saved; absent for finished jobs and kinds with no learned run time.
    #[serde(default)]
    pub eta: Option<EtaView>,
}

/// When a job is predicted to start and finish.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EtaView {
    /// When it started (running) or is predicted to start (queued), ms since the epoch.
    pub start_at_ms: i64,
    /// When it is predicted to finish (a median run after its start, never before now).
    pub finish_at_ms: i64,
    /// The predicted wait counted for a queued job (ms).
    pub wait_ms: Option<f64>,
    /// Predicted run time, median (ms).
    pub run_p50_ms: f64,
    /// Predicted run time, 90th percentile (ms).
    pub run_p90_ms: f64,
}

impl From<jobmesh::predict::live::view::Eta> for EtaView {
    fn from(e: jobmesh::predict::live::view::Eta) -> Self {
        EtaView {
            start_at_ms: e.start_at_ms,
            finish_at_ms: e.finish_at_ms,
            wait_ms: e.wait_ms,
            run_p50_ms: e.run_p50_ms,
            run_p90_ms: e.run_p90_ms,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// The handler succeeded.
    Succeeded,
    /// It failed; the job was scheduled to run again.
    Failed,
    /// It failed; the job went to the dead-letter queue.
    Discarded,
    /// The job was cancelled during it.
    Cancelled,
    /// Its handler snoozed the job: it runs again later under the same attempt number.
    Snoozed,
}

impl From<AttemptOutcome> for AttemptResult {
    fn from(o: AttemptOutcome) -> Self {
        match o {
            AttemptOutcome::Succeeded => AttemptResult::Succeeded,
            AttemptOutcome::Failed => AttemptResult::Failed,
            AttemptOutcome::Discarded => AttemptResult::Discarded,
            AttemptOutcome::Cancelled => AttemptResult::Cancelled,
            AttemptOutcome::Snoozed => AttemptResult::Snoozed,
        }
    }
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// The node that ran it.
    pub node: Option<String>,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When the handler started (ms).
    pub started_at: Option<i64>,
    /// When it finished (ms).
    pub finished_at: i64,
    /// How long it ran (ms).
    pub duration_ms: Option<i64>,
    /// How it ended.
    pub outcome: AttemptResult,
    /// Its error, with credentials masked as stored.
    pub error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            attempt: a.attempt,
            node: a.node.map(|n| n.0),
            worker: a.worker.map(|w| w.0),
            started_at: a.started_at.map(|t| t.0),
            finished_at: a.finished_at.0,
            duration_ms: a
                .started_at
                .map(|s| a.finished_at.0.saturating_sub(s.0).max(0)),
            outcome: a.outcome.into(),
            error: a.error,
        }
    }
}

/// Jobs a queue finished over the last [`Throughput::window_ms`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Throughput {
    /// The window (60000: the last minute).
    pub window_ms: u64,
    /// Jobs that reached a final state in the window.
    pub finished: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which were dead-lettered.
    pub discarded: u64,
    /// Of which were cancelled.
    pub cancelled: u64,
    /// `finished` per second over the window.
    pub per_second: f64,
}

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStateView {
    /// Joined and not suspected, evicted or gone since.
    Up,
    /// Suspected by an observer, with no sign of life since.
    Suspected,
    /// Evicted by a certificate of votes.
    Evicted,
    /// Left cleanly.
    Left,
    /// Its presence row lapsed while the record says it is up: it stopped refreshing
    /// without leaving (killed, hung, or cut off from the store).
    Lost,
}

impl From<NodeState> for NodeStateView {
    fn from(s: NodeState) -> Self {
        match s {
            NodeState::Up => NodeStateView::Up,
            NodeState::Suspected => NodeStateView::Suspected,
            NodeState::Evicted => NodeStateView::Evicted,
            NodeState::Left => NodeStateView::Left,
            NodeState::Lost => NodeStateView::Lost,
        }
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStateView {
    /// Started or restarted.
    Running,
    /// Crashed, not restarted.
    Crashed,
    /// Stopped for good.
    Stopped,
}

impl From<WorkerState> for WorkerStateView {
    fn from(s: WorkerState) -> Self {
        match s {
            WorkerState::Running => WorkerStateView::Running,
            WorkerState::Crashed => WorkerStateView::Crashed,
            WorkerState::Stopped => WorkerStateView::Stopped,
        }
    }
}

/// A worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Its id (`<node>/w<slot>`).
    pub id: String,
    /// Its state after its latest event.
    pub state: WorkerStateView,
    /// Restarts seen in the events read.
    pub restarts: u32,
    /// Crashes seen in the events read.
    pub crashes: u32,
    /// Its latest event (ms).
    pub last_event_at: Option<i64>,
    /// When its live heartbeat expires (ms), where the store keeps heartbeats.
    pub heartbeat_until: Option<i64>,
    /// The job it ran at its node's last presence refresh, while that job still runs
    /// (absent for a token whose queues do not include the job's).
    #[serde(default)]
    pub current_job: Option<CurrentJobView>,
}

/// A worker's current job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CurrentJobView {
    /// The job's id (`#/jobs/{id}` on the dashboard).
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// When the worker was handed it (ms).
    pub started_at: i64,
}

impl From<CurrentJob> for CurrentJobView {
    fn from(j: CurrentJob) -> Self {
        CurrentJobView {
            id: j.id.0,
            kind: j.kind,
            queue: j.queue,
            started_at: j.started_at.0,
        }
    }
}

impl From<WorkerRecord> for WorkerView {
    fn from(w: WorkerRecord) -> Self {
        WorkerView {
            id: w.worker.0,
            state: w.state.into(),
            restarts: w.restarts,
            crashes: w.crashes,
            last_event_at: w.last_event_at.map(|t| t.0),
            heartbeat_until: w.heartbeat_until.map(|t| t.0),
            current_job: w.current_job.map(Into::into),
        }
    }
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its id (its peer id in a mesh).
    pub id: String,
    /// Its state.
    pub state: NodeStateView,
    /// Its latest sign of life in the record (ms).
    pub last_seen: Option<i64>,
    /// When its live heartbeat expires (ms), where the store keeps heartbeats.
    pub heartbeat_until: Option<i64>,
    /// Its workers.
    pub workers: Vec<WorkerView>,
    /// Its worker slots (`workers.concurrency`), from its presence row.
    #[serde(default)]
    pub slots: Option<u32>,
    /// Jobs running under its leases now.
    #[serde(default)]
    pub running: u32,
    /// The queues it serves, from its presence row (those the token may see).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Its last heartbeat (ms): when it last wrote its presence row, on every backend.
    #[serde(default)]
    pub last_heartbeat: Option<i64>,
    /// Until when that heartbeat counts (ms); past it the node is `lost` unless it left
    /// or was evicted.
    #[serde(default)]
    pub heartbeat_fresh_until: Option<i64>,
}

impl From<NodeRecord> for NodeView {
    fn from(n: NodeRecord) -> Self {
        NodeView {
            id: n.node.0,
            state: n.state.into(),
            last_seen: n.last_seen.map(|t| t.0),
            heartbeat_until: n.heartbeat_until.map(|t| t.0),
            workers: n.workers.into_iter().map(Into::into).collect(),
            slots: n.slots,
            running: n.running,
            queues: n.queues,
            last_heartbeat: n.seen_at.map(|t| t.0),
            heartbeat_fresh_until: n.fresh_until.map(|t| t.0),
        }
    }
}

/// Where heartbeats came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatSource {
    /// The store's live registry (redis_postgres) was read.
    Live,
    /// The store keeps no heartbeats (SQLite, Postgres): the record alone.
    None,
    /// The store keeps heartbeats but they could not be read now; the record alone.
    Unavailable,
}

/// Nodes and workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// By id.
    pub nodes: Vec<NodeView>,
    /// Whether live heartbeats were read.
    pub heartbeats: HeartbeatSource,
    /// Node and worker events read (the newest, at most `events_window`).
    pub events_read: usize,
    /// The most events read.
    pub events_window: u32,
    /// Whether the running jobs read reached their bound (10000): more may run, and the
    /// `running` counts then miss them.
    #[serde(default)]
    pub running_truncated: bool,
}
