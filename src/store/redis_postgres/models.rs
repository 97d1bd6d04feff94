//! [`ModelStore`] in the production store: Postgres alone. Models are saved once a
//! minute per node and read when a node starts or someone shows predictions: nothing
//! for dispatch to hold in Redis.

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::models::{ModelStore, SavedModels};

#[async_trait]
impl ModelStore for RedisPostgresStore {
    async fn save_models(&self, node: &str, body: &[u8], now: Millis) -> Result<(), StoreError> {
        self.postgres().save_models(node, body, now).await
    }

    async fn load_models(&self) -> Result<Vec<SavedModels>, StoreError> {
        self.postgres().load_models().await
    }
}
