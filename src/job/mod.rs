//! The job model: identities, states, leases and what a worker reports back.
//!
//! The store applies transitions; the decisions (retry or discard, when to run again)
//! are made here, in plain functions that tests drive without a database.

mod backoff;
mod outcome;
mod progress;
mod rescue;
mod snooze;
mod state;

pub use backoff::RetryPolicy;
pub use outcome::{Completion, CompletionResult, Outcome, decide_failure};
pub use progress::{MAX_PROGRESS_MESSAGE, Progress, ProgressError, ProgressReport, clean_message};
pub use rescue::RescueGate;
pub use snooze::{DEFAULT_MAX_SNOOZE, DEFAULT_MAX_SNOOZES, SnoozeLimits, decide_snooze};
pub use state::JobState;

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::clock::Millis;

/// Store-assigned identity of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The fencing token of a lease: the job's lease epoch, bumped on every claim and on
/// every revocation. A finish is applied only with the current token, so a zombie
/// worker holding an old lease can never overwrite the outcome of a rescued job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub i64);

/// Identity of a node (its libp2p peer id in text form, or a configured name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identity of a worker: unique per node and worker slot and incarnation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happens to waiting children when a parent is discarded (dead-lettered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParentFailurePolicy {
    /// Children are discarded too, transitively.
    #[default]
    Discard,
    /// Children keep waiting; a redriven parent that then succeeds releases them.
    Hold,
}

/// Priority of a job: higher runs first. Range `-100..=100`, default 0.
pub type Priority = i16;

/// The highest allowed priority.
pub const MAX_PRIORITY: Priority = 100;
/// The lowest allowed priority.
pub const MIN_PRIORITY: Priority = -100;

/// A job as submitted, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Queue the job is dispatched on.
    pub queue: String,
    /// Handler kind (`noop`, `exec`, `http`, or a registered Rust handler).
    pub kind: String,
    /// JSON payload, already validated against the kind's schema.
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: Priority,
    /// Earliest time to run; `None` means now.
    pub run_at: Option<Millis>,
    /// Attempts before the job is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Per-attempt timeout; `None` uses the node's default.
    pub timeout: Option<Duration>,
    /// At most one unfinished job per unique key.
    pub unique_key: Option<String>,
    /// Jobs that must succeed before this one becomes available.
    pub depends_on: Vec<JobId>,
    /// Parents submitted in the same enqueue batch, by their index in it; each must be
    /// smaller than this job's own index (see [`crate::dag`] for ordering a workflow).
    #[serde(default)]
    pub depends_on_index: Vec<usize>,
    /// What to do when a parent is dead-lettered.
    pub on_parent_failure: ParentFailurePolicy,
}

impl NewJob {
    /// A job of `kind` on the `default` queue with default options.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_string(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: None,
            unique_key: None,
            depends_on: Vec::new(),
            depends_on_index: Vec::new(),
            on_parent_failure: ParentFailurePolicy::Discard,
        }
    }
}

impl NewJob {
    /// Checks what every store needs to hold this job and read it back, whatever its
    /// kind and whichever path submitted it: no NUL character in the queue, kind or
    /// unique key, a timeout within [`MAX_TIMEOUT`], and a payload that passes
    /// [`crate::payload::check_structure`]. The error names the field (`unique_key`,
    /// `payload.a.b[2]`). The stores call this
    /// (through [`crate::store::check_new_jobs`]) before writing anything.
    pub fn check_storable(&self) -> Result<(), String> {
        let fields = [
            ("queue", Some(&self.queue)),
            ("kind", Some(&self.kind)),
            ("unique_key", self.unique_key.as_ref()),
        ];
        self.check_timeout()?;
        for (name, value) in fields {
            if value.is_some_and(|v| v.contains('\0')) {
                return Err(format!(
                    "{name}: contains a NUL character (\\u0000), which no store can hold"
                ));
            }
        }
        crate::payload::check_structure(&self.payload, "payload").map_err(|e| e.to_string())
    }
}

/// The furthest ahead a job may be scheduled: ten years (of 365.25 days) from now.
/// Anything later is almost surely a typo (`8000y`), and bounding it keeps every time
/// the store holds within what i64 milliseconds and RFC 3339 can express.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 86_400 + 10 * 86_400 / 4);
/// The longest per-attempt timeout a job may ask for (ten years, as [`MAX_DELAY`]).
pub const MAX_TIMEOUT: Duration = MAX_DELAY;

impl NewJob {
    /// The timeout bound, shared by the submit-time and the store-side checks.
    fn check_timeout(&self) -> Result<(), String> {
        match self.timeout {
            Some(t) if t > MAX_TIMEOUT => Err(format!(
                "timeout must be at most 10 years ({} s), got {} s",
                MAX_TIMEOUT.as_secs(),
                t.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// Checks the job's times and durations against [`MAX_DELAY`] and [`MAX_TIMEOUT`],
    /// naming the field that is out of range. `now` is the submitter's clock.
    pub fn check_bounds(&self, now: Millis) -> Result<(), String> {
        self.check_timeout()?;
        if let Some(at) = self.run_at {
            let latest = now.checked_plus(MAX_DELAY);
            if at.0 < 0 || latest.is_none_or(|l| at > l) {
                return Err(format!(
                    "run_at must be between the Unix epoch and 10 years from now, got {} ms",
                    at.0
                ));
            }
        }
        Ok(())
    }
}

/// Name of the queue used when none is given.
pub const DEFAULT_QUEUE: &str = "default";

/// Longest queue name, in bytes.
pub const MAX_QUEUE_NAME: usize = 128;

/// Checks a queue name: 1 to [`MAX_QUEUE_NAME`] characters of ASCII letters, digits and
/// `- _ . :`. One rule for submits and for the queues a node works (`workers.queues`),
/// so a node can never be configured to wait on a queue no job can be submitted to.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "queue name `{}` must be 1-{MAX_QUEUE_NAME} characters of letters, digits, - _ . :",
            name.escape_debug()
        ))
    }
}
/// Attempts allowed when none is given (as River).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;

/// A job as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Store-assigned id.
    pub id: JobId,
    /// Queue name.
    pub queue: String,
    /// Handler kind.
    pub kind: String,
    /// JSON payload.
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: Priority,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far (the running attempt included).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Earliest time of the next run.
    pub run_at: Millis,
    /// When the job was enqueued.
    pub created_at: Millis,
    /// When the job reached a final state.
    pub finished_at: Option<Millis>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Unique key, if any.
    pub unique_key: Option<String>,
    /// Current lease epoch (fencing token of the latest claim or revocation).
    pub lease_token: LeaseToken,
    /// Holder of the current lease, while running.
    pub lease_owner: Option<WorkerId>,
    /// Node of the current lease holder, while running.
    pub lease_node: Option<NodeId>,
    /// When the current lease expires, while running.
    pub lease_expires_at: Option<Millis>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Output of the successful attempt.
    pub output: Option<serde_json::Value>,
    /// Parents this job waits on.
    pub depends_on: Vec<JobId>,
    /// What happens if a parent is dead-lettered.
    pub on_parent_failure: ParentFailurePolicy,
    /// The last progress reported by a running attempt (kept after it ends).
    #[serde(default)]
    pub progress: Option<Progress>,
    /// Times a handler snoozed the job (a snooze does not count as an attempt).
    #[serde(default)]
    pub snoozes: u32,
}

/// A job handed to a worker together with its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedJob {
    /// The job as claimed (state running, attempt already incremented).
    pub job: Job,
    /// The lease under which it may be finished.
    pub lease: Lease,
}

/// The right to finish one attempt of one job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// Fencing token: must match the job's current lease epoch.
    pub token: LeaseToken,
    /// Worker holding the lease.
    pub worker: WorkerId,
    /// Node of that worker.
    pub node: NodeId,
    /// The attempt number this lease runs.
    pub attempt: u32,
    /// When the lease lapses unless extended.
    pub expires_at: Millis,
}

/// Which jobs a claim may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Queues to claim from.
    pub queues: Vec<String>,
    /// Claiming worker (or dispatcher) identity recorded in the lease.
    pub worker: WorkerId,
    /// Claiming node.
    pub node: NodeId,
    /// At most this many jobs (free worker slots).
    pub limit: u32,
    /// Lease length for each claimed job.
    pub lease_for: Duration,
    /// The claim's notion of now.
    pub now: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = Millis(1_700_000_000_000);

    #[test]
    fn times_and_timeouts_beyond_ten_years_are_refused_by_field() {
        let mut job = NewJob::new("noop", serde_json::json!({}));
        job.run_at = Some(NOW.plus(MAX_DELAY));
        job.timeout = Some(MAX_TIMEOUT);
        assert_eq!(job.check_bounds(NOW), Ok(()));
        job.run_at = Some(NOW.plus(MAX_DELAY + Duration::from_millis(1)));
        assert!(job.check_bounds(NOW).unwrap_err().starts_with("run_at "));
        job.run_at = Some(Millis(-1));
        assert!(job.check_bounds(NOW).unwrap_err().starts_with("run_at "));
        job.run_at = None;
        job.timeout = Some(Duration::from_secs(u64::MAX));
        assert!(job.check_bounds(NOW).unwrap_err().starts_with("timeout "));
    }
}
