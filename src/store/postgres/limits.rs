//! Limits ([`JobLimits`]) and the limited claim on Postgres.
//!
//! Claims of queues under no limit keep the one-statement `SKIP LOCKED` claim of
//! `claim.rs`, which itself refuses queues under a limit (so a node that has not yet
//! seen a new limit never takes a limited job past it). Claims under a limit run here,
//! in one transaction that first takes a transaction-scoped advisory lock on the
//! schema's limits, so two claimers never both count the same last free slot or spend
//! the same token: read the limits, the running counts and the low buckets, group the
//! available jobs by key and allocate round robin (`limited.rs`, deciding with
//! [`crate::limits::plan`]), lease, write the buckets, commit. Transitions out of
//! `running` need no lock: they only free room.
//!
//! Which queues are limited is cached per store for [`CACHE_FOR`] so the unlimited path
//! costs nothing extra; the cache only routes, the statements decide.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::PostgresStore;
use super::incarnation::{next_token, on_claim_connection};
use super::rows::{self, job_columns};
use crate::clock::Millis;
use crate::job::{ClaimRequest, Job, JobId};
use crate::limits::plan::{LimitKey, Limits};
use crate::limits::{Bucket, Limit, LimitUsage};
use crate::store::StoreError;
use crate::store::limits::{
    INSERT_LIMIT, JobLimits, LOW_BUCKETS, LimitRow, SELECT_LIMITS, check, stale_buckets, usage,
};
use sqlx::{Postgres, Transaction};

/// How long a store trusts its copy of which queues are limited.
pub(crate) const CACHE_FOR: Duration = Duration::from_secs(1);

/// The lock every limited claim and every change of the limits takes (per schema).
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':jobmesh.limits'))";

/// The key of job `j` under limit `l` (see the SQLite twin).
macro_rules! key_of {
    ($l:literal) => {
        concat!(
            "CASE WHEN ",
            $l,
            ".name IS NULL THEN NULL WHEN ",
            $l,
            ".path IS NULL THEN '' ",
            "ELSE COALESCE(j.payload #>> ",
            $l,
            ".path, '') END"
        )
    };
}

/// Running jobs per (limit with `max_running`, key).
const RUNNING: &str = concat!(
    "SELECT l.name, ",
    key_of!("l"),
    " AS key, count(*) FROM jobs j
     JOIN job_limits l ON (l.queue = j.queue OR l.kind = j.kind)
     WHERE j.state = 'running' AND l.max_running IS NOT NULL
     GROUP BY 1, 2"
);

/// Leases the chosen jobs (`$4`) with their `job.claimed` events, as the one-statement
/// claim does. `$1` worker, `$2` node, `$3` lease expiry, `$5` now.
const LEASE: &str = concat!(
    "WITH claimed AS (
         UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = ",
    next_token!(),
    ",
             lease_owner = $1, lease_node = $2, lease_expires_at = $3
         FROM unnest($4::bigint[]) AS t(pick)
         WHERE jobs.id = t.pick AND jobs.state = 'available'
         RETURNING ",
    job_columns!(),
    "
     ), ev AS (
         INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
         SELECT $5, 'job.claimed', id, attempt, $1, $2 FROM claimed ORDER BY id
     )
     SELECT * FROM claimed"
);

/// Which queues are under a limit, as last read.
#[derive(Debug, Default)]
pub(crate) struct LimitCache {
    state: Mutex<Option<(Instant, Arc<Routing>)>>,
}

/// What routes a claim: the queues with a queue limit, and whether some kind has one
/// (then every queue may hold limited jobs).
#[derive(Debug, Default)]
pub(crate) struct Routing {
    queues: HashSet<String>,
    any_kind: bool,
}

impl Routing {
    /// Whether jobs of `queue` may be under a limit.
    pub fn limited(&self, queue: &str) -> bool {
        self.any_kind || self.queues.contains(queue)
    }
}

impl PostgresStore {
    /// Which queues are limited (cached for [`CACHE_FOR`]).
    pub(crate) async fn routing(&self) -> Result<Arc<Routing>, StoreError> {
        if let Some((at, r)) = &*self.limit_cache.state.lock().expect("limit cache")
            && at.elapsed() < CACHE_FOR
        {
            return Ok(r.clone());
        }
        let rows: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT queue, kind FROM job_limits")
                .fetch_all(&self.pool)
                .await?;
        let routing = Arc::new(Routing {
            any_kind: rows.iter().any(|(_, k)| k.is_some()),
            queues: rows.into_iter().filter_map(|(q, _)| q).collect(),
        });
        *self.limit_cache.state.lock().expect("limit cache") =
            Some((Instant::now(), routing.clone()));
        Ok(routing)
    }

    /// Forgets the cached routing, so the next claim reads the limits (after a change).
    fn forget_routing(&self) {
        *self.limit_cache.state.lock().expect("limit cache") = None;
    }

    /// A claim under limits (see the module doc): the jobs leased, undecodable rows
    /// among them handed to the caller to dead-letter.
    pub(super) async fn claim_limited(
        &self,
        req: &ClaimRequest,
        queues: &[String],
    ) -> Result<(Vec<Job>, Vec<crate::store::Undecodable>), StoreError> {
        on_claim_connection!(self, |conn| {
            async {
                let mut tx = sqlx::Connection::begin(conn).await?;
                sqlx::query(LOCK).execute(&mut *tx).await?;
                let ids = pick(&mut tx, req, queues).await?;
                let mut jobs = Vec::with_capacity(ids.len());
                let mut bad = Vec::new();
                if !ids.is_empty() {
                    let found = sqlx::query(LEASE)
                        .bind(&req.worker.0)
                        .bind(&req.node.0)
                        .bind(req.now.plus(req.lease_for).0)
                        .bind(ids.iter().map(|i| i.0).collect::<Vec<_>>())
                        .bind(req.now.0)
                        .fetch_all(&mut *tx)
                        .await?;
                    for row in &found {
                        match rows::claimed(row)? {
                            Ok(job) => jobs.push(job),
                            Err(u) => bad.push(u),
                        }
                    }
                }
                tx.commit().await?;
                Ok((jobs, bad))
            }
            .await
        })
    }
}

/// Reads what a limited claim decides on (the limits, the running counts, the buckets
/// that may be empty) and picks the jobs (`limited.rs`).
async fn pick(
    tx: &mut Transaction<'_, Postgres>,
    req: &ClaimRequest,
    queues: &[String],
) -> Result<Vec<JobId>, StoreError> {
    let limits = Limits::new(load(&mut **tx).await?);
    let running: HashMap<LimitKey, u64> = sqlx::query_as::<_, (String, String, i64)>(RUNNING)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(l, k, n)| ((l, k), n.max(0) as u64))
        .collect();
    let mut buckets: HashMap<LimitKey, Bucket> = HashMap::new();
    if !limits.rated().is_empty() {
        let low: Vec<(String, String, f64, i64)> = sqlx::query_as(LOW_BUCKETS)
            .bind(req.now.0)
            .fetch_all(&mut **tx)
            .await?;
        buckets.extend(low.into_iter().map(|(l, k, tokens, at)| {
            (
                (l, k),
                Bucket {
                    tokens,
                    at: Millis(at),
                },
            )
        }));
    }
    super::limited::pick(tx, req, queues, &limits, &running, buckets).await
}

type LimitTuple = (
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<String>,
);

/// The limits in force.
async fn load<'c, E>(exec: E) -> Result<Vec<Limit>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let rows: Vec<LimitTuple> = sqlx::query_as(SELECT_LIMITS).fetch_all(exec).await?;
    rows.into_iter()
        .map(
            |(queue, kind, max_running, rate_count, rate_ms, burst, limit_by)| {
                LimitRow {
                    queue,
                    kind,
                    max_running: max_running.map(i64::from),
                    rate_count: rate_count.map(i64::from),
                    rate_ms,
                    burst: burst.map(i64::from),
                    limit_by,
                }
                .limit()
            },
        )
        .collect()
}

#[async_trait]
impl JobLimits for PostgresStore {
    async fn set_limits(&self, limits: &[Limit], now: Millis) -> Result<(), StoreError> {
        check(limits)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let old = load(&mut *tx).await?;
        sqlx::query("DELETE FROM job_limits")
            .execute(&mut *tx)
            .await?;
        for l in limits {
            let r = LimitRow::of(l);
            sqlx::query(INSERT_LIMIT)
                .bind(l.name())
                .bind(r.queue)
                .bind(r.kind)
                .bind(r.max_running.map(|n| n as i32))
                .bind(r.rate_count.map(|n| n as i32))
                .bind(r.rate_ms)
                .bind(r.burst.map(|n| n as i32))
                .bind(r.limit_by)
                .bind(l.path())
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
        }
        let gone = stale_buckets(&old, limits);
        if !gone.is_empty() {
            sqlx::query("DELETE FROM limit_buckets WHERE lim = ANY ($1)")
                .bind(&gone)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.forget_routing();
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        load(&self.pool).await
    }

    async fn limit_usage(&self) -> Result<Vec<LimitUsage>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(RUNNING).fetch_all(&self.pool).await?;
        Ok(usage(rows))
    }
}
