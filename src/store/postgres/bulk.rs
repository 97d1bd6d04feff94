//! Bulk actions ([`BulkActions`]): each batch is one transaction that locks its jobs
//! (`FOR UPDATE`, in id order, so two bulk actions cannot deadlock on each other),
//! lets `store::bulk` decide which of them the action changes, and applies that with
//! the events, dead-letter entries, parent-failure cascade and `NOTIFY` a single
//! operation of the same kind writes. The batches are `pub(crate)` so that
//! redis_postgres can run them and keep Redis in step after each.

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

use super::{PostgresStore, Tx, cascade_discard, events, wake};
use crate::clock::Millis;
use crate::job::{JobId, JobState};
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::bulk::{
    BULK_BATCH, Batch, BulkAction, BulkActions, BulkBatches, BulkOutcome, BulkTarget, batch_audit,
    batch_events, decode_locked, plan_batch,
};
use crate::store::filter::JobFilter;

/// A locked row: id, state, attempt.
type LockedRow = (i64, String, i32);

/// Applies `action` to `changing` (locked in `tx`), with what each change records.
/// Returns the ids changed.
async fn apply(
    tx: &mut Tx,
    action: BulkAction,
    changing: &[(i64, JobState, u32)],
    now: Millis,
) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = changing.iter().map(|c| c.0).collect();
    if ids.is_empty() {
        return Ok(ids);
    }
    // The store::bulk decision again in the statement: the rows are locked, so this
    // only guards against a mistake, never against a race.
    let states: Vec<&str> = action.state_names();
    let changed: Vec<(i64, String, String)> = match action {
        BulkAction::Cancel => {
            sqlx::query_as(
                "UPDATE jobs SET state = 'cancelled', finished_at = $1, lease_expires_at = NULL,
                     lease_token = lease_token + 1, last_error = coalesce(last_error, 'cancelled')
                 WHERE id = ANY($2) AND state = ANY($3) RETURNING id, queue, state",
            )
            .bind(now.0)
            .bind(&ids)
            .bind(&states)
            .fetch_all(&mut **tx)
            .await?
        }
        BulkAction::Retry => {
            sqlx::query_as(
                "UPDATE jobs SET state = 'available', run_at = $1
                 WHERE id = ANY($2) AND state = ANY($3) RETURNING id, queue, state",
            )
            .bind(now.0)
            .bind(&ids)
            .bind(&states)
            .fetch_all(&mut **tx)
            .await?
        }
        BulkAction::Redrive => {
            let rows = sqlx::query_as(
                "UPDATE jobs SET state = CASE WHEN pending_parents > 0 THEN 'waiting' ELSE 'available' END,
                     attempt = 0, run_at = $1, finished_at = NULL, lease_token = lease_token + 1
                 WHERE id = ANY($2) AND state = ANY($3) RETURNING id, queue, state",
            )
            .bind(now.0)
            .bind(&ids)
            .bind(&states)
            .fetch_all(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM dead_letter_queue WHERE job = ANY($1)")
                .bind(&ids)
                .execute(&mut **tx)
                .await?;
            rows
        }
        BulkAction::Delete => {
            // As retention removes a finished job: its links, executions, dead-letter
            // entry and events, then the row.
            for sql in [
                "DELETE FROM job_dependencies WHERE parent = ANY($1) OR child = ANY($1)",
                "DELETE FROM job_executions WHERE job = ANY($1)",
                "DELETE FROM dead_letter_queue WHERE job = ANY($1)",
                "DELETE FROM lifecycle_events WHERE job = ANY($1)",
            ] {
                sqlx::query(sql).bind(&ids).execute(&mut **tx).await?;
            }
            sqlx::query_as(
                "DELETE FROM jobs WHERE id = ANY($1) AND state = ANY($2) RETURNING id, queue, state",
            )
            .bind(&ids)
            .bind(&states)
            .fetch_all(&mut **tx)
            .await?
        }
    };
    let done: Vec<i64> = changed.iter().map(|c| c.0).collect();
    let applied: Vec<(i64, JobState, u32)> = changing
        .iter()
        .copied()
        .filter(|c| done.contains(&c.0))
        .collect();
    events(tx, &batch_events(action, &applied, now)).await?;
    match action {
        BulkAction::Cancel => cascade_discard(tx, &done, now).await?,
        BulkAction::Retry | BulkAction::Redrive => {
            let queues = changed
                .into_iter()
                .filter(|(_, _, s)| s == "available")
                .map(|(_, q, _)| q)
                .collect();
            wake(tx, queues).await?;
        }
        BulkAction::Delete => {}
    }
    Ok(done)
}

/// What a batch is about: the ids asked for, or the filter (with the ids it read).
struct Scope<'a> {
    /// The ids asked for (by ids), or read (by filter).
    asked: &'a [i64],
    /// The filter, for an action by filter.
    filter: Option<&'a JobFilter>,
    /// Whether to write the audit row even when the batch read nothing (the first
    /// batch of an action by filter, so an action that matched nothing is recorded).
    always_audit: bool,
}

/// Decides and applies one batch of locked rows, writes its audit row, and commits.
async fn finish(
    mut tx: Tx,
    ctx: &AuditContext,
    action: BulkAction,
    scope: Scope<'_>,
    rows: Vec<LockedRow>,
    now: Millis,
) -> Result<Batch, StoreError> {
    let last = rows.last().map(|r| r.0);
    let rows = decode_locked(rows.into_iter().map(|(id, s, a)| (id, s, i64::from(a))));
    let (changing, mut outcome) = plan_batch(action, scope.asked.len(), &rows);
    let done = apply(&mut tx, action, &changing, now).await?;
    outcome.changed = done.len() as u64;
    if last.is_some() || scope.always_audit {
        let (a, target, result) = batch_audit(action, scope.filter, scope.asked, &outcome);
        super::audit::write(&mut tx, ctx, a, &target, &result, now).await?;
    }
    tx.commit().await?;
    Ok(Batch {
        outcome,
        changed: done.into_iter().map(JobId).collect(),
        last,
    })
}

#[async_trait]
impl BulkBatches for PostgresStore {
    async fn highest_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM jobs")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn apply_ids(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        ids: &[i64],
        now: Millis,
    ) -> Result<Batch, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<LockedRow> = sqlx::query_as(
            "SELECT id, state, attempt FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        let scope = Scope {
            asked: ids,
            filter: None,
            always_audit: true,
        };
        finish(tx, ctx, action, scope, rows, now).await
    }

    async fn apply_matching(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        filter: &JobFilter,
        states: &[&'static str],
        ids: std::ops::RangeInclusive<i64>,
        now: Millis,
    ) -> Result<Batch, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut b =
            QueryBuilder::<Postgres>::new("SELECT id, state, attempt FROM jobs WHERE id >= ");
        b.push_bind(*ids.start());
        b.push(" AND id <= ");
        b.push_bind(*ids.end());
        super::filter::push_conditions(&mut b, filter, states);
        b.push(" ORDER BY id LIMIT ");
        b.push_bind(BULK_BATCH as i64);
        b.push(" FOR UPDATE");
        let rows: Vec<LockedRow> = b.build_query_as().fetch_all(&mut *tx).await?;
        let read: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let scope = Scope {
            asked: &read,
            filter: Some(filter),
            always_audit: *ids.start() <= 1,
        };
        finish(tx, ctx, action, scope, rows, now).await
    }
}

#[async_trait]
impl BulkActions for PostgresStore {
    async fn bulk(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        target: &BulkTarget,
        now: Millis,
    ) -> Result<BulkOutcome, StoreError> {
        crate::store::bulk::run(self, ctx, action, target, now).await
    }
}
