//! Cluster-wide concurrency and rate limits on claims.
//!
//! A [`Limit`] applies to the jobs of one queue or of one kind (in any queue): at most
//! `max_running` of them running at once, and at most `rate` claims per interval (a
//! token bucket of `burst` tokens), either over all of them or per partition key taken
//! from the payload (`limit_by = "$.customer_id"`: at most N running per customer).
//!
//! Limits live in the store (every claimer of every node reads the same rows, written
//! at node start from `[[limit]]`) and are enforced by the claim itself, inside the
//! claim's transaction: the running count is counted from the jobs that are `running`
//! in the store, never kept by a node, so a crashed node's slots come back as soon as
//! its leases are rescued or revoked. What a limited claim takes is decided here once
//! ([`plan::choose`]); each backend only reads the inputs and applies the choice.
//!
//! Fairness is round robin across partition keys: candidates are ranked within their
//! key (priority, then `run_at`, then id) and every key's first job comes before any
//! key's second, so one key with a large backlog cannot starve the others.

pub mod plan;

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::store::filter::{parse_path, sqlite_path};

/// Most limits a cluster may have.
pub const MAX_LIMITS: usize = 100;
/// Largest `max_running`, `burst` and rate count.
pub const MAX_LIMIT_VALUE: u32 = 1_000_000;
/// Longest rate interval (`N/1d`).
pub const MAX_RATE_INTERVAL: Duration = Duration::from_secs(86_400);

/// What a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Every job of this queue.
    Queue(String),
    /// Every job of this kind, in any queue.
    Kind(String),
}

impl LimitScope {
    /// The limit's name in the store and in reports: `queue:NAME` or `kind:NAME`. At
    /// most one limit per queue and per kind, so the name identifies it.
    pub fn name(&self) -> String {
        match self {
            LimitScope::Queue(q) => format!("queue:{q}"),
            LimitScope::Kind(k) => format!("kind:{k}"),
        }
    }
}

/// A rate: `count` claims per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Claims allowed per interval.
    pub count: u32,
    /// The interval, in milliseconds.
    pub per_ms: u64,
}

impl Rate {
    /// Parses `N/s`, `N/m` (or `N/min`), `N/h`, or `N/<duration>` (`10/250ms`, `5/2s`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (n, per) = text.trim().split_once('/').ok_or_else(|| {
            format!(
                "write a rate as `N/s`, `N/min`, `N/h` or `N/<duration>`, got `{}`",
                text.escape_debug()
            )
        })?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a whole number of claims", n.escape_debug()))?;
        let per = match per.trim() {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime_serde::re::humantime::parse_duration(other)
                .map_err(|e| format!("`{}` is not an interval: {e}", other.escape_debug()))?,
        };
        let rate = Rate {
            count,
            per_ms: u64::try_from(per.as_millis()).unwrap_or(u64::MAX),
        };
        rate.check()?;
        Ok(rate)
    }

    fn check(&self) -> Result<(), String> {
        if self.count == 0 || self.count > MAX_LIMIT_VALUE {
            return Err(format!(
                "the count must be 1 to {MAX_LIMIT_VALUE}, got {}",
                self.count
            ));
        }
        if self.per_ms == 0 || self.per_ms > MAX_RATE_INTERVAL.as_millis() as u64 {
            return Err("the interval must be 1ms to 1 day".into());
        }
        Ok(())
    }

    /// Tokens gained per millisecond.
    pub fn per_milli(&self) -> f64 {
        f64::from(self.count) / self.per_ms as f64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per_ms {
            1000 => write!(f, "{}/s", self.count),
            60_000 => write!(f, "{}/min", self.count),
            3_600_000 => write!(f, "{}/h", self.count),
            ms => write!(f, "{}/{ms}ms", self.count),
        }
    }
}

/// A limit on claims (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// What it applies to.
    pub scope: LimitScope,
    /// At most this many of its jobs running at once (per key with `limit_by`).
    pub max_running: Option<u32>,
    /// At most this many claims per interval (per key with `limit_by`).
    pub rate: Option<Rate>,
    /// Tokens a bucket holds: how many claims may come at once after a quiet spell
    /// (default: the rate's count). Only with `rate`.
    pub burst: Option<u32>,
    /// The partition key: a JSON path into the payload (`$.customer_id`). Jobs whose
    /// payload lacks it share one key, the empty string.
    pub limit_by: Option<String>,
}

/// Why a limit (or a set of them) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {name}: {reason}")]
pub struct LimitError {
    /// The limit's name (`queue:emails`), or `limits` for the whole set.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl Limit {
    /// A limit on a queue with nothing set yet.
    pub fn queue(queue: impl Into<String>) -> Self {
        Self::new(LimitScope::Queue(queue.into()))
    }

    /// A limit on a kind with nothing set yet.
    pub fn kind(kind: impl Into<String>) -> Self {
        Self::new(LimitScope::Kind(kind.into()))
    }

    fn new(scope: LimitScope) -> Self {
        Self {
            scope,
            max_running: None,
            rate: None,
            burst: None,
            limit_by: None,
        }
    }

    /// Sets `max_running`.
    pub fn max_running(mut self, n: u32) -> Self {
        self.max_running = Some(n);
        self
    }

    /// Sets the rate and its burst.
    pub fn rate(mut self, rate: Rate, burst: Option<u32>) -> Self {
        self.rate = Some(rate);
        self.burst = burst;
        self
    }

    /// Sets the partition key's path.
    pub fn limit_by(mut self, path: impl Into<String>) -> Self {
        self.limit_by = Some(path.into());
        self
    }

    /// The name (see [`LimitScope::name`]).
    pub fn name(&self) -> String {
        self.scope.name()
    }

    /// The bucket's capacity: `burst`, else the rate's count.
    pub fn capacity(&self) -> u32 {
        self.burst
            .or(self.rate.map(|r| r.count))
            .unwrap_or(1)
            .max(1)
    }

    /// The keys of the `limit_by` path (checked), outermost first.
    pub fn path(&self) -> Option<Vec<String>> {
        self.limit_by.as_deref().and_then(|p| parse_path(p).ok())
    }

    /// The `limit_by` path as SQLite's `json_extract` reads it.
    pub fn sqlite_path(&self) -> Option<String> {
        self.path().map(|k| sqlite_path(&k))
    }

    /// Checks one limit: a name a queue or kind can carry, something limited, values in
    /// range, a path of the checked subset.
    pub fn check(&self) -> Result<(), LimitError> {
        let bad = |reason: String| LimitError {
            name: self.name(),
            reason,
        };
        let (what, name) = match &self.scope {
            LimitScope::Queue(q) => ("queue", q),
            LimitScope::Kind(k) => ("kind", k),
        };
        if name.is_empty()
            || name.len() > crate::store::queues::MAX_QUEUE_NAME
            || name.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "the {what} name must be 1 to {} bytes without control characters",
                crate::store::queues::MAX_QUEUE_NAME
            )));
        }
        if self.max_running.is_none() && self.rate.is_none() {
            return Err(bad(
                "set max_running, rate, or both (a limit with neither limits nothing)".into(),
            ));
        }
        if let Some(n) = self.max_running
            && (n == 0 || n > MAX_LIMIT_VALUE)
        {
            return Err(bad(format!(
                "max_running must be 1 to {MAX_LIMIT_VALUE}, got {n} (to stop a queue, pause it)"
            )));
        }
        if let Some(r) = &self.rate {
            r.check().map_err(|e| bad(format!("rate: {e}")))?;
        }
        match (self.burst, self.rate) {
            (Some(_), None) => return Err(bad("burst needs a rate".into())),
            (Some(b), Some(_)) if b == 0 || b > MAX_LIMIT_VALUE => {
                return Err(bad(format!(
                    "burst must be 1 to {MAX_LIMIT_VALUE}, got {b}"
                )));
            }
            _ => {}
        }
        if let Some(p) = &self.limit_by {
            parse_path(p).map_err(|e| bad(format!("limit_by: {e}")))?;
        }
        Ok(())
    }
}

/// Checks a whole set: each limit, at most [`MAX_LIMITS`], and at most one per queue
/// and one per kind (a job is then under at most two limits: its queue's and its
/// kind's).
pub fn check_limits(limits: &[Limit]) -> Result<(), LimitError> {
    if limits.len() > MAX_LIMITS {
        return Err(LimitError {
            name: "limits".into(),
            reason: format!("{} limits; at most {MAX_LIMITS} are allowed", limits.len()),
        });
    }
    let mut seen = BTreeSet::new();
    for l in limits {
        l.check()?;
        if !seen.insert(l.scope.clone()) {
            return Err(LimitError {
                name: l.name(),
                reason: "two limits on the same queue or kind; merge them into one".into(),
            });
        }
    }
    Ok(())
}

/// How many jobs under one limit and key are running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUsage {
    /// The limit's name (`queue:emails`).
    pub limit: String,
    /// The partition key (empty without `limit_by`).
    pub key: String,
    /// Running jobs.
    pub running: u64,
}

/// A token bucket as stored: its tokens when last written, and when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tokens at `at`.
    pub tokens: f64,
    /// When it was last written.
    pub at: Millis,
}

impl Bucket {
    /// The bucket of `limit` at `now`: `stored` refilled at the limit's rate, capped at
    /// its capacity; a bucket never written is full. A clock behind `stored.at` (another
    /// node's) refills nothing rather than draining.
    pub fn at(limit: &Limit, stored: Option<Bucket>, now: Millis) -> Bucket {
        let cap = f64::from(limit.capacity());
        let Some(rate) = limit.rate else {
            return Bucket {
                tokens: cap,
                at: now,
            };
        };
        let tokens = match stored {
            None => cap,
            Some(b) => {
                let elapsed = (now.0 - b.at.0).max(0) as f64;
                (b.tokens + elapsed * rate.per_milli()).min(cap)
            }
        };
        Bucket {
            tokens,
            at: now.max(stored.map_or(now, |b| b.at)),
        }
    }
}

#[cfg(test)]
mod tests;
