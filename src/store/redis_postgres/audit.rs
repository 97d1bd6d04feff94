//! [`AuditLog`] in the production store: Postgres alone. The audit log is part of the
//! record, written in the Postgres transaction of each change; Redis has no copy.

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::store::StoreError;
use crate::store::audit::{
    AuditAction, AuditContext, AuditId, AuditLog, AuditQuery, AuditRecord, AuditTarget,
};

#[async_trait]
impl AuditLog for RedisPostgresStore {
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.postgres().list_audit(query).await
    }

    async fn record_refusal(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        reason: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        self.postgres()
            .record_refusal(ctx, action, target, reason, now)
            .await
    }

    async fn record_failure(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        error: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        self.postgres()
            .record_failure(ctx, action, target, error, now)
            .await
    }
}
