//! The store's capabilities, one trait each. A backend implements each capability in the
//! file of its concern; [`Store`] is what a node needs of one, and the optional
//! capabilities (wake-ups, heartbeats) are offered through accessors, not no-op defaults.

use async_trait::async_trait;

use super::activity::{Activity, LiveMembers};
use super::audit::{AuditContext, AuditLog};
use super::bulk::BulkActions;
use super::history::JobHistory;
use super::limits::JobLimits;
use super::periodic::PeriodicTicks;
use super::periodic_schedules::PeriodicSchedules;
use super::presence::{Presence, RunningJob};
use super::queues::QueueControl;
use super::retention;
use super::tokens::ApiTokens;
use super::{
    CancelOutcome, Counts, DeadLetter, EnqueueOutcome, JobFilter, Redrive, RescuedJob, StoreError,
    Wakeups,
};
use crate::clock::Millis;
use crate::event::{LifecycleEvent, StoredEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, Lease, NewJob, NodeId,
    ProgressReport, WorkerId,
};

/// What workers and the maintenance actor do to jobs: store, claim, finish, extend,
/// give back, promote and rescue.
///
/// All writes are idempotent under retry where the caller can repeat them (claims are
/// not: a repeated claim takes new jobs). Methods taking `now` use it for every
/// timestamp they write, so tests can drive time.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Stores new jobs in one transaction. Jobs with unmet dependencies wait; jobs with
    /// a future `run_at` are scheduled; a unique key that is taken yields
    /// [`EnqueueOutcome::Duplicate`]. A dependency on an unknown job fails the batch.
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError>;

    /// Leases up to `req.limit` available jobs from `req.queues`, highest priority first,
    /// then oldest `run_at`, then lowest id. Each claim bumps the job's lease token and
    /// attempt and writes a `job.claimed` event.
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Applies finished attempts in one transaction, each only if its lease token is
    /// still current; returns one result per completion, in order. Success releases
    /// waiting children whose parents have all succeeded; a discard applies the
    /// children's parent-failure policy.
    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<CompletionResult>, StoreError>;

    /// Extends leases that are still current to `until`; `false` where the lease was
    /// lost (rescued, revoked, cancelled), which tells the worker to abandon the job.
    async fn extend_leases(&self, leases: &[Lease], until: Millis)
    -> Result<Vec<bool>, StoreError>;

    /// Records the progress running attempts reported, in one transaction: where the
    /// lease is still current, the job's progress becomes the report, its lease is
    /// extended to `until` and a `job.progress` event is written; where it is not
    /// (rescued, revoked, cancelled, finished), nothing changes and the answer is
    /// `false`, which tells the worker to abandon the attempt. Of several reports of one
    /// lease in a batch, the last is recorded. A report whose fraction is not within
    /// `0..=1` fails the batch with [`StoreError::Invalid`] (messages are cleaned, not
    /// refused: see [`crate::job::Progress`]).
    async fn record_progress(
        &self,
        reports: &[ProgressReport],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError>;

    /// Gives back leased jobs whose attempt never started (a node stopping with claimed
    /// jobs in hand): where the lease is still current the job is available again at
    /// `now`, the attempt the claim counted is returned, and the token is bumped so the
    /// old lease is dead. `false` where the lease was already lost.
    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError>;

    /// Moves scheduled and retryable jobs whose `run_at` has come to `available`.
    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError>;

    /// The earliest `run_at` among scheduled and retryable jobs, to sleep until.
    async fn next_due(&self) -> Result<Option<Millis>, StoreError>;

    /// Takes back running jobs whose lease expired before `now`: the lease token is
    /// bumped and the job runs again at once, or is discarded when out of attempts.
    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError>;

    /// Revokes every lease held by `node` (it was evicted, or restarted after a crash)
    /// the same way [`JobQueue::rescue_expired`] does; `detail` is kept with each
    /// `job.rescued` event (for an eviction, the certificate).
    async fn revoke_node(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError>;
}

/// What operators do: read jobs and counts, cancel, work the dead-letter queue, purge
/// what outlived its retention.
#[async_trait]
pub trait JobAdmin: Send + Sync + 'static {
    /// One job by id.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Jobs matching a filter, ordered by id (ascending or descending), past the
    /// filter's `after` (keyset pagination: never an offset). The filter is bound as
    /// parameters whatever it holds; callers check it first ([`JobFilter::check`]) for
    /// errors that name the field.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;

    /// Job counts by queue and state.
    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Cancels a job that has not finished; a running attempt loses its lease. Writes
    /// the audit row of `ctx` in the same transaction: `ok` (also for a job that had
    /// already finished, which is left as it is), or `refused` for an unknown job, which
    /// is then [`StoreError::NotFound`].
    async fn cancel(
        &self,
        ctx: &AuditContext,
        id: JobId,
        now: Millis,
    ) -> Result<CancelOutcome, StoreError>;

    /// The dead-letter queue, oldest first.
    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Sends dead-lettered jobs back to their queues with fresh attempts; returns their
    /// ids. Writes the audit row of `ctx` (with the ids sent back) in the same
    /// transaction.
    async fn redrive(
        &self,
        ctx: &AuditContext,
        which: Redrive,
        now: Millis,
    ) -> Result<Vec<JobId>, StoreError>;

    /// Removes what outlived `retention` (finished jobs with their executions, links and
    /// events; dead letters; node and worker events; lapsed leader leases; audit rows),
    /// at most `retention.batch` jobs (and audit rows) per namespace per call.
    /// Unfinished jobs are never touched.
    async fn purge(
        &self,
        retention: &retention::Retention,
        now: Millis,
    ) -> Result<retention::Purged, StoreError>;
}

/// The durable lifecycle event log. Job events are written by the transitions
/// themselves; this records the rest and reads the log in order.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Persists events that are not part of a job transition (worker and node events).
    async fn record_events(&self, events: Vec<LifecycleEvent>) -> Result<(), StoreError>;

    /// Events with a sequence number above `after`, oldest first.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
}

/// Leader leases, so that cluster-wide chores (retention, counts) run on one node.
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// Takes or renews the leader lease of `role` for `holder` until `now + ttl`;
    /// `true` if `holder` leads. Another holder gets it only once it lapsed.
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: std::time::Duration,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Posts `body` under `key` as of `at`, replacing the last post under it: what the
    /// holder of a leader lease computed for every process to read (the queue counts,
    /// see [`crate::metrics::posted_counts`]), or what a reader asks of it. At most
    /// [`MAX_POST_BYTES`]; bigger is [`StoreError::Invalid`].
    async fn post(&self, key: &str, body: &[u8], at: Millis) -> Result<(), StoreError>;

    /// The last post under `key`: when it was posted and its body.
    async fn posted(&self, key: &str) -> Result<Option<(Millis, Vec<u8>)>, StoreError>;
}

/// The largest body [`Leadership::post`] takes: the queue counts of a few thousand
/// queues.
pub const MAX_POST_BYTES: usize = 4 << 20;

/// Refuses a post body over [`MAX_POST_BYTES`] before any backend writes it.
pub(crate) fn check_post(key: &str, body: &[u8]) -> Result<(), StoreError> {
    if body.len() > MAX_POST_BYTES {
        return Err(StoreError::Invalid(format!(
            "post {key:?} is {} bytes, more than the {MAX_POST_BYTES} a post may hold",
            body.len()
        )));
    }
    Ok(())
}

/// Wake-ups across processes (optional: see [`Store::wakeup_source`]).
#[async_trait]
pub trait WakeupSource: Send + Sync + 'static {
    /// Wake-ups when jobs may have become available on `queues`, committed by any
    /// process (another node, `jobmesh submit`, an application enqueueing directly), so a
    /// node claims at once instead of at its next poll. Hints only: a claimer keeps its
    /// poll. Postgres: LISTEN/NOTIFY; production mode: the Redis wake lists.
    async fn wakeups(&self, queues: &[String]) -> Result<Wakeups, StoreError>;
}

/// A registry of live nodes and workers (optional: see [`Store::heartbeats`]).
#[async_trait]
pub trait Heartbeats: Send + Sync + 'static {
    /// Records that `node` and its `workers` are alive for the next `ttl` (a node calls
    /// this every maintenance round), so operators and dashboards can list the live
    /// members. `redis_postgres`: heartbeat keys and registries in Redis, best-effort
    /// like the rest of its Redis side.
    async fn heartbeat(
        &self,
        node: &NodeId,
        workers: &[WorkerId],
        ttl: std::time::Duration,
    ) -> Result<(), StoreError>;

    /// The nodes and workers whose last heartbeat has not expired, with when it
    /// expires, sorted by id.
    async fn live_members(&self) -> Result<LiveMembers, StoreError>;
}

/// Node presence (see [`super::presence`]): each node's periodic row of the queues it
/// serves, its slots and what they run, and the jobs running now by node. Every backend
/// keeps it in its SQL record (redis_postgres: in Postgres), so a lapsed row is a
/// liveness signal on every backend, with or without a mesh.
#[async_trait]
pub trait NodePresence: Send + Sync + 'static {
    /// Writes `presence` as its node's row, replacing the last (a node calls this when it
    /// starts and every `presence.every`), and deletes rows not refreshed since
    /// `presence.seen_at` minus [`super::presence::FORGET_AFTER`]. A row that fails [`Presence::check`] is
    /// [`StoreError::Invalid`] and nothing is written.
    async fn announce(&self, presence: &Presence) -> Result<(), StoreError>;

    /// Deletes `node`'s row if it is the one its run started at `started_at` wrote (a
    /// node stopping gracefully); whether a row was deleted.
    async fn withdraw(&self, node: &NodeId, started_at: Millis) -> Result<bool, StoreError>;

    /// Every row, by node id, at most [`super::presence::MAX_PRESENCES`] (a scan of the
    /// small table).
    async fn presences(&self) -> Result<Vec<Presence>, StoreError>;

    /// Jobs running now, at most `limit` (capped at [`super::presence::MAX_RUNNING`]),
    /// read from the running jobs' partial lease index, so the cost grows with the jobs
    /// running, not with the table.
    async fn running_jobs(&self, limit: u32) -> Result<Vec<RunningJob>, StoreError>;
}

/// Everything a node needs of a store: the capabilities every backend has (the HTTP
/// API's [`ApiTokens`] among them, since the API serves on every backend, queue pause,
/// the cluster-wide [`JobLimits`], the read-side views [`JobHistory`] and [`Activity`],
/// the periodic tick record, the periodic schedules ([`PeriodicSchedules`]),
/// the [`AuditLog`] of operator actions, bulk actions and [`NodePresence`]),
/// and accessors for the optional ones.
pub trait Store:
    JobQueue
    + JobAdmin
    + EventLog
    + Leadership
    + QueueControl
    + JobLimits
    + ApiTokens
    + JobHistory
    + Activity
    + PeriodicTicks
    + PeriodicSchedules
    + AuditLog
    + BulkActions
    + super::Insights
    + super::ModelStore
    + NodePresence
{
    /// The backend's name (`sqlite`, `postgres`, `redis+postgres`).
    fn backend(&self) -> &'static str;

    /// Wake-ups when jobs may have become available, where the backend has a signal
    /// across processes (Postgres LISTEN/NOTIFY, the production mode's Redis wake lists);
    /// `None` for SQLite, which is one process, so a claimer keeps only its poll.
    fn wakeup_source(&self) -> Option<&dyn WakeupSource> {
        None
    }

    /// The live-member registry, where the backend keeps one (the production mode's
    /// Redis). SQLite and Postgres keep none: nothing decides on it (an absent node is
    /// detected by its lapsed leases in the store and by the mesh's votes). What
    /// operators see of a node's liveness on every backend is its presence row
    /// ([`NodePresence`], one small upsert per node every 5 s), which no runtime decision
    /// reads either.
    fn heartbeats(&self) -> Option<&dyn Heartbeats> {
        None
    }
}
