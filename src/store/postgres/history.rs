//! The read-side views ([`JobHistory`], [`Activity`]): a job's attempts and events,
//! queues' oldest available job and recent finishes, node and worker events. Reads
//! only, each served by an index (named at each statement). redis_postgres serves
//! these from here: Postgres alone holds the record.

use async_trait::async_trait;

use super::PostgresStore;
use crate::clock::Millis;
use crate::event::StoredEvent;
use crate::job::JobId;
use crate::store::activity::{
    Activity, FinishedSlice, check_slices, finished_slices, member_kinds_sql,
};
use crate::store::history::{Attempt, JobHistory, MAX_HISTORY, attempt_from_row};
use crate::store::{EventRow, StoreError, skip_undecodable};

/// A `lifecycle_events` row as Postgres returns it (the detail as text, parsed row by
/// row: one unreadable detail must not fail the read).
pub(super) type EventTuple = (
    i64,
    i64,
    String,
    Option<i64>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) fn decode_events(what: &str, rows: Vec<EventTuple>) -> Vec<StoredEvent> {
    skip_undecodable(
        what,
        rows.into_iter()
            .map(|(seq, at, kind, job, attempt, worker, node, detail)| {
                EventRow {
                    seq,
                    at,
                    kind,
                    job,
                    attempt: attempt.map(i64::from),
                    worker,
                    node,
                    detail,
                }
                .decode()
            }),
    )
}

#[async_trait]
impl JobHistory for PostgresStore {
    async fn attempts(&self, job: JobId, limit: u32) -> Result<Vec<Attempt>, StoreError> {
        // job_executions_job (job); a job's few rows sorted after the lookup.
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i32,
            Option<String>,
            Option<String>,
            Option<i64>,
            i64,
            String,
            Option<String>,
        )> = sqlx::query_as(
            "SELECT attempt, node, worker, started_at, finished_at, outcome, error
             FROM job_executions WHERE job = $1 ORDER BY id LIMIT $2",
        )
        .bind(job.0)
        .bind(i64::from(limit.min(MAX_HISTORY)))
        .fetch_all(&self.pool)
        .await?;
        Ok(skip_undecodable(
            "attempts",
            rows.into_iter()
                .map(|(a, n, w, s, f, o, e)| attempt_from_row((i64::from(a), n, w, s, f, o, e))),
        ))
    }

    async fn job_events(&self, job: JobId, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // lifecycle_events_job (job) WHERE job IS NOT NULL.
        let rows: Vec<EventTuple> = sqlx::query_as(
            "SELECT seq, at, kind, job, attempt, worker, node, detail::text FROM lifecycle_events
             WHERE job = $1 ORDER BY seq LIMIT $2",
        )
        .bind(job.0)
        .bind(i64::from(limit.min(MAX_HISTORY)))
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_events("job events", rows))
    }
}

#[async_trait]
impl Activity for PostgresStore {
    async fn oldest_available(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        // A skip scan of jobs_claim (queue, priority DESC, run_at, id) WHERE state =
        // 'available': walk the distinct priorities present (one index seek each) and
        // take the first run_at of each; a plain min(run_at) would read every available
        // job of the queue.
        let oldest: Option<i64> = sqlx::query_scalar(
            "WITH RECURSIVE p(priority) AS (
                 SELECT (SELECT priority FROM jobs WHERE state = 'available' AND queue = $1
                         ORDER BY priority DESC LIMIT 1)
                 UNION ALL
                 SELECT (SELECT j.priority FROM jobs j
                         WHERE j.state = 'available' AND j.queue = $1 AND j.priority < p.priority
                         ORDER BY j.priority DESC LIMIT 1)
                 FROM p WHERE p.priority IS NOT NULL
             )
             SELECT min((SELECT j.run_at FROM jobs j
                         WHERE j.state = 'available' AND j.queue = $1 AND j.priority = p.priority
                         ORDER BY j.run_at LIMIT 1))
             FROM p WHERE p.priority IS NOT NULL",
        )
        .bind(queue)
        .fetch_one(&self.pool)
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
        // jobs_finished (finished_at, state, queue) WHERE state IN (the final states),
        // migration 0019: an index-only scan of the range.
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT (finished_at - $1) / $3, queue, state, count(*) FROM jobs
             WHERE state IN ('succeeded', 'discarded', 'cancelled')
               AND finished_at >= $1 AND finished_at < $2
             GROUP BY 1, 2, 3",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(slice_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(finished_slices(rows, from, slice_ms))
    }

    async fn member_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        // lifecycle_events_members (seq) WHERE <member kinds> (migration 0009), newest
        // first, then put back in log order.
        let rows: Vec<EventTuple> = sqlx::query_as(concat!(
            "SELECT * FROM (
                 SELECT seq, at, kind, job, attempt, worker, node, detail::text FROM lifecycle_events
                 WHERE ",
            member_kinds_sql!(),
            " ORDER BY seq DESC LIMIT $1) AS newest ORDER BY seq"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_events("member events", rows))
    }
}
