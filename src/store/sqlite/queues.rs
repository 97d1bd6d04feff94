//! Pausing and resuming queues ([`QueueControl`]): a row in `paused_queues`, which the
//! claim statement (`claim.rs`) reads. SQLite is one process with no wake-up signal, so
//! a resume is seen by claimers at their next poll.

use async_trait::async_trait;

use super::events::events;
use super::{SqliteStore, audit};
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::queues::{PausedQueue, QueueControl, check_queue, queue_audit, queue_event};

#[async_trait]
impl QueueControl for SqliteStore {
    async fn pause_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        check_queue(queue)?;
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "INSERT INTO paused_queues (queue, paused_at) VALUES (?1, ?2)
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
        let mut tx = self.begin().await?;
        let changed = sqlx::query("DELETE FROM paused_queues WHERE queue = ?1")
            .bind(queue)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if changed {
            events(&mut tx, &[queue_event(queue, false, now)]).await?;
        }
        let (action, target, outcome) = queue_audit(queue, false, changed);
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn paused_queues(&self) -> Result<Vec<PausedQueue>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT queue, paused_at FROM paused_queues ORDER BY queue")
                .fetch_all(&self.read)
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
