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
//!
//! Errors: a busy or locked database (another process held the write lock past
//! its busy time-out, 10 s) is a [`StoreError::Conflict`], so callers retry it like any
//! transient failure.
//!
//! # Indexes named in statements
//!
//! A store has no statistics until someone runs `ANALYZE`, and without them SQLite
//! takes an equality on `state` for the most selective term of a query: it reads every
//! job in that state through the listing index `jobs_state_id` (state, id), then checks
//! the rest row by row. The statements that the partial indexes exist for (the claim's
//! pick, promoting due jobs, lease rescue and revocation, the retention purge, the
//! finishes since a time) would then cost the whole backlog of their state on every
//! call: a claim at 100,000 available jobs took 18 ms instead of 0.2 ms, and the
//! embedded drain fell from about 60k to 18k jobs/s. So they name their index with
//! `INDEXED BY`, which also makes a missing index an error instead of a table walk;
//! `plans.rs` (a test) reads their plans.
//!
//! # Layout
//!
//! One file per concern, each holding the SQL of its operations:
//!
//! - `mod.rs`: [`SqliteStore`], opening the file (private mode, migrations), the two
//!   pools, and the helpers of multi-row statements;
//! - `enqueue.rs`: storing new jobs; `claim.rs`: claiming, extending and releasing
//!   leases; `complete.rs`: finished attempts (successes in bulk, the release of waiting
//!   children, failures); `schedule.rs`: promoting due jobs; `rescue.rs`: lost leases
//!   (expiry, node revocation);
//! - `discard.rs`: the dead-letter queue and the parent-failure cascade, applied by
//!   every transition that discards;
//! - `admin.rs`: [`JobAdmin`](super::JobAdmin) (reading, counts, cancel, the
//!   dead-letter queue, redrive), with its purge in `retention.rs`; `filter.rs` a
//!   listing's filter as conditions; `bulk.rs` [`BulkActions`](super::BulkActions);
//! - `events.rs`: [`EventLog`](super::EventLog) and the event rows every transition
//!   writes; `leader.rs`: [`Leadership`](super::Leadership); `history.rs`: the
//!   read-side views ([`JobHistory`](super::JobHistory), [`Activity`](super::Activity));
//!   `periodic.rs`: [`PeriodicTicks`](super::PeriodicTicks), the tick marks of periodic schedules;
//!   `periodic_schedules.rs`: [`PeriodicSchedules`](super::PeriodicSchedules), the schedules;
//! - `audit.rs`: [`AuditLog`](super::AuditLog) and `audit::write`, the audit row every
//!   operator action writes in its transaction;
//! - `rows.rs`: decoding rows into the job model, and the JSON shapes statements read.
//!
//! A trait impl cannot be split across files, so [`JobQueue`], whose methods belong to
//! five concerns, has one thin impl here that calls an inherent method in the file of
//! each concern; capabilities of one concern are implemented whole in their file. The
//! capability traits are not split further for the sake of file layout: they are what
//! every backend and every caller shares, and finer traits would only lengthen their
//! bounds. Decisions (where a new job starts, what a lost lease becomes, claim order)
//! are made in `store::rules` and applied here.

mod admin;
mod audit;
mod bulk;
mod claim;
mod complete;
mod counts;
mod discard;
mod enqueue;
mod events;
mod filter;
mod history;
mod insights;
mod leader;
mod limits;
mod models;
mod periodic;
mod periodic_schedules;
#[cfg(test)]
mod plans;
mod presence;
mod progress;
mod queues;
mod rescue;
mod retention;
mod rows;
mod schedule;
mod tokens;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::{EnqueueOutcome, JobQueue, RescuedJob, Store, StoreError};
use crate::clock::Millis;
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Lease, NewJob, NodeId, ProgressReport,
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
        // The writer connects (switching a new file to WAL) and migrates under the
        // opening lock; see `OpeningLock`.
        let opening = OpeningLock::take(path).await?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(StoreError::from)?;
        drop(opening);
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

/// Openers of one database file, one at a time. Two processes opening a new file at
/// once (a node and a `submit`, say) would both see a migration as not applied and both
/// run it; the loser fails on "table jobs already exists" or "duplicate column". And a
/// connection switching a new file to WAL takes SQLite's exclusive lock, which another
/// opener's `journal_mode` pragma can meet with "database is locked" at once, without
/// waiting out the busy timeout. So the writer's connection and the migrations happen
/// under an exclusive `flock` of the database file, which SQLite's own (`fcntl`) locks
/// do not see: the next opener finds the file in WAL and the migrations applied.
struct OpeningLock {
    /// The locked file: the lock lasts as long as it is open.
    _file: std::fs::File,
}

impl OpeningLock {
    async fn take(path: &Path) -> Result<OpeningLock, StoreError> {
        let cannot_lock = |e: std::io::Error| {
            StoreError::Invalid(format!(
                "cannot lock SQLite database {} to open it: {e}",
                path.display()
            ))
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(cannot_lock)?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| OpeningLock { _file: file }))
            .await
            .map_err(|e| cannot_lock(std::io::Error::other(e)))?
            .map_err(cannot_lock)
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

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        self.insert_jobs(jobs, now).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        self.claim_jobs(req).await
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<CompletionResult>, StoreError> {
        self.apply_completions(batch).await
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.renew_leases(leases, until).await
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
        self.promote_due_jobs(now).await
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.earliest_run_at().await
    }

    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        self.rescue_expired_leases(now).await
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

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
