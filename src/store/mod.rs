//! The store: where jobs, leases and lifecycle events live.
//!
//! Small capability traits (`capability.rs`: [`JobQueue`], [`JobAdmin`], [`EventLog`],
//! [`Leadership`], [`WakeupSource`], [`Heartbeats`], with [`Store`] over them; beside
//! them [`QueueControl`], [`JobLimits`], [`ApiTokens`], [`PeriodicTicks`]; the read-side views
//! [`JobHistory`] in `history.rs` and [`Activity`] in `activity.rs`; the audit log's
//! [`AuditLog`] in `audit.rs`), several
//! backends, each a folder split by concern: SQLite (the embedded default), Postgres
//! (the system of record in production) and Postgres with Redis in front for dispatch
//! (`redis_postgres`, which composes Postgres operations). Backends apply transitions;
//! they do not decide them: the decisions are made once in `rules.rs` (and what SQL rows
//! mean in `columns.rs`, `event_log.rs`), and [`conformance`] checks every backend
//! against the same cases. Every finish is guarded by the lease token, and every
//! transition writes its lifecycle event in the same transaction.
//!
//! To add a store operation: its method on the capability trait, any decision it makes
//! in `rules.rs`, its SQL (or Redis calls) once per backend in that backend's file for
//! the concern, and a conformance case, so a backend that disagrees fails its suite.

/// Recent activity: queues' oldest available job and finishes, nodes and workers.
pub mod activity;
/// The audit log of operator actions.
pub mod audit;
/// Bulk actions by ids or by filter: cancel, retry now, redrive, delete.
pub mod bulk;
mod capability;
mod columns;
pub mod conformance;
mod error;
mod event_log;
/// Filters of listings and bulk actions, their validation, and keyset cursors.
pub mod filter;
mod filter_sql;
/// A job's history: its finished attempts and its events.
pub mod history;
/// Incidents over time: rescues, worker crashes and restarts, evictions per interval.
pub mod incidents;
/// Cluster-wide reads for operators' pages: latency of finished jobs, workflow links,
/// dead letters by reason, counts of a filter's matches.
pub mod insights;
/// Cluster-wide limits on claims: the limits in force and what runs under them.
pub mod limits;
/// Saved models: each node's live predictors, one versioned blob per node.
pub mod models;
mod open;
/// Periodic ticks: the record of handled ticks per schedule, and the guarded enqueue.
pub mod periodic;
/// Periodic schedules kept in the store: the config's set, and create, pause, resume,
/// delete and trigger through the API, the CLI or the library.
pub mod periodic_schedules;
/// The production system of record: Postgres, with `FOR UPDATE SKIP LOCKED` claims,
/// batched completion and LISTEN/NOTIFY wake-ups.
pub mod postgres;
/// Node presence: the queues each node serves, its slots and last heartbeat, and the
/// jobs running now by node.
pub mod presence;
mod progress;
/// Pausing and resuming queues.
pub mod queues;
/// Redis on redis_postgres: the ready index (push, take, remove, rebuild), wake lists,
/// heartbeats, job-state hashes and the live event stream; no leases, and nothing that
/// cannot be rebuilt from the SQL system of record.
pub mod redis;
/// redis_postgres, the production store: Postgres as the system of record, Redis for dispatch and the
/// live event stream, with a reconciler that rebuilds Redis from Postgres.
pub mod redis_postgres;
pub mod retention;
mod rules;
pub mod sqlite;
/// Throughput history: jobs enqueued, succeeded and dead-lettered per queue and interval.
pub mod throughput;
pub mod tokens;
mod wakeup;

pub use activity::{Activity, FinishedSlice, LiveMembers, NodeRecord, fold_members};
pub use audit::{Actor, AuditContext, AuditLog};
pub use bulk::{BulkAction, BulkActions, BulkOutcome, BulkTarget};
pub use capability::{
    EventLog, Heartbeats, JobAdmin, JobQueue, Leadership, MAX_POST_BYTES, NodePresence, Store,
    WakeupSource,
};
pub use error::{BackendError, StoreError};
pub(crate) use event_log::{EventPage, EventRow, fill_events};
pub use filter::{After, Cursor, FilterError, JobFilter, Order, PayloadMatch, SortKey, TimeRange};
pub use history::{Attempt, AttemptOutcome, JobHistory};
pub use insights::Insights;
pub use limits::JobLimits;
pub use models::{MAX_SAVED_MODELS_BYTES, ModelStore, SavedModels};
pub use open::{DEFAULT_REDIS_PREFIX, OpenError, OpenedStore, open};
pub use periodic::{PeriodicTicks, TickMark, TickOutcome};
pub use periodic_schedules::{
    ConfigSync, PeriodicSchedules, ScheduleOrigin, ScheduleOutcome, StoredSchedule, trigger_job,
};
pub(crate) use progress::{progress_results, storable_reports};
pub use queues::{PausedQueue, QueueControl};
pub use rules::check_new_jobs;
pub(crate) use rules::{
    ClaimOrder, RescuePlan, Undecodable, grant, storable_completions, storable_events,
};
pub use tokens::ApiTokens;
pub use wakeup::{WAKEUP_BUFFER, Wakeup, Wakeups};

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::job::{Job, JobId, JobState};

/// Keeps the rows of a listing that decode and leaves out, with a warning naming each,
/// those that do not, so that one bad row does not fail the whole listing (`what`
/// names the listing in the warning).
pub(crate) fn skip_undecodable<T>(
    what: &str,
    rows: impl IntoIterator<Item = Result<T, StoreError>>,
) -> Vec<T> {
    rows.into_iter()
        .filter_map(|r| {
            r.inspect_err(
                |e| tracing::warn!(error = %e, "{what}: leaving out a row that cannot be decoded"),
            )
            .ok()
        })
        .collect()
}

/// A store shared between actors.
pub type SharedStore = Arc<dyn Store>;

/// What became of one submitted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "id", rename_all = "snake_case")]
pub enum EnqueueOutcome {
    /// Stored as a new job.
    Inserted(JobId),
    /// An unfinished job with the same unique key exists; nothing was stored.
    Duplicate(JobId),
}

impl EnqueueOutcome {
    /// The id of the new or existing job.
    pub fn id(self) -> JobId {
        match self {
            EnqueueOutcome::Inserted(id) | EnqueueOutcome::Duplicate(id) => id,
        }
    }
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job is now cancelled (a running attempt's lease was revoked).
    Cancelled,
    /// The job had already finished in the given state; nothing changed.
    AlreadyFinished(JobState),
}

/// A job that was taken back from a lost lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescuedJob {
    /// The job.
    pub id: JobId,
    /// The attempt that was interrupted.
    pub attempt: u32,
    /// Where it went: `available` to run again at once, or `discarded` when out of attempts.
    pub state: JobState,
}

/// A dead-lettered job with why and when it was discarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job (state `discarded`).
    pub job: Job,
    /// Why it was discarded.
    pub reason: String,
    /// When.
    pub discarded_at: Millis,
}

/// Which dead-lettered jobs to send back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redrive {
    /// These jobs.
    Ids(Vec<JobId>),
    /// Every job in the dead-letter queue of this queue.
    Queue(String),
    /// Every dead-lettered job.
    All,
    /// Every dead-lettered job of a queue whose reason has this shape (see
    /// [`insights::DeadLetterGroup`]).
    Group {
        /// The queue.
        queue: String,
        /// The reason's shape, as [`Insights::dead_letter_groups`] names it.
        reason: String,
    },
}

/// Job counts by queue and state.
pub type Counts = BTreeMap<String, BTreeMap<JobState, u64>>;
