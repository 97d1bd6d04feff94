//! Retention ([`JobAdmin::purge`]): removing finished jobs, dead letters, events,
//! audit rows and lapsed leader leases that outlived their retention, a bounded batch per call.
//!
//! [`JobAdmin::purge`]: crate::store::JobAdmin::purge

use super::SqliteStore;
use super::rows::to_json;
use crate::clock::Millis;
use crate::store::StoreError;

/// Up to `?2` succeeded or cancelled jobs finished before `?1`, oldest first, from
/// `jobs_finished` (see the module notes of `sqlite` on `INDEXED BY`).
pub(super) const DUE_FINISHED: &str = "SELECT id FROM jobs INDEXED BY jobs_finished
     WHERE state IN ('succeeded', 'cancelled') AND finished_at < ?1 LIMIT ?2";

/// Up to `?2` dead letters finished before `?1`, oldest first, from `jobs_dead`.
pub(super) const DUE_DEAD: &str = "SELECT id FROM jobs INDEXED BY jobs_dead
     WHERE state = 'discarded' AND finished_at < ?1 LIMIT ?2";

impl SqliteStore {
    /// See [`crate::store::JobAdmin::purge`].
    pub(super) async fn purge_expired(
        &self,
        retention: &crate::store::retention::Retention,
        now: Millis,
    ) -> Result<crate::store::retention::Purged, StoreError> {
        let cut = retention.cutoffs(now);
        let mut tx = self.begin().await?;
        let finished: Vec<i64> = sqlx::query_scalar(DUE_FINISHED)
            .bind(cut.finished_before.0)
            .bind(retention.batch as i64)
            .fetch_all(&mut *tx)
            .await?;
        let dead: Vec<i64> = sqlx::query_scalar(DUE_DEAD)
            .bind(cut.dead_before.0)
            .bind(retention.batch as i64)
            .fetch_all(&mut *tx)
            .await?;
        let ids: Vec<i64> = finished.iter().chain(&dead).copied().collect();
        let mut events = 0;
        if !ids.is_empty() {
            let ids = to_json(&ids);
            for sql in [
                "DELETE FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1))
                    OR child IN (SELECT value FROM json_each(?1))",
                "DELETE FROM job_executions WHERE job IN (SELECT value FROM json_each(?1))",
                "DELETE FROM dead_letter_queue WHERE job IN (SELECT value FROM json_each(?1))",
            ] {
                sqlx::query(sql).bind(&ids).execute(&mut *tx).await?;
            }
            events += sqlx::query(
                "DELETE FROM lifecycle_events WHERE job IN (SELECT value FROM json_each(?1))",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        events += sqlx::query("DELETE FROM lifecycle_events WHERE job IS NULL AND at < ?1")
            .bind(cut.finished_before.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let leases = sqlx::query("DELETE FROM leader_leases WHERE expires_at < ?1")
            .bind(cut.leases_before.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // A full bucket is the same as none (a claim starts a missing one full): drop
        // them, and those of limits that are gone, so per-key buckets do not pile up.
        sqlx::query(
            "DELETE FROM limit_buckets WHERE NOT EXISTS (
                 SELECT 1 FROM job_limits l WHERE l.name = limit_buckets.lim
                   AND l.rate_count IS NOT NULL
                   AND limit_buckets.tokens + (?1 - limit_buckets.refilled_at)
                       * CAST(l.rate_count AS REAL) / l.rate_ms < COALESCE(l.burst, l.rate_count))",
        )
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let audit = super::audit::purge(&mut tx, cut.audit_before, retention.batch).await?;
        let models = sqlx::query("DELETE FROM node_models WHERE saved_at < ?1")
            .bind(cut.models_before.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(crate::store::retention::Purged {
            jobs: finished.len() as u64,
            dead_letters: dead.len() as u64,
            events,
            leases,
            audit,
            models,
        })
    }
}
