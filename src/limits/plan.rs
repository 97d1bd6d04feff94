//! The decision of a limited claim, made once for every backend: which (limit, key)
//! pairs are full before the candidates are read, and which candidates to take.
//!
//! A backend, holding the claim's serialisation (SQLite's write lock, Postgres' advisory
//! lock), reads the limits, the running count per (limit, key) and the buckets, asks
//! [`blocked`] which pairs have no room (so its candidate query skips their jobs),
//! reads the candidates ranked round robin across keys, and asks [`choose`] which to
//! lease and what the buckets become; then it leases those jobs and writes the buckets
//! in the same transaction.

use std::collections::{BTreeMap, HashMap};

use super::{Bucket, Limit};
use crate::clock::Millis;
use crate::job::JobId;

/// A (limit name, partition key) pair: what a running count and a bucket are kept by.
pub type LimitKey = (String, String);

/// A job that may be claimed, with the (limit, key) pairs it is under (zero, one or
/// two: its queue's limit and its kind's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The job.
    pub id: JobId,
    /// The pairs it counts against.
    pub keys: Vec<LimitKey>,
}

/// What a limited claim takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    /// The jobs to lease, in the candidates' order.
    pub take: Vec<JobId>,
    /// The buckets that spent tokens, as they are to be stored.
    pub buckets: Vec<(LimitKey, Bucket)>,
}

/// The limits in force, by name.
#[derive(Debug, Clone, Default)]
pub struct Limits(BTreeMap<String, Limit>);

impl Limits {
    /// Indexes `limits` by name.
    pub fn new(limits: impl IntoIterator<Item = Limit>) -> Self {
        Self(limits.into_iter().map(|l| (l.name(), l)).collect())
    }

    /// The limit called `name`.
    pub fn get(&self, name: &str) -> Option<&Limit> {
        self.0.get(name)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The limits, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Limit> {
        self.0.values()
    }

    /// The names of the limits with a rate (whose buckets a claim reads).
    pub fn rated(&self) -> Vec<String> {
        self.0
            .values()
            .filter(|l| l.rate.is_some())
            .map(Limit::name)
            .collect()
    }
}

/// The pairs with no room at `now`: running at `max_running`, or a bucket with less than
/// one token. `running` holds the counts of pairs with running jobs, `buckets` the
/// stored buckets that may be empty (a pair absent from both has room).
pub fn blocked(
    limits: &Limits,
    running: &HashMap<LimitKey, u64>,
    buckets: &HashMap<LimitKey, Bucket>,
    now: Millis,
) -> Vec<LimitKey> {
    let mut out: Vec<LimitKey> = running
        .iter()
        .filter(|((name, _), n)| {
            limits
                .get(name)
                .and_then(|l| l.max_running)
                .is_some_and(|max| **n >= u64::from(max))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for (pair, stored) in buckets {
        if let Some(l) = limits.get(&pair.0)
            && Bucket::at(l, Some(*stored), now).tokens < 1.0
            && !out.contains(pair)
        {
            out.push(pair.clone());
        }
    }
    out.sort();
    out
}

/// Takes candidates in their order (round robin: every key's first job before any
/// key's second) while each of their pairs has room: fewer than `max_running` running
/// counting those taken here, and a token in the bucket. Stops at `want`.
pub fn choose(
    limits: &Limits,
    running: &HashMap<LimitKey, u64>,
    buckets: &HashMap<LimitKey, Bucket>,
    candidates: &[Candidate],
    want: usize,
    now: Millis,
) -> Choice {
    let mut taken: HashMap<&LimitKey, u64> = HashMap::new();
    let mut tokens: HashMap<&LimitKey, Bucket> = HashMap::new();
    let mut out = Choice::default();
    for c in candidates {
        if out.take.len() >= want {
            break;
        }
        let room = c.keys.iter().all(|pair| {
            let Some(l) = limits.get(&pair.0) else {
                // A limit removed since the candidates were read: nothing to respect.
                return true;
            };
            let n = running.get(pair).copied().unwrap_or(0) + taken.get(pair).copied().unwrap_or(0);
            if l.max_running.is_some_and(|max| n >= u64::from(max)) {
                return false;
            }
            l.rate.is_none()
                || tokens
                    .entry(pair)
                    .or_insert_with(|| Bucket::at(l, buckets.get(pair).copied(), now))
                    .tokens
                    >= 1.0
        });
        if !room {
            continue;
        }
        for pair in &c.keys {
            *taken.entry(pair).or_default() += 1;
            if let Some(b) = tokens.get_mut(pair) {
                b.tokens -= 1.0;
            }
        }
        out.take.push(c.id);
    }
    out.buckets = tokens
        .into_iter()
        .filter(|(pair, _)| taken.contains_key(pair))
        .map(|(pair, b)| (pair.clone(), b))
        .collect();
    out.buckets.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
