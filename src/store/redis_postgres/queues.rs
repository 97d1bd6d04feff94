//! Pausing and resuming queues ([`QueueControl`]) on the production store.
//!
//! Postgres owns the pause (the Postgres store's `paused_queues` row and event, in one
//! transaction), and its claim statements refuse a paused queue's jobs, so the pause
//! holds even when Redis is down or stale. Redis keeps a mirror of the set that the
//! `take` script reads, so claims skip a paused queue's ready set inside the one Lua call
//! they make anyway: the hot path gains one `SISMEMBER` per requested queue and no round
//! trip. (Refusing in the Postgres confirm alone would take a paused queue's jobs out
//! of Redis at every claim, only to have them refused and put back.)
//!
//! The mirror is written after each commit and replaced whole by every reconcile
//! (`reconciler.rs`), so a failed write is repaired like a failed push: the index is
//! marked dirty. A claim that took a job between the pause's commit and its mirror write
//! has it refused by Postgres and dropped from Redis; a resume therefore marks the index
//! dirty, so the reconciler puts back any such job, and wakes the queue's claimers.

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::queues::{PausedQueue, QueueControl};

#[async_trait]
impl QueueControl for RedisPostgresStore {
    async fn pause_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let changed = s.pg.pause_queue(ctx, queue, now).await?;
        // Mirrored even when nothing changed: a repeated pause also repairs the copy.
        if let Err(e) = s.redis.pause(queue).await {
            tracing::warn!(error = %e, queue, "mirroring a pause in Redis failed; the reconciler will");
            s.redis_failed(&e);
            s.mark_dirty();
        }
        Ok(changed)
    }

    async fn resume_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let changed = s.pg.resume_queue(ctx, queue, now).await?;
        if let Err(e) = s.redis.resume(queue).await {
            tracing::warn!(error = %e, queue, "mirroring a resume in Redis failed; the reconciler will");
            s.redis_failed(&e);
        }
        if changed {
            s.mark_dirty();
        }
        Ok(changed)
    }

    async fn paused_queues(&self) -> Result<Vec<PausedQueue>, StoreError> {
        self.shared.pg.paused_queues().await
    }
}
