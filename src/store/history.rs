//! What the record says about one job: its finished attempts (`job_executions`) and its
//! lifecycle events, for `GET /api/v1/jobs/{id}` and anyone else who wants a job's story.
//!
//! Both are read from rows every transition already writes (an execution row and the
//! events in the transaction of each finished attempt), so this capability adds no write
//! to any hot path. Reads are bounded by the caller's limit and served by the
//! `job_executions_job` and `lifecycle_events_job` indexes.

use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::clock::Millis;
use crate::event::StoredEvent;
use crate::job::{JobId, NodeId, WorkerId};

/// Most attempts or events one call returns (a caller asking for more gets this many):
/// a guard of the store, above what any view shows.
pub const MAX_HISTORY: u32 = 10_000;

/// How a finished attempt ended, as `job_executions.outcome` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The handler succeeded.
    Succeeded,
    /// It failed and the job was scheduled to run again.
    Failed,
    /// It failed and the job went to the dead-letter queue.
    Discarded,
    /// The attempt ended with the job cancelled.
    Cancelled,
    /// The handler snoozed the job: it runs again later under the same attempt number.
    Snoozed,
}

impl AttemptOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Discarded => "discarded",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Snoozed => "snoozed",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::Discarded,
            AttemptOutcome::Cancelled,
            AttemptOutcome::Snoozed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("job_executions.outcome: unknown `{s}`")))
    }
}

/// One finished attempt of a job. An attempt whose lease was lost (rescued, revoked)
/// never finished and has no row; the job's events show it (`job.rescued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// The node that ran it.
    pub node: Option<NodeId>,
    /// The worker that ran it.
    pub worker: Option<WorkerId>,
    /// When the handler started.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Millis,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Its error, redacted as it was stored (credentials masked before any write).
    pub error: Option<String>,
}

/// One `job_executions` row as a backend read it.
pub(crate) type AttemptRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    String,
    Option<String>,
);

/// Decodes an execution row (`attempt, node, worker, started_at, finished_at, outcome,
/// error`): what both SQL backends share beyond SQL.
pub(crate) fn attempt_from_row(row: AttemptRow) -> Result<Attempt, StoreError> {
    let (attempt, node, worker, started_at, finished_at, outcome, error) = row;
    Ok(Attempt {
        attempt: u32::try_from(attempt.max(0)).unwrap_or(u32::MAX),
        node: node.map(NodeId),
        worker: worker.map(WorkerId),
        started_at: started_at.map(Millis),
        finished_at: Millis(finished_at),
        outcome: outcome.parse()?,
        error,
    })
}

/// A job's history: its attempts and its events. Every backend has it (the HTTP API's
/// job view serves on every backend), so [`super::Store`] requires it.
#[async_trait]
pub trait JobHistory: Send + Sync + 'static {
    /// The finished attempts of `job`, in the order they finished, at most `limit`
    /// (capped at [`MAX_HISTORY`]). Empty for an unknown job.
    async fn attempts(&self, job: JobId, limit: u32) -> Result<Vec<Attempt>, StoreError>;

    /// The lifecycle events of `job`, oldest first, at most `limit` (capped at
    /// [`MAX_HISTORY`]). An event whose kind this version does not know is left out
    /// with a warning, as in [`super::EventLog::events_after`].
    async fn job_events(&self, job: JobId, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_and_unknown_outcomes_are_refused() {
        let a = attempt_from_row((
            2,
            Some("n1".into()),
            Some("n1/w0".into()),
            Some(5),
            9,
            "failed".into(),
            Some("boom".into()),
        ))
        .unwrap();
        assert_eq!(a.attempt, 2);
        assert_eq!(a.outcome, AttemptOutcome::Failed);
        assert_eq!(a.finished_at, Millis(9));
        let e = attempt_from_row((1, None, None, None, 1, "exploded".into(), None)).unwrap_err();
        assert!(e.to_string().contains("exploded"), "{e}");
    }
}
