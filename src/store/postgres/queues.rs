//! Pausing and resuming queues ([`QueueControl`]): a row in `paused_queues`, which every
//! claim statement (`claim.rs`) reads, so each node honours a pause at its next claim.
//! A resume sends the queue's `NOTIFY` in its transaction, so waiting claimers start at
//! once instead of at their next poll.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::{PostgresStore, audit, events, wake};
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::queues::{PausedQueue, QueueControl, check_queue, queue_audit, queue_event};

#[async_trait]
impl QueueControl for PostgresStore {
    async fn pause_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        check_queue(queue)?;
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "INSERT INTO paused_queues (queue, paused_at) VALUES ($1, $2)
             ON CONFLICT (queue) DO NOTHING",
        )
        .bind(queue)
        .bind(now.0)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            events(&mut tx, &[queue_event(queue, true, now)]).await?;
        }
        let (action, target, outcome) = queue_audit(queue, true, changed);
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn resume_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        check_queue(queue)?;
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query("DELETE FROM paused_queues WHERE queue = $1")
            .bind(queue)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if changed {
            events(&mut tx, &[queue_event(queue, false, now)]).await?;
            wake(&mut tx, BTreeSet::from([queue.to_owned()])).await?;
        }
        let (action, target, outcome) = queue_audit(queue, false, changed);
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn paused_queues(&self) -> Result<Vec<PausedQueue>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT queue, paused_at FROM paused_queues ORDER BY queue")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(queue, at)| PausedQueue {
                queue,
                paused_at: Millis(at),
            })
            .collect())
    }
}
