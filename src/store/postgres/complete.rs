//! Completions: a batch of finished attempts applied by `jm_complete` in one round trip,
//! and the snoozes among them by one statement of their own (a second round trip only
//! for a batch that holds some).

use std::collections::HashSet;

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;

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
        Outcome::Snoozed { .. } => unreachable!("snoozes are applied by SNOOZE"),
    }
}

/// Applies snoozes: the job is scheduled for `run_at`, the attempt given back, the
/// snooze counted, with an execution row (`snoozed`) and a `job.snoozed` event (the
/// detail [`crate::event::LifecycleEvent::of_completion`] builds), each only under its
/// current lease. Per entry: `$1` job, `$2` token, `$3` attempt, `$4` worker, `$5` node,
/// `$6` started, `$7` finished, `$8` run_at.
const SNOOZE: &str = "
    WITH upd AS (
        UPDATE jobs j SET state = 'scheduled', run_at = c.run_at, attempt = j.attempt - 1,
            snoozes = j.snoozes + 1, lease_expires_at = NULL
        FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[], $5::text[],
                    $6::bigint[], $7::bigint[], $8::bigint[])
             WITH ORDINALITY AS c(job, token, attempt, worker, node, started, finished, run_at, ord)
        WHERE j.id = c.job AND j.lease_token = c.token AND j.state = 'running'
        RETURNING c.job, c.token, c.attempt, c.worker, c.node, c.started, c.finished, c.run_at, c.ord
    ), exe AS (
        INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome)
        SELECT job, attempt, worker, node, started, finished, 'snoozed' FROM upd ORDER BY ord
    ), ev AS (
        INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node, detail)
        SELECT finished, 'job.snoozed', job, attempt, worker, node,
               jsonb_build_object('run_at', run_at)
        FROM upd ORDER BY ord
    )
    SELECT job, token FROM upd";

/// Binds the arrays every completion statement starts with, one entry per completion:
/// `$1` job, `$2` token, `$3` attempt, `$4` worker, `$5` node, `$6` started,
/// `$7` finished.
fn bind_leases<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    sent: &[&'q Completion],
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
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
        let (snoozes, sent): (Vec<&Completion>, Vec<&Completion>) = first_per_lease(&batch)
            .into_iter()
            .partition(|c| matches!(c.outcome, Outcome::Snoozed { .. }));
        let mut applied = self.apply_snoozes(&snoozes).await?;
        applied.extend(self.apply_finished(&sent).await?);
        Ok(completion_results(&batch, &applied))
    }

    /// Applies snoozes ([`SNOOZE`]); returns the leases applied.
    async fn apply_snoozes(
        &self,
        sent: &[&Completion],
    ) -> Result<HashSet<(JobId, LeaseToken)>, StoreError> {
        if sent.is_empty() {
            return Ok(HashSet::new());
        }
        let applied: Vec<(i64, i64)> = bind_leases(sqlx::query_as(SNOOZE), sent)
            .bind(
                sent.iter()
                    .map(|c| match c.outcome {
                        Outcome::Snoozed { run_at } => run_at.0,
                        _ => unreachable!("only snoozes are passed"),
                    })
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await?;
        Ok(applied
            .into_iter()
            .map(|(id, tok)| (JobId(id), LeaseToken(tok)))
            .collect())
    }

    /// Applies every other outcome with `jm_complete`; returns the leases applied.
    async fn apply_finished(
        &self,
        sent: &[&Completion],
    ) -> Result<HashSet<(JobId, LeaseToken)>, StoreError> {
        if sent.is_empty() {
            return Ok(HashSet::new());
        }
        let applied: Vec<(i64,)> = bind_leases(
            sqlx::query_as(
                "SELECT * FROM jm_complete($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            ),
            sent,
        )
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
        Ok(applied
            .into_iter()
            .filter_map(|(ord,)| usize::try_from(ord - 1).ok().and_then(|i| sent.get(i)))
            .map(|c| (c.lease.job, c.lease.token))
            .collect())
    }
}
