//! Limits on the production store: Postgres holds and enforces them (`store/postgres/limits.rs`);
//! `claim.rs` sends claims of limited queues there instead of through Redis, whose
//! take knows nothing of running counts or buckets.

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::limits::{Limit, LimitUsage};
use crate::store::{JobLimits, StoreError};

#[async_trait]
impl JobLimits for RedisPostgresStore {
    async fn set_limits(&self, limits: &[Limit], now: Millis) -> Result<(), StoreError> {
        self.shared.pg.set_limits(limits, now).await
    }

    async fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        self.shared.pg.limits().await
    }

    async fn limit_usage(&self) -> Result<Vec<LimitUsage>, StoreError> {
        self.shared.pg.limit_usage().await
    }
}
