//! Saved models ([`ModelStore`]): one `node_models` row per node, replaced at each save.

use async_trait::async_trait;

use super::SqliteStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::models::{self, MAX_MODEL_ROWS, ModelStore, SavedModels, check_save};

#[async_trait]
impl ModelStore for SqliteStore {
    async fn save_models(&self, node: &str, body: &[u8], now: Millis) -> Result<(), StoreError> {
        check_save(node, body)?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO node_models (node, saved_at, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (node) DO UPDATE SET saved_at = excluded.saved_at, body = excluded.body",
        )
        .bind(node)
        .bind(now.0)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_models(&self) -> Result<Vec<SavedModels>, StoreError> {
        let rows = sqlx::query_as(models::LOAD_MODELS)
            .bind(i64::from(MAX_MODEL_ROWS))
            .fetch_all(&self.read)
            .await?;
        Ok(models::saved_models(rows))
    }
}
