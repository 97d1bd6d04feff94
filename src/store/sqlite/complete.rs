//! Finished attempts ([`JobQueue::complete`]): successes applied in bulk (with the
//! release of waiting children), failures, snoozes and cancellations one by one (with
//! the dead-letter queue and the parent-failure cascade).
//!
//! [`JobQueue::complete`]: crate::store::JobQueue::complete

use std::collections::HashSet;

use sqlx::AssertSqlSafe;

use super::counts::move_counts;
use super::discard::{cascade_discard, dead_letter};
use super::events::events;
use super::rows::{SuccessRow, to_json};
use super::{MAX_VALUES_ROWS, SqliteStore, Tx, padded, placeholders};
use crate::clock::Millis;
use crate::event::LifecycleEvent;
use crate::job::{Completion, CompletionResult, JobId, LeaseToken, Outcome};
use crate::store::StoreError;
use crate::store::rules::{completion_results, first_per_lease};

async fn execution(tx: &mut Tx, c: &Completion, outcome: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(c.lease.job.0)
    .bind(c.lease.attempt as i64)
    .bind(&c.lease.worker.0)
    .bind(&c.lease.node.0)
    .bind(c.started_at.0)
    .bind(c.finished_at.0)
    .bind(outcome)
    .bind(c.outcome.error())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Releases waiting children of newly succeeded `parents` whose parents have all succeeded
/// (the caller checked that some of them have children).
async fn release_children(tx: &mut Tx, parents: &[i64], now: Millis) -> Result<(), StoreError> {
    let parents = to_json(&parents);
    sqlx::query(
        "UPDATE jobs SET pending_parents = pending_parents - (
             SELECT count(*) FROM job_dependencies d
             WHERE d.child = jobs.id AND d.parent IN (SELECT value FROM json_each(?1)))
         WHERE state = 'waiting'
           AND id IN (SELECT child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1)))",
    )
    .bind(&parents)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET state = CASE WHEN run_at > ?2 THEN 'scheduled' ELSE 'available' END
         WHERE state = 'waiting' AND pending_parents <= 0
           AND id IN (SELECT child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1)))",
    )
    .bind(&parents)
    .bind(now.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// See [`crate::store::JobQueue::complete`].
    pub(super) async fn apply_completions(
        &self,
        mut batch: Vec<Completion>,
    ) -> Result<Vec<CompletionResult>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        crate::store::storable_completions(&mut batch);
        let now = batch
            .iter()
            .map(|c| c.finished_at)
            .max()
            .unwrap_or_default();
        let mut tx = self.begin().await?;
        let sent = first_per_lease(&batch);
        let successes: Vec<&Completion> = sent
            .iter()
            .copied()
            .filter(|c| matches!(c.outcome, Outcome::Succeeded { .. }))
            .collect();
        let mut applied: HashSet<(JobId, LeaseToken)> =
            Self::apply_successes(&mut tx, &successes, now)
                .await?
                .into_iter()
                .map(|(id, token)| (JobId(id), LeaseToken(token)))
                .collect();
        for c in sent {
            if !matches!(c.outcome, Outcome::Succeeded { .. })
                && Self::apply_failure(&mut tx, c).await?
            {
                applied.insert((c.lease.job, c.lease.token));
            }
        }
        let results = completion_results(&batch, &applied);
        tx.commit().await?;
        Ok(results)
    }

    /// Applies successes in one statement; returns the ids applied.
    async fn apply_successes(
        tx: &mut Tx,
        batch: &[&Completion],
        now: Millis,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // The caller passes one entry per (job, token) (`rules::first_per_lease`): a
        // duplicate would record the execution twice.
        let rows: Vec<SuccessRow> = batch
            .iter()
            .map(|c| SuccessRow {
                id: c.lease.job.0,
                tok: c.lease.token.0,
                a: c.lease.attempt,
                w: &c.lease.worker.0,
                n: &c.lease.node.0,
                s: c.started_at.0,
                f: c.finished_at.0,
                o: match &c.outcome {
                    Outcome::Succeeded { output } => output.as_ref(),
                    _ => None,
                },
            })
            .collect();
        // The lease token is unchanged by this update, so (id, token) names the applied entry.
        let mut applied: Vec<(i64, i64)> = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_VALUES_ROWS) {
            let n = padded(chunk.len());
            let sql = format!(
                "UPDATE jobs SET state = 'succeeded', finished_at = c.column3, output = c.column4,
                     lease_expires_at = NULL
                 FROM (VALUES {}) AS c
                 WHERE jobs.id = c.column1 AND jobs.lease_token = c.column2 AND jobs.state = 'running'
                 RETURNING jobs.id, jobs.lease_token",
                placeholders(n, 4)
            );
            let mut q = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.id)
                    .bind(r.tok)
                    .bind(r.f)
                    .bind(r.o.map(|o| o.to_string()));
            }
            for _ in chunk.len()..n {
                q = q
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<String>);
            }
            applied.extend(q.fetch_all(&mut **tx).await?);
        }
        if applied.is_empty() {
            return Ok(applied);
        }
        let ids: Vec<i64> = applied.iter().map(|(id, _)| *id).collect();
        let done: HashSet<(i64, i64)> = applied.iter().copied().collect();
        let rows: Vec<&SuccessRow> = rows
            .iter()
            .filter(|r| done.contains(&(r.id, r.tok)))
            .collect();
        // Both records and the check for waiting children go in one command (a round
        // trip to SQLite's thread each saved); positional parameters run on from one
        // statement to the next.
        let mut has_children = false;
        for chunk in rows.chunks(MAX_VALUES_ROWS) {
            let n = padded(chunk.len());
            let sql = format!(
                "INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome)
                 SELECT column1, column2, column3, column4, column5, column6, 'succeeded'
                 FROM (VALUES {rows}) WHERE column1 IS NOT NULL;
                 INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
                 SELECT column6, 'job.succeeded', column1, column2, column3, column4
                 FROM (VALUES {rows}) WHERE column1 IS NOT NULL;
                 {counts}
                 SELECT EXISTS (SELECT 1 FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?)))",
                rows = placeholders(n, 6),
                counts = move_counts!("running", "succeeded"),
            );
            let mut q = sqlx::query_scalar::<_, bool>(AssertSqlSafe(sql));
            // The same rows twice: once per insert.
            for _ in 0..2 {
                for r in chunk {
                    q = q
                        .bind(r.id)
                        .bind(r.a as i64)
                        .bind(r.w)
                        .bind(r.n)
                        .bind(r.s)
                        .bind(r.f);
                }
                for _ in chunk.len()..n {
                    q = q
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(None::<&str>)
                        .bind(None::<i64>)
                        .bind(None::<i64>);
                }
            }
            let chunk_ids = to_json(&chunk.iter().map(|r| r.id).collect::<Vec<i64>>());
            q = q.bind(&chunk_ids).bind(&chunk_ids).bind(&chunk_ids);
            has_children |= q.fetch_one(&mut **tx).await?;
        }
        if has_children {
            release_children(tx, &ids, now).await?;
        }
        Ok(applied)
    }

    /// Applies one failed, snoozed or cancelled attempt; returns whether its lease was
    /// current.
    pub(super) async fn apply_failure(tx: &mut Tx, c: &Completion) -> Result<bool, StoreError> {
        let job = c.lease.job;
        let at = c.finished_at;
        let (applied, outcome) = match &c.outcome {
            Outcome::Succeeded { .. } => unreachable!("successes are applied in bulk"),
            // The attempt is given back (the next run has its number) and counted as a
            // snooze instead.
            Outcome::Snoozed { run_at } => {
                let n = sqlx::query(
                    "UPDATE jobs SET state = 'scheduled', run_at = ?1, attempt = attempt - 1,
                         snoozes = snoozes + 1, lease_expires_at = NULL
                     WHERE id = ?2 AND lease_token = ?3 AND state = 'running'",
                )
                .bind(run_at.0)
                .bind(job.0)
                .bind(c.lease.token.0)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                (n == 1, "snoozed")
            }
            Outcome::Retry { error, run_at } => {
                let n = sqlx::query(
                    "UPDATE jobs SET state = 'retryable', run_at = ?1, last_error = ?2, lease_expires_at = NULL
                     WHERE id = ?3 AND lease_token = ?4 AND state = 'running'",
                )
                .bind(run_at.0)
                .bind(error)
                .bind(job.0)
                .bind(c.lease.token.0)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                (n == 1, "failed")
            }
            Outcome::Discard { error } | Outcome::Cancelled { reason: error } => {
                let cancelled = matches!(c.outcome, Outcome::Cancelled { .. });
                let n = sqlx::query(
                    "UPDATE jobs SET state = ?1, finished_at = ?2, last_error = ?3, lease_expires_at = NULL
                     WHERE id = ?4 AND lease_token = ?5 AND state = 'running'",
                )
                .bind(if cancelled { "cancelled" } else { "discarded" })
                .bind(at.0)
                .bind(error)
                .bind(job.0)
                .bind(c.lease.token.0)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if n == 1 && !cancelled {
                    dead_letter(tx, &[job.0], at).await?;
                }
                if n == 1 {
                    cascade_discard(tx, vec![job.0], at).await?;
                }
                (n == 1, if cancelled { "cancelled" } else { "discarded" })
            }
        };
        if applied {
            execution(tx, c, outcome).await?;
            events(tx, &LifecycleEvent::of_completion(c)).await?;
        }
        Ok(applied)
    }
}
