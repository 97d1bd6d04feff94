//! Leadership: one holder per role at a time, by a lease with an expiry.

use async_trait::async_trait;

use super::PostgresStore;
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::capability::check_post;
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

    async fn post(&self, key: &str, body: &[u8], at: Millis) -> Result<(), StoreError> {
        check_post(key, body)?;
        sqlx::query(
            "INSERT INTO leader_posts (key, posted_at, body) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET posted_at = excluded.posted_at, body = excluded.body",
        )
        .bind(key)
        .bind(at.0)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn posted(&self, key: &str) -> Result<Option<(Millis, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT posted_at, body FROM leader_posts WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(at, body)| (Millis(at), body)))
    }
}
