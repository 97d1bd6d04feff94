//! Reads for a dispatch index kept outside Postgres (the Redis ready ZSETs of
//! [`crate::store::redis_postgres`]): which jobs are ready, found by id, by parent or
//! page by page, and the current state of jobs. Postgres stays the record; the index
//! is rebuilt from these reads, so they return what the record holds at the moment.

use super::PostgresStore;
use crate::clock::Millis;
use crate::job::{JobId, JobState, LeaseToken, Priority};
use crate::store::StoreError;

/// A job Postgres holds as `available` (or has just made so), with what a dispatch index
/// orders and fences it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadyRow {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: Priority,
    /// When it became (or becomes) due.
    pub run_at: Millis,
    /// Its current lease token: an index entry older than this is stale.
    pub token: LeaseToken,
}

/// A ready row as selected: `id, queue, priority, run_at, lease_token`.
pub(super) type ReadyTuple = (i64, String, i16, i64, i64);

impl ReadyRow {
    pub(super) fn from_tuple((id, queue, priority, run_at, token): ReadyTuple) -> Self {
        Self {
            id: JobId(id),
            queue,
            priority: priority as Priority,
            run_at: Millis(run_at),
            token: LeaseToken(token),
        }
    }
}

fn raw(ids: &[JobId]) -> Vec<i64> {
    ids.iter().map(|i| i.0).collect()
}

impl PostgresStore {
    /// Those of `ids` that are `available` now (one query by primary key).
    pub(crate) async fn ready_by_ids(&self, ids: &[JobId]) -> Result<Vec<ReadyRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ReadyTuple> = sqlx::query_as(
            // Joined from `unnest` so each job is found by primary key (see the claim by ids).
            "SELECT j.id, j.queue, j.priority, j.run_at, j.lease_token
             FROM unnest($1::bigint[]) AS t(pick) JOIN jobs j ON j.id = t.pick
             WHERE j.state = 'available'",
        )
        .bind(raw(ids))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ReadyRow::from_tuple).collect())
    }

    /// The children of `parents` that are `available` now (those their success released).
    pub(crate) async fn ready_children(
        &self,
        parents: &[JobId],
    ) -> Result<Vec<ReadyRow>, StoreError> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<ReadyTuple> = sqlx::query_as(
            "SELECT j.id, j.queue, j.priority, j.run_at, j.lease_token
             FROM unnest($1::bigint[]) AS p(parent)
             JOIN job_dependencies d ON d.parent = p.parent
             JOIN jobs j ON j.id = d.child
             WHERE j.state = 'available'",
        )
        .bind(raw(parents))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ReadyRow::from_tuple).collect())
    }

    /// Up to `limit` available jobs with ids above `after`, by id (a full scan pages
    /// through with the last id read).
    pub(crate) async fn ready_page(
        &self,
        after: JobId,
        limit: u32,
    ) -> Result<Vec<ReadyRow>, StoreError> {
        let rows: Vec<ReadyTuple> = sqlx::query_as(
            "SELECT id, queue, priority, run_at, lease_token FROM jobs
             WHERE state = 'available' AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ReadyRow::from_tuple).collect())
    }

    /// The current state of those of `ids` that exist (one query by primary key); a row
    /// whose state cannot be decoded is left out with a warning.
    pub(crate) async fn states_of(
        &self,
        ids: &[JobId],
    ) -> Result<Vec<(JobId, JobState)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT j.id, j.state FROM unnest($1::bigint[]) AS t(pick) JOIN jobs j ON j.id = t.pick",
        )
        .bind(raw(ids))
        .fetch_all(&self.pool)
        .await?;
        Ok(crate::store::skip_undecodable(
            "job states",
            rows.into_iter()
                .map(|(id, state)| Ok((JobId(id), super::rows::state(&state)?))),
        ))
    }
}
