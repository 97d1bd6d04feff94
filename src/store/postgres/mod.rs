//! The production system of record: Postgres via sqlx.
//!
//! The row model is that of the SQLite store, and the decisions (what a batch may hold,
//! where a new job starts, dispatch order, what a claim hands out, what a lost lease
//! becomes) are made once in `store::rules` and `crate::job`; this backend applies them
//! in SQL. What differs from SQLite is how, under concurrency, since many nodes write at
//! once:
//!
//! - A claim is one statement: `SELECT … FOR UPDATE SKIP LOCKED` sized to the free slots,
//!   the lease update and the `job.claimed` events, so concurrent claimers never wait for
//!   each other and never take the same job. It may commit asynchronously; lease tokens
//!   carry the connection's incarnation so that a claim lost in a crash is never issued
//!   again under the same token (`incarnation.rs`).
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
//! Layout, one concern per file, each holding the SQL of its concern (a store operation
//! is added by writing it in the file of its concern; a trait impl cannot be split, so
//! [`JobQueue`]'s is here and calls the concern files):
//!
//! - this file: the store, connecting (probe, schema, migrations), the pool, and the
//!   helpers every transition shares (append events, `NOTIFY`, dead-letter, the
//!   parent-failure cascade);
//! - `enqueue.rs` storing jobs; `claim.rs` claims (of the best available jobs, or of
//!   given ids), lease extension and release; `complete.rs` completions;
//!   `schedule.rs` promotion of due jobs; `rescue.rs` expired and revoked leases;
//! - `admin.rs` (`JobAdmin`) reads, cancel, dead letters; `filter.rs` a listing's
//!   filter as conditions; `bulk.rs` (`BulkActions`) bulk actions, a batch per
//!   transaction; `retention.rs` the purge;
//!   `events.rs` (`EventLog`) the event log, `event_gaps.rs` when a reader may pass a gap
//!   in its sequence; `leader.rs` (`Leadership`); `queues.rs`
//!   (`QueueControl`) paused queues, which every claim statement skips; `limits.rs`
//!   (`JobLimits`) the limits and the limited claim; `history.rs`
//!   the read-side views (`JobHistory`, `Activity`); `periodic.rs`
//!   (`PeriodicTicks`) the tick marks of periodic schedules; `periodic_schedules.rs`
//!   (`PeriodicSchedules`) the schedules;
//!   `listen.rs` LISTEN/NOTIFY wake-ups;
//!   `audit.rs` (`AuditLog`) the audit log and `audit::write`, the row every operator
//!   action writes in its transaction;
//! - `ready.rs` the reads a dispatch index outside Postgres is built from (the production
//!   store, [`crate::store::redis_postgres`], which runs no SQL of its own but composes
//!   these `pub(crate)` operations: `claim_by_ids`, `promote_due_returning`,
//!   `ready_page`, ...);
//! - `rows.rs` decoding rows into the job model (private to this folder).
//!
//! Known limit: two batches releasing the same children in opposite orders can deadlock; Postgres aborts one
//! (SQLSTATE `40P01`) and the caller may retry it.
//!
//! [`PostgresStore::listen`]: crate::store::postgres::PostgresStore::listen
//! [`Wakeups`]: crate::store::Wakeups

mod admin;
pub(crate) mod audit;
mod bulk;
mod claim;
mod complete;
mod enqueue;
mod event_gaps;
mod events;
mod filter;
mod history;
mod incarnation;
mod insights;
mod leader;
mod limited;
mod limits;
mod listen;
mod listing;
mod models;
mod periodic;
mod periodic_schedules;
mod presence;
mod progress;
mod queues;
mod ready;
mod rescue;
mod retention;
mod rows;
mod schedule;
mod tokens;

pub(crate) use ready::ReadyRow;

// Re-exported where they were first defined, so `store::postgres::Wakeups` still names them.
pub use super::wakeup::{WAKEUP_BUFFER, Wakeup, Wakeups};

use std::collections::BTreeSet;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};

use super::{EnqueueOutcome, JobQueue, RescuedJob, Store, StoreError, WakeupSource};
use crate::clock::Millis;
use crate::event::LifecycleEvent;
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Lease, NewJob, NodeId, ProgressReport,
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
        StoreError::from(sqlx::Error::Io(std::io::Error::new(
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

/// Whether claims commit asynchronously unless configured (see
/// [`PostgresStore::with_async_claims`]).
pub const DEFAULT_ASYNC_CLAIMS: bool = true;

/// Connections in the pool when [`PostgresStore::connect`] is used.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The Postgres backend.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    schema: String,
    channel: String,
    /// Which queues are under a limit, as last read (see `limits.rs`).
    limit_cache: std::sync::Arc<limits::LimitCache>,
    /// Whether claims commit asynchronously (see `incarnation.rs`).
    async_claims: bool,
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
            limit_cache: Default::default(),
            async_claims: DEFAULT_ASYNC_CLAIMS,
        })
    }

    /// Whether claims commit asynchronously (`synchronous_commit = off` for the claim
    /// statement alone; default [`DEFAULT_ASYNC_CLAIMS`]). A crash of the server then
    /// loses the last claims: their jobs are available again (no outcome is lost, as
    /// completions stay durable) and their holders' completions are refused, since
    /// tokens are never handed out twice (see `incarnation.rs`). Applies to
    /// connections that have not claimed yet: set it before the first claim.
    pub fn with_async_claims(mut self, on: bool) -> Self {
        self.async_claims = on;
        self
    }

    /// The connection pool, for administration and tests (which reach into the tables);
    /// the stores of this crate run their SQL through the operations of this folder.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This store's identity, drawn once and kept in the database (`store_identity`), so
    /// that state kept elsewhere (a Redis prefix) can be tied to this store.
    pub(crate) async fn identity(&self) -> Result<String, StoreError> {
        let fresh = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        sqlx::query("INSERT INTO store_identity (id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&fresh)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT id FROM store_identity")
            .fetch_one(&self.pool)
            .await?)
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
    /// [`JobQueue::promote_due`] runs. Claimers must keep a poll fallback.
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

/// The queue operations, each applied in the file of its concern.
#[async_trait]
impl JobQueue for PostgresStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        self.insert_batch(jobs, now).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        self.claim_available(req).await
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<CompletionResult>, StoreError> {
        self.apply_completions(batch).await
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.extend_current(leases, until).await
    }

    async fn record_progress(
        &self,
        reports: &[ProgressReport],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.write_progress(reports, until).await
    }

    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError> {
        self.release_unstarted(leases, now).await
    }

    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError> {
        self.promote_scheduled(now).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.earliest_due().await
    }

    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        self.rescue_lapsed(now).await
    }

    async fn revoke_node(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError> {
        self.revoke_leases_of(node, now, detail).await
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
