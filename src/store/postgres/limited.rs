//! What a limited claim takes on Postgres, inside the claim's transaction (which holds
//! the limits' advisory lock, see `limits.rs`).
//!
//! Ranking every available job per key (`row_number() OVER (PARTITION BY key ..)`)
//! sorts the whole backlog of the limited queues on every claim: 0.5 to 1 s at 100,000
//! jobs on the loaded 2-core test machine. Instead the available jobs are read once,
//! grouped by queue and (limit, key) pairs with a hash aggregate, no sort: each group's
//! count and its best job (about 0.2 s on the same machine under the same load; the
//! paused-queue test is evaluated once, before the scan, or Postgres plans a sort). The core allocates round robin over the groups
//! ([`plan::allocate`]); a group given one job (the usual case with many keys) is given
//! its best job, known already; a group given more has them read in dispatch order by
//! the queue's claim index.
//!
//! The key expressions are spliced from the limits that apply (one `CASE` arm per
//! limit, every value a bind parameter), so a row is not joined with `job_limits`.

use std::collections::{HashMap, HashSet};

use sqlx::AssertSqlSafe;
use sqlx::Row;

use crate::clock::Millis;
use crate::job::{ClaimRequest, JobId};
use crate::limits::plan::{self, LimitKey, Limits, Partition};
use crate::limits::{Bucket, Limit, LimitScope};
use crate::store::StoreError;
use crate::store::limits::{CANDIDATES_PER_WANT, EXTRA_CANDIDATES};
use sqlx::{Postgres, Transaction};

/// Separates a queue or kind from a key in the blocked lists (control characters are
/// refused in queue and kind names).
const SEP: char = '\u{1f}';

/// The key expressions of the limits that apply, with their bind values.
struct KeyExprs {
    /// `CASE j.queue WHEN $a THEN <key> .. END`: the key under the queue's limit.
    qkey: String,
    /// `CASE j.kind WHEN $a THEN $a .. END`: the kind, where it has a limit.
    kind: String,
    /// `CASE j.kind WHEN $a THEN <key> .. END`: the key under the kind's limit.
    kkey: String,
    /// The values, in placeholder order, starting at the first free placeholder.
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Path(Vec<String>),
}

impl KeyExprs {
    /// The expressions for the queue limits among `queues` and every kind limit;
    /// placeholders start at `$first`.
    fn new(limits: &Limits, queues: &[String], first: usize) -> Self {
        let mut binds = Vec::new();
        let mut qkey = String::from("CASE j.queue");
        let mut kind = String::from("CASE j.kind");
        let mut kkey = String::from("CASE j.kind");
        for l in limits.iter() {
            match &l.scope {
                LimitScope::Queue(q) if queues.contains(q) => {
                    let at = first + binds.len();
                    binds.push(Bind::Text(q.clone()));
                    qkey.push_str(&format!(
                        " WHEN ${at} THEN {}",
                        key_expr(l, first, &mut binds)
                    ));
                }
                LimitScope::Kind(k) => {
                    let at = first + binds.len();
                    binds.push(Bind::Text(k.clone()));
                    kind.push_str(&format!(" WHEN ${at} THEN ${at}"));
                    kkey.push_str(&format!(
                        " WHEN ${at} THEN {}",
                        key_expr(l, first, &mut binds)
                    ));
                }
                LimitScope::Queue(_) => {}
            }
        }
        let close = |mut e: String, what: &str| {
            if e.contains(" WHEN ") {
                e.push_str(" END");
                e
            } else {
                format!("NULL::{what}")
            }
        };
        Self {
            qkey: close(qkey, "text"),
            kind: close(kind, "text"),
            kkey: close(kkey, "text"),
            binds,
        }
    }

    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        for b in &self.binds {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::Path(p) => q.bind(p),
            };
        }
        q
    }
}

/// The key of a job under `l`: `''` without a path, else the payload's value at it.
fn key_expr(l: &Limit, first: usize, binds: &mut Vec<Bind>) -> String {
    match l.path() {
        None => "''".into(),
        Some(path) => {
            let at = first + binds.len();
            binds.push(Bind::Path(path));
            format!("COALESCE(j.payload #>> ${at}::text[], '')")
        }
    }
}

/// A group of available jobs as read: its queue, limited kind, keys, size, best job.
struct Group {
    queue: String,
    kind: Option<String>,
    qkey: Option<String>,
    kkey: Option<String>,
    count: i64,
    head: JobId,
}

impl Group {
    fn keys(&self, limits: &Limits) -> Vec<LimitKey> {
        let mut keys = Vec::new();
        let q = LimitScope::Queue(self.queue.clone()).name();
        if let Some(k) = &self.qkey
            && limits.get(&q).is_some()
        {
            keys.push((q, k.clone()));
        }
        if let (Some(kind), Some(k)) = (&self.kind, &self.kkey) {
            keys.push((LimitScope::Kind(kind.clone()).name(), k.clone()));
        }
        keys
    }
}

/// Decides what a limited claim of `queues` takes and writes the buckets it spends;
/// returns the ids to lease.
pub(super) async fn pick(
    tx: &mut Transaction<'_, Postgres>,
    req: &ClaimRequest,
    queues: &[String],
    limits: &Limits,
    running: &HashMap<LimitKey, u64>,
    mut buckets: HashMap<LimitKey, Bucket>,
) -> Result<Vec<JobId>, StoreError> {
    let blocked = plan::blocked(limits, running, &buckets, req.now);
    let (mut bq, mut bk) = (Vec::new(), Vec::new());
    for (name, key) in blocked {
        match limits.get(&name).map(|l| &l.scope) {
            Some(LimitScope::Queue(q)) => bq.push(format!("{q}{SEP}{key}")),
            Some(LimitScope::Kind(k)) => bk.push(format!("{k}{SEP}{key}")),
            None => {}
        }
    }
    // $1 queues, $2 blocked queue keys, $3 blocked kind keys, $4 most groups.
    let exprs = KeyExprs::new(limits, queues, 5);
    let groups_sql = format!(
        "SELECT g.q, g.k, g.qkey, g.kkey, g.n, g.head[3] AS best FROM (
             SELECT j.queue AS q, {kind} AS k, {qkey} AS qkey, {kkey} AS kkey, count(*) AS n,
                    min(ARRAY[-j.priority::bigint, j.run_at, j.id]) AS head
             FROM jobs j
             WHERE j.state = 'available'
               AND j.queue = ANY (ARRAY(SELECT u.q FROM unnest($1::text[]) AS u(q)
                   WHERE NOT EXISTS (SELECT 1 FROM paused_queues p WHERE p.queue = u.q)))
             GROUP BY 1, 2, 3, 4) g
         WHERE (g.q || chr(31) || g.qkey) <> ALL ($2::text[]) IS NOT FALSE
           AND (g.k || chr(31) || g.kkey) <> ALL ($3::text[]) IS NOT FALSE
         ORDER BY g.head LIMIT $4",
        kind = exprs.kind,
        qkey = exprs.qkey,
        kkey = exprs.kkey,
    );
    let most = i64::from(req.limit.saturating_mul(CANDIDATES_PER_WANT) + EXTRA_CANDIDATES);
    let query = sqlx::query(AssertSqlSafe(groups_sql))
        .bind(queues)
        .bind(&bq)
        .bind(&bk)
        .bind(most);
    let rows = exprs.bind(query).fetch_all(&mut **tx).await?;
    let mut groups = Vec::with_capacity(rows.len());
    for r in &rows {
        groups.push(Group {
            queue: r.try_get(0)?,
            kind: r.try_get(1)?,
            qkey: r.try_get(2)?,
            kkey: r.try_get(3)?,
            count: r.try_get(4)?,
            head: JobId(r.try_get(5)?),
        });
    }
    let parts: Vec<Partition> = groups
        .iter()
        .map(|g| Partition {
            keys: g.keys(limits),
            count: g.count.max(0) as u64,
        })
        .collect();
    read_buckets(tx, limits, &parts, &mut buckets).await?;
    let (alloc, spent) = plan::allocate(
        limits,
        running,
        &buckets,
        &parts,
        req.limit as usize,
        req.now,
    );
    let mut take: Vec<JobId> = Vec::new();
    let mut deeper = Vec::new();
    for (g, n) in groups.iter().zip(&alloc) {
        match n {
            0 => {}
            1 => take.push(g.head),
            _ => deeper.push((g, *n)),
        }
    }
    if !deeper.is_empty() {
        take.extend(read_deeper(tx, limits, queues, &deeper).await?);
    }
    write_buckets(tx, &spent).await?;
    Ok(take)
}

/// The first `n` jobs of each group in dispatch order, by the claim index of its queue.
async fn read_deeper(
    tx: &mut Transaction<'_, Postgres>,
    limits: &Limits,
    queues: &[String],
    deeper: &[(&Group, u64)],
) -> Result<Vec<JobId>, StoreError> {
    let exprs = KeyExprs::new(limits, queues, 6);
    let sql = format!(
        "SELECT x.id FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
             AS p(q, k, qkey, kkey, n)
         CROSS JOIN LATERAL (
             SELECT j.id FROM jobs j
             WHERE j.state = 'available' AND j.queue = p.q
               AND ({kind}) IS NOT DISTINCT FROM p.k
               AND ({qkey}) IS NOT DISTINCT FROM p.qkey
               AND ({kkey}) IS NOT DISTINCT FROM p.kkey
             ORDER BY j.priority DESC, j.run_at, j.id
             LIMIT p.n) x",
        kind = exprs.kind,
        qkey = exprs.qkey,
        kkey = exprs.kkey,
    );
    let q: Vec<String> = deeper.iter().map(|(g, _)| g.queue.clone()).collect();
    let k: Vec<Option<String>> = deeper.iter().map(|(g, _)| g.kind.clone()).collect();
    let qk: Vec<Option<String>> = deeper.iter().map(|(g, _)| g.qkey.clone()).collect();
    let kk: Vec<Option<String>> = deeper.iter().map(|(g, _)| g.kkey.clone()).collect();
    let n: Vec<i64> = deeper.iter().map(|(_, n)| *n as i64).collect();
    let query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
        .bind(&q)
        .bind(&k)
        .bind(&qk)
        .bind(&kk)
        .bind(&n);
    let mut query = query;
    for b in &exprs.binds {
        query = match b {
            Bind::Text(t) => query.bind(t),
            Bind::Path(p) => query.bind(p),
        };
    }
    Ok(query
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(JobId)
        .collect())
}

/// Adds the stored buckets of the rate-limited pairs of `parts` not read yet.
async fn read_buckets(
    tx: &mut Transaction<'_, Postgres>,
    limits: &Limits,
    parts: &[Partition],
    buckets: &mut HashMap<LimitKey, Bucket>,
) -> Result<(), StoreError> {
    let (lim, key): (Vec<String>, Vec<String>) = parts
        .iter()
        .flat_map(|p| &p.keys)
        .filter(|(l, _)| limits.get(l).is_some_and(|l| l.rate.is_some()))
        .filter(|p| !buckets.contains_key(*p))
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .unzip();
    if lim.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, String, f64, i64)> = sqlx::query_as(
        "SELECT b.lim, b.key, b.tokens, b.refilled_at FROM limit_buckets b
         JOIN unnest($1::text[], $2::text[]) AS p(lim, key) ON p.lim = b.lim AND p.key = b.key",
    )
    .bind(&lim)
    .bind(&key)
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
    Ok(())
}

/// Stores the buckets a claim spent.
async fn write_buckets(
    tx: &mut Transaction<'_, Postgres>,
    spent: &[(LimitKey, Bucket)],
) -> Result<(), StoreError> {
    if spent.is_empty() {
        return Ok(());
    }
    let mut lim = Vec::new();
    let mut key = Vec::new();
    let mut tokens = Vec::new();
    let mut at = Vec::new();
    for ((l, k), b) in spent {
        lim.push(l.clone());
        key.push(k.clone());
        tokens.push(b.tokens);
        at.push(b.at.0);
    }
    sqlx::query(
        "INSERT INTO limit_buckets (lim, key, tokens, refilled_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::bigint[])
         ON CONFLICT (lim, key) DO UPDATE
         SET tokens = excluded.tokens, refilled_at = excluded.refilled_at",
    )
    .bind(&lim)
    .bind(&key)
    .bind(&tokens)
    .bind(&at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
