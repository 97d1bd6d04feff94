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

/// The room left under the limits while a claim takes jobs: running counts plus what
/// the claim took, and the buckets as spent so far.
struct Room<'a> {
    limits: &'a Limits,
    running: &'a HashMap<LimitKey, u64>,
    stored: &'a HashMap<LimitKey, Bucket>,
    now: Millis,
    taken: HashMap<LimitKey, u64>,
    tokens: HashMap<LimitKey, Bucket>,
}

impl<'a> Room<'a> {
    fn new(
        limits: &'a Limits,
        running: &'a HashMap<LimitKey, u64>,
        stored: &'a HashMap<LimitKey, Bucket>,
        now: Millis,
    ) -> Self {
        Self {
            limits,
            running,
            stored,
            now,
            taken: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    /// Takes one job under `keys` if each pair has room: fewer than `max_running`
    /// running counting those taken here, and a token in the bucket.
    fn take(&mut self, keys: &[LimitKey]) -> bool {
        let room = keys.iter().all(|pair| {
            let Some(l) = self.limits.get(&pair.0) else {
                // A limit removed since the candidates were read: nothing to respect.
                return true;
            };
            let n = self.running.get(pair).copied().unwrap_or(0)
                + self.taken.get(pair).copied().unwrap_or(0);
            if l.max_running.is_some_and(|max| n >= u64::from(max)) {
                return false;
            }
            l.rate.is_none()
                || self
                    .tokens
                    .entry(pair.clone())
                    .or_insert_with(|| Bucket::at(l, self.stored.get(pair).copied(), self.now))
                    .tokens
                    >= 1.0
        });
        if room {
            for pair in keys {
                *self.taken.entry(pair.clone()).or_default() += 1;
                if let Some(b) = self.tokens.get_mut(pair) {
                    b.tokens -= 1.0;
                }
            }
        }
        room
    }

    /// The buckets that spent tokens, as they are to be stored.
    fn spent(self) -> Vec<(LimitKey, Bucket)> {
        let mut out: Vec<_> = self
            .tokens
            .into_iter()
            .filter(|(pair, _)| self.taken.contains_key(pair))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Available jobs under the same (limit, key) pairs in one queue: how many (a backend
/// reads these grouped, with no per-job ranking, see [`allocate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The pairs its jobs count against.
    pub keys: Vec<LimitKey>,
    /// Its available jobs.
    pub count: u64,
}

/// How many jobs to take from each partition (given in the order of their best jobs):
/// round robin, one from each partition with room before a second from any, up to
/// `want`; with the buckets the claim spends.
pub fn allocate(
    limits: &Limits,
    running: &HashMap<LimitKey, u64>,
    buckets: &HashMap<LimitKey, Bucket>,
    partitions: &[Partition],
    want: usize,
    now: Millis,
) -> (Vec<u64>, Vec<(LimitKey, Bucket)>) {
    let mut room = Room::new(limits, running, buckets, now);
    let mut alloc = vec![0u64; partitions.len()];
    let mut total = 0;
    while total < want {
        let mut progressed = false;
        for (i, p) in partitions.iter().enumerate() {
            if total >= want {
                break;
            }
            if alloc[i] < p.count && room.take(&p.keys) {
                alloc[i] += 1;
                total += 1;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    (alloc, room.spent())
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
    let mut room = Room::new(limits, running, buckets, now);
    let mut take = Vec::new();
    for c in candidates {
        if take.len() >= want {
            break;
        }
        if room.take(&c.keys) {
            take.push(c.id);
        }
    }
    Choice {
        take,
        buckets: room.spent(),
    }
}
