//! Time: scheduled and retryable jobs becoming available when their `run_at` comes.

use super::ready::{ReadyRow, ReadyTuple};
use super::{PostgresStore, wake};
use crate::clock::Millis;
use crate::store::StoreError;

impl PostgresStore {
    /// See [`crate::store::JobQueue::promote_due`].
    pub(super) async fn promote_scheduled(&self, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let queues: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'available'
             WHERE state IN ('scheduled', 'retryable') AND run_at <= $1 RETURNING queue",
        )
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?;
        let n = queues.len() as u64;
        wake(&mut tx, queues.into_iter().collect()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Promotes as [`crate::store::JobQueue::promote_due`] does, without the `NOTIFY`
    /// (for a store whose claimers are woken by its own dispatch index), returning the
    /// promoted jobs for that index. One autocommit statement.
    pub(crate) async fn promote_due_returning(
        &self,
        now: Millis,
    ) -> Result<Vec<ReadyRow>, StoreError> {
        let rows: Vec<ReadyTuple> = sqlx::query_as(
            "UPDATE jobs SET state = 'available'
             WHERE state IN ('scheduled', 'retryable') AND run_at <= $1
             RETURNING id, queue, priority, run_at, lease_token",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ReadyRow::from_tuple).collect())
    }

    /// See [`crate::store::JobQueue::next_due`].
    pub(super) async fn earliest_due(&self) -> Result<Option<Millis>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(run_at) FROM jobs WHERE state IN ('scheduled', 'retryable')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(t.map(Millis))
    }
}
