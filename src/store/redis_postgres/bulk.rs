//! Bulk actions ([`BulkActions`]) on the production store: each batch is the Postgres
//! store's batch transaction (the record), then Redis is brought in step with what it
//! committed, as a single cancel or redrive does: cancelled jobs leave the ready index
//! (tidiness only: a stale id is refused by the next claim's confirmation anyway),
//! retried and redriven jobs that are available now are pushed (a failed push marks the
//! index dirty for the reconciler). Deleted jobs were finished, so never in the index.

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::bulk::{Batch, BulkAction, BulkActions, BulkBatches, BulkOutcome, BulkTarget};
use crate::store::filter::JobFilter;

impl RedisPostgresStore {
    /// Brings Redis in step with a committed batch.
    async fn after_batch(&self, action: BulkAction, batch: &Batch, now: Millis) {
        let s = &self.shared;
        match action {
            BulkAction::Cancel if !batch.changed.is_empty() && !s.redis_is_down() => {
                if let Err(e) = s.redis.remove(&batch.changed).await {
                    tracing::debug!(error = %e, "removing cancelled jobs from Redis failed");
                }
            }
            BulkAction::Retry | BulkAction::Redrive => {
                s.push_after_commit(&batch.changed, now).await;
            }
            _ => {}
        }
    }
}

#[async_trait]
impl BulkBatches for RedisPostgresStore {
    async fn highest_id(&self) -> Result<i64, StoreError> {
        self.shared.pg.highest_id().await
    }

    async fn apply_ids(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        ids: &[i64],
        now: Millis,
    ) -> Result<Batch, StoreError> {
        let batch = self.shared.pg.apply_ids(ctx, action, ids, now).await?;
        self.after_batch(action, &batch, now).await;
        Ok(batch)
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
        let batch = self
            .shared
            .pg
            .apply_matching(ctx, action, filter, states, ids, now)
            .await?;
        self.after_batch(action, &batch, now).await;
        Ok(batch)
    }
}

#[async_trait]
impl BulkActions for RedisPostgresStore {
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
