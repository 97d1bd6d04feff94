//! Leader leases ([`Leadership`]): one row per role, taken over only once it lapsed.

use std::time::Duration;

use async_trait::async_trait;

use super::SqliteStore;
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::{Leadership, StoreError};

#[async_trait]
impl Leadership for SqliteStore {
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: Duration,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let led: Option<String> = sqlx::query_scalar(
            "INSERT INTO leader_leases (role, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < ?4
             RETURNING holder",
        )
        .bind(role)
        .bind(&holder.0)
        .bind(now.plus(ttl).0)
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(led.is_some())
    }
}
