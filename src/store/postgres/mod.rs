//! The production system of record: Postgres via sqlx.
//!
//! The row model and the transition rules are those of the SQLite store (the reference);
//! what differs is how they are applied under concurrency, since many nodes write at once:
//!
//! - A claim is one statement: `SELECT … FOR UPDATE SKIP LOCKED` sized to the free slots,
//!   the lease update and the `job.claimed` events, so concurrent claimers never wait for
//!   each other and never take the same job.
//! - A batch of completions is one round trip: `jm_complete` (see the migration) applies
//!   every entry whose lease token is still current, with its execution row, events,
//!   dead-letter entry, released children and discard cascade, in one transaction.
//! - Enqueue inserts a batch with one statement reading `unnest`ed arrays (rather than
//!   `COPY`, which cannot return the new ids or write the `job.enqueued` events in the
//!   same statement); a batch without unique keys or parents is a single autocommit
//!   statement, one round trip.
//! - Unique keys are a partial unique index over unfinished jobs (as River), so two
//!   nodes enqueueing the same key race safely.
//! - Every transition that makes jobs available (enqueue, promotion, rescue, redrive,
//!   released dependencies) sends `NOTIFY` on the schema's channel in the same
//!   transaction; [`PostgresStore::listen`] turns those into [`Wakeups`].
//!
//! Each store lives in one schema (`search_path`), so several stores can share a
//! database; tests use one schema each.
//!
//! Known limits: `lifecycle_events.seq` is drawn before commit, so a reader of
//! [`Store::events_after`] can see seq `n + 1` before a slower transaction commits `n`;
//! a tailing reader should re-read a short window behind its cursor. Two batches
//! releasing the same children in opposite orders can deadlock; Postgres aborts one
//! (SQLSTATE `40P01`) and the caller may retry it.

mod listen;
pub(crate) mod rows;
mod tokens;

// Re-exported where they were first defined, so `store::postgres::Wakeups` still names them.
pub use super::wakeup::{WAKEUP_BUFFER, Wakeup, Wakeups};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row, Transaction};

use self::rows::{job_columns, policy_name};
use super::{
    CancelOutcome, ClaimOrder, Counts, DeadLetter, EnqueueOutcome, EventLog, JobAdmin, JobFilter,
    JobQueue, Leadership, Redrive, RescuePlan, RescuedJob, Store, StoreError, Undecodable,
    WakeupSource, grant,
};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent, StoredEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, JobState, Lease, NewJob,
    NodeId, Outcome, ParentFailurePolicy, WorkerId,
};

type Tx = Transaction<'static, Postgres>;

/// How long the first connection may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens and closes one connection, so a server that cannot be reached, or refuses the
/// login or database, fails the caller within [`CONNECT_TIMEOUT`] with the reason (the
/// pool would retry a refused connection until its 30 s time-out). A server that is
/// merely busy (too many clients, starting up) passes: the pool waits for it as before.
/// Errors name the host, port and database, never the user or password.
async fn probe_connection(options: &PgConnectOptions) -> Result<(), StoreError> {
    use sqlx::Connection;
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    );
    let unreachable = |kind: std::io::ErrorKind, reason: String| {
        StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            kind,
            format!("cannot connect to Postgres at {target}: {reason}"),
        )))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Err(_) => Err(unreachable(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        )),
        Ok(Err(sqlx::Error::Io(e))) => {
            let reason = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is Postgres running and listening on that port?)"
                        .to_string()
                }
                _ => e.to_string(),
            };
            Err(unreachable(e.kind(), reason))
        }
        // The server answered but cannot take a connection yet (too many clients,
        // starting up): reachable, so the pool's own bounded wait applies.
        Ok(Err(sqlx::Error::Database(e)))
            if matches!(e.code().as_deref(), Some("53300" | "57P03")) =>
        {
            Ok(())
        }
        // Refused logins and missing databases: the server's own message names the
        // user or database, never the password.
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(conn)) => {
            // Closing is a courtesy; the pool opens its own connections.
            let _ = conn.close().await;
            Ok(())
        }
    }
}

/// Connections in the pool when [`PostgresStore::connect`] is used.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// Error text of a job discarded because a parent failed (as the SQLite store).
const PARENT_FAILED: &str = "a parent job was discarded or cancelled";

/// A claim in one statement: pick (skipping rows that other claimers hold), lease, log.
/// `$1` worker, `$2` node, `$3` lease expiry, `$4` queue(s), `$5` limit, `$6` now.
macro_rules! claim_sql {
    ($picked:literal) => {
        concat!(
            "WITH picked AS (",
            $picked,
            "), claimed AS (
                 UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1,
                     lease_owner = $1, lease_node = $2, lease_expires_at = $3
                 FROM picked WHERE id = picked.pick
                 RETURNING ",
            job_columns!(),
            "
             ), ev AS (
                 INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
                 SELECT $6, 'job.claimed', id, attempt, $1, $2 FROM claimed ORDER BY id
             )
             SELECT * FROM claimed"
        )
    };
}

/// One queue: an index scan in dispatch order that stops after `$5` rows. (With
/// `queue = ANY (array)` Postgres 15 sorts every available job of the queues instead.)
const CLAIM_ONE_QUEUE: &str = claim_sql!(
    "SELECT id AS pick FROM jobs
     WHERE state = 'available' AND queue = $4
     ORDER BY priority DESC, run_at, id
     LIMIT $5
     FOR UPDATE SKIP LOCKED"
);

/// Several queues: the first `$5` of each (locking them; the surplus is released when
/// the statement commits), then the first `$5` of those in dispatch order.
const CLAIM_QUEUES: &str = claim_sql!(
    "SELECT j.pick FROM unnest($4::text[]) AS q(name)
     CROSS JOIN LATERAL (
         SELECT id AS pick, priority, run_at FROM jobs
         WHERE state = 'available' AND queue = q.name
         ORDER BY priority DESC, run_at, id
         LIMIT $5
         FOR UPDATE SKIP LOCKED
     ) AS j
     ORDER BY j.priority DESC, j.run_at, j.pick
     LIMIT $5"
);

/// The Postgres backend.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    schema: String,
    channel: String,
}

/// Checks that a schema name is a plain lowercase identifier: it is spliced into DDL
/// and into the connection's `search_path`, where parameters cannot be used.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 48
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "Postgres schema name `{schema}` must be 1 to 48 characters of a-z, 0-9 and _, \
             not starting with a digit"
        )))
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`), creates `schema` if given
    /// (else uses the server's default `search_path`), and applies migrations.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("bad Postgres URL: {e}")))?;
        Self::connect_with(options, schema, DEFAULT_MAX_CONNECTIONS).await
    }

    /// As [`PostgresStore::connect`], with explicit connect options and pool size.
    pub async fn connect_with(
        options: PgConnectOptions,
        schema: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let options = match schema {
            Some(s) => {
                validate_schema(s)?;
                options.options([("search_path", s)])
            }
            None => options,
        };
        // The pool retries refused connections until its acquire time-out (30 s), which
        // hides the cause behind "pool timed out"; one plain connection first reports an
        // unreachable server, an unknown host or a refused login at once.
        probe_connection(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.clone())
            .await?;
        if let Some(s) = schema {
            // Identifiers cannot be bound; `s` passed `validate_schema`.
            let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"");
            if let Err(e) = sqlx::query(AssertSqlSafe(ddl)).execute(&pool).await {
                // Two stores creating the same schema at once: the loser sees a
                // duplicate; the schema exists either way.
                let duplicate = e
                    .as_database_error()
                    .is_some_and(|d| d.code().as_deref() == Some("23505"));
                if !duplicate {
                    return Err(e.into());
                }
            }
        }
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (schema, channel): (String, String) =
            sqlx::query_as("SELECT current_schema()::text, jm_channel()")
                .fetch_one(&pool)
                .await?;
        Ok(Self {
            pool,
            options,
            schema,
            channel,
        })
    }

    /// The connection pool (for administration and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding this store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The `NOTIFY` channel of this store (`jobmesh.<schema>`); payloads are queue names.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Starts listening for jobs becoming available on `queues` (every queue when
    /// empty), on a dedicated connection. The returned [`Wakeups`] sees every commit
    /// made after this returns.
    ///
    /// Wake-ups are hints: they are lost while the listening connection is down and
    /// folded into [`Wakeup::Lagged`] when the receiver falls behind, and a job that
    /// becomes due by time alone (a delayed job, a retry) is announced only when
    /// [`Store::promote_due`] runs. Claimers must keep a poll fallback.
    pub async fn listen(&self, queues: &[String]) -> Result<Wakeups, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(self.options.clone())
            .await?;
        listen::start(pool, &self.channel, queues).await
    }

    /// Closes the pool, waiting for running statements.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Appends events in the given order.
async fn events(conn: &mut PgConnection, evs: &[LifecycleEvent]) -> Result<(), StoreError> {
    if evs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node, detail)
         SELECT at, kind, job, attempt, worker, node, detail
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::integer[], $5::text[], $6::text[], $7::jsonb[])
              WITH ORDINALITY AS e(at, kind, job, attempt, worker, node, detail, ord)
         ORDER BY ord",
    )
    .bind(evs.iter().map(|e| e.at.0).collect::<Vec<_>>())
    .bind(evs.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(evs.iter().map(|e| e.job.map(|j| j.0)).collect::<Vec<_>>())
    .bind(
        evs.iter()
            .map(|e| e.attempt.map(attempt_col))
            .collect::<Vec<_>>(),
    )
    .bind(
        evs.iter()
            .map(|e| e.worker.as_ref().map(|w| w.0.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(
        evs.iter()
            .map(|e| e.node.as_ref().map(|n| n.0.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(
        evs.iter()
            .map(|e| (!e.detail.is_null()).then_some(&e.detail))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An attempt count as stored (`integer`).
fn attempt_col(a: u32) -> i32 {
    i32::try_from(a).unwrap_or(i32::MAX)
}

/// Notifies listeners of `queues` at commit.
async fn wake(conn: &mut PgConnection, queues: BTreeSet<String>) -> Result<(), StoreError> {
    if queues.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT jm_wake($1)")
        .bind(queues.into_iter().collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

async fn dead_letter(conn: &mut PgConnection, ids: &[i64], now: Millis) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO dead_letter_queue (job, queue, reason, discarded_at)
         SELECT id, queue, coalesce(last_error, 'discarded'), $1 FROM jobs WHERE id = ANY ($2)
         ON CONFLICT (job) DO UPDATE SET queue = EXCLUDED.queue, reason = EXCLUDED.reason,
             discarded_at = EXCLUDED.discarded_at",
    )
    .bind(now.0)
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies the parent-failure policy to the waiting children of `parents` (see
/// `jm_cascade_discard` in the migration).
async fn cascade_discard(
    conn: &mut PgConnection,
    parents: &[i64],
    now: Millis,
) -> Result<(), StoreError> {
    if parents.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT jm_cascade_discard($1, $2)")
        .bind(parents)
        .bind(now.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Applies what a set of lost leases became ([`RescuePlan`]); shared by expiry rescue
/// and node revocation.
async fn after_rescue(
    tx: &mut Tx,
    rescued: Vec<(i64, i32, String, String)>,
    now: Millis,
    detail: serde_json::Value,
) -> Result<Vec<RescuedJob>, StoreError> {
    let rows = rescued
        .into_iter()
        .map(|(id, attempt, state, queue)| {
            let r = RescuedJob {
                id: JobId(id),
                attempt: attempt.max(0) as u32,
                state: rows::state(&state)?,
            };
            Ok((r, queue))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let plan = RescuePlan::new(rows, now, detail);
    events(tx, &plan.events).await?;
    dead_letter(tx, &plan.discarded, now).await?;
    cascade_discard(tx, &plan.discarded, now).await?;
    wake(tx, plan.queues).await?;
    Ok(plan.rescued)
}

/// The unfinished job holding a unique key, if any.
async fn unfinished_with_key(tx: &mut Tx, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM jobs WHERE unique_key = $1
           AND state NOT IN ('succeeded', 'discarded', 'cancelled')",
    )
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?)
}

/// How a completion is passed to `jm_complete`.
fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "retry",
        Outcome::Discard { .. } => "discard",
        Outcome::Cancelled { .. } => "cancelled",
    }
}

impl PostgresStore {
    /// Inserts a run of jobs with no unique key and no parents in one statement, with
    /// their events and the wake-up of their queues.
    async fn insert_plain(
        conn: &mut PgConnection,
        jobs: &[&NewJob],
        now: Millis,
        out: &mut Vec<EnqueueOutcome>,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let run_at = |j: &NewJob| j.run_at.unwrap_or(now);
        // `woke` is a one-row aggregate joined into the result, which makes Postgres
        // evaluate it (an unreferenced SELECT in a WITH is never run).
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "WITH ins AS (
                 INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at,
                                   timeout_ms, on_parent_failure)
                 SELECT q, k, p, pr, s, m, r, $1, t, pf
                 FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::smallint[], $6::text[], $7::integer[],
                             $8::bigint[], $9::bigint[], $10::text[])
                      WITH ORDINALITY AS n(q, k, p, pr, s, m, r, t, pf, ord)
                 ORDER BY ord
                 RETURNING id, queue, state
             ), ev AS (
                 INSERT INTO lifecycle_events (at, kind, job, attempt)
                 SELECT $1, 'job.enqueued', id, 0 FROM ins ORDER BY id
             ), woke AS (
                 SELECT jm_wake(array_agg(DISTINCT queue)) FROM ins WHERE state = 'available'
             )
             SELECT ins.id FROM ins, woke",
        )
        .bind(now.0)
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| &j.payload).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| {
                    if run_at(j) > now {
                        "scheduled"
                    } else {
                        "available"
                    }
                })
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| attempt_col(j.max_attempts))
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| run_at(j).0).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.timeout.map(|t| t.as_millis() as i64))
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| policy_name(j.on_parent_failure))
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await?;
        // One statement draws its ids from the sequence in insertion order, so sorted
        // ids line up with the rows.
        ids.sort_unstable();
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
        queues: &mut BTreeSet<String>,
    ) -> Result<EnqueueOutcome, StoreError> {
        if let Some(key) = &job.unique_key
            && let Some(id) = unfinished_with_key(tx, key).await?
        {
            return Ok(EnqueueOutcome::Duplicate(JobId(id)));
        }
        // Locking the parents (by marking them) orders this insert against their
        // completion: a parent finishing concurrently either sees the dependency row
        // written here, or finished before this reads its state.
        let known: HashMap<i64, JobState> = if parents.is_empty() {
            HashMap::new()
        } else {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "UPDATE jobs SET has_children = true WHERE id = ANY ($1) RETURNING id, state",
            )
            .bind(&parents)
            .fetch_all(&mut **tx)
            .await?;
            rows.into_iter()
                .map(|(id, s)| Ok((id, rows::state(&s)?)))
                .collect::<Result<_, StoreError>>()?
        };
        if let Some(missing) = parents.iter().find(|p| !known.contains_key(p)) {
            return Err(StoreError::Invalid(format!(
                "job depends on unknown job {missing}"
            )));
        }
        let pending = known
            .values()
            .filter(|s| **s != JobState::Succeeded)
            .count() as i32;
        let parent_failed = known
            .values()
            .any(|s| matches!(s, JobState::Discarded | JobState::Cancelled));
        let run_at = job.run_at.unwrap_or(now);
        let state = if parent_failed && job.on_parent_failure == ParentFailurePolicy::Discard {
            JobState::Discarded
        } else if pending > 0 {
            JobState::Waiting
        } else if run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        let discarded = state == JobState::Discarded;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at, timeout_ms,
                               unique_key, on_parent_failure, pending_parents, finished_at, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (unique_key)
                 WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'discarded', 'cancelled')
                 DO NOTHING
             RETURNING id",
        )
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(&job.payload)
        .bind(job.priority)
        .bind(state.as_str())
        .bind(attempt_col(job.max_attempts))
        .bind(run_at.0)
        .bind(now.0)
        .bind(job.timeout.map(|t| t.as_millis() as i64))
        .bind(&job.unique_key)
        .bind(policy_name(job.on_parent_failure))
        .bind(pending)
        .bind(discarded.then_some(now.0))
        .bind(discarded.then_some(PARENT_FAILED))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = inserted else {
            // Another transaction committed the same key after the check above.
            let key = job.unique_key.as_deref().unwrap_or_default();
            return match unfinished_with_key(tx, key).await? {
                Some(id) => Ok(EnqueueOutcome::Duplicate(JobId(id))),
                None => Err(StoreError::Invalid(
                    "unique key conflict with a job that finished meanwhile; retry the enqueue"
                        .into(),
                )),
            };
        };
        if !parents.is_empty() {
            sqlx::query(
                "INSERT INTO job_dependencies (parent, child) SELECT unnest($1::bigint[]), $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(&parents)
            .bind(id)
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
        if state == JobState::Available {
            queues.insert(job.queue.clone());
        }
        events(tx, &evs).await?;
        Ok(EnqueueOutcome::Inserted(JobId(id)))
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
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(
            // The detail as text, parsed row by row: one unreadable detail must not fail
            // the batch (decoding jsonb into a tuple would).
            "SELECT seq, at, kind, job, attempt, worker, node, detail::text FROM lifecycle_events
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let read = rows.len();
        let last = rows.last().map(|r| r.0);
        let events = rows
            .into_iter()
            .map(|(seq, at, kind, job, attempt, worker, node, detail)| {
                let kind = EventKind::from_str(&kind).map_err(|e| {
                    StoreError::Corrupt(format!("lifecycle_events.kind of event {seq}: {e}"))
                })?;
                Ok(StoredEvent {
                    seq,
                    event: LifecycleEvent {
                        at: Millis(at),
                        kind,
                        job: job.map(JobId),
                        attempt: attempt.map(|a| a.max(0) as u32),
                        worker: worker.map(WorkerId),
                        node: node.map(NodeId),
                        // An unreadable detail is marked as such; the event is kept.
                        detail: match detail {
                            Some(d) => serde_json::from_str(&d).unwrap_or_else(|e| {
                                json!({ "undecodable": format!("lifecycle_events.detail: {e}") })
                            }),
                            None => serde_json::Value::Null,
                        },
                    },
                })
            });
        Ok((super::skip_undecodable("events", events), read, last))
    }

    async fn fetch_jobs(
        &self,
        sql: &'static str,
        bind: impl FnOnce(
            sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
        ) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = bind(sqlx::query(sql)).fetch_all(&self.pool).await?;
        let mut jobs = super::skip_undecodable("jobs", rows.iter().map(rows::job_named));
        self.fill_parents(&mut jobs).await?;
        Ok(jobs)
    }

    /// Dead-letters claimed jobs whose rows cannot be decoded (see [`Undecodable`]),
    /// under the leases the claim gave them. Best-effort: the claim has committed and its
    /// other jobs must run; if this fails, the leases lapse and a later claim (after the
    /// rescue) tries again.
    pub(crate) async fn discard_undecodable(&self, req: &ClaimRequest, bad: &[Undecodable]) {
        if bad.is_empty() {
            return;
        }
        for u in bad {
            tracing::warn!(job = %u.id, reason = %u.reason, "dead-lettering a job whose row cannot be decoded");
        }
        let batch = bad.iter().map(|u| u.completion(req)).collect();
        if let Err(e) = self.complete(batch).await {
            tracing::warn!(error = %e, "dead-lettering undecodable jobs failed; their leases will lapse");
        }
    }

    async fn fill_parents(&self, jobs: &mut [Job]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id.0).collect();
        let links: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT child, parent FROM job_dependencies WHERE child = ANY ($1) ORDER BY child, parent",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
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
impl JobQueue for PostgresStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        super::check_new_jobs(&jobs)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<EnqueueOutcome> = Vec::with_capacity(jobs.len());
        let linked = |job: &NewJob| {
            job.unique_key.is_some()
                || !job.depends_on.is_empty()
                || !job.depends_on_index.is_empty()
        };
        if !jobs.iter().any(linked) {
            // One statement is its own transaction: skip BEGIN and COMMIT round trips.
            let mut conn = self.pool.acquire().await?;
            let plain: Vec<&NewJob> = jobs.iter().collect();
            Self::insert_plain(&mut conn, &plain, now, &mut out).await?;
            return Ok(out);
        }
        let mut tx = self.pool.begin().await?;
        let mut plain: Vec<&NewJob> = Vec::new();
        let mut queues = BTreeSet::new();
        for job in &jobs {
            if !linked(job) {
                plain.push(job);
                continue;
            }
            Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
            plain.clear();
            let mut parents: Vec<i64> = job.depends_on.iter().map(|p| p.0).collect();
            parents.extend(job.depends_on_index.iter().map(|&i| out[i].id().0));
            parents.sort_unstable();
            parents.dedup();
            let outcome = Self::insert_linked(&mut tx, job, parents, now, &mut queues).await?;
            out.push(outcome);
        }
        Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
        wake(&mut tx, queues).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if req.limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        let expires = req.now.plus(req.lease_for);
        let mut queues = req.queues.clone();
        queues.sort_unstable();
        queues.dedup();
        let one = queues.len() == 1;
        let query = sqlx::query(if one { CLAIM_ONE_QUEUE } else { CLAIM_QUEUES })
            .bind(&req.worker.0)
            .bind(&req.node.0)
            .bind(expires.0);
        let query = if one {
            query.bind(queues.swap_remove(0))
        } else {
            query.bind(queues)
        };
        let rows = query
            .bind(i64::from(req.limit))
            .bind(req.now.0)
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for row in &rows {
            match rows::claimed(row)? {
                Ok(job) => jobs.push(job),
                Err(u) => bad.push(u),
            }
        }
        self.discard_undecodable(req, &bad).await;
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
        // A repeated (job, token) in one batch applies once: the first entry wins.
        let mut seen = HashSet::with_capacity(batch.len());
        let sent: Vec<&Completion> = batch
            .iter()
            .filter(|c| seen.insert((c.lease.job, c.lease.token)))
            .collect();
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT * FROM jm_complete($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(sent.iter().map(|c| c.lease.job.0).collect::<Vec<_>>())
        .bind(sent.iter().map(|c| c.lease.token.0).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| attempt_col(c.lease.attempt))
                .collect::<Vec<_>>(),
        )
        .bind(
            sent.iter()
                .map(|c| c.lease.worker.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            sent.iter()
                .map(|c| c.lease.node.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(sent.iter().map(|c| c.started_at.0).collect::<Vec<_>>())
        .bind(sent.iter().map(|c| c.finished_at.0).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| outcome_name(&c.outcome))
                .collect::<Vec<_>>(),
        )
        .bind(sent.iter().map(|c| c.outcome.error()).collect::<Vec<_>>())
        .bind(
            sent.iter()
                .map(|c| match c.outcome {
                    Outcome::Retry { run_at, .. } => Some(run_at.0),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )
        .bind(
            sent.iter()
                .map(|c| match &c.outcome {
                    Outcome::Succeeded { output } => output.as_ref(),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )
        .fetch_all(&self.pool)
        .await?;
        let applied: HashSet<(JobId, crate::job::LeaseToken)> = applied
            .into_iter()
            .filter_map(|ord| usize::try_from(ord - 1).ok().and_then(|i| sent.get(i)))
            .map(|c| (c.lease.job, c.lease.token))
            .collect();
        let mut reported = HashSet::with_capacity(applied.len());
        Ok(batch
            .iter()
            .map(|c| {
                let key = (c.lease.job, c.lease.token);
                if applied.contains(&key) && reported.insert(key) {
                    CompletionResult::Applied
                } else {
                    CompletionResult::StaleLease
                }
            })
            .collect())
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let extended: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = $1
             FROM unnest($2::bigint[], $3::bigint[]) AS l(id, tok)
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.lease_token",
        )
        .bind(until.0)
        .bind(leases.iter().map(|l| l.job.0).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.token.0).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let extended: HashSet<(i64, i64)> = extended.into_iter().collect();
        Ok(leases
            .iter()
            .map(|l| extended.contains(&(l.job.0, l.token.0)))
            .collect())
    }

    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let released: Vec<(i64, i32, String)> = sqlx::query_as(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1,
                 lease_token = lease_token + 1, lease_expires_at = NULL, run_at = $1
             FROM unnest($2::bigint[], $3::bigint[]) AS l(id, tok)
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.attempt, jobs.queue",
        )
        .bind(now.0)
        .bind(leases.iter().map(|l| l.job.0).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.token.0).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let evs: Vec<_> = released
            .iter()
            .map(|(id, attempt, _)| {
                LifecycleEvent::new(EventKind::JobRescued, now)
                    .job(JobId(*id), Some((*attempt).max(0) as u32))
                    .detail(json!({"to": "available", "why": "released unstarted"}))
            })
            .collect();
        events(&mut tx, &evs).await?;
        wake(
            &mut tx,
            released.iter().map(|(_, _, q)| q.clone()).collect(),
        )
        .await?;
        tx.commit().await?;
        let ids: HashSet<i64> = released.iter().map(|(id, _, _)| *id).collect();
        Ok(leases.iter().map(|l| ids.contains(&l.job.0)).collect())
    }

    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError> {
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

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT min(run_at) FROM jobs WHERE state IN ('scheduled', 'retryable')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(t.map(Millis))
    }

    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rescued: Vec<(i64, i32, String, String)> = sqlx::query_as(
            "UPDATE jobs SET lease_token = lease_token + 1, lease_expires_at = NULL,
                 state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
                 run_at = CASE WHEN attempt < max_attempts THEN $1 ELSE run_at END,
                 finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE $1 END,
                 last_error = 'lease expired: the worker stopped renewing it'
             WHERE state = 'running' AND lease_expires_at < $1
             RETURNING id, attempt, state, queue",
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
        let mut tx = self.pool.begin().await?;
        let rescued: Vec<(i64, i32, String, String)> = sqlx::query_as(
            "UPDATE jobs SET lease_token = lease_token + 1, lease_expires_at = NULL,
                 state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
                 run_at = CASE WHEN attempt < max_attempts THEN $1 ELSE run_at END,
                 finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE $1 END,
                 last_error = 'lease revoked: node ' || $2 || ' lost it'
             WHERE state = 'running' AND lease_expires_at IS NOT NULL AND lease_node = $2
             RETURNING id, attempt, state, queue",
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
impl JobAdmin for PostgresStore {
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        // One job: a row that cannot be decoded is this call's error, not left out.
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
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
                " FROM jobs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
                   AND ($3::text IS NULL OR kind = $3) AND id > $4 ORDER BY id LIMIT $5"
            ),
            |q| {
                q.bind(state)
                    .bind(queue)
                    .bind(kind)
                    .bind(filter.after.map(|a| a.0).unwrap_or(0))
                    .bind(i64::from(filter.limit))
            },
        )
        .await
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")
                .fetch_all(&self.pool)
                .await?;
        let mut counts: Counts = BTreeMap::new();
        let rows = rows
            .into_iter()
            .map(|(queue, state, n)| Ok((queue, rows::state(&state)?, n)));
        for (queue, state, n) in super::skip_undecodable("counts", rows) {
            counts
                .entry(queue)
                .or_default()
                .insert(state, n.max(0) as u64);
        }
        Ok(counts)
    }

    async fn cancel(&self, id: JobId, now: Millis) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let state = rows::state(&state.ok_or(StoreError::NotFound(id))?)?;
        if state.is_final() {
            return Ok(CancelOutcome::AlreadyFinished(state));
        }
        let attempt: i32 = sqlx::query_scalar(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, lease_expires_at = NULL,
                 lease_token = lease_token + 1, last_error = coalesce(last_error, 'cancelled')
             WHERE id = $2 RETURNING attempt",
        )
        .bind(now.0)
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await?;
        let ev = LifecycleEvent::new(EventKind::JobCancelled, now)
            .job(id, Some(attempt.max(0) as u32))
            .detail(json!({"from": state.as_str()}));
        events(&mut tx, &[ev]).await?;
        cascade_discard(&mut tx, &[id.0], now).await?;
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
                              FROM dead_letter_queue) d ON id = dlq_job
              WHERE ($1::text IS NULL OR dlq_queue = $1) ORDER BY dlq_at, dlq_job LIMIT $2"
        ))
        .bind(queue)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
        let mut dead = super::skip_undecodable("dead letters", dead);
        let mut jobs: Vec<Job> = dead.iter().map(|d| d.job.clone()).collect();
        self.fill_parents(&mut jobs).await?;
        for (d, j) in dead.iter_mut().zip(jobs) {
            d.job = j;
        }
        Ok(dead)
    }

    async fn redrive(&self, which: Redrive, now: Millis) -> Result<Vec<JobId>, StoreError> {
        let (ids, queue, all) = match which {
            Redrive::Ids(ids) => (ids.iter().map(|i| i.0).collect::<Vec<_>>(), None, false),
            Redrive::Queue(q) => (Vec::new(), Some(q), false),
            Redrive::All => (Vec::new(), None, true),
        };
        let mut tx = self.pool.begin().await?;
        let redriven: Vec<(i64, String, String)> = sqlx::query_as(
            "UPDATE jobs SET state = CASE WHEN pending_parents > 0 THEN 'waiting' ELSE 'available' END,
                 attempt = 0, run_at = $1, finished_at = NULL, lease_token = lease_token + 1
             WHERE state = 'discarded' AND id IN (
                 SELECT job FROM dead_letter_queue
                 WHERE $4 OR job = ANY ($2) OR queue = $3::text)
             RETURNING id, queue, state",
        )
        .bind(now.0)
        .bind(&ids)
        .bind(queue)
        .bind(all)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids: Vec<i64> = redriven.iter().map(|(id, _, _)| *id).collect();
        ids.sort_unstable();
        sqlx::query("DELETE FROM dead_letter_queue WHERE job = ANY ($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let evs: Vec<_> = ids
            .iter()
            .map(|&id| LifecycleEvent::new(EventKind::JobRedriven, now).job(JobId(id), Some(0)))
            .collect();
        events(&mut tx, &evs).await?;
        let queues = redriven
            .into_iter()
            .filter(|(_, _, s)| s == "available")
            .map(|(_, q, _)| q)
            .collect();
        wake(&mut tx, queues).await?;
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
        let mut tx = self.pool.begin().await?;
        let finished: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(finished_before)
        .bind(retention.batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        let dead: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'discarded' AND finished_at < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(dead_before)
        .bind(retention.batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<i64> = finished.iter().chain(&dead).copied().collect();
        let mut events = 0;
        if !ids.is_empty() {
            for sql in [
                "DELETE FROM job_dependencies WHERE parent = ANY($1) OR child = ANY($1)",
                "DELETE FROM job_executions WHERE job = ANY($1)",
                "DELETE FROM dead_letter_queue WHERE job = ANY($1)",
            ] {
                sqlx::query(sql).bind(&ids).execute(&mut *tx).await?;
            }
            events += sqlx::query("DELETE FROM lifecycle_events WHERE job = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        events += sqlx::query("DELETE FROM lifecycle_events WHERE job IS NULL AND at < $1")
            .bind(finished_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let leases = sqlx::query("DELETE FROM leader_leases WHERE expires_at < $1")
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
impl EventLog for PostgresStore {
    async fn record_events(&self, mut evs: Vec<LifecycleEvent>) -> Result<(), StoreError> {
        if evs.is_empty() {
            return Ok(());
        }
        super::storable_events(&mut evs);
        let mut conn = self.pool.acquire().await?;
        events(&mut conn, &evs).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        super::fill_events(after, limit, |after, limit| self.events_page(after, limit)).await
    }
}

#[async_trait]
impl Leadership for PostgresStore {
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: std::time::Duration,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let led: Option<String> = sqlx::query_scalar(
            "INSERT INTO leader_leases (role, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < $4
             RETURNING holder",
        )
        .bind(role)
        .bind(&holder.0)
        .bind(now.plus(ttl).0)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(led.is_some())
    }
}

#[async_trait]
impl WakeupSource for PostgresStore {
    async fn wakeups(&self, queues: &[String]) -> Result<Wakeups, StoreError> {
        self.listen(queues).await
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn wakeup_source(&self) -> Option<&dyn WakeupSource> {
        Some(self)
    }
}
