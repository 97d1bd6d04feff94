//! Limits ([`JobLimits`]) and the limited claim: the rows of `job_limits` and
//! `limit_buckets`, the running counts, and the candidates ranked round robin across
//! partition keys. SQLite has one writer, so the claim's `BEGIN IMMEDIATE` already
//! serialises every claim (and every transition out of `running`) against it.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;

use super::rows::to_json;
use super::{SqliteStore, Tx};
use crate::clock::Millis;
use crate::job::{ClaimRequest, JobId};
use crate::limits::plan::{self, Candidate, LimitKey, Limits};
use crate::limits::{Bucket, Limit, LimitUsage};
use crate::store::StoreError;
use crate::store::limits::{
    CANDIDATES_PER_WANT, EXTRA_CANDIDATES, INSERT_LIMIT, JobLimits, LOW_BUCKETS, LimitRow,
    SELECT_LIMITS, check, stale_buckets, usage,
};

/// The key of a job under limit `l` (joined as `l`) for job `j`: the payload's value at
/// the limit's path as text, `''` where the payload lacks it or the limit has no path;
/// NULL where no limit is joined.
macro_rules! key_of {
    ($l:literal) => {
        concat!(
            "CASE WHEN ",
            $l,
            ".name IS NULL THEN NULL WHEN ",
            $l,
            ".path IS NULL THEN '' ",
            "ELSE COALESCE(CAST(json_extract(j.payload, ",
            $l,
            ".path) AS TEXT), '') END"
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

/// Available jobs of the queues `?1` (a JSON array) not paused, with the (limit, key)
/// pairs they are under, skipping those under a blocked pair (`?2`, `[[lim, key], ..]`),
/// ranked within their pairs (priority, run_at, id) and ordered rank first: every
/// pair's first job before any pair's second. At most `?3` per pair, `?4` in all.
const CANDIDATES: &str = concat!(
    "WITH blocked(lim, key) AS (SELECT value->>0, value->>1 FROM json_each(?2)),
     c AS (
         SELECT j.id, j.priority, j.run_at, ql.name AS qlim, ",
    key_of!("ql"),
    " AS qkey, kl.name AS klim, ",
    key_of!("kl"),
    " AS kkey
         FROM jobs j
         LEFT JOIN job_limits ql ON ql.queue = j.queue
         LEFT JOIN job_limits kl ON kl.kind = j.kind
         WHERE j.state = 'available' AND j.queue IN (SELECT value FROM json_each(?1))
           AND j.queue NOT IN (SELECT queue FROM paused_queues)
     ),
     r AS (
         SELECT c.*, ROW_NUMBER() OVER (
             PARTITION BY qlim, qkey, klim, kkey ORDER BY priority DESC, run_at, id) AS rn
         FROM c
         WHERE NOT EXISTS (SELECT 1 FROM blocked b WHERE b.lim = c.qlim AND b.key = c.qkey)
           AND NOT EXISTS (SELECT 1 FROM blocked b WHERE b.lim = c.klim AND b.key = c.kkey)
     )
     SELECT id, qlim, qkey, klim, kkey FROM r WHERE rn <= ?3
     ORDER BY rn, priority DESC, run_at, id LIMIT ?4"
);

/// A candidate as read: id, queue limit and key, kind limit and key.
type CandidateRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl SqliteStore {
    /// Picks the jobs a limited claim may lease (see [`plan`]) and writes the buckets
    /// it spends; the caller leases the ids in the same transaction. Returns the ids as
    /// a JSON array.
    pub(super) async fn pick_limited(
        tx: &mut Tx,
        req: &ClaimRequest,
        queues: &str,
    ) -> Result<String, StoreError> {
        let limits = Limits::new(load(tx).await?);
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
        let blocked = plan::blocked(&limits, &running, &buckets, req.now);
        let blocked: Vec<_> = blocked.iter().map(|(l, k)| json!([l, k])).collect();
        let rows: Vec<CandidateRow> = sqlx::query_as(CANDIDATES)
            .bind(queues)
            .bind(to_json(&blocked))
            .bind(i64::from(req.limit))
            .bind(i64::from(
                req.limit.saturating_mul(CANDIDATES_PER_WANT) + EXTRA_CANDIDATES,
            ))
            .fetch_all(&mut **tx)
            .await?;
        let candidates: Vec<Candidate> = rows
            .into_iter()
            .map(|(id, ql, qk, kl, kk)| Candidate {
                id: JobId(id),
                keys: [(ql, qk), (kl, kk)]
                    .into_iter()
                    .filter_map(|(l, k)| Some((l?, k.unwrap_or_default())))
                    .collect(),
            })
            .collect();
        // The buckets of the candidates' pairs (those not read as low are mostly full).
        let pairs: Vec<_> = candidates
            .iter()
            .flat_map(|c| &c.keys)
            .filter(|(l, _)| limits.get(l).is_some_and(|l| l.rate.is_some()))
            .filter(|p| !buckets.contains_key(*p))
            .map(|(l, k)| json!([l, k]))
            .collect();
        if !pairs.is_empty() {
            let rows: Vec<(String, String, f64, i64)> = sqlx::query_as(
                "SELECT b.lim, b.key, b.tokens, b.refilled_at FROM limit_buckets b
                 JOIN (SELECT DISTINCT value->>0 AS lim, value->>1 AS key FROM json_each(?1)) p
                   ON p.lim = b.lim AND p.key = b.key",
            )
            .bind(to_json(&pairs))
            .fetch_all(&mut **tx)
            .await?;
            buckets.extend(rows.into_iter().map(|(l, k, tokens, at)| {
                (
                    (l, k),
                    Bucket {
                        tokens,
                        at: Millis(at),
                    },
                )
            }));
        }
        let choice = plan::choose(
            &limits,
            &running,
            &buckets,
            &candidates,
            req.limit as usize,
            req.now,
        );
        if !choice.buckets.is_empty() {
            let rows: Vec<_> = choice
                .buckets
                .iter()
                .map(|((l, k), b)| json!([l, k, b.tokens, b.at.0]))
                .collect();
            sqlx::query(
                "INSERT INTO limit_buckets (lim, key, tokens, refilled_at)
                 SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?1) WHERE true
                 ON CONFLICT (lim, key) DO UPDATE
                 SET tokens = excluded.tokens, refilled_at = excluded.refilled_at",
            )
            .bind(to_json(&rows))
            .execute(&mut **tx)
            .await?;
        }
        Ok(to_json(
            &choice.take.iter().map(|i| i.0).collect::<Vec<_>>(),
        ))
    }
}

/// The limits in force.
async fn load(tx: &mut Tx) -> Result<Vec<Limit>, StoreError> {
    load_from(&mut **tx).await
}

async fn load_from<'c, E>(exec: E) -> Result<Vec<Limit>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let rows: Vec<LimitTuple> = sqlx::query_as(SELECT_LIMITS).fetch_all(exec).await?;
    rows.into_iter().map(|r| row(r).limit()).collect()
}

type LimitTuple = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn row((queue, kind, max_running, rate_count, rate_ms, burst, limit_by): LimitTuple) -> LimitRow {
    LimitRow {
        queue,
        kind,
        max_running,
        rate_count,
        rate_ms,
        burst,
        limit_by,
    }
}

#[async_trait]
impl JobLimits for SqliteStore {
    async fn set_limits(&self, limits: &[Limit], now: Millis) -> Result<(), StoreError> {
        check(limits)?;
        let mut tx = self.begin().await?;
        let old = load(&mut tx).await?;
        sqlx::query("DELETE FROM job_limits")
            .execute(&mut *tx)
            .await?;
        for l in limits {
            let r = LimitRow::of(l);
            sqlx::query(INSERT_LIMIT)
                .bind(l.name())
                .bind(r.queue)
                .bind(r.kind)
                .bind(r.max_running)
                .bind(r.rate_count)
                .bind(r.rate_ms)
                .bind(r.burst)
                .bind(r.limit_by)
                .bind(l.sqlite_path())
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
        }
        for gone in stale_buckets(&old, limits) {
            sqlx::query("DELETE FROM limit_buckets WHERE lim = ?1")
                .bind(gone)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        load_from(&self.read).await
    }

    async fn limit_usage(&self) -> Result<Vec<LimitUsage>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as(RUNNING).fetch_all(&self.read).await?;
        Ok(usage(rows))
    }
}
