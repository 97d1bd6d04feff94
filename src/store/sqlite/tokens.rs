//! [`ApiTokens`] on SQLite: the `api_tokens` and `api_idempotency` tables.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, audit};
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::AuditContext;
use crate::store::tokens::{
    ApiToken, ApiTokens, NewApiToken, Reservation, StoredAnswer, TokenHash, TokenId, create_audit,
    parse_hash, parse_queues, parse_scopes, queues_text, revoke_audit, scopes_text,
};

const TOKEN_COLUMNS: &str =
    "id, name, scopes, queues, created_at, last_used_at, revoked_at, hash FROM api_tokens";

fn token_row(row: &SqliteRow) -> Result<(ApiToken, TokenHash), StoreError> {
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
impl ApiTokens for SqliteStore {
    async fn create_token(
        &self,
        ctx: &AuditContext,
        token: &NewApiToken,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<TokenId, StoreError> {
        token.check().map_err(StoreError::Invalid)?;
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, scopes, queues, hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} WHERE id = ?1"
        )))
        .bind(id.0)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} ORDER BY id"
        )))
        .fetch_all(&self.read)
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
        let mut tx = self.begin().await?;
        let found: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, revoked_at FROM api_tokens WHERE id = ?1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_some() {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
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
            "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
        )
        .bind(id.0)
        .bind(now.0)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn has_live_tokens(&self) -> Result<bool, StoreError> {
        let live: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)")
                .fetch_one(&self.read)
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
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT fingerprint, reserved_at, status, body FROM api_idempotency
             WHERE token = ?1 AND key = ?2",
        )
        .bind(token.0)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let found = match row {
            None => None,
            Some(row) => Some((
                row.try_get::<String, _>("fingerprint")?,
                row.try_get::<i64, _>("reserved_at")?,
                row.try_get::<Option<i64>, _>("status")?,
                row.try_get::<Option<String>, _>("body")?,
            )),
        };
        let outcome = match found {
            Some((print, _, _, _)) if print != fingerprint => Reservation::Mismatch,
            Some((_, _, Some(status), body)) => {
                let body = body
                    .map(|b| serde_json::from_str(&b))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("api_idempotency.body: {e}")))?
                    .unwrap_or(serde_json::Value::Null);
                Reservation::Answered(StoredAnswer {
                    status: u16::try_from(status).map_err(|_| {
                        StoreError::Corrupt(format!("api_idempotency.status: {status}"))
                    })?,
                    body,
                })
            }
            Some((_, reserved_at, None, _)) if reserved_at >= stale_before.0 => {
                Reservation::InProgress
            }
            _ => {
                sqlx::query(
                    "INSERT INTO api_idempotency (token, key, fingerprint, reserved_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (token, key) DO UPDATE SET reserved_at = excluded.reserved_at",
                )
                .bind(token.0)
                .bind(key)
                .bind(fingerprint)
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
                Reservation::Reserved
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn record_answer(
        &self,
        token: TokenId,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_idempotency SET status = ?3, body = ?4 WHERE token = ?1 AND key = ?2",
        )
        .bind(token.0)
        .bind(key)
        .bind(i64::from(answer.status))
        .bind(answer.body.to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn forget_answer(&self, token: TokenId, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM api_idempotency WHERE token = ?1 AND key = ?2 AND status IS NULL")
            .bind(token.0)
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn purge_answers(&self, before: Millis) -> Result<u64, StoreError> {
        let n = sqlx::query("DELETE FROM api_idempotency WHERE reserved_at < ?1")
            .bind(before.0)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n)
    }
}
