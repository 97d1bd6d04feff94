//! Backlogs for the cost curves of `jobmesh bench`: finished jobs (with their attempt
//! rows and, on request, their lifecycle events) written straight into the tables in
//! big set-based statements, so ten million of them take minutes, not the hours a
//! real enqueue-and-drain would.
//!
//! The rows are what a drained no-op job leaves behind: a `succeeded` job, one
//! execution, and `job.enqueued`, `job.claimed`, `job.succeeded` events. They go to a
//! queue no bench node serves, so they only weigh on the tables and their indexes.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use jobmesh::store::OpenedStore;

/// Rows written per statement: big enough to amortise the statement, small enough that
/// one transaction does not hold the WAL for minutes.
const CHUNK: u64 = 200_000;

/// The queue the finished backlog is written to.
pub const FINISHED_QUEUE: &str = "bench-backlog-finished";

/// What [`fill_finished`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    /// Lifecycle events written.
    pub events: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Writes `n` finished jobs, finished over the hour before `now_ms`, with three events
/// each when `events`.
pub async fn fill_finished(
    store: &OpenedStore,
    sqlite_path: &Path,
    n: u64,
    events: bool,
    now_ms: i64,
) -> anyhow::Result<Filled> {
    let started = Instant::now();
    let mut written = 0u64;
    match store {
        OpenedStore::Sqlite(_) => {
            let url = format!("sqlite://{}", sqlite_path.display());
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .with_context(|| {
                    format!("opening {} to write the backlog", sqlite_path.display())
                })?;
            while written < n {
                let k = CHUNK.min(n - written);
                fill_sqlite(&pool, k, events, now_ms).await?;
                written += k;
            }
            pool.close().await;
        }
        OpenedStore::Postgres(s) => {
            while written < n {
                let k = CHUNK.min(n - written);
                fill_postgres(s.pool(), k, events, now_ms).await?;
                written += k;
            }
        }
        OpenedStore::RedisPostgres(s) => {
            // Finished jobs live only in the Postgres record.
            while written < n {
                let k = CHUNK.min(n - written);
                fill_postgres(s.postgres().pool(), k, events, now_ms).await?;
                written += k;
            }
        }
    }
    Ok(Filled {
        events: if events { 3 * n } else { 0 },
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One chunk on SQLite: the ids are the ones the inserts took (`rowid` order), found
/// by the queue and a marker in `output`.
async fn fill_sqlite(
    pool: &sqlx::SqlitePool,
    k: u64,
    events: bool,
    now_ms: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let first: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM jobs")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
         INSERT INTO jobs (id, queue, kind, payload, state, attempt, max_attempts, run_at,
                           created_at, finished_at, lease_token)
         SELECT ?2 + i, ?3, 'noop', '{}', 'succeeded', 1, 25, ?4 - 3600000 + (i % 3600000),
                ?4 - 3600000 + (i % 3600000), ?4 - 3599990 + (i % 3600000), 1
         FROM n",
    )
    .bind(k as i64)
    .bind(first)
    .bind(FINISHED_QUEUE)
    .bind(now_ms)
    .execute(&mut *tx)
    .await
    .context("writing finished jobs")?;
    sqlx::query(
        "INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome)
         SELECT id, 1, 'bench-0', 'bench-backlog', created_at + 2, finished_at, 'succeeded'
         FROM jobs WHERE id >= ?1",
    )
    .bind(first)
    .execute(&mut *tx)
    .await
    .context("writing their executions")?;
    if events {
        for (kind, offset) in [
            ("job.enqueued", 0),
            ("job.claimed", 2),
            ("job.succeeded", 10),
        ] {
            sqlx::query(
                "INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
                 SELECT created_at + ?2, ?1, id, 1, 'bench-0', 'bench-backlog'
                 FROM jobs WHERE id >= ?3",
            )
            .bind(kind)
            .bind(offset)
            .bind(first)
            .execute(&mut *tx)
            .await
            .context("writing their events")?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// One chunk on Postgres.
async fn fill_postgres(
    pool: &sqlx::PgPool,
    k: u64,
    events: bool,
    now_ms: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO jobs (queue, kind, payload, state, attempt, max_attempts, run_at,
                           created_at, finished_at, lease_token)
         SELECT $2, 'noop', '{}', 'succeeded', 1, 25, $3 - 3600000 + (i % 3600000),
                $3 - 3600000 + (i % 3600000), $3 - 3599990 + (i % 3600000), 1
         FROM generate_series(0, $1 - 1) AS i
         RETURNING id",
    )
    .bind(k as i64)
    .bind(FINISHED_QUEUE)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await
    .context("writing finished jobs")?;
    let (lo, hi) = (ids.iter().min().copied(), ids.iter().max().copied());
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO job_executions (job, attempt, worker, node, started_at, finished_at, outcome)
         SELECT id, 1, 'bench-0', 'bench-backlog', created_at + 2, finished_at, 'succeeded'
         FROM jobs WHERE id BETWEEN $1 AND $2 AND queue = $3",
    )
    .bind(lo)
    .bind(hi)
    .bind(FINISHED_QUEUE)
    .execute(&mut *tx)
    .await
    .context("writing their executions")?;
    if events {
        sqlx::query(
            "INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
             SELECT created_at + e.off, e.kind, id, 1, 'bench-0', 'bench-backlog'
             FROM jobs,
                  (VALUES ('job.enqueued', 0), ('job.claimed', 2), ('job.succeeded', 10)) AS e(kind, off)
             WHERE id BETWEEN $1 AND $2 AND queue = $3
             ORDER BY id, e.off",
        )
        .bind(lo)
        .bind(hi)
        .bind(FINISHED_QUEUE)
        .execute(&mut *tx)
        .await
        .context("writing their events")?;
    }
    tx.commit().await?;
    Ok(())
}
