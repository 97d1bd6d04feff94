//! Decisions every backend applies the same way, made once here: what a batch may hold,
//! where a new job starts (and which jobs of a batch are stored one at a time), what is
//! stored of a finished attempt, in which order claims are handed out, what a claim
//! hands out, and what a lost lease becomes. Backends run the SQL (or the Redis
//! commands) that apply them; they do not decide.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::json;

use super::{EnqueueOutcome, RescuedJob, StoreError};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, JobState, Lease,
    LeaseToken, NewJob, Outcome, ParentFailurePolicy, Priority,
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

/// Whether `job` is stored on its own rather than in a run of plain jobs (one statement
/// for the run): a unique key is checked against the unfinished jobs first, and parents
/// are read first to decide where the job starts ([`Start`]).
pub(crate) fn stored_alone(job: &NewJob) -> bool {
    job.unique_key.is_some() || !job.depends_on.is_empty() || !job.depends_on_index.is_empty()
}

/// The parents of `job` by id: its `depends_on`, and the jobs of its own batch named by
/// `depends_on_index` (`stored` holds what the batch's earlier jobs became; a
/// duplicate's parent is the job that holds the key), sorted and without repeats.
/// [`check_new_jobs`] has checked that each index comes before the job.
pub(crate) fn parent_ids(job: &NewJob, stored: &[EnqueueOutcome]) -> Vec<i64> {
    let mut parents: Vec<i64> = job.depends_on.iter().map(|p| p.0).collect();
    parents.extend(job.depends_on_index.iter().map(|&i| stored[i].id().0));
    parents.sort_unstable();
    parents.dedup();
    parents
}

/// The `job.discarded` event of a job discarded because a parent was discarded or
/// cancelled (at enqueue, or by the cascade; the Postgres migration's
/// `jm_cascade_discard` writes the same), with [`Start::PARENT_FAILED`] as its
/// `last_error`.
pub(crate) fn discarded_with_parent(id: JobId, attempt: u32, now: Millis) -> LifecycleEvent {
    LifecycleEvent::new(EventKind::JobDiscarded, now)
        .job(id, Some(attempt))
        .detail(json!({"reason": "parent discarded or cancelled"}))
}

/// Refuses a job whose parents are not all known: `states` holds the parents the
/// backend found (in the transaction that inserts the job), so a parent missing from it
/// does not exist, and the whole batch is refused with the same error on every store.
pub(crate) fn check_parents_exist(
    parents: &[i64],
    states: &HashMap<i64, JobState>,
) -> Result<(), StoreError> {
    match parents.iter().find(|p| !states.contains_key(p)) {
        Some(missing) => Err(StoreError::Invalid(format!(
            "job depends on unknown job {missing}"
        ))),
        None => Ok(()),
    }
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
            Outcome::Succeeded { output: None } | Outcome::Snoozed { .. } => {}
            Outcome::Retry { error, .. }
            | Outcome::Discard { error }
            | Outcome::Cancelled { reason: error } => scrub_nul(error),
        }
    }
}

/// The entries of a completion batch that a backend applies: the first for each
/// (job, lease token). A worker may report one attempt twice (a retried flush); the
/// first report wins, on every store, and later ones get [`completion_results`]'s
/// `StaleLease`.
pub(crate) fn first_per_lease(batch: &[Completion]) -> Vec<&Completion> {
    let mut seen = HashSet::with_capacity(batch.len());
    batch
        .iter()
        .filter(|c| seen.insert((c.lease.job, c.lease.token)))
        .collect()
}

/// What each entry of `batch` gets, given the (job, token) pairs the backend applied
/// (from [`first_per_lease`]): `Applied` for the first entry of an applied pair, and
/// `StaleLease` for every other entry.
pub(crate) fn completion_results(
    batch: &[Completion],
    applied: &HashSet<(JobId, LeaseToken)>,
) -> Vec<CompletionResult> {
    let mut reported = HashSet::with_capacity(applied.len());
    batch
        .iter()
        .map(|c| {
            let key = (c.lease.job, c.lease.token);
            if applied.contains(&key) && reported.insert(key) {
                CompletionResult::Applied
            } else {
                CompletionResult::StaleLease
            }
        })
        .collect()
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
pub(crate) fn redact_strings(value: &mut serde_json::Value) {
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
            lease: lease(self.id, self.token, self.attempt, req),
            outcome: Outcome::Discard {
                error: format!("undecodable row: {}", self.reason),
            },
            started_at: req.now,
            finished_at: req.now,
        }
    }
}

/// Dispatch order, the order every backend hands out claims in: highest priority first,
/// then oldest `run_at`, then lowest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimOrder {
    priority: Priority,
    run_at: Millis,
    id: JobId,
}

impl ClaimOrder {
    /// The order key of a job with these fields.
    pub(crate) fn new(priority: Priority, run_at: Millis, id: JobId) -> Self {
        Self {
            priority,
            run_at,
            id,
        }
    }

    /// The order key of `job`.
    pub(crate) fn of(job: &Job) -> Self {
        Self::new(job.priority, job.run_at, job.id)
    }
}

impl Ord for ClaimOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.run_at.cmp(&other.run_at))
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for ClaimOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What a claim hands out for a job it leased: the job with the lease the claim gave it
/// (the job's new token and attempt, the claimer's identity, `req.now + req.lease_for`).
pub(crate) fn grant(job: Job, req: &ClaimRequest) -> ClaimedJob {
    let lease = lease(job.id, job.lease_token, job.attempt, req);
    ClaimedJob { job, lease }
}

/// The lease a claim by `req` gave a job.
fn lease(job: JobId, token: LeaseToken, attempt: u32, req: &ClaimRequest) -> Lease {
    Lease {
        job,
        token,
        worker: req.worker.clone(),
        node: req.node.clone(),
        attempt,
        expires_at: req.now.plus(req.lease_for),
    }
}

/// What a set of lost leases (expired, or revoked with their node) becomes once a
/// backend has taken them back and decided each job's next state (available to run
/// again, or discarded when out of attempts): the events to record, the jobs to
/// dead-letter (whose waiting children the parent-failure policy then decides), and the
/// queues that have work again.
#[derive(Debug, Default)]
pub(crate) struct RescuePlan {
    /// The rescued jobs, by id.
    pub rescued: Vec<RescuedJob>,
    /// `job.rescued` for each, and `job.discarded` for those out of attempts.
    pub events: Vec<LifecycleEvent>,
    /// The jobs discarded: to the dead-letter queue, then their children's policy.
    pub discarded: Vec<i64>,
    /// Queues of the jobs available again, to wake.
    pub queues: BTreeSet<String>,
}

impl RescuePlan {
    /// The plan for `rescued`, each with its queue; `detail` is kept with every
    /// `job.rescued` event (why: "lease expired", or the eviction certificate).
    pub(crate) fn new(
        rescued: impl IntoIterator<Item = (RescuedJob, String)>,
        now: Millis,
        detail: serde_json::Value,
    ) -> Self {
        let mut plan = Self::default();
        for (r, queue) in rescued {
            plan.events.push(
                LifecycleEvent::new(EventKind::JobRescued, now)
                    .job(r.id, Some(r.attempt))
                    .detail(json!({"to": r.state.as_str(), "why": detail})),
            );
            if r.state == JobState::Discarded {
                plan.discarded.push(r.id.0);
                plan.events.push(
                    LifecycleEvent::new(EventKind::JobDiscarded, now).job(r.id, Some(r.attempt)),
                );
            } else {
                plan.queues.insert(queue);
            }
            plan.rescued.push(r);
        }
        plan.rescued.sort_by_key(|r| r.id);
        plan
    }
}

/// The `last_error` of a job whose lease expired, as SQL text (a quoted literal), for
/// the statement that takes expired leases back; a macro so the statement stays one
/// `&'static str` on every backend.
macro_rules! lease_expired_error {
    () => {
        "'lease expired: the worker stopped renewing it'"
    };
}
pub(crate) use lease_expired_error;

/// The `last_error` of a job whose lease was revoked with its node, as an SQL
/// expression of the parameter `$node` that holds the node id (`"$2"`, `"?2"`).
macro_rules! lease_revoked_error {
    ($node:literal) => {
        concat!("'lease revoked: node ' || ", $node, " || ' lost it'")
    };
}
pub(crate) use lease_revoked_error;

/// Why expired leases were rescued, kept with each `job.rescued` event (a revoked
/// node's certificate takes its place for a revocation).
pub(crate) fn lease_expired_detail() -> serde_json::Value {
    json!("lease expired")
}

/// The `job.rescued` event of a job whose claim was given back before it started: it is
/// available again at once, with its attempt not counted against it.
pub(crate) fn released_unstarted(id: JobId, attempt: u32, now: Millis) -> LifecycleEvent {
    LifecycleEvent::new(EventKind::JobRescued, now)
        .job(id, Some(attempt))
        .detail(json!({"to": "available", "why": "released unstarted"}))
}

/// The `job.cancelled` event of a cancel request, naming the state the job was
/// cancelled from.
pub(crate) fn cancelled(id: JobId, attempt: u32, from: JobState, now: Millis) -> LifecycleEvent {
    LifecycleEvent::new(EventKind::JobCancelled, now)
        .job(id, Some(attempt))
        .detail(json!({"from": from.as_str()}))
}

/// The `job.redriven` event of a dead letter sent back to run (its attempts start over).
pub(crate) fn redriven(id: JobId, now: Millis) -> LifecycleEvent {
    LifecycleEvent::new(EventKind::JobRedriven, now).job(id, Some(0))
}

/// Where a new job starts, the state every backend stores it in: discarded at once when a
/// parent already failed and the job's policy is to discard, waiting while a parent has
/// not succeeded, scheduled until its `run_at`, else available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    /// The state the job is stored in.
    pub state: JobState,
    /// How many of its parents have not succeeded yet.
    pub pending_parents: u32,
}

impl Start {
    /// The `last_error` of a job discarded at enqueue because a parent failed.
    pub(crate) const PARENT_FAILED: &'static str = "a parent job was discarded or cancelled";

    /// The start of `job`, given the current states of its parents (none for a job
    /// without parents).
    pub(crate) fn of(
        job: &NewJob,
        parents: impl IntoIterator<Item = JobState>,
        now: Millis,
    ) -> Self {
        let mut pending_parents = 0;
        let mut parent_failed = false;
        for s in parents {
            if s != JobState::Succeeded {
                pending_parents += 1;
            }
            parent_failed |= matches!(s, JobState::Discarded | JobState::Cancelled);
        }
        let state = if parent_failed && job.on_parent_failure == ParentFailurePolicy::Discard {
            JobState::Discarded
        } else if pending_parents > 0 {
            JobState::Waiting
        } else if job.run_at.unwrap_or(now) > now {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        Self {
            state,
            pending_parents,
        }
    }

    /// The events of storing job `id` so: `job.enqueued`, then `job.discarded` when it
    /// starts discarded.
    pub(crate) fn events(&self, id: JobId, now: Millis) -> Vec<LifecycleEvent> {
        let mut evs = vec![LifecycleEvent::new(EventKind::JobEnqueued, now).job(id, Some(0))];
        if self.state == JobState::Discarded {
            evs.push(discarded_with_parent(id, 0, now));
        }
        evs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::WorkerId;

    #[test]
    fn parents_by_id_and_batch_index_are_sorted_once() {
        let mut job = NewJob::new("k", json!({}));
        job.depends_on = vec![JobId(40), JobId(3)];
        job.depends_on_index = vec![1, 0];
        let stored = [
            EnqueueOutcome::Inserted(JobId(40)),
            EnqueueOutcome::Duplicate(JobId(7)),
        ];
        assert_eq!(parent_ids(&job, &stored), vec![3, 7, 40]);
        assert!(stored_alone(&job));
        assert!(!stored_alone(&NewJob::new("k", json!({}))));
        let known: HashMap<i64, JobState> = [(3, JobState::Succeeded)].into();
        assert!(check_parents_exist(&[3], &known).is_ok());
        let err = check_parents_exist(&[3, 7], &known).unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("unknown job 7")),
            "{err}"
        );
    }

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

    #[test]
    fn a_new_job_starts_where_its_parents_and_run_at_say() {
        use JobState::*;
        let now = Millis(1_000);
        let job = NewJob::new("k", json!({}));
        let start =
            |job: &NewJob, parents: &[JobState]| Start::of(job, parents.iter().copied(), now);
        assert_eq!(start(&job, &[]).state, Available);
        let later = NewJob {
            run_at: Some(Millis(2_000)),
            ..job.clone()
        };
        assert_eq!(start(&later, &[]).state, Scheduled);
        assert_eq!(
            start(&later, &[Succeeded, Running]),
            Start {
                state: Waiting,
                pending_parents: 1
            }
        );
        let failed = start(&later, &[Succeeded, Cancelled]);
        assert_eq!(failed.state, Discarded);
        let kinds: Vec<_> = failed
            .events(JobId(7), now)
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::JobEnqueued, EventKind::JobDiscarded]);
        let hold = NewJob {
            on_parent_failure: ParentFailurePolicy::Hold,
            ..later
        };
        assert_eq!(
            start(&hold, &[Discarded]),
            Start {
                state: Waiting,
                pending_parents: 1
            }
        );
        assert_eq!(start(&hold, &[Succeeded]).events(JobId(7), now).len(), 1);
    }
}
