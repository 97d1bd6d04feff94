//! Saved models ([`ModelStore`]): one `node_models` row per node, replaced at each save.

use async_trait::async_trait;

use super::PostgresStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::models::{MAX_MODEL_ROWS, ModelStore, SavedModels, check_save};

#[async_trait]
impl ModelStore for PostgresStore {
    async fn save_models(&self, node: &str, body: &[u8], now: Millis) -> Result<(), StoreError> {
        check_save(node, body)?;
        sqlx::query(
            "INSERT INTO node_models (node, saved_at, body) VALUES ($1, $2, $3)
             ON CONFLICT (node) DO UPDATE SET saved_at = excluded.saved_at, body = excluded.body",
        )
        .bind(node)
        .bind(now.0)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_models(&self) -> Result<Vec<SavedModels>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT node, saved_at, body FROM node_models ORDER BY saved_at DESC, node LIMIT $1",
        )
        .bind(i64::from(MAX_MODEL_ROWS))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(node, saved_at, body)| SavedModels {
                node,
                saved_at: Millis(saved_at),
                body,
            })
            .collect())
    }
}
