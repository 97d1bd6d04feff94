//! Progress reports of running attempts ([`JobQueue::record_progress`]): the job's
//! progress columns, its lease and a `job.progress` event, in one statement for the
//! batch, each only under its current lease.
//!
//! [`JobQueue::record_progress`]: crate::store::JobQueue::record_progress

use std::collections::HashSet;

use super::{PostgresStore, attempt_col};
use crate::clock::Millis;
use crate::job::{JobId, LeaseToken, ProgressReport};
use crate::store::{StoreError, progress_results, storable_reports};

/// `$1` lease expiry; per report `$2` job, `$3` token, `$4` fraction, `$5` message,
/// `$6` reported at, `$7` attempt, `$8` worker, `$9` node. The event's detail is the
/// one [`crate::event::LifecycleEvent::of_progress`] builds.
const RECORD_PROGRESS: &str = "
    WITH upd AS (
        UPDATE jobs j SET lease_expires_at = $1, progress = r.f, progress_message = r.m,
            progress_at = r.at
        FROM unnest($2::bigint[], $3::bigint[], $4::float8[], $5::text[], $6::bigint[],
                    $7::integer[], $8::text[], $9::text[])
             WITH ORDINALITY AS r(id, tok, f, m, at, attempt, worker, node, ord)
        WHERE j.id = r.id AND j.lease_token = r.tok AND j.state = 'running'
        RETURNING r.id, r.tok, r.f, r.m, r.at, r.attempt, r.worker, r.node, r.ord
    ), ev AS (
        INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node, detail)
        SELECT at, 'job.progress', id, attempt, worker, node,
               jsonb_build_object('fraction', f, 'message', m)
        FROM upd ORDER BY ord
    )
    SELECT id, tok FROM upd";

impl PostgresStore {
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
        let written: Vec<(i64, i64)> = sqlx::query_as(RECORD_PROGRESS)
            .bind(until.0)
            .bind(kept.iter().map(|r| r.lease.job.0).collect::<Vec<_>>())
            .bind(kept.iter().map(|r| r.lease.token.0).collect::<Vec<_>>())
            .bind(kept.iter().map(|r| r.progress.fraction).collect::<Vec<_>>())
            .bind(
                kept.iter()
                    .map(|r| r.progress.message.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(kept.iter().map(|r| r.progress.at.0).collect::<Vec<_>>())
            .bind(
                kept.iter()
                    .map(|r| attempt_col(r.lease.attempt))
                    .collect::<Vec<_>>(),
            )
            .bind(
                kept.iter()
                    .map(|r| r.lease.worker.0.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                kept.iter()
                    .map(|r| r.lease.node.0.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await?;
        let applied: HashSet<(JobId, LeaseToken)> = written
            .into_iter()
            .map(|(id, tok)| (JobId(id), LeaseToken(tok)))
            .collect();
        Ok(progress_results(reports, &applied))
    }
}
