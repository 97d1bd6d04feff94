//! The store: where jobs, leases and lifecycle events live.
//!
//! One trait, several backends: SQLite (the embedded default), Postgres (the system of
//! record in production) and Postgres with Redis in front for dispatch (`hybrid`). Backends apply transitions;
//! they do not decide them. Every finish is guarded by the lease token, and every
//! transition writes its lifecycle event in the same transaction.

pub mod conformance;
mod error;
/// The production mode: Postgres as the system of record, Redis for dispatch and the
/// live event stream, with a reconciler that rebuilds Redis from Postgres.
pub mod hybrid;
mod open;
/// The production system of record: Postgres, with `FOR UPDATE SKIP LOCKED` claims,
/// batched completion and LISTEN/NOTIFY wake-ups.
pub mod postgres;
/// Redis in production mode: the ready index (push, take, remove, rebuild), wake lists,
/// heartbeats, job-state hashes and the live event stream; no leases, and nothing that
/// cannot be rebuilt from the SQL system of record.
pub mod redis;
pub mod retention;
pub mod sqlite;
mod wakeup;

pub use error::StoreError;
pub use open::{DEFAULT_REDIS_PREFIX, OpenError, OpenedStore, open};
pub use wakeup::{WAKEUP_BUFFER, Wakeup, Wakeups};

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::event::{LifecycleEvent, StoredEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, JobState, Lease,
    LeaseToken, NewJob, NodeId, Outcome, WorkerId,
};

/// Checks a batch before any store writes it: each job passes
/// [`NewJob::check_storable`], and each in-batch parent comes before its child. Every
/// backend calls this first, so a job is refused with the same error on every store.
pub fn check_new_jobs(jobs: &[NewJob]) -> Result<(), StoreError> {
    for (i, j) in jobs.iter().enumerate() {
        j.check_storable()
            .map_err(|e| StoreError::Invalid(format!("job {i} of the batch: {e}")))?;
        if let Some(&p) = j.depends_on_index.iter().find(|&&p| p >= i) {
            return Err(StoreError::Invalid(format!(
                "job {i} of the batch depends on batch job {p}, which does not come before it"
            )));
        }
    }
    Ok(())
}

/// Makes what a finished attempt reports storable on every store (see
/// [`crate::payload::make_storable`]): a NUL in an error or output would make Postgres
/// refuse the whole completion batch, and an output too deep would be unreadable later.
/// The attempt has run, so its record is kept with the offending characters replaced
/// rather than refused.
pub(crate) fn storable_completions(batch: &mut [Completion]) {
    for c in batch {
        match &mut c.outcome {
            Outcome::Succeeded { output: Some(o) } => crate::payload::make_storable(o),
            Outcome::Succeeded { output: None } => {}
            Outcome::Retry { error, .. }
            | Outcome::Discard { error }
            | Outcome::Cancelled { reason: error } => scrub_nul(error),
        }
    }
}

/// The same for events recorded outside a transition (worker and node events), whose
/// details also have their credentials masked ([`crate::redact`]): a worker's crash
/// message is whatever the handler panicked with, a URL with its `user:password@`
/// included, and the event log is copied to the Redis stream.
pub(crate) fn storable_events(events: &mut [LifecycleEvent]) {
    for e in events {
        crate::payload::make_storable(&mut e.detail);
        redact_strings(&mut e.detail);
        for s in [
            e.worker.as_mut().map(|w| &mut w.0),
            e.node.as_mut().map(|n| &mut n.0),
        ]
        .into_iter()
        .flatten()
        {
            scrub_nul(s);
        }
    }
}

/// Masks credentials in every string of `value` (keys are names, not values).
fn redact_strings(value: &mut serde_json::Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(masked) = crate::redact::redact(s) {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
            serde_json::Value::Object(map) => stack.extend(map.values_mut()),
            _ => {}
        }
    }
}

fn scrub_nul(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// A claimed job whose row this version cannot decode (written by another version, or
/// by hand in SQL). The claim that took it dead-letters it at once, under the lease it
/// has just taken (so the fencing rules hold: the discard applies only if that lease is
/// still current), with the decode error as the reason, and hands out the rest of its
/// batch: one bad row never stops a queue.
#[derive(Debug, Clone)]
pub(crate) struct Undecodable {
    /// The job.
    pub id: JobId,
    /// The lease token the claim gave it.
    pub token: LeaseToken,
    /// The attempt the claim counted.
    pub attempt: u32,
    /// Why it cannot be decoded.
    pub reason: String,
}

impl Undecodable {
    /// The reason to record for a decode error (without the "corrupt row" prefix).
    pub(crate) fn reason_of(e: &StoreError) -> String {
        match e {
            StoreError::Corrupt(m) => m.clone(),
            e => e.to_string(),
        }
    }

    /// The discard to apply for it, as if the claiming worker had reported it.
    pub(crate) fn completion(&self, req: &ClaimRequest) -> Completion {
        Completion {
            lease: Lease {
                job: self.id,
                token: self.token,
                worker: req.worker.clone(),
                node: req.node.clone(),
                attempt: self.attempt,
                expires_at: req.now.plus(req.lease_for),
            },
            outcome: Outcome::Discard {
                error: format!("undecodable row: {}", self.reason),
            },
            started_at: req.now,
            finished_at: req.now,
        }
    }
}

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

/// One page of the event log as a backend read it: the events that decode, how many
/// rows were read, and the sequence number of the last row read (decoded or not).
pub(crate) type EventPage = (Vec<StoredEvent>, usize, Option<i64>);

/// [`Store::events_after`] from pages read by `page(after, limit)`: reads on past rows
/// left out as undecodable until `limit` events are found or the log ends. Readers of
/// the log (`events`, the relay, the tail position) take a page shorter than they asked
/// for as the end of the log, so a page that merely left a bad row out must not be one.
pub(crate) async fn fill_events<F, Fut>(
    mut after: i64,
    limit: u32,
    mut page: F,
) -> Result<Vec<StoredEvent>, StoreError>
where
    F: FnMut(i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<EventPage, StoreError>>,
{
    let mut out = Vec::new();
    loop {
        let want = limit - out.len() as u32;
        let (events, read, last) = page(after, want).await?;
        out.extend(events);
        match last {
            Some(last) if read == want as usize && out.len() < limit as usize => after = last,
            _ => return Ok(out),
        }
    }
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

/// Which jobs to list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only ids greater than this (paging).
    pub after: Option<JobId>,
    /// At most this many, ordered by id.
    pub limit: u32,
}

impl Default for JobFilter {
    fn default() -> Self {
        Self {
            state: None,
            queue: None,
            kind: None,
            after: None,
            limit: 100,
        }
    }
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
}

/// Job counts by queue and state.
pub type Counts = BTreeMap<String, BTreeMap<JobState, u64>>;

/// The operations every backend provides.
///
/// All writes are idempotent under retry where the caller can repeat them (claims are
/// not: a repeated claim takes new jobs). Methods taking `now` use it for every
/// timestamp they write, so tests can drive time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name (`sqlite`, `postgres`, `redis+postgres`).
    fn backend(&self) -> &'static str;

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

    /// Gives back leased jobs whose attempt never started (a node stopping with claimed
    /// jobs in hand): where the lease is still current the job is available again at
    /// `now`, the attempt the claim counted is returned, and the token is bumped so the
    /// old lease is dead. `false` where the lease was already lost.
    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError>;

    /// Cancels a job that has not finished; a running attempt loses its lease.
    async fn cancel(&self, id: JobId, now: Millis) -> Result<CancelOutcome, StoreError>;

    /// Moves scheduled and retryable jobs whose `run_at` has come to `available`.
    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError>;

    /// The earliest `run_at` among scheduled and retryable jobs, to sleep until.
    async fn next_due(&self) -> Result<Option<Millis>, StoreError>;

    /// Takes back running jobs whose lease expired before `now`: the lease token is
    /// bumped and the job runs again at once, or is discarded when out of attempts.
    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError>;

    /// Revokes every lease held by `node` (it was evicted, or restarted after a crash)
    /// the same way [`Store::rescue_expired`] does; `detail` is kept with each
    /// `job.rescued` event (for an eviction, the certificate).
    async fn revoke_node(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError>;

    /// One job by id.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Jobs matching a filter, ordered by id.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;

    /// Job counts by queue and state.
    async fn counts(&self) -> Result<Counts, StoreError>;

    /// The dead-letter queue, oldest first.
    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Sends dead-lettered jobs back to their queues with fresh attempts; returns their ids.
    async fn redrive(&self, which: Redrive, now: Millis) -> Result<Vec<JobId>, StoreError>;

    /// Removes what outlived `retention` (finished jobs with their executions, links and
    /// events; dead letters; node and worker events; lapsed leader leases), at most
    /// `retention.batch` jobs per namespace per call. Unfinished jobs are never touched.
    async fn purge(
        &self,
        retention: &retention::Retention,
        now: Millis,
    ) -> Result<retention::Purged, StoreError>;

    /// Takes or renews the leader lease of `role` for `holder` until `now + ttl`;
    /// `true` if `holder` leads. Another holder gets it only once it lapsed.
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: std::time::Duration,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Persists events that are not part of a job transition (worker and node events).
    async fn record_events(&self, events: Vec<LifecycleEvent>) -> Result<(), StoreError>;

    /// Events with a sequence number above `after`, oldest first.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// Wake-ups when jobs may have become available on `queues`, committed by any
    /// process (another node, `jobmesh submit`, an application enqueueing directly), so a
    /// node claims at once instead of at its next poll. Hints only: a claimer keeps its
    /// poll. Postgres: LISTEN/NOTIFY; `redis_postgres`: the Redis wake lists; `None`
    /// where the backend has no such signal (the default; SQLite is one process).
    async fn wakeups(&self, queues: &[String]) -> Result<Option<Wakeups>, StoreError> {
        let _ = queues;
        Ok(None)
    }

    /// Records that `node` and its `workers` are alive for the next `ttl` (a node calls
    /// this every maintenance round), so operators and dashboards can list the live
    /// members. `redis_postgres`: heartbeat keys and registries in Redis, best-effort
    /// like the rest of its Redis side. The default does nothing: SQLite and Postgres keep
    /// no registry, because nothing decides on it (an absent node is detected by its
    /// lapsed leases in the store and by the mesh's votes), and a table written by every
    /// node every round would only add write load to the system of record.
    async fn heartbeat(
        &self,
        node: &NodeId,
        workers: &[WorkerId],
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        let _ = (node, workers, ttl);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::EventKind;

    #[test]
    fn event_details_are_stored_without_credentials() {
        // A handler's panic message becomes a `worker.crashed` detail verbatim.
        let mut evs = [LifecycleEvent::new(EventKind::WorkerCrashed, Millis(0))
            .worker(WorkerId("n1/w0".into()))
            .detail(json!({
                "error": "panicked: GET https://bob:hunter22@api.example/x failed",
                "nested": [{"header": "Authorization: Bearer tok-123456"}],
            }))];
        storable_events(&mut evs);
        let text = evs[0].detail.to_string();
        assert!(
            !text.contains("hunter22") && !text.contains("tok-123456"),
            "{text}"
        );
        assert_eq!(
            evs[0].detail["error"],
            "panicked: GET https://***@api.example/x failed"
        );
    }
}
