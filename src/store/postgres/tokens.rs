//! [`ApiTokens`] on Postgres: the `api_tokens` and `api_idempotency` tables.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, audit};
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::tokens::{
    ApiToken, ApiTokens, NewApiToken, Reservation, StoredAnswer, TokenHash, TokenId, create_audit,
    parse_hash, parse_queues, parse_scopes, queues_text, revoke_audit, scopes_text,
};

fn token_row(row: &PgRow) -> Result<(ApiToken, TokenHash), StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(format!("api_tokens: {e}"));
    let scopes: String = row.try_get("scopes").map_err(corrupt)?;
    let queues: String = row.try_get("queues").map_err(corrupt)?;
    let hash: Vec<u8> = row.try_get("hash").map_err(corrupt)?;
    let token = ApiToken {
        id: TokenId(row.try_get("id").map_err(corrupt)?),
        name: row.try_get("name").map_err(corrupt)?,
        scopes: parse_scopes(&scopes)?,
        queues: parse_queues(&queues),
        created_at: Millis(row.try_get("created_at").map_err(corrupt)?),
        last_used_at: row
            .try_get::<Option<i64>, _>("last_used_at")
            .map_err(corrupt)?
            .map(Millis),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(corrupt)?
            .map(Millis),
    };
    Ok((token, parse_hash(&hash)?))
}

#[async_trait]
impl ApiTokens for PostgresStore {
    async fn create_token(
        &self,
        ctx: &AuditContext,
        token: &NewApiToken,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<TokenId, StoreError> {
        token.check().map_err(StoreError::Invalid)?;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, scopes, queues, hash, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&token.name)
        .bind(scopes_text(&token.scopes))
        .bind(queues_text(&token.queues))
        .bind(&hash.0[..])
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?;
        let id = TokenId(id);
        let (action, target, outcome) = create_audit(id, token);
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn token(&self, id: TokenId) -> Result<Option<(ApiToken, TokenHash)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scopes, queues, created_at, last_used_at, revoked_at, hash
             FROM api_tokens WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, queues, created_at, last_used_at, revoked_at, hash
             FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::store::skip_undecodable(
            "api tokens",
            rows.iter().map(|r| token_row(r).map(|(t, _)| t)),
        ))
    }

    async fn revoke_token(
        &self,
        ctx: &AuditContext,
        id: TokenId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, revoked_at FROM api_tokens WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_some() {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
            )
            .bind(id.0)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        let already = found.as_ref().is_some_and(|(_, at)| at.is_some());
        let (action, target, outcome) = revoke_audit(id, found.map(|(name, _)| name), already);
        audit::write(&mut tx, ctx, action, &target, &outcome, now).await?;
        tx.commit().await?;
        Ok(outcome.result() == crate::store::audit::AuditResult::Ok)
    }

    async fn touch_token(&self, id: TokenId, now: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = greatest(last_used_at, $2) WHERE id = $1",
        )
        .bind(id.0)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn has_live_tokens(&self) -> Result<bool, StoreError> {
        let live: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)")
                .fetch_one(&self.pool)
                .await?;
        Ok(live)
    }

    async fn reserve_answer(
        &self,
        token: TokenId,
        key: &str,
        fingerprint: &str,
        now: Millis,
        stale_before: Millis,
    ) -> Result<Reservation, StoreError> {
        crate::store::tokens::check_idempotency_key(key).map_err(StoreError::Invalid)?;
        // One statement decides: a new key is inserted; a stale reservation of the same
        // request is taken over. Either way `reserved` comes back true; otherwise the
        // existing row is read after it (a row is never deleted while answered).
        let reserved: Option<bool> = sqlx::query_scalar(
            "INSERT INTO api_idempotency (token, key, fingerprint, reserved_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (token, key) DO UPDATE SET reserved_at = excluded.reserved_at
             WHERE api_idempotency.status IS NULL
               AND api_idempotency.fingerprint = excluded.fingerprint
               AND api_idempotency.reserved_at < $5
             RETURNING true",
        )
        .bind(token.0)
        .bind(key)
        .bind(fingerprint)
        .bind(now.0)
        .bind(stale_before.0)
        .fetch_optional(&self.pool)
        .await?;
        if reserved.is_some() {
            return Ok(Reservation::Reserved);
        }
        let row = sqlx::query(
            "SELECT fingerprint, status, body FROM api_idempotency WHERE token = $1 AND key = $2",
        )
        .bind(token.0)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Forgotten between the two statements: the caller may simply retry.
            return Ok(Reservation::InProgress);
        };
        let print: String = row.try_get("fingerprint")?;
        let status: Option<i32> = row.try_get("status")?;
        Ok(match status {
            _ if print != fingerprint => Reservation::Mismatch,
            None => Reservation::InProgress,
            Some(status) => Reservation::Answered(StoredAnswer {
                status: u16::try_from(status).map_err(|_| {
                    StoreError::Corrupt(format!("api_idempotency.status: {status}"))
                })?,
                body: row
                    .try_get::<Option<serde_json::Value>, _>("body")?
                    .unwrap_or(serde_json::Value::Null),
            }),
        })
    }

    async fn record_answer(
        &self,
        token: TokenId,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        let mut body = answer.body.clone();
        crate::payload::make_storable(&mut body);
        sqlx::query(
            "UPDATE api_idempotency SET status = $3, body = $4 WHERE token = $1 AND key = $2",
        )
        .bind(token.0)
        .bind(key)
        .bind(i32::from(answer.status))
        .bind(&body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn forget_answer(&self, token: TokenId, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_idempotency WHERE token = $1 AND key = $2 AND status IS NULL")
            .bind(token.0)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_answers(&self, before: Millis) -> Result<u64, StoreError> {
        let n = sqlx::query("DELETE FROM api_idempotency WHERE reserved_at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}
