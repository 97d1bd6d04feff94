//! The read-side views ([`JobHistory`], [`Activity`]): a job's attempts and events,
//! queues' oldest available job and recent finishes, node and worker events. Reads
//! only, on the reader pool, each served by an index (named at each statement).

use async_trait::async_trait;

use super::SqliteStore;
use crate::clock::Millis;
use crate::event::StoredEvent;
use crate::job::JobId;
use crate::store::activity::{
    Activity, FinishedSlice, check_slices, finished_slices, member_kinds_sql,
};
use crate::store::history::{Attempt, AttemptRow, JobHistory, MAX_HISTORY, attempt_from_row};
use crate::store::{EventRow, StoreError, skip_undecodable};

/// A `lifecycle_events` row as SQLite returns it.
type EventTuple = (
    i64,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn decode_events(what: &str, rows: Vec<EventTuple>) -> Vec<StoredEvent> {
    skip_undecodable(
        what,
        rows.into_iter()
            .map(|(seq, at, kind, job, attempt, worker, node, detail)| {
                EventRow {
                    seq,
                    at,
                    kind,
                    job,
                    attempt,
                    worker,
                    node,
                    detail,
                }
                .decode()
            }),
    )
}

#[async_trait]
impl JobHistory for SqliteStore {
    async fn attempts(&self, job: JobId, limit: u32) -> Result<Vec<Attempt>, StoreError> {
        // job_executions_job (job), whose entries carry the rowid: in insertion order.
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT attempt, node, worker, started_at, finished_at, outcome, error
             FROM job_executions WHERE job = ?1 ORDER BY id LIMIT ?2",
        )
        .bind(job.0)
        .bind(i64::from(limit.min(MAX_HISTORY)))
        .fetch_all(&self.read)
        .await?;
        Ok(skip_undecodable(
            "attempts",
            rows.into_iter().map(attempt_from_row),
        ))
    }

    async fn job_events(&self, job: JobId, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // lifecycle_events_job (job) WHERE job IS NOT NULL; `job = ?` implies the
        // predicate, and the entries carry seq (the rowid), so no sort.
        let rows: Vec<EventTuple> = sqlx::query_as(
            "SELECT seq, at, kind, job, attempt, worker, node, detail FROM lifecycle_events
             WHERE job = ?1 ORDER BY seq LIMIT ?2",
        )
        .bind(job.0)
        .bind(i64::from(limit.min(MAX_HISTORY)))
        .fetch_all(&self.read)
        .await?;
        Ok(decode_events("job events", rows))
    }
}

/// Jobs finished in `[?1, ?2)` per slice of `?3` ms, queue and state, read from the
/// partial indexes `jobs_finished` and `jobs_dead` alone (see the module notes of
/// `sqlite` on `INDEXED BY`; each repeats its index's predicate word for word, as SQLite
/// needs to use it, and the dead branch names its state as a literal so that its index,
/// which does not hold the state, covers the read).
pub(super) const FINISHED_SLICES: &str =
    "SELECT (finished_at - ?1) / ?3, queue, state, count(*) FROM (
         SELECT finished_at, queue, state FROM jobs INDEXED BY jobs_finished
         WHERE state IN ('succeeded', 'cancelled') AND finished_at >= ?1 AND finished_at < ?2
         UNION ALL
         SELECT finished_at, queue, 'discarded' AS state FROM jobs INDEXED BY jobs_dead
         WHERE state = 'discarded' AND finished_at >= ?1 AND finished_at < ?2
     ) GROUP BY 1, 2, 3";

#[async_trait]
impl Activity for SqliteStore {
    async fn oldest_available(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        // A skip scan of jobs_claim (queue, priority DESC, run_at, id) WHERE state =
        // 'available': walk the distinct priorities present (one seek each), and take
        // the first run_at of each; a plain min(run_at) would read every available job.
        let oldest: Option<i64> = sqlx::query_scalar(
            "WITH RECURSIVE p(priority) AS (
                 SELECT (SELECT priority FROM jobs WHERE state = 'available' AND queue = ?1
                         ORDER BY priority DESC LIMIT 1)
                 UNION ALL
                 SELECT (SELECT j.priority FROM jobs j
                         WHERE j.state = 'available' AND j.queue = ?1 AND j.priority < p.priority
                         ORDER BY j.priority DESC LIMIT 1)
                 FROM p WHERE p.priority IS NOT NULL
             )
             SELECT min((SELECT j.run_at FROM jobs j
                         WHERE j.state = 'available' AND j.queue = ?1 AND j.priority = p.priority
                         ORDER BY j.run_at LIMIT 1))
             FROM p WHERE p.priority IS NOT NULL",
        )
        .bind(queue)
        .fetch_one(&self.read)
        .await?;
        Ok(oldest.map(Millis))
    }

    async fn finished_slices(
        &self,
        from: Millis,
        to: Millis,
        slice_ms: i64,
    ) -> Result<Vec<FinishedSlice>, StoreError> {
        check_slices(from, to, slice_ms)?;
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(FINISHED_SLICES)
            .bind(from.0)
            .bind(to.0)
            .bind(slice_ms)
            .fetch_all(&self.read)
            .await?;
        Ok(finished_slices(rows, from, slice_ms))
    }

    async fn member_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // lifecycle_events_members (seq) WHERE <member kinds> (migration 0008), newest
        // first, then put back in log order.
        let rows: Vec<EventTuple> = sqlx::query_as(concat!(
            "SELECT * FROM (
                 SELECT seq, at, kind, job, attempt, worker, node, detail FROM lifecycle_events
                 WHERE ",
            member_kinds_sql!(),
            " ORDER BY seq DESC LIMIT ?1) ORDER BY seq"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        Ok(decode_events("member events", rows))
    }
}
