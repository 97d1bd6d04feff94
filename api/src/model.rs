//! The JSON the API speaks: request and response bodies, each with its schema in the
//! OpenAPI document. Requests refuse unknown fields; times are milliseconds since the
//! Unix epoch and durations milliseconds (`timeout_ms`), as in the CLI's `--json`.

use std::collections::BTreeMap;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::job::{Job, JobId, JobState, NewJob, ParentFailurePolicy};
use jobmesh::store::EnqueueOutcome;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A job state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its parents to succeed.
    Waiting,
    /// Due in the future.
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Leased to a worker.
    Running,
    /// Failed an attempt; runs again at `run_at`.
    Retryable,
    /// Finished successfully.
    Succeeded,
    /// Out of attempts: in the dead-letter queue.
    Discarded,
    /// Cancelled.
    Cancelled,
}

impl From<JobState> for State {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Waiting => State::Waiting,
            JobState::Scheduled => State::Scheduled,
            JobState::Available => State::Available,
            JobState::Running => State::Running,
            JobState::Retryable => State::Retryable,
            JobState::Succeeded => State::Succeeded,
            JobState::Discarded => State::Discarded,
            JobState::Cancelled => State::Cancelled,
        }
    }
}

impl From<State> for JobState {
    fn from(s: State) -> Self {
        match s {
            State::Waiting => JobState::Waiting,
            State::Scheduled => JobState::Scheduled,
            State::Available => JobState::Available,
            State::Running => JobState::Running,
            State::Retryable => JobState::Retryable,
            State::Succeeded => JobState::Succeeded,
            State::Discarded => JobState::Discarded,
            State::Cancelled => JobState::Cancelled,
        }
    }
}

/// What happens to waiting children when a parent is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnParentFailure {
    /// Children are discarded too.
    #[default]
    Discard,
    /// Children keep waiting.
    Hold,
}

impl From<OnParentFailure> for ParentFailurePolicy {
    fn from(p: OnParentFailure) -> Self {
        match p {
            OnParentFailure::Discard => ParentFailurePolicy::Discard,
            OnParentFailure::Hold => ParentFailurePolicy::Hold,
        }
    }
}

impl From<ParentFailurePolicy> for OnParentFailure {
    fn from(p: ParentFailurePolicy) -> Self {
        match p {
            ParentFailurePolicy::Discard => OnParentFailure::Discard,
            ParentFailurePolicy::Hold => OnParentFailure::Hold,
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A job to enqueue. Payload and options pass the same checks as `jobmesh submit`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Handler kind (`noop`, `sleep`, `exec`, `http`, ...).
    pub kind: String,
    /// JSON payload, checked against the kind's schema and size limit (default `{}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Queue (default `default`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Priority, -100..=100; higher runs first.
    #[serde(default)]
    pub priority: i16,
    /// Run no earlier than this time (ms since the epoch); default now.
    #[serde(default)]
    pub run_at: Option<i64>,
    /// Attempts before the job is dead-lettered (default 25).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Timeout of each attempt, in ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// At most one unfinished job with this key.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// Run only after these jobs succeeded.
    #[serde(default)]
    pub depends_on: Vec<i64>,
    /// What happens if a parent is dead-lettered.
    #[serde(default)]
    pub on_parent_failure: OnParentFailure,
}

impl EnqueueRequest {
    /// The job to store (not yet validated).
    pub fn into_job(self) -> NewJob {
        let mut job = NewJob::new(self.kind, self.payload);
        if let Some(q) = self.queue {
            job.queue = q;
        }
        job.priority = self.priority;
        job.run_at = self.run_at.map(Millis);
        if let Some(n) = self.max_attempts {
            job.max_attempts = n;
        }
        job.timeout = self.timeout_ms.map(Duration::from_millis);
        job.unique_key = self.unique_key;
        job.depends_on = self.depends_on.into_iter().map(JobId).collect();
        job.on_parent_failure = self.on_parent_failure.into();
        job
    }
}

/// What became of an enqueued job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored as a new job.
    Inserted,
    /// An unfinished job with the same unique key exists; nothing was stored.
    Duplicate,
}

/// An enqueued job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Enqueued {
    /// The new job's id, or the existing job's for a duplicate.
    pub id: i64,
    /// Inserted or duplicate.
    pub outcome: Outcome,
}

impl From<EnqueueOutcome> for Enqueued {
    fn from(o: EnqueueOutcome) -> Self {
        match o {
            EnqueueOutcome::Inserted(id) => Enqueued {
                id: id.0,
                outcome: Outcome::Inserted,
            },
            EnqueueOutcome::Duplicate(id) => Enqueued {
                id: id.0,
                outcome: Outcome::Duplicate,
            },
        }
    }
}

/// Several jobs, each accepted or refused on its own.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs (at most `api.max_batch`).
    pub jobs: Vec<EnqueueRequest>,
}

/// One job of a batch: its id and outcome, or why it was refused (nothing was stored
/// for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// Its index in the request.
    pub index: usize,
    /// The job's id, unless refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Inserted or duplicate, unless refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<crate::problem::Problem>,
}

/// The answer to a batch, one item per job in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// Jobs stored.
    pub accepted: usize,
    /// Jobs refused.
    pub refused: usize,
    /// Per job.
    pub items: Vec<BatchItem>,
}

/// A workflow: named steps that run after each other (the model of `jobmesh submit
/// --workflow`).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// The steps (at most `api.max_batch`).
    pub steps: Vec<WorkflowStepRequest>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStepRequest {
    /// Name, unique in the workflow.
    pub name: String,
    /// Handler kind.
    pub kind: String,
    /// JSON payload (default `{}`).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Steps that must succeed first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Priority.
    #[serde(default)]
    pub priority: i16,
    /// Attempts before dead-lettering.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Timeout of each attempt, in ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// What happens if a parent is dead-lettered.
    #[serde(default)]
    pub on_parent_failure: OnParentFailure,
}

/// A workflow's jobs, parents first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowResponse {
    /// One per step.
    pub jobs: Vec<WorkflowJob>,
}

/// One step's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowJob {
    /// The step's name.
    pub name: String,
    /// The job's id.
    pub id: i64,
    /// Inserted or duplicate.
    pub outcome: Outcome,
}

/// A job as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Id.
    pub id: i64,
    /// Queue.
    pub queue: String,
    /// Handler kind.
    pub kind: String,
    /// Payload.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Priority.
    pub priority: i16,
    /// State.
    pub state: State,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Earliest next run (ms).
    pub run_at: i64,
    /// Enqueued at (ms).
    pub created_at: i64,
    /// Finished at (ms).
    pub finished_at: Option<i64>,
    /// Per-attempt timeout (ms).
    pub timeout_ms: Option<u64>,
    /// Unique key.
    pub unique_key: Option<String>,
    /// Worker holding the lease, while running.
    pub lease_owner: Option<String>,
    /// Node of that worker.
    pub lease_node: Option<String>,
    /// When the lease lapses (ms).
    pub lease_expires_at: Option<i64>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Output of the successful attempt.
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// Parents.
    pub depends_on: Vec<i64>,
    /// Parent-failure policy.
    pub on_parent_failure: OnParentFailure,
    /// The progress a running attempt last reported (kept after it ended); absent when
    /// none did.
    pub progress: Option<ProgressView>,
    /// Times a handler snoozed the job (a snooze spends no attempt).
    pub snoozes: u32,
}

/// How far a running attempt got, as its handler last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// Done so far, 0.0 to 1.0.
    pub fraction: f64,
    /// What the handler said it was doing (at most 200 characters, credentials masked).
    pub message: String,
    /// When it was reported (ms).
    pub at: i64,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        JobView {
            id: j.id.0,
            queue: j.queue,
            kind: j.kind,
            payload: j.payload,
            priority: j.priority,
            state: j.state.into(),
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            run_at: j.run_at.0,
            created_at: j.created_at.0,
            finished_at: j.finished_at.map(|t| t.0),
            timeout_ms: j
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            unique_key: j.unique_key,
            lease_owner: j.lease_owner.map(|w| w.0),
            lease_node: j.lease_node.map(|n| n.0),
            lease_expires_at: j.lease_expires_at.map(|t| t.0),
            last_error: j.last_error,
            output: j.output,
            depends_on: j.depends_on.into_iter().map(|p| p.0).collect(),
            on_parent_failure: j.on_parent_failure.into(),
            progress: j.progress.map(|p| ProgressView {
                fraction: p.fraction,
                message: p.message,
                at: p.at.0,
            }),
            snoozes: j.snoozes,
        }
    }
}

/// A page of jobs, ordered by id (ascending, or descending with `order=desc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` (unchanged, with the same filters) for the next page; absent on
    /// the last page.
    pub next_cursor: Option<String>,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The job.
    pub id: i64,
    /// `cancelled`, or `already_finished` (nothing changed).
    pub outcome: CancelResult,
    /// The job's state now.
    pub state: State,
}

/// The result of a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// The job is now cancelled.
    Cancelled,
    /// It had already finished; nothing changed.
    AlreadyFinished,
}

/// Which dead-lettered jobs to send back: exactly one of `ids`, `queue`, `all`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// These jobs.
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
    /// Every dead-lettered job of this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Every dead-lettered job.
    #[serde(default)]
    pub all: bool,
    /// Every dead-lettered job of a group of `GET /api/v1/dlq/groups` (its queue and
    /// reason, as listed there).
    #[serde(default)]
    pub group: Option<DeadLetterGroupRef>,
}

/// A group of dead letters: a queue and a reason's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterGroupRef {
    /// The queue.
    pub queue: String,
    /// The reason's shape (digits written `#`).
    pub reason: String,
}

/// The jobs sent back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RedriveResponse {
    /// Their ids.
    pub redriven: Vec<i64>,
}

/// A queue with its job counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Name.
    pub name: String,
    /// Jobs per state (states without jobs left out).
    pub counts: BTreeMap<String, u64>,
    /// All jobs.
    pub total: u64,
    /// Whether the queue is paused (no node claims from it; enqueues still succeed).
    pub paused: bool,
    /// When it was paused (ms), if it is.
    pub paused_at: Option<i64>,
    /// How long its longest-waiting available job has waited since it became due (ms);
    /// absent when none is available.
    pub oldest_available_age_ms: Option<u64>,
    /// Jobs it finished over the last minute.
    pub throughput: crate::views::Throughput,
    /// Predicted wait (ms) of a job enqueued on it now, from the models the nodes saved
    /// (mean over the nodes that took its jobs); absent before any did.
    #[serde(default)]
    pub predicted_wait_ms: Option<f64>,
    /// The nodes serving it now: those whose presence row names it and is fresh (written
    /// within three of its refresh intervals). Empty while it holds available,
    /// scheduled or retryable jobs: no live node will run them.
    #[serde(default)]
    pub served_by: Vec<String>,
}

/// Queues, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    /// The queues.
    pub queues: Vec<QueueView>,
    /// When the counts were read (milliseconds since the epoch): they are shared by
    /// every caller for up to `api.counts_max_age`. The pause flags are read per request.
    pub counts_at: i64,
    /// Who counted: `leader` (the node holding the maintenance leader lease, which
    /// posts its counts in the store) or `api` (this process, when no leader posted
    /// fresh enough counts).
    pub counted_by: String,
}

/// A lifecycle event, as sent in the `data` of a server-sent event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Sequence number (also the SSE `id`, for `Last-Event-ID`).
    pub seq: i64,
    /// When (ms).
    pub at: i64,
    /// What happened (`job.succeeded`; also the SSE `event`).
    pub kind: String,
    /// The job.
    pub job: Option<i64>,
    /// The attempt.
    pub attempt: Option<u32>,
    /// The worker.
    pub worker: Option<String>,
    /// The node.
    pub node: Option<String>,
    /// Details (error, certificate, ...).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<jobmesh::event::StoredEvent> for EventView {
    fn from(e: jobmesh::event::StoredEvent) -> Self {
        let ev = e.event;
        EventView {
            seq: e.seq,
            at: ev.at.0,
            kind: ev.kind.as_str().to_string(),
            job: ev.job.map(|j| j.0),
            attempt: ev.attempt,
            worker: ev.worker.map(|w| w.0),
            node: ev.node.map(|n| n.0),
            detail: ev.detail,
        }
    }
}

/// Health and readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}
