//! Limits on claims as a store capability: the limits in force (rows every claimer
//! reads), and what is running under each (see [`crate::limits`] for the semantics and
//! the decision every backend applies).

use async_trait::async_trait;

use super::StoreError;
use crate::clock::Millis;
use crate::limits::{Limit, LimitScope, LimitUsage, Rate, check_limits};

/// Candidates a limited claim reads per job it may take: enough that keys whose jobs
/// the choice refuses (room for fewer than their rank) leave others to take.
pub(crate) const CANDIDATES_PER_WANT: u32 = 4;
/// Candidates a limited claim reads beyond that.
pub(crate) const EXTRA_CANDIDATES: u32 = 64;

/// The cluster-wide limits. Every backend has them, so [`super::Store`] requires it.
#[async_trait]
pub trait JobLimits: Send + Sync + 'static {
    /// Replaces the limits in force on every node with `limits` (checked first, refused
    /// whole with the limit at fault), in one transaction; the buckets of limits that
    /// are gone or whose rate changed are dropped (they start full). Claims already
    /// running keep the limits they read.
    async fn set_limits(&self, limits: &[Limit], now: Millis) -> Result<(), StoreError>;

    /// The limits in force, by name.
    async fn limits(&self) -> Result<Vec<Limit>, StoreError>;

    /// The running jobs under each limit with `max_running`, per partition key, as the
    /// claim counts them (pairs with nothing running are left out), sorted by limit and
    /// key.
    async fn limit_usage(&self) -> Result<Vec<LimitUsage>, StoreError>;
}

/// Checks a set of limits for a store.
pub(crate) fn check(limits: &[Limit]) -> Result<(), StoreError> {
    check_limits(limits).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A `job_limits` row as both backends store it (the path column aside).
pub(crate) struct LimitRow {
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub max_running: Option<i64>,
    pub rate_count: Option<i64>,
    pub rate_ms: Option<i64>,
    pub burst: Option<i64>,
    pub limit_by: Option<String>,
}

impl LimitRow {
    /// The row of a checked limit.
    pub fn of(l: &Limit) -> Self {
        let (queue, kind) = match &l.scope {
            LimitScope::Queue(q) => (Some(q.clone()), None),
            LimitScope::Kind(k) => (None, Some(k.clone())),
        };
        Self {
            queue,
            kind,
            max_running: l.max_running.map(i64::from),
            rate_count: l.rate.map(|r| i64::from(r.count)),
            rate_ms: l.rate.map(|r| r.per_ms as i64),
            burst: l.burst.map(i64::from),
            limit_by: l.limit_by.clone(),
        }
    }

    /// The limit a row holds; a row this version cannot read is corrupt.
    pub fn limit(self) -> Result<Limit, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("job_limits row: {what}"));
        let scope = match (self.queue, self.kind) {
            (Some(q), None) => LimitScope::Queue(q),
            (None, Some(k)) => LimitScope::Kind(k),
            _ => return Err(corrupt("neither or both of queue and kind")),
        };
        let num = |v: Option<i64>| {
            v.map(|n| u32::try_from(n).map_err(|_| corrupt("a value out of range")))
                .transpose()
        };
        let rate = match (self.rate_count, self.rate_ms) {
            (Some(c), Some(ms)) => Some(Rate {
                count: u32::try_from(c).map_err(|_| corrupt("rate count"))?,
                per_ms: u64::try_from(ms).map_err(|_| corrupt("rate interval"))?,
            }),
            (None, None) => None,
            _ => return Err(corrupt("half a rate")),
        };
        let l = Limit {
            scope,
            max_running: num(self.max_running)?,
            rate,
            burst: num(self.burst)?,
            limit_by: self.limit_by,
        };
        l.check().map_err(|e| corrupt(&e.to_string()))?;
        Ok(l)
    }
}

/// The limits in force, as both backends read them (for [`LimitRow`], in name order).
pub(crate) const SELECT_LIMITS: &str =
    "SELECT queue, kind, max_running, rate_count, rate_ms, burst, limit_by
     FROM job_limits ORDER BY name";

/// One limit's row: `$1` name, `$2`..`$8` the columns of [`LimitRow`] in its order,
/// `$9` the key's path as the backend reads it, `$10` when. `$n` placeholders, which
/// SQLite (through sqlx) reads as Postgres does.
pub(crate) const INSERT_LIMIT: &str =
    "INSERT INTO job_limits (name, queue, kind, max_running, rate_count, rate_ms, burst,
         limit_by, path, set_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Stored buckets that may hold less than one token at `$1` (a bucket refills
/// `rate_count` tokens every `rate_ms`).
pub(crate) const LOW_BUCKETS: &str = "SELECT b.lim, b.key, b.tokens, b.refilled_at
     FROM limit_buckets b JOIN job_limits l ON l.name = b.lim
     WHERE l.rate_count IS NOT NULL
       AND b.tokens + ($1 - b.refilled_at) * CAST(l.rate_count AS double precision) / l.rate_ms < 1";

/// What runs under each limit, from the rows `(limit, key, running)` of a backend's
/// count, sorted by limit and key.
pub(crate) fn usage(rows: Vec<(String, String, i64)>) -> Vec<LimitUsage> {
    let mut out: Vec<LimitUsage> = rows
        .into_iter()
        .map(|(limit, key, n)| LimitUsage {
            limit,
            key,
            running: n.max(0) as u64,
        })
        .collect();
    out.sort_by(|a, b| (&a.limit, &a.key).cmp(&(&b.limit, &b.key)));
    out
}

/// The names of limits whose buckets no longer mean anything: gone, or with another
/// rate or burst.
pub(crate) fn stale_buckets(old: &[Limit], new: &[Limit]) -> Vec<String> {
    old.iter()
        .filter(|o| {
            o.rate.is_some()
                && !new.iter().any(|n| {
                    n.scope == o.scope
                        && n.rate == o.rate
                        && n.capacity() == o.capacity()
                        && n.limit_by == o.limit_by
                })
        })
        .map(Limit::name)
        .collect()
}
