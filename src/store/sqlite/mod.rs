//! The embedded default: one SQLite file, no servers.
//!
//! One writer connection (SQLite has a single writer; a pool of writers would only
//! trade SQLITE_BUSY errors) and a small pool of readers over WAL. Every write runs in
//! a `BEGIN IMMEDIATE` transaction, so the write lock is taken up front and two
//! processes sharing the file (a node and the CLI) wait for each other instead of
//! failing on lock upgrade. Hot paths (enqueue, claim, success) are set-based: one
//! statement per batch, because each command costs a round trip to sqlx's SQLite worker
//! thread (and the wake-ups of two threads). Claims pass ids as a scalar JSON array and
//! bring the batch back as one JSON value, not one row per job; successes bind their
//! rows as a multi-row `VALUES` list (extracting fields from `json_each` objects cost
//! more than the writes); several statements share one command where no answer is
//! needed in between.

mod rows;
mod tokens;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use self::rows::{InsertRow, SuccessRow, job_array, job_columns, policy_name, to_json};
use super::{
    CancelOutcome, ClaimOrder, Counts, DeadLetter, EnqueueOutcome, EventLog, JobAdmin, JobFilter,
    JobQueue, Leadership, Redrive, RescuePlan, RescuedJob, Store, StoreError, grant,
};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent, StoredEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, JobState, Lease, NewJob,
    NodeId, Outcome, WorkerId,
};

type Tx = Transaction<'static, Sqlite>;

/// Rows per multi-row `VALUES` statement.
const MAX_VALUES_ROWS: usize = 256;

/// Row counts are padded (with NULL rows the statement skips) to a power of two, so a
/// handful of distinct statements cover every batch size and stay in the statement cache.
fn padded(n: usize) -> usize {
    n.next_power_of_two()
}

/// `n` parenthesised rows of `width` placeholders: `(?,?),(?,?)`.
fn placeholders(n: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(","));
    vec![row; n].join(",")
}

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        create_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .row_buffer_size(1024);
        let cannot_open = |e: sqlx::Error| {
            StoreError::Invalid(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        };
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(cannot_open)?;
        Ok(Self { write, read })
    }

    /// Closes both pools, waiting for running statements.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Creates the database file, if it does not exist, readable and writable by its owner
/// only (it holds every payload, like the node key its secret). Created here rather than
/// by SQLite, whose files get the process umask, with the mode given to the `open` call
/// itself, so there is no moment at which the file is readable by others. SQLite gives
/// the `-wal` and `-shm` files it creates later the mode of the database file. An empty
/// file is an empty database to SQLite. An existing file is left as it is.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Invalid(format!(
            "cannot create SQLite database {}: {e}",
            path.display()
        ))),
    }
}

async fn events(tx: &mut Tx, events: &[LifecycleEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            json!({
                "at": e.at.0, "k": e.kind.as_str(), "j": e.job.map(|j| j.0), "a": e.attempt,
                "w": e.worker.as_ref().map(|w| &w.0), "n": e.node.as_ref().map(|n| &n.0),
                "d": if e.detail.is_null() { None } else { Some(e.detail.to_string()) },
            })
        })
        .collect();
    sqlx::query(
        "INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node, detail)
         SELECT value->>'at', value->>'k', value->>'j', value->>'a', value->>'w', value->>'n', value->>'d'
         FROM json_each(?1) ORDER BY key",
    )
    .bind(to_json(&rows))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn execution(tx: &mut Tx, c: &Completion, outcome: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(c.lease.job.0)
    .bind(c.lease.attempt as i64)
    .bind(&c.lease.worker.0)
    .bind(&c.lease.node.0)
    .bind(c.started_at.0)
    .bind(c.finished_at.0)
    .bind(outcome)
    .bind(c.outcome.error())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn dead_letter(tx: &mut Tx, ids: &[i64], now: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR REPLACE INTO dead_letter_queue (job, queue, reason, discarded_at)
         SELECT id, queue, coalesce(last_error, 'discarded'), ?1 FROM jobs WHERE id IN (SELECT value FROM json_each(?2))",
    )
    .bind(now.0)
    .bind(to_json(&ids))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the parent-failure policy of the waiting children of `parents`, transitively:
/// `discard` children are dead-lettered (and their own children considered in turn),
/// `hold` children keep waiting.
async fn cascade_discard(tx: &mut Tx, parents: Vec<i64>, now: Millis) -> Result<(), StoreError> {
    let mut frontier = parents;
    while !frontier.is_empty() {
        let discarded: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = 'discarded', finished_at = ?1,
                 last_error = 'a parent job was discarded or cancelled'
             WHERE state = 'waiting' AND on_parent_failure = 'discard'
               AND id IN (SELECT child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?2)))
             RETURNING id, attempt",
        )
        .bind(now.0)
        .bind(to_json(&frontier))
        .fetch_all(&mut **tx)
        .await?;
        let ids: Vec<i64> = discarded.iter().map(|(id, _)| *id).collect();
        dead_letter(tx, &ids, now).await?;
        let evs: Vec<_> = discarded
            .iter()
            .map(|&(id, attempt)| {
                LifecycleEvent::new(EventKind::JobDiscarded, now)
                    .job(JobId(id), Some(attempt as u32))
                    .detail(json!({"reason": "parent discarded or cancelled"}))
            })
            .collect();
        events(tx, &evs).await?;
        frontier = ids;
    }
    Ok(())
}

/// Releases waiting children of newly succeeded `parents` whose parents have all succeeded
/// (the caller checked that some of them have children).
async fn release_children(tx: &mut Tx, parents: &[i64], now: Millis) -> Result<(), StoreError> {
    let parents = to_json(&parents);
    sqlx::query(
        "UPDATE jobs SET pending_parents = pending_parents - (
             SELECT count(*) FROM job_dependencies d
             WHERE d.child = jobs.id AND d.parent IN (SELECT value FROM json_each(?1)))
         WHERE state = 'waiting'
           AND id IN (SELECT child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1)))",
    )
    .bind(&parents)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET state = CASE WHEN run_at > ?2 THEN 'scheduled' ELSE 'available' END
         WHERE state = 'waiting' AND pending_parents <= 0
           AND id IN (SELECT child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1)))",
    )
    .bind(&parents)
    .bind(now.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies what a set of lost leases became ([`RescuePlan`]); shared by expiry rescue
/// and node revocation. One process, so there is no one to wake.
async fn after_rescue(
    tx: &mut Tx,
    rescued: Vec<(i64, i64, String)>,
    now: Millis,
    detail: serde_json::Value,
) -> Result<Vec<RescuedJob>, StoreError> {
    let rows = rescued
        .into_iter()
        .map(|(id, attempt, state)| {
            let r = RescuedJob {
                id: JobId(id),
                attempt: attempt.max(0) as u32,
                state: rows::state(&state)?,
            };
            Ok((r, String::new()))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let plan = RescuePlan::new(rows, now, detail);
    events(tx, &plan.events).await?;
    if !plan.discarded.is_empty() {
        dead_letter(tx, &plan.discarded, now).await?;
        cascade_discard(tx, plan.discarded, now).await?;
    }
    Ok(plan.rescued)
}

impl SqliteStore {
    /// Inserts a run of jobs with no unique key and no parents in one statement.
    async fn insert_plain(
        tx: &mut Tx,
        jobs: &[&NewJob],
        now: Millis,
        out: &mut Vec<EnqueueOutcome>,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let rows: Vec<InsertRow> = jobs
            .iter()
            .map(|j| {
                let run_at = j.run_at.unwrap_or(now);
                InsertRow {
                    q: &j.queue,
                    k: &j.kind,
                    p: &j.payload,
                    pr: j.priority,
                    s: if run_at > now {
                        "scheduled"
                    } else {
                        "available"
                    },
                    m: j.max_attempts,
                    r: run_at.0,
                    t: j.timeout.map(|t| t.as_millis() as i64),
                    pf: policy_name(j.on_parent_failure),
                }
            })
            .collect();
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at, timeout_ms,
                               on_parent_failure)
             SELECT value->>'q', value->>'k', value->'p', value->>'pr', value->>'s', value->>'m', value->>'r', ?1,
                    value->>'t', value->>'pf'
             FROM json_each(?2) ORDER BY key
             RETURNING id",
        )
        .bind(now.0)
        .bind(to_json(&rows))
        .fetch_all(&mut **tx)
        .await?;
        // Rowids are handed out in insertion order, so sorted ids line up with the rows.
        ids.sort_unstable();
        sqlx::query(
            "INSERT INTO lifecycle_events (at, kind, job, attempt)
             SELECT ?1, 'job.enqueued', value, 0 FROM json_each(?2) ORDER BY key",
        )
        .bind(now.0)
        .bind(to_json(&ids))
        .execute(&mut **tx)
        .await?;
        out.extend(
            ids.into_iter()
                .map(|id| EnqueueOutcome::Inserted(JobId(id))),
        );
        Ok(())
    }

    /// Inserts one job that has a unique key or parents.
    async fn insert_linked(
        tx: &mut Tx,
        job: &NewJob,
        parents: Vec<i64>,
        now: Millis,
    ) -> Result<EnqueueOutcome, StoreError> {
        if let Some(key) = &job.unique_key {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE unique_key = ?1 AND state NOT IN ('succeeded', 'discarded', 'cancelled')",
            )
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(id) = existing {
                return Ok(EnqueueOutcome::Duplicate(JobId(id)));
            }
        }
        let states: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(to_json(&parents))
        .fetch_all(&mut **tx)
        .await?;
        let known: HashMap<i64, JobState> = states
            .into_iter()
            .map(|(id, s)| Ok((id, rows::state(&s)?)))
            .collect::<Result<_, StoreError>>()?;
        if let Some(missing) = parents.iter().find(|p| !known.contains_key(p)) {
            return Err(StoreError::Invalid(format!(
                "job depends on unknown job {missing}"
            )));
        }
        let pending = known
            .values()
            .filter(|s| **s != JobState::Succeeded)
            .count() as i64;
        let parent_failed = known
            .values()
            .any(|s| matches!(s, JobState::Discarded | JobState::Cancelled));
        let run_at = job.run_at.unwrap_or(now);
        let state =
            if parent_failed && job.on_parent_failure == crate::job::ParentFailurePolicy::Discard {
                JobState::Discarded
            } else if pending > 0 {
                JobState::Waiting
            } else if run_at > now {
                JobState::Scheduled
            } else {
                JobState::Available
            };
        let discarded = state == JobState::Discarded;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at, timeout_ms,
                               unique_key, on_parent_failure, pending_parents, finished_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             RETURNING id",
        )
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(job.payload.to_string())
        .bind(job.priority as i64)
        .bind(state.as_str())
        .bind(job.max_attempts as i64)
        .bind(run_at.0)
        .bind(now.0)
        .bind(job.timeout.map(|t| t.as_millis() as i64))
        .bind(&job.unique_key)
        .bind(policy_name(job.on_parent_failure))
        .bind(pending)
        .bind(discarded.then_some(now.0))
        .bind(discarded.then_some("a parent job was discarded or cancelled"))
        .fetch_one(&mut **tx)
        .await?;
        if !parents.is_empty() {
            sqlx::query(
                "INSERT OR IGNORE INTO job_dependencies (parent, child) SELECT value, ?1 FROM json_each(?2)",
            )
            .bind(id)
            .bind(to_json(&parents))
            .execute(&mut **tx)
            .await?;
        }
        let mut evs =
            vec![LifecycleEvent::new(EventKind::JobEnqueued, now).job(JobId(id), Some(0))];
        if discarded {
            dead_letter(tx, &[id], now).await?;
            evs.push(
                LifecycleEvent::new(EventKind::JobDiscarded, now)
                    .job(JobId(id), Some(0))
                    .detail(json!({"reason": "parent discarded or cancelled"})),
            );
        }
        events(tx, &evs).await?;
        Ok(EnqueueOutcome::Inserted(JobId(id)))
    }

    /// Applies successes in one statement; returns the ids applied.
    async fn apply_successes(
        tx: &mut Tx,
        batch: &[&Completion],
        now: Millis,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Duplicates of one (job, token) in a batch would record the execution twice.
        let mut seen = HashSet::with_capacity(batch.len());
        let rows: Vec<SuccessRow> = batch
            .iter()
            .filter(|c| seen.insert((c.lease.job.0, c.lease.token.0)))
            .map(|c| SuccessRow {
                id: c.lease.job.0,
                tok: c.lease.token.0,
                a: c.lease.attempt,
                w: &c.lease.worker.0,
                n: &c.lease.node.0,
                s: c.started_at.0,
                f: c.finished_at.0,
                o: match &c.outcome {
                    Outcome::Succeeded { output } => output.as_ref(),
                    _ => None,
                },
            })
            .collect();
        // The lease token is unchanged by this update, so (id, token) names the applied entry.
        let mut applied: Vec<(i64, i64)> = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_VALUES_ROWS) {
            let n = padded(chunk.len());
            let sql = format!(
                "UPDATE jobs SET state = 'succeeded', finished_at = c.column3, output = c.column4,
                     lease_expires_at = NULL
                 FROM (VALUES {}) AS c
                 WHERE jobs.id = c.column1 AND jobs.lease_token = c.column2 AND jobs.state = 'running'
                 RETURNING jobs.id, jobs.lease_token",
                placeholders(n, 4)
            );
            let mut q = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.id)
                    .bind(r.tok)
                    .bind(r.f)
                    .bind(r.o.map(|o| o.to_string()));
            }
            for _ in chunk.len()..n {
                q = q
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<String>);
            }
            applied.extend(q.fetch_all(&mut **tx).await?);
        }
        if applied.is_empty() {
            return Ok(applied);
        }
        let ids: Vec<i64> = applied.iter().map(|(id, _)| *id).collect();
        let done: HashSet<(i64, i64)> = applied.iter().copied().collect();
        let rows: Vec<&SuccessRow> = rows
            .iter()
            .filter(|r| done.contains(&(r.id, r.tok)))
            .collect();
        // Both records and the check for waiting children go in one command (a round
        // trip to SQLite's thread each saved); positional parameters run on from one
        // statement to the next.
        let mut has_children = false;
        for chunk in rows.chunks(MAX_VALUES_ROWS) {
            let n = padded(chunk.len());
            let sql = format!(
                "INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome)
                 SELECT column1, column2, column3, column4, column5, column6, 'succeeded'
                 FROM (VALUES {rows}) WHERE column1 IS NOT NULL;
                 INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
                 SELECT column6, 'job.succeeded', column1, column2, column3, column4
                 FROM (VALUES {rows}) WHERE column1 IS NOT NULL;
                 SELECT EXISTS (SELECT 1 FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?)))",
                rows = placeholders(n, 6)
            );
            let mut q = sqlx::query_scalar::<_, bool>(AssertSqlSafe(sql));
            // The same rows twice: once per insert.
            for _ in 0..2 {
                for r in chunk {
                    q = q
                        .bind(r.id)
                        .bind(r.a as i64)
                        .bind(r.w)
                        .bind(r.n)
                        .bind(r.s)
                        .bind(r.f);
                }
                for _ in chunk.len()..n {
                    q = q
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<&str>)
                        .bind(None::<&str>)
                        .bind(None::<i64>)
                        .bind(None::<i64>);
                }
            }
            let chunk_ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
            q = q.bind(to_json(&chunk_ids));
            has_children |= q.fetch_one(&mut **tx).await?;
        }
        if has_children {
            release_children(tx, &ids, now).await?;
        }
        Ok(applied)
    }

    /// Applies one failed or cancelled attempt; returns whether its lease was current.
    async fn apply_failure(tx: &mut Tx, c: &Completion) -> Result<bool, StoreError> {
        let job = c.lease.job;
        let at = c.finished_at;
        let (applied, outcome) = match &c.outcome {
            Outcome::Succeeded { .. } => unreachable!("successes are applied in bulk"),
            Outcome::Retry { error, run_at } => {
                let n = sqlx::query(
                    "UPDATE jobs SET state = 'retryable', run_at = ?1, last_error = ?2, lease_expires_at = NULL
                     WHERE id = ?3 AND lease_token = ?4 AND state = 'running'",
                )
                .bind(run_at.0)
                .bind(error)
                .bind(job.0)
                .bind(c.lease.token.0)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                (n == 1, "failed")
            }
            Outcome::Discard { error } | Outcome::Cancelled { reason: error } => {
                let cancelled = matches!(c.outcome, Outcome::Cancelled { .. });
                let n = sqlx::query(
                    "UPDATE jobs SET state = ?1, finished_at = ?2, last_error = ?3, lease_expires_at = NULL
                     WHERE id = ?4 AND lease_token = ?5 AND state = 'running'",
                )
                .bind(if cancelled { "cancelled" } else { "discarded" })
                .bind(at.0)
                .bind(error)
                .bind(job.0)
                .bind(c.lease.token.0)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if n == 1 && !cancelled {
                    dead_letter(tx, &[job.0], at).await?;
                }
                if n == 1 {
                    cascade_discard(tx, vec![job.0], at).await?;
                }
                (n == 1, if cancelled { "cancelled" } else { "discarded" })
            }
        };
        if applied {
            execution(tx, c, outcome).await?;
            events(tx, &LifecycleEvent::of_completion(c)).await?;
        }
        Ok(applied)
    }

    /// One page of [`Store::events_after`]: the events that decode, how many rows were
    /// read and the sequence number of the last one (see [`super::fill_events`]).
    async fn events_page(&self, after: i64, limit: u32) -> Result<super::EventPage, StoreError> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(
            "SELECT seq, at, kind, job, attempt, worker, node, detail FROM lifecycle_events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        let read = rows.len();
        let last = rows.last().map(|r| r.0);
        let events = rows
            .into_iter()
            .map(|(seq, at, kind, job, attempt, worker, node, detail)| {
                let kind = EventKind::from_str(&kind).map_err(|e| {
                    StoreError::Corrupt(format!("lifecycle_events.kind of event {seq}: {e}"))
                })?;
                // A detail that cannot be read is marked as such; the event itself is kept.
                let detail = match detail {
                    Some(d) => serde_json::from_str(&d).unwrap_or_else(
                        |e| json!({ "undecodable": format!("lifecycle_events.detail: {e}") }),
                    ),
                    None => serde_json::Value::Null,
                };
                Ok(StoredEvent {
                    seq,
                    event: LifecycleEvent {
                        at: Millis(at),
                        kind,
                        job: job.map(JobId),
                        attempt: attempt.map(|a| a as u32),
                        worker: worker.map(WorkerId),
                        node: node.map(NodeId),
                        detail,
                    },
                })
            });
        Ok((super::skip_undecodable("events", events), read, last))
    }

    async fn fetch_jobs(
        &self,
        sql: &'static str,
        bind: impl FnOnce(
            sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
        ) -> sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = bind(sqlx::query(sql)).fetch_all(&self.read).await?;
        let mut jobs = super::skip_undecodable("jobs", rows.iter().map(rows::job_named));
        self.fill_parents(&mut jobs).await?;
        Ok(jobs)
    }

    async fn fill_parents(&self, jobs: &mut [Job]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id.0).collect();
        let links: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT child, parent FROM job_dependencies WHERE child IN (SELECT value FROM json_each(?1))
             ORDER BY child, parent",
        )
        .bind(to_json(&ids))
        .fetch_all(&self.read)
        .await?;
        let mut by_child: HashMap<i64, Vec<JobId>> = HashMap::new();
        for (child, parent) in links {
            by_child.entry(child).or_default().push(JobId(parent));
        }
        for j in jobs {
            j.depends_on = by_child.remove(&j.id.0).unwrap_or_default();
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        super::check_new_jobs(&jobs)?;
        let mut tx = self.begin().await?;
        let mut out: Vec<EnqueueOutcome> = Vec::with_capacity(jobs.len());
        let mut plain: Vec<&NewJob> = Vec::new();
        for job in &jobs {
            let linked = job.unique_key.is_some()
                || !job.depends_on.is_empty()
                || !job.depends_on_index.is_empty();
            if !linked {
                plain.push(job);
                continue;
            }
            Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
            plain.clear();
            let mut parents: Vec<i64> = job.depends_on.iter().map(|p| p.0).collect();
            parents.extend(job.depends_on_index.iter().map(|&i| out[i].id().0));
            parents.sort_unstable();
            parents.dedup();
            let outcome = Self::insert_linked(&mut tx, job, parents, now).await?;
            out.push(outcome);
        }
        Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if req.limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        let expires = req.now.plus(req.lease_for);
        let mut tx = self.begin().await?;
        // Pick, lease, log and read back the batch with one value crossing from SQLite's
        // thread per statement (ids in, one JSON array out), not one row per job.
        let ids: String = sqlx::query_scalar(
            "SELECT json_group_array(id) FROM (
                 SELECT id FROM jobs WHERE state = 'available'
                   AND queue IN (SELECT value FROM json_each(?1))
                 ORDER BY priority DESC, run_at, id LIMIT ?2)",
        )
        .bind(to_json(&req.queues))
        .bind(req.limit as i64)
        .fetch_one(&mut *tx)
        .await?;
        if ids == "[]" {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // Lease, log and read back in one command. Parameters are positional: each
        // statement takes the next ones in order (numbered ones would not run on).
        let claimed: String = sqlx::query_scalar(concat!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1,
                 lease_owner = ?, lease_node = ?, lease_expires_at = ?
             WHERE id IN (SELECT value FROM json_each(?)) AND state = 'available';
             INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
             SELECT ?, 'job.claimed', id, attempt, lease_owner, lease_node FROM jobs
             WHERE id IN (SELECT value FROM json_each(?));
             SELECT json_group_array(",
            job_array!(),
            ") FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
        ))
        .bind(&req.worker.0)
        .bind(&req.node.0)
        .bind(expires.0)
        .bind(&ids)
        .bind(req.now.0)
        .bind(&ids)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
        let (mut jobs, bad) = rows::jobs_from_array(&claimed)?;
        // Rows this version cannot read are dead-lettered in the claim's own transaction,
        // under the lease it has just given them; the rest of the batch runs.
        for u in &bad {
            tracing::warn!(job = %u.id, reason = %u.reason, "dead-lettering a job whose row cannot be decoded");
            Self::apply_failure(&mut tx, &u.completion(req)).await?;
        }
        tx.commit().await?;
        jobs.sort_by_key(ClaimOrder::of);
        Ok(jobs.into_iter().map(|job| grant(job, req)).collect())
    }

    async fn complete(
        &self,
        mut batch: Vec<Completion>,
    ) -> Result<Vec<CompletionResult>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        super::storable_completions(&mut batch);
        let now = batch
            .iter()
            .map(|c| c.finished_at)
            .max()
            .unwrap_or_default();
        let mut tx = self.begin().await?;
        let successes: Vec<&Completion> = batch
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Succeeded { .. }))
            .collect();
        let mut applied: HashSet<(i64, i64)> = Self::apply_successes(&mut tx, &successes, now)
            .await?
            .into_iter()
            .collect();
        let mut results = Vec::with_capacity(batch.len());
        for c in &batch {
            let ok = match c.outcome {
                // A duplicate success in one batch applies once: the first matching entry wins.
                // A duplicate of an applied success in the same batch is refused: the first wins.
                Outcome::Succeeded { .. } => applied.remove(&(c.lease.job.0, c.lease.token.0)),
                _ => Self::apply_failure(&mut tx, c).await?,
            };
            results.push(if ok {
                CompletionResult::Applied
            } else {
                CompletionResult::StaleLease
            });
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = leases
            .iter()
            .map(|l| json!({"id": l.job.0, "tok": l.token.0}))
            .collect();
        let mut tx = self.begin().await?;
        let extended: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = ?1
             FROM (SELECT value->>'id' AS id, value->>'tok' AS tok FROM json_each(?2)) AS l
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id",
        )
        .bind(until.0)
        .bind(to_json(&rows))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(leases.iter().map(|l| extended.contains(&l.job.0)).collect())
    }

    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = leases
            .iter()
            .map(|l| json!({"id": l.job.0, "tok": l.token.0}))
            .collect();
        let mut tx = self.begin().await?;
        let released: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1,
                 lease_token = lease_token + 1, lease_expires_at = NULL, run_at = ?1
             FROM (SELECT value->>'id' AS id, value->>'tok' AS tok FROM json_each(?2)) AS l
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.attempt",
        )
        .bind(now.0)
        .bind(to_json(&rows))
        .fetch_all(&mut *tx)
        .await?;
        let evs: Vec<_> = released
            .iter()
            .map(|&(id, attempt)| {
                LifecycleEvent::new(EventKind::JobRescued, now)
                    .job(JobId(id), Some(attempt as u32))
                    .detail(json!({"to": "available", "why": "released unstarted"}))
            })
            .collect();
        events(&mut tx, &evs).await?;
        tx.commit().await?;
        Ok(leases
            .iter()
            .map(|l| released.iter().any(|&(id, _)| id == l.job.0))
            .collect())
    }

    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE jobs SET state = 'available' WHERE state IN ('scheduled', 'retryable') AND run_at <= ?1")
            .bind(now.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(run_at) FROM jobs WHERE state IN ('scheduled', 'retryable')",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(t.map(Millis))
    }

    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        let mut tx = self.begin().await?;
        let rescued: Vec<(i64, i64, String)> = sqlx::query_as(
            "UPDATE jobs SET lease_token = lease_token + 1, lease_expires_at = NULL,
                 state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
                 run_at = CASE WHEN attempt < max_attempts THEN ?1 ELSE run_at END,
                 finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?1 END,
                 last_error = 'lease expired: the worker stopped renewing it'
             WHERE state = 'running' AND lease_expires_at < ?1
             RETURNING id, attempt, state",
        )
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?;
        let out = after_rescue(&mut tx, rescued, now, json!("lease expired")).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn revoke_node(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError> {
        let mut tx = self.begin().await?;
        let rescued: Vec<(i64, i64, String)> = sqlx::query_as(
            "UPDATE jobs SET lease_token = lease_token + 1, lease_expires_at = NULL,
                 state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
                 run_at = CASE WHEN attempt < max_attempts THEN ?1 ELSE run_at END,
                 finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?1 END,
                 last_error = 'lease revoked: node ' || ?2 || ' lost it'
             WHERE state = 'running' AND lease_node = ?2
             RETURNING id, attempt, state",
        )
        .bind(now.0)
        .bind(&node.0)
        .fetch_all(&mut *tx)
        .await?;
        let out = after_rescue(&mut tx, rescued, now, detail).await?;
        tx.commit().await?;
        Ok(out)
    }
}

#[async_trait]
impl JobAdmin for SqliteStore {
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        // One job: a row that cannot be decoded is this call's error, not left out.
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1"
        ))
        .bind(id.0)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut jobs = [rows::job_named(&row)?];
        self.fill_parents(&mut jobs).await?;
        let [job] = jobs;
        Ok(Some(job))
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let state = filter.state.map(|s| s.as_str());
        let queue = filter.queue.clone();
        let kind = filter.kind.clone();
        self.fetch_jobs(
            concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2)
                   AND (?3 IS NULL OR kind = ?3) AND id > ?4 ORDER BY id LIMIT ?5"
            ),
            |q| {
                q.bind(state)
                    .bind(queue)
                    .bind(kind)
                    .bind(filter.after.map(|a| a.0).unwrap_or(0))
                    .bind(filter.limit as i64)
            },
        )
        .await
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")
                .fetch_all(&self.read)
                .await?;
        let mut counts: Counts = BTreeMap::new();
        let rows = rows
            .into_iter()
            .map(|(queue, state, n)| Ok((queue, rows::state(&state)?, n)));
        for (queue, state, n) in super::skip_undecodable("counts", rows) {
            counts.entry(queue).or_default().insert(state, n as u64);
        }
        Ok(counts)
    }

    async fn cancel(&self, id: JobId, now: Millis) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let state = rows::state(&state.ok_or(StoreError::NotFound(id))?)?;
        if state.is_final() {
            return Ok(CancelOutcome::AlreadyFinished(state));
        }
        let attempt: i64 = sqlx::query_scalar(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?1, lease_expires_at = NULL,
                 lease_token = lease_token + 1, last_error = coalesce(last_error, 'cancelled')
             WHERE id = ?2 RETURNING attempt",
        )
        .bind(now.0)
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
        let ev = LifecycleEvent::new(EventKind::JobCancelled, now)
            .job(id, Some(attempt as u32))
            .detail(json!({"from": state.as_str()}));
        events(&mut tx, &[ev]).await?;
        cascade_discard(&mut tx, vec![id.0], now).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Cancelled)
    }

    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT dlq_reason, dlq_at, ",
            job_columns!(),
            " FROM jobs JOIN (SELECT job AS dlq_job, queue AS dlq_queue, reason AS dlq_reason, discarded_at AS dlq_at
                              FROM dead_letter_queue) ON id = dlq_job
              WHERE (?1 IS NULL OR dlq_queue = ?1) ORDER BY dlq_at, dlq_job LIMIT ?2"
        ))
        .bind(queue)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        let dead = rows.iter().map(|r| {
            Ok(DeadLetter {
                job: rows::job_named(r)?,
                reason: r
                    .try_get("dlq_reason")
                    .map_err(|e| StoreError::Corrupt(format!("dead_letter_queue.reason: {e}")))?,
                discarded_at: Millis(r.try_get("dlq_at").map_err(|e| {
                    StoreError::Corrupt(format!("dead_letter_queue.discarded_at: {e}"))
                })?),
            })
        });
        Ok(super::skip_undecodable("dead letters", dead))
    }

    async fn redrive(&self, which: Redrive, now: Millis) -> Result<Vec<JobId>, StoreError> {
        let (ids, queue, all) = match which {
            Redrive::Ids(ids) => (
                Some(to_json(&ids.iter().map(|i| i.0).collect::<Vec<_>>())),
                None,
                false,
            ),
            Redrive::Queue(q) => (None, Some(q), false),
            Redrive::All => (None, None, true),
        };
        let mut tx = self.begin().await?;
        let redriven: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = CASE WHEN pending_parents > 0 THEN 'waiting' ELSE 'available' END,
                 attempt = 0, run_at = ?1, finished_at = NULL, lease_token = lease_token + 1
             WHERE state = 'discarded' AND id IN (
                 SELECT job FROM dead_letter_queue
                 WHERE ?4 OR (?2 IS NOT NULL AND job IN (SELECT value FROM json_each(?2))) OR queue = ?3)
             RETURNING id, lease_token",
        )
        .bind(now.0)
        .bind(ids)
        .bind(queue)
        .bind(all)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids: Vec<i64> = redriven.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        sqlx::query("DELETE FROM dead_letter_queue WHERE job IN (SELECT value FROM json_each(?1))")
            .bind(to_json(&ids))
            .execute(&mut *tx)
            .await?;
        let evs: Vec<_> = ids
            .iter()
            .map(|&id| LifecycleEvent::new(EventKind::JobRedriven, now).job(JobId(id), Some(0)))
            .collect();
        events(&mut tx, &evs).await?;
        tx.commit().await?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn purge(
        &self,
        retention: &super::retention::Retention,
        now: Millis,
    ) -> Result<super::retention::Purged, StoreError> {
        let finished_before = now.0 - retention.finished_jobs.as_millis() as i64;
        let dead_before = now.0 - retention.dead_letters.as_millis() as i64;
        let leases_before = now.0 - retention.coordination.as_millis() as i64;
        let mut tx = self.begin().await?;
        let finished: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < ?1
             LIMIT ?2",
        )
        .bind(finished_before)
        .bind(retention.batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        let dead: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'discarded' AND finished_at < ?1 LIMIT ?2",
        )
        .bind(dead_before)
        .bind(retention.batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<i64> = finished.iter().chain(&dead).copied().collect();
        let mut events = 0;
        if !ids.is_empty() {
            let ids = to_json(&ids);
            for sql in [
                "DELETE FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?1))
                    OR child IN (SELECT value FROM json_each(?1))",
                "DELETE FROM job_executions WHERE job IN (SELECT value FROM json_each(?1))",
                "DELETE FROM dead_letter_queue WHERE job IN (SELECT value FROM json_each(?1))",
            ] {
                sqlx::query(sql).bind(&ids).execute(&mut *tx).await?;
            }
            events += sqlx::query(
                "DELETE FROM lifecycle_events WHERE job IN (SELECT value FROM json_each(?1))",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        events += sqlx::query("DELETE FROM lifecycle_events WHERE job IS NULL AND at < ?1")
            .bind(finished_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let leases = sqlx::query("DELETE FROM leader_leases WHERE expires_at < ?1")
            .bind(leases_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(super::retention::Purged {
            jobs: finished.len() as u64,
            dead_letters: dead.len() as u64,
            events,
            leases,
        })
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn record_events(&self, mut evs: Vec<LifecycleEvent>) -> Result<(), StoreError> {
        if evs.is_empty() {
            return Ok(());
        }
        super::storable_events(&mut evs);
        let mut tx = self.begin().await?;
        events(&mut tx, &evs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        super::fill_events(after, limit, |after, limit| self.events_page(after, limit)).await
    }
}

#[async_trait]
impl Leadership for SqliteStore {
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: Duration,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let led: Option<String> = sqlx::query_scalar(
            "INSERT INTO leader_leases (role, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < ?4
             RETURNING holder",
        )
        .bind(role)
        .bind(&holder.0)
        .bind(now.plus(ttl).0)
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(led.is_some())
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
