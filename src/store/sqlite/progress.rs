//! Progress reports of running attempts ([`JobQueue::record_progress`]): the job's
//! progress columns, its lease and a `job.progress` event, in one transaction for the
//! batch, each only under its current lease.
//!
//! [`JobQueue::record_progress`]: crate::store::JobQueue::record_progress

use std::collections::HashSet;

use serde_json::json;

use super::SqliteStore;
use super::events::events;
use super::rows::to_json;
use crate::clock::Millis;
use crate::event::LifecycleEvent;
use crate::job::{JobId, LeaseToken, ProgressReport};
use crate::store::{StoreError, progress_results, storable_reports};

impl SqliteStore {
    /// See [`crate::store::JobQueue::record_progress`].
    pub(super) async fn write_progress(
        &self,
        reports: &[ProgressReport],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let kept = storable_reports(reports)?;
        let rows: Vec<_> = kept
            .iter()
            .map(|r| {
                json!({
                    "id": r.lease.job.0, "tok": r.lease.token.0, "f": r.progress.fraction,
                    "m": r.progress.message, "at": r.progress.at.0,
                })
            })
            .collect();
        let mut tx = self.begin().await?;
        let written: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = ?1, progress = l.f, progress_message = l.m,
                 progress_at = l.at
             FROM (SELECT value->>'id' AS id, value->>'tok' AS tok, value->>'f' AS f,
                          value->>'m' AS m, value->>'at' AS at FROM json_each(?2)) AS l
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.lease_token",
        )
        .bind(until.0)
        .bind(to_json(&rows))
        .fetch_all(&mut *tx)
        .await?;
        let applied: HashSet<(JobId, LeaseToken)> = written
            .into_iter()
            .map(|(id, tok)| (JobId(id), LeaseToken(tok)))
            .collect();
        let evs: Vec<LifecycleEvent> = kept
            .iter()
            .filter(|r| applied.contains(&(r.lease.job, r.lease.token)))
            .map(LifecycleEvent::of_progress)
            .collect();
        events(&mut tx, &evs).await?;
        tx.commit().await?;
        Ok(progress_results(reports, &applied))
    }
}
