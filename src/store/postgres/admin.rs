//! What operators do: read jobs and counts, cancel, work the dead-letter queue.

use async_trait::async_trait;
use sqlx::Row;

use super::rows::{self, job_columns};
use super::{PostgresStore, audit, cascade_discard, events, wake};
use crate::clock::Millis;
use crate::job::{Job, JobId};
use crate::store::audit::{AuditContext, cancel_audit, redrive_audit};
use crate::store::rules;
use crate::store::{
    CancelOutcome, Counts, DeadLetter, JobAdmin, JobFilter, Redrive, StoreError, retention,
};

/// Adds the appended count deltas to the totals in one statement: a delta is either
/// still appended or added, never both, whoever else folds at the same time.
const FOLD_COUNTS: &str = "
    WITH folded AS (DELETE FROM job_count_deltas RETURNING queue, state, n)
    INSERT INTO job_counts (queue, state, n)
    SELECT queue, state, sum(n)::bigint FROM folded GROUP BY queue, state
    ON CONFLICT (queue, state) DO UPDATE SET n = job_counts.n + excluded.n";

#[async_trait]
impl JobAdmin for PostgresStore {
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        // One job: a row that cannot be decoded is this call's error, not left out.
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut jobs = [rows::job_named(&row)?];
        self.fill_parents(jobs.iter_mut().collect()).await?;
        let [job] = jobs;
        Ok(Some(job))
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        // See `listing.rs`: a payload match is probed before the index is asked.
        self.list_page(filter).await
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        // job_counts plus the deltas appended since (migration 0021): folded first, so the
        // deltas stay as few as the statements since the last read.
        // Totals that reached zero stay as rows (pruning them here could deadlock with
        // another reader's fold); the read leaves them out.
        sqlx::query(FOLD_COUNTS).execute(&self.pool).await?;
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT queue, state, n FROM job_counts WHERE n > 0")
                .fetch_all(&self.pool)
                .await?;
        Ok(crate::store::columns::counts(rows))
    }

    async fn cancel(
        &self,
        ctx: &AuditContext,
        id: JobId,
        now: Millis,
    ) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state else {
            let (action, target, outcome) = cancel_audit(id, None);
            audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
            tx.commit().await?;
            return Err(StoreError::NotFound(id));
        };
        let state = rows::state(&state)?;
        if state.is_final() {
            let done = CancelOutcome::AlreadyFinished(state);
            let (action, target, outcome) = cancel_audit(id, Some((done, state)));
            audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
            tx.commit().await?;
            return Ok(done);
        }
        let attempt: i32 = sqlx::query_scalar(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, lease_expires_at = NULL,
                 lease_token = lease_token + 1, last_error = coalesce(last_error, 'cancelled')
             WHERE id = $2 RETURNING attempt",
        )
        .bind(now.0)
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
        let ev = rules::cancelled(id, attempt.max(0) as u32, state, now);
        events(&mut tx, &[ev]).await?;
        cascade_discard(&mut tx, &[id.0], now).await?;
        let (action, target, outcome) = cancel_audit(id, Some((CancelOutcome::Cancelled, state)));
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Cancelled)
    }

    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT dlq_reason, dlq_at, ",
            job_columns!(),
            " FROM jobs JOIN (SELECT job AS dlq_job, queue AS dlq_queue, reason AS dlq_reason, discarded_at AS dlq_at
                              FROM dead_letter_queue) d ON id = dlq_job
              WHERE ($1::text IS NULL OR dlq_queue = $1) ORDER BY dlq_at, dlq_job LIMIT $2"
        ))
        .bind(queue)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let dead = rows.iter().map(|r| {
            Ok(DeadLetter {
                job: rows::job_named(r)?,
                reason: r
                    .try_get("dlq_reason")
                    .map_err(|e| StoreError::Corrupt(format!("dead_letter_queue.reason: {e}")))?,
                discarded_at: Millis(r.try_get("dlq_at").map_err(|e| {
                    StoreError::Corrupt(format!("dead_letter_queue.discarded_at: {e}"))
                })?),
            })
        });
        let mut dead = crate::store::skip_undecodable("dead letters", dead);
        self.fill_parents(dead.iter_mut().map(|d| &mut d.job).collect())
            .await?;
        Ok(dead)
    }

    async fn redrive(
        &self,
        ctx: &AuditContext,
        which: Redrive,
        now: Millis,
    ) -> Result<Vec<JobId>, StoreError> {
        let asked = which.clone();
        let (ids, queue, all, group) = match which {
            Redrive::Ids(ids) => (
                ids.iter().map(|i| i.0).collect::<Vec<_>>(),
                None,
                false,
                None,
            ),
            Redrive::Queue(q) => (Vec::new(), Some(q), false, None),
            Redrive::All => (Vec::new(), None, true, None),
            Redrive::Group { queue, reason } => (Vec::new(), None, false, Some((queue, reason))),
        };
        let (group_queue, group_reason) = group.unzip();
        let mut tx = self.pool.begin().await?;
        let redriven: Vec<(i64, String, String)> = sqlx::query_as(
            "UPDATE jobs SET state = CASE WHEN pending_parents > 0 THEN 'waiting' ELSE 'available' END,
                 attempt = 0, run_at = $1, finished_at = NULL, lease_token = lease_token + 1
             WHERE state = 'discarded' AND id IN (
                 SELECT job FROM dead_letter_queue
                 WHERE $4 OR job = ANY ($2) OR queue = $3::text
                    OR (queue = $5::text AND reason_shape = $6::text))
             RETURNING id, queue, state",
        )
        .bind(now.0)
        .bind(&ids)
        .bind(queue)
        .bind(all)
        .bind(group_queue)
        .bind(group_reason)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids: Vec<i64> = redriven.iter().map(|(id, _, _)| *id).collect();
        ids.sort_unstable();
        sqlx::query("DELETE FROM dead_letter_queue WHERE job = ANY ($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let evs: Vec<_> = ids
            .iter()
            .map(|&id| rules::redriven(JobId(id), now))
            .collect();
        events(&mut tx, &evs).await?;
        let queues = redriven
            .into_iter()
            .filter(|(_, _, s)| s == "available")
            .map(|(_, q, _)| q)
            .collect();
        wake(&mut tx, queues).await?;
        let ids: Vec<JobId> = ids.into_iter().map(JobId).collect();
        let (action, target, outcome) = redrive_audit(&asked, &ids);
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn purge(
        &self,
        retention: &retention::Retention,
        now: Millis,
    ) -> Result<retention::Purged, StoreError> {
        self.purge_expired(retention, now).await
    }
}

impl PostgresStore {
    /// Sets the `depends_on` of `jobs` (from listings, or inside dead letters).
    pub(super) async fn fill_parents(&self, mut jobs: Vec<&mut Job>) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id.0).collect();
        let links: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT child, parent FROM job_dependencies WHERE child = ANY ($1) ORDER BY child, parent",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        crate::store::columns::attach_parents(&mut jobs, links);
        Ok(())
    }
}
