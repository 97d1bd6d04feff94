//! Completions: a batch of finished attempts applied by `jm_complete` in one round trip.

use std::collections::HashSet;

use super::{PostgresStore, attempt_col};
use crate::job::{Completion, CompletionResult, JobId, LeaseToken, Outcome};
use crate::store::StoreError;
use crate::store::rules::{completion_results, first_per_lease};

/// How a completion is passed to `jm_complete`.
fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "retry",
        Outcome::Discard { .. } => "discard",
        Outcome::Cancelled { .. } => "cancelled",
    }
}

impl PostgresStore {
    /// See [`crate::store::JobQueue::complete`].
    pub(super) async fn apply_completions(
        &self,
        mut batch: Vec<Completion>,
    ) -> Result<Vec<CompletionResult>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        crate::store::storable_completions(&mut batch);
        let sent = first_per_lease(&batch);
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT * FROM jm_complete($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(sent.iter().map(|c| c.lease.job.0).collect::<Vec<_>>())
        .bind(sent.iter().map(|c| c.lease.token.0).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| attempt_col(c.lease.attempt))
                .collect::<Vec<_>>(),
        )
        .bind(
            sent.iter()
                .map(|c| c.lease.worker.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            sent.iter()
                .map(|c| c.lease.node.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(sent.iter().map(|c| c.started_at.0).collect::<Vec<_>>())
        .bind(sent.iter().map(|c| c.finished_at.0).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| outcome_name(&c.outcome))
                .collect::<Vec<_>>(),
        )
        .bind(sent.iter().map(|c| c.outcome.error()).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| match c.outcome {
                    Outcome::Retry { run_at, .. } => Some(run_at.0),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )
        .bind(
            sent.iter()
                .map(|c| match &c.outcome {
                    Outcome::Succeeded { output } => output.as_ref(),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )
        .fetch_all(&self.pool)
        .await?;
        let applied: HashSet<(JobId, LeaseToken)> = applied
            .into_iter()
            .filter_map(|ord| usize::try_from(ord - 1).ok().and_then(|i| sent.get(i)))
            .map(|c| (c.lease.job, c.lease.token))
            .collect();
        Ok(completion_results(&batch, &applied))
    }
}
