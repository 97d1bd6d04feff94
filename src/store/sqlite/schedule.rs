//! Scheduled and retryable jobs: promoting those whose `run_at` has come, and when the
//! next one is due.

use super::SqliteStore;
use crate::clock::Millis;
use crate::store::StoreError;

/// Makes the scheduled and retryable jobs whose `run_at` (`?1`) has come available,
/// found through `jobs_due` (see the module notes of `sqlite` on `INDEXED BY`).
pub(super) const PROMOTE_DUE: &str = "UPDATE jobs INDEXED BY jobs_due SET state = 'available'
     WHERE state IN ('scheduled', 'retryable') AND run_at <= ?1";

/// The earliest `run_at` of a scheduled or retryable job: the first entry of `jobs_due`.
pub(super) const EARLIEST_DUE: &str =
    "SELECT min(run_at) FROM jobs INDEXED BY jobs_due WHERE state IN ('scheduled', 'retryable')";

impl SqliteStore {
    /// See [`crate::store::JobQueue::promote_due`].
    pub(super) async fn promote_due_jobs(&self, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(PROMOTE_DUE)
            .bind(now.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// See [`crate::store::JobQueue::next_due`].
    pub(super) async fn earliest_run_at(&self) -> Result<Option<Millis>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(EARLIEST_DUE)
            .fetch_one(&self.read)
            .await?;
        Ok(t.map(Millis))
    }
}
