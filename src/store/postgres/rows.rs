//! Decoding Postgres rows into the job model.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::clock::Millis;
use crate::job::{Job, JobId, LeaseToken, NodeId, WorkerId};
use crate::store::columns::{self, job_named as job_named_error};
pub(crate) use crate::store::columns::{policy_name, state};
use crate::store::{StoreError, Undecodable};

/// The columns of `jobs`, in the order [`job`] decodes them.
macro_rules! job_columns {
    () => {
        "id, queue, kind, payload, priority, state, attempt, max_attempts, run_at, created_at, finished_at, \
         timeout_ms, unique_key, lease_token, lease_owner, lease_node, lease_expires_at, last_error, output, \
         on_parent_failure, progress, progress_message, progress_at, snoozes"
    };
}
pub(crate) use job_columns;

fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("jobs.{name}: {e}")))
}

/// Converts a stored non-negative count (attempts) to the model's type.
fn count(v: i32, name: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("jobs.{name}: negative value {v}")))
}

/// Decodes a row selected with [`job_columns`]; `depends_on` is left empty.
pub fn job(row: &PgRow) -> Result<Job, StoreError> {
    let policy: String = col(row, "on_parent_failure")?;
    let timeout: Option<i64> = col(row, "timeout_ms")?;
    Ok(Job {
        id: JobId(col(row, "id")?),
        queue: col(row, "queue")?,
        kind: col(row, "kind")?,
        payload: col(row, "payload")?,
        priority: col(row, "priority")?,
        state: state(&col::<String>(row, "state")?)?,
        attempt: count(col(row, "attempt")?, "attempt")?,
        max_attempts: count(col(row, "max_attempts")?, "max_attempts")?,
        run_at: Millis(col(row, "run_at")?),
        created_at: Millis(col(row, "created_at")?),
        finished_at: col::<Option<i64>>(row, "finished_at")?.map(Millis),
        timeout: timeout.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        unique_key: col(row, "unique_key")?,
        lease_token: LeaseToken(col(row, "lease_token")?),
        lease_owner: col::<Option<String>>(row, "lease_owner")?.map(WorkerId),
        lease_node: col::<Option<String>>(row, "lease_node")?.map(NodeId),
        lease_expires_at: col::<Option<i64>>(row, "lease_expires_at")?.map(Millis),
        last_error: col(row, "last_error")?,
        output: col(row, "output")?,
        depends_on: Vec::new(),
        on_parent_failure: columns::policy(&policy)?,
        progress: columns::progress(
            col(row, "progress")?,
            col(row, "progress_message")?,
            col(row, "progress_at")?,
        ),
        snoozes: columns::snoozes(i64::from(col::<i32>(row, "snoozes")?)),
    })
}

/// [`job`], with the job's id in the error.
pub fn job_named(row: &PgRow) -> Result<Job, StoreError> {
    job(row).map_err(|e| job_named_error(row.try_get::<i64, _>("id").unwrap_or_default(), &e))
}

/// Decodes a claimed row: the job, or what is needed to dead-letter it when the row
/// cannot be decoded (see [`Undecodable`]). Fails only if not even the job's id, lease
/// token and attempt can be read.
pub(crate) fn claimed(row: &PgRow) -> Result<Result<Job, Undecodable>, StoreError> {
    match job(row) {
        Ok(job) => Ok(Ok(job)),
        Err(e) => Ok(Err(Undecodable {
            id: JobId(col(row, "id")?),
            token: LeaseToken(col(row, "lease_token")?),
            attempt: count(col(row, "attempt")?, "attempt")?,
            reason: Undecodable::reason_of(&e),
        })),
    }
}

/// Whether a claimed row has children (selected as `has_children`).
pub(crate) fn has_children(row: &PgRow) -> Result<bool, StoreError> {
    col(row, "has_children")
}
