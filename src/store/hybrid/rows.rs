//! Decoding the `jobs` rows the hybrid store reads itself (claims, pushes).
//!
//! The same row model as the Postgres store's decoder, which is private to that module;
//! kept in step with `migrations/postgres`.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::clock::Millis;
use crate::job::{Job, JobId, JobState, LeaseToken, NodeId, ParentFailurePolicy, WorkerId};
use crate::store::StoreError;

/// The columns of `jobs` that [`job`] decodes.
macro_rules! job_columns {
    () => {
        "id, queue, kind, payload, priority, state, attempt, max_attempts, run_at, created_at, finished_at, \
         timeout_ms, unique_key, lease_token, lease_owner, lease_node, lease_expires_at, last_error, output, \
         on_parent_failure"
    };
}
pub(super) use job_columns;

fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("jobs.{name}: {e}")))
}

fn count(v: i32, name: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("jobs.{name}: negative value {v}")))
}

/// Whether a claimed row has children (selected as `has_children`).
pub(super) fn has_children(row: &PgRow) -> Result<bool, StoreError> {
    col(row, "has_children")
}

/// Decodes a row selected with [`job_columns`]; `depends_on` is left empty.
pub(super) fn job(row: &PgRow) -> Result<Job, StoreError> {
    let policy: String = col(row, "on_parent_failure")?;
    let timeout: Option<i64> = col(row, "timeout_ms")?;
    let state: String = col(row, "state")?;
    Ok(Job {
        id: JobId(col(row, "id")?),
        queue: col(row, "queue")?,
        kind: col(row, "kind")?,
        payload: col(row, "payload")?,
        priority: col(row, "priority")?,
        state: state
            .parse::<JobState>()
            .map_err(|e| StoreError::Corrupt(format!("jobs.state: {e}")))?,
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
        on_parent_failure: match policy.as_str() {
            "hold" => ParentFailurePolicy::Hold,
            "discard" => ParentFailurePolicy::Discard,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "jobs.on_parent_failure: unknown policy `{other}`"
                )));
            }
        },
    })
}
