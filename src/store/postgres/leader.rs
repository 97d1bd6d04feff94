//! Leadership: one holder per role at a time, by a lease with an expiry.

use async_trait::async_trait;

use super::PostgresStore;
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::{Leadership, StoreError};

#[async_trait]
impl Leadership for PostgresStore {
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: std::time::Duration,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let led: Option<String> = sqlx::query_scalar(
            "INSERT INTO leader_leases (role, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < $4
             RETURNING holder",
        )
        .bind(role)
        .bind(&holder.0)
        .bind(now.plus(ttl).0)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(led.is_some())
    }
}
