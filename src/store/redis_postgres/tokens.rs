//! [`ApiTokens`] in the production store: Postgres alone. Tokens and answers are part
//! of the record and are read on every API request, where a Redis copy would be one
//! more thing a revoke has to reach before it counts.

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::tokens::{
    ApiToken, ApiTokens, NewApiToken, Reservation, StoredAnswer, TokenHash, TokenId,
};

#[async_trait]
impl ApiTokens for RedisPostgresStore {
    async fn create_token(
        &self,
        ctx: &AuditContext,
        token: &NewApiToken,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<TokenId, StoreError> {
        self.postgres().create_token(ctx, token, hash, now).await
    }

    async fn token(&self, id: TokenId) -> Result<Option<(ApiToken, TokenHash)>, StoreError> {
        self.postgres().token(id).await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.postgres().list_tokens().await
    }

    async fn revoke_token(
        &self,
        ctx: &AuditContext,
        id: TokenId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.postgres().revoke_token(ctx, id, now).await
    }

    async fn touch_token(&self, id: TokenId, now: Millis) -> Result<(), StoreError> {
        self.postgres().touch_token(id, now).await
    }

    async fn has_live_tokens(&self) -> Result<bool, StoreError> {
        self.postgres().has_live_tokens().await
    }

    async fn reserve_answer(
        &self,
        token: TokenId,
        key: &str,
        fingerprint: &str,
        now: Millis,
        stale_before: Millis,
    ) -> Result<Reservation, StoreError> {
        self.postgres()
            .reserve_answer(token, key, fingerprint, now, stale_before)
            .await
    }

    async fn record_answer(
        &self,
        token: TokenId,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        self.postgres().record_answer(token, key, answer).await
    }

    async fn forget_answer(&self, token: TokenId, key: &str) -> Result<(), StoreError> {
        self.postgres().forget_answer(token, key).await
    }

    async fn purge_answers(&self, before: Millis) -> Result<u64, StoreError> {
        self.postgres().purge_answers(before).await
    }
}
