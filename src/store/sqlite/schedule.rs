//! Scheduled and retryable jobs: promoting those whose `run_at` has come, and when the
//! next one is due.

use super::SqliteStore;
use crate::clock::Millis;
use crate::store::StoreError;

impl SqliteStore {
    /// See [`crate::store::JobQueue::promote_due`].
    pub(super) async fn promote_due_jobs(&self, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE jobs SET state = 'available' WHERE state IN ('scheduled', 'retryable') AND run_at <= ?1")
            .bind(now.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// See [`crate::store::JobQueue::next_due`].
    pub(super) async fn earliest_run_at(&self) -> Result<Option<Millis>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(run_at) FROM jobs WHERE state IN ('scheduled', 'retryable')",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(t.map(Millis))
    }
}
