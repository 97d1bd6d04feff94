//! The audit log on SQLite ([`AuditLog`]): [`write`], which every mutating operation
//! calls inside its own transaction, and the listing.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, Tx};
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::{
    AuditAction, AuditColumns, AuditContext, AuditId, AuditLog, AuditOutcome, AuditQuery,
    AuditRecord, AuditRow, AuditTarget,
};

/// Writes the audit row of `action` by `ctx` on `target`, ending with `outcome`, in the
/// transaction `tx` of the change it records (so it commits or rolls back with it).
pub(crate) async fn write(
    tx: &mut Tx,
    ctx: &AuditContext,
    action: AuditAction,
    target: &AuditTarget,
    outcome: &AuditOutcome,
    now: Millis,
) -> Result<AuditId, StoreError> {
    let row = AuditRow::new(ctx, action, target, outcome, now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_log
             (at, actor_kind, actor_token, actor_name, address, action, target, result, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
    )
    .bind(row.at)
    .bind(row.actor_kind)
    .bind(row.actor_token)
    .bind(row.actor_name)
    .bind(row.address)
    .bind(row.action)
    .bind(row.target.to_string())
    .bind(row.result)
    .bind(row.detail.map(|d| d.to_string()))
    .fetch_one(&mut **tx)
    .await?;
    Ok(AuditId(id))
}

/// Removes up to `batch` rows written before `before`; returns how many.
pub(super) async fn purge(tx: &mut Tx, before: Millis, batch: u32) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM audit_log WHERE id IN
             (SELECT id FROM audit_log WHERE at < ?1 ORDER BY id LIMIT ?2)",
    )
    .bind(before.0)
    .bind(i64::from(batch))
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

fn columns(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("audit_log: {e}"));
    let get = |e: sqlx::Error| corrupt(e.to_string());
    let json = |text: String| {
        serde_json::from_str(&text).map_err(|e| corrupt(format!("undecodable JSON: {e}")))
    };
    AuditColumns {
        id: row.try_get("id").map_err(get)?,
        at: row.try_get("at").map_err(get)?,
        actor_kind: row.try_get("actor_kind").map_err(get)?,
        actor_token: row.try_get("actor_token").map_err(get)?,
        actor_name: row.try_get("actor_name").map_err(get)?,
        address: row.try_get("address").map_err(get)?,
        action: row.try_get("action").map_err(get)?,
        target: json(row.try_get("target").map_err(get)?)?,
        result: row.try_get("result").map_err(get)?,
        detail: row
            .try_get::<Option<String>, _>("detail")
            .map_err(get)?
            .map(json)
            .transpose()?,
    }
    .decode()
}

impl SqliteStore {
    /// Writes one row in a transaction of its own (a refusal or failure, which changed
    /// nothing else).
    async fn record_alone(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        outcome: &AuditOutcome,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        let mut tx = self.begin().await?;
        let id = write(&mut tx, ctx, action, target, outcome, now).await?;
        tx.commit().await?;
        Ok(id)
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        query.check().map_err(StoreError::Invalid)?;
        // One statement per filter combination, so each can use its index (`?2 IS NULL
        // OR ...` would leave SQLite scanning the whole log for a rare action).
        const COLS: &str = "SELECT id, at, actor_kind, actor_token, actor_name, address, action,
                 target, result, detail FROM audit_log WHERE id < ?1";
        let sql = match (&query.action, &query.actor) {
            (None, None) => format!("{COLS} ORDER BY id DESC LIMIT ?2"),
            (Some(_), None) => format!("{COLS} AND action = ?3 ORDER BY id DESC LIMIT ?2"),
            (None, Some(_)) => format!("{COLS} AND actor_name = ?3 ORDER BY id DESC LIMIT ?2"),
            (Some(_), Some(_)) => {
                format!("{COLS} AND action = ?3 AND actor_name = ?4 ORDER BY id DESC LIMIT ?2")
            }
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(query.before.map_or(i64::MAX, |b| b.0))
            .bind(i64::from(query.limit));
        if let Some(a) = query.action {
            q = q.bind(a.as_str());
        }
        if let Some(actor) = &query.actor {
            q = q.bind(actor.as_str());
        }
        let rows = q.fetch_all(&self.read).await?;
        Ok(crate::store::skip_undecodable(
            "audit log",
            rows.iter().map(columns),
        ))
    }

    async fn record_refusal(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        reason: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        let outcome = AuditOutcome::Refused(reason.to_owned());
        self.record_alone(ctx, action, target, &outcome, now).await
    }

    async fn record_failure(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        error: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        let outcome = AuditOutcome::Failed(error.to_owned());
        self.record_alone(ctx, action, target, &outcome, now).await
    }
}
