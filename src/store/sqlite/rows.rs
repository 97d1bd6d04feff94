//! Decoding SQLite rows into the job model, and the JSON shapes that set-based
//! statements read through `json_each`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

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

fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("jobs.{name}: {e}")))
}

fn json_col(row: &SqliteRow, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let text: Option<String> = col(row, name)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("jobs.{name}: {e}")))
    })
    .transpose()
}

/// The columns of `jobs` as one JSON array per row, in the order [`JobArray`] reads
/// them: a whole claim comes back as a single `json_group_array` value instead of one
/// row (and one channel hop from SQLite's thread) per job. A payload that is not valid
/// JSON comes back as `null` with the flag at the end false, instead of failing the
/// statement (and with it the batch).
macro_rules! job_array {
    () => {
        "json_array(id, queue, kind, CASE WHEN json_valid(payload) THEN json(payload) END, priority, \
         state, attempt, max_attempts, run_at, created_at, finished_at, timeout_ms, unique_key, \
         lease_token, lease_owner, lease_node, lease_expires_at, last_error, output, on_parent_failure, \
         progress, progress_message, progress_at, snoozes, json_valid(payload))"
    };
}
pub(crate) use job_array;

/// One element of a [`job_array`] aggregate. The payload is kept raw and parsed on its
/// own, so a payload too deep (or otherwise unreadable) fails only its job.
#[derive(Deserialize)]
struct JobArray(
    i64,
    String,
    String,
    Option<Box<RawValue>>,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<f64>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

/// Decodes a `json_group_array` of [`job_array`]s; `depends_on` is left empty. Elements
/// that cannot be decoded come back as [`Undecodable`], the rest as jobs.
pub fn jobs_from_array(text: &str) -> Result<(Vec<Job>, Vec<Undecodable>), StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("jobs (as JSON): {e}"));
    let mut jobs = Vec::new();
    let mut bad = Vec::new();
    // The common case in one pass; element by element only when that fails.
    let rows: Vec<JobArray> = match serde_json::from_str(text) {
        Ok(rows) => rows,
        Err(_) => {
            let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(corrupt)?;
            let mut rows = Vec::with_capacity(elements.len());
            for el in elements {
                match serde_json::from_str::<JobArray>(el.get()) {
                    Ok(r) => rows.push(r),
                    Err(e) => bad.push(undecodable(el.get(), &format!("jobs: {e}"))?),
                }
            }
            rows
        }
    };
    for r in rows {
        let (id, attempt, token) = (r.0, r.6, r.13);
        match job_from_array(r) {
            Ok(job) => jobs.push(job),
            Err(e) => bad.push(Undecodable {
                id: JobId(id),
                token: LeaseToken(token),
                attempt: attempt as u32,
                reason: Undecodable::reason_of(&e),
            }),
        }
    }
    Ok((jobs, bad))
}

/// The identity of an element that does not decode as a [`JobArray`].
fn undecodable(element: &str, reason: &str) -> Result<Undecodable, StoreError> {
    let fields: Vec<&RawValue> = serde_json::from_str(element)
        .map_err(|e| StoreError::Corrupt(format!("jobs (as JSON): {e}")))?;
    let int = |i: usize| {
        fields
            .get(i)
            .and_then(|f| serde_json::from_str::<i64>(f.get()).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("jobs (as JSON): column {i}: {reason}")))
    };
    Ok(Undecodable {
        id: JobId(int(0)?),
        token: LeaseToken(int(13)?),
        attempt: int(6)? as u32,
        reason: reason.to_string(),
    })
}

fn job_from_array(r: JobArray) -> Result<Job, StoreError> {
    let payload = match r.3 {
        Some(p) if r.24 != 0 => serde_json::from_str(p.get())
            .map_err(|e| StoreError::Corrupt(format!("jobs.payload: {e}")))?,
        _ => return Err(StoreError::Corrupt("jobs.payload: not valid JSON".into())),
    };
    Ok(Job {
        id: JobId(r.0),
        queue: r.1,
        kind: r.2,
        payload,
        priority: r.4 as i16,
        state: state(&r.5)?,
        attempt: r.6 as u32,
        max_attempts: r.7 as u32,
        run_at: Millis(r.8),
        created_at: Millis(r.9),
        finished_at: r.10.map(Millis),
        timeout: r.11.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        unique_key: r.12,
        lease_token: LeaseToken(r.13),
        lease_owner: r.14.map(WorkerId),
        lease_node: r.15.map(NodeId),
        lease_expires_at: r.16.map(Millis),
        last_error: r.17,
        output: r
            .18
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("jobs.output: {e}")))?,
        depends_on: Vec::new(),
        on_parent_failure: columns::policy(&r.19)?,
        progress: columns::progress(r.20, r.21, r.22),
        snoozes: columns::snoozes(r.23),
    })
}

/// Decodes a row selected with [`job_columns`]; `depends_on` is left empty.
pub fn job(row: &SqliteRow) -> Result<Job, StoreError> {
    let policy: String = col(row, "on_parent_failure")?;
    let timeout: Option<i64> = col(row, "timeout_ms")?;
    Ok(Job {
        id: JobId(col(row, "id")?),
        queue: col(row, "queue")?,
        kind: col(row, "kind")?,
        payload: json_col(row, "payload")?.unwrap_or(serde_json::Value::Null),
        priority: col::<i64>(row, "priority")? as i16,
        state: state(&col::<String>(row, "state")?)?,
        attempt: col::<i64>(row, "attempt")? as u32,
        max_attempts: col::<i64>(row, "max_attempts")? as u32,
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
        output: json_col(row, "output")?,
        depends_on: Vec::new(),
        on_parent_failure: columns::policy(&policy)?,
        progress: columns::progress(
            col(row, "progress")?,
            col(row, "progress_message")?,
            col(row, "progress_at")?,
        ),
        snoozes: columns::snoozes(col(row, "snoozes")?),
    })
}

/// [`job`], with the job's id in the error.
pub fn job_named(row: &SqliteRow) -> Result<Job, StoreError> {
    job(row).map_err(|e| job_named_error(row.try_get::<i64, _>("id").unwrap_or_default(), &e))
}

/// A new job as the bulk insert reads it.
#[derive(Serialize)]
pub struct InsertRow<'a> {
    pub q: &'a str,
    pub k: &'a str,
    pub p: &'a serde_json::Value,
    pub pr: i16,
    pub s: &'static str,
    pub m: u32,
    pub r: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<i64>,
    pub pf: &'static str,
}

/// A successful attempt as the bulk completion reads it.
#[derive(Serialize)]
pub struct SuccessRow<'a> {
    pub id: i64,
    pub tok: i64,
    pub a: u32,
    pub w: &'a str,
    pub n: &'a str,
    pub s: i64,
    pub f: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub o: Option<&'a serde_json::Value>,
}

/// Serialises a value for `json_each`.
pub fn to_json<T: Serialize>(v: &T) -> String {
    // Serialising plain structs, numbers and `serde_json::Value`s cannot fail.
    serde_json::to_string(v).expect("serialisable")
}
