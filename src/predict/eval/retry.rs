//! Retry replay. A trace shows what happened under the policy that ran, so a different
//! policy is judged against a model of the world learned from the whole trace: the
//! chance that a retry of a job of kind `k`, whose previous attempt failed with class
//! `c`, succeeds at time `t` is the success share of the trace's own such retries near
//! `t` (one-minute bins, widened until they hold a few retries). Every job whose first
//! attempt failed after the split is then replayed under each policy: its attempts run
//! when the policy says, succeed by a draw against that chance (the same draws for every
//! policy), until success, giving up, 25 attempts, or two hours past the trace's end.
//!
//! Before the split the policies learn from the trace's retries; after it, from the
//! outcomes of their own replayed attempts (what a running node would see). Scored:
//! the share of jobs that eventually succeed, attempts per success, mean time from the
//! first failure to success, and the load on a failing dependency: retries per minute
//! sent to a kind while most of its first attempts fail (an outage).

use std::collections::{BinaryHeap, HashMap};

use super::{Better, EvalOptions, Metric, Row, Table};
use crate::predict::retry::{
    FailedAttempt, FixedBackoff, PosteriorRetry, PosteriorSettings, RetryDecision, RetryPredictor,
};
use crate::predict::trace::{TraceOutcome, TraceRecord};

const BIN_MS: i64 = 60_000;

/// Per (kind, previous error class): (bin, successes, retries), sorted by bin.
type SortedBins = HashMap<(String, String), Vec<(i64, u32, u32)>>;
const MAX_ATTEMPTS: u32 = 25;
const PAST_END_MS: i64 = 2 * 3_600_000;
/// Fewest retries a bin of the world model must hold (else it widens).
const MIN_IN_BIN: u32 = 3;

/// The model and the baseline.
pub fn lineup() -> Vec<(Box<dyn RetryPredictor>, &'static str)> {
    vec![
        (
            Box::new(PosteriorRetry::new(PosteriorSettings::default())),
            "model",
        ),
        (Box::new(FixedBackoff::default()), "baseline"),
    ]
}

/// Success counts of retries per (kind, previous class) per bin, and of first attempts
/// per kind per bin.
#[derive(Default)]
struct World {
    retries: HashMap<(String, String), HashMap<i64, (u32, u32)>>,
    firsts: HashMap<String, HashMap<i64, (u32, u32)>>,
}

impl World {
    /// The retry bins of each key, sorted, for nearest-bin lookups.
    fn sorted(&self) -> SortedBins {
        self.retries
            .iter()
            .map(|(k, bins)| {
                let mut v: Vec<(i64, u32, u32)> =
                    bins.iter().map(|(b, (ok, n))| (*b, *ok, *n)).collect();
                v.sort_unstable();
                (k.clone(), v)
            })
            .collect()
    }

    /// The chance of success at `t`: the nearest bins' share, widened (nearest first)
    /// until they hold [`MIN_IN_BIN`] retries.
    fn chance(sorted: &SortedBins, kind: &str, class: &str, t: i64) -> f64 {
        let Some(bins) = sorted.get(&(kind.to_owned(), class.to_owned())) else {
            return 0.5;
        };
        let b = t.div_euclid(BIN_MS);
        let p = bins.partition_point(|x| x.0 < b);
        let (mut lo, mut hi) = (p, p);
        let (mut ok, mut n) = (0, 0);
        while n < MIN_IN_BIN && (lo > 0 || hi < bins.len()) {
            let take_hi = match (lo.checked_sub(1), bins.get(hi)) {
                (Some(l), Some(h)) => h.0 - b <= b - bins[l].0,
                (None, Some(_)) => true,
                _ => false,
            };
            let x = if take_hi {
                hi += 1;
                bins[hi - 1]
            } else {
                lo -= 1;
                bins[lo]
            };
            ok += x.1;
            n += x.2;
        }
        if n == 0 {
            0.5
        } else {
            f64::from(ok) / f64::from(n)
        }
    }

    /// Whether most first attempts of `kind` fail in the bin of `t` (an outage).
    fn outage(&self, kind: &str, t: i64) -> bool {
        self.firsts
            .get(kind)
            .and_then(|b| b.get(&t.div_euclid(BIN_MS)))
            .is_some_and(|(ok, n)| *n >= 5 && f64::from(*ok) < 0.5 * f64::from(*n))
    }
}

/// A uniform draw in 0..1 from (seed, job, attempt): every policy sees the same luck.
fn draw(seed: u64, job: i64, attempt: u32, salt: u64) -> f64 {
    let mut z = seed
        ^ (job as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(attempt).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ salt.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// A first attempt (index of the record), for the budget.
    First(usize),
    /// A trace retry to learn from (index of the record), before the split.
    Learn(usize),
    /// A replayed job failed its attempt (job index, attempt).
    Failed(usize, u32),
    /// A replayed job's attempt runs (job index, attempt).
    Attempt(usize, u32),
}

/// Replays the failed jobs after `split_at` under each policy of `lineup`.
pub fn run(
    records: &[TraceRecord],
    split_at: i64,
    opts: EvalOptions,
    lineup: Vec<(Box<dyn RetryPredictor>, &'static str)>,
) -> Table {
    let mut by_job: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_job.entry(r.job).or_default().push(i);
    }
    let mut world = World::default();
    // For each record that is a retry: (previous class, first failure time).
    let mut retry_of: HashMap<usize, (String, i64)> = HashMap::new();
    // Jobs to replay: (first record index, class, first failure time).
    let mut jobs: Vec<(usize, String, i64)> = Vec::new();
    for idx in by_job.values_mut() {
        idx.sort_by_key(|i| (records[*i].attempt, records[*i].started_at));
        let mut first_failure: Option<i64> = None;
        let mut prev_class: Option<String> = None;
        for &i in idx.iter() {
            let r = &records[i];
            if r.attempt == 1 {
                let e = world
                    .firsts
                    .entry(r.kind.clone())
                    .or_default()
                    .entry(r.started_at.div_euclid(BIN_MS))
                    .or_default();
                e.0 += u32::from(r.outcome == TraceOutcome::Succeeded);
                e.1 += u32::from(r.outcome != TraceOutcome::Lost);
            }
            if let (Some(class), Some(ff)) = (&prev_class, first_failure)
                && matches!(
                    r.outcome,
                    TraceOutcome::Succeeded | TraceOutcome::Failed | TraceOutcome::Discarded
                )
            {
                let e = world
                    .retries
                    .entry((r.kind.clone(), class.clone()))
                    .or_default()
                    .entry(r.started_at.div_euclid(BIN_MS))
                    .or_default();
                e.0 += u32::from(r.outcome == TraceOutcome::Succeeded);
                e.1 += 1;
                retry_of.insert(i, (class.clone(), ff));
            }
            if r.outcome.is_failure() {
                let class = r.error_class.clone().unwrap_or_else(|| "error".into());
                if first_failure.is_none() {
                    first_failure = Some(r.finished_at);
                    if r.attempt == 1 && r.finished_at >= split_at {
                        jobs.push((i, class.clone(), r.finished_at));
                    }
                }
                prev_class = Some(class);
            } else if r.outcome != TraceOutcome::Lost {
                prev_class = None;
            }
        }
    }
    jobs.sort_by_key(|j| (j.2, records[j.0].job));
    let sorted = world.sorted();
    let end = super::span(records).map_or(0, |s| s.1) + PAST_END_MS;
    let mut rows = Vec::new();
    for (mut policy, role) in lineup {
        let mut heap: BinaryHeap<std::cmp::Reverse<(i64, Step)>> = BinaryHeap::new();
        for (i, r) in records.iter().enumerate() {
            if r.attempt == 1 {
                heap.push(std::cmp::Reverse((r.started_at, Step::First(i))));
            }
            if r.finished_at < split_at && retry_of.contains_key(&i) {
                heap.push(std::cmp::Reverse((r.finished_at, Step::Learn(i))));
            }
        }
        for (j, (_, _, at)) in jobs.iter().enumerate() {
            heap.push(std::cmp::Reverse((*at, Step::Failed(j, 1))));
        }
        let (mut attempts, mut successes, mut time_to_success) = (0u64, 0u64, 0f64);
        let mut outage_retries = 0u64;
        while let Some(std::cmp::Reverse((t, step))) = heap.pop() {
            match step {
                Step::First(i) => policy.observe_first(&records[i].kind, t),
                Step::Learn(i) => {
                    let r = &records[i];
                    let (class, ff) = &retry_of[&i];
                    policy.observe_retry(
                        &r.kind,
                        class,
                        r.attempt,
                        r.started_at - ff,
                        r.outcome == TraceOutcome::Succeeded,
                        t,
                    );
                }
                Step::Failed(j, attempt) => {
                    if attempt == 1 {
                        attempts += 1;
                    }
                    let (i, class, ff) = &jobs[j];
                    let r = &records[*i];
                    let f = FailedAttempt {
                        kind: &r.kind,
                        error_class: class,
                        attempt,
                        max_attempts: MAX_ATTEMPTS,
                        first_failure_ms: *ff,
                        now_ms: t,
                    };
                    if let RetryDecision::Retry { delay_ms } =
                        policy.decide(f, draw(opts.seed, r.job, attempt, 1))
                    {
                        let at = t + delay_ms.max(0);
                        if at <= end {
                            heap.push(std::cmp::Reverse((at, Step::Attempt(j, attempt + 1))));
                        }
                    }
                }
                Step::Attempt(j, attempt) => {
                    let (i, class, ff) = &jobs[j];
                    let r = &records[*i];
                    attempts += 1;
                    if world.outage(&r.kind, t) {
                        outage_retries += 1;
                    }
                    let ok = draw(opts.seed, r.job, attempt, 2)
                        < World::chance(&sorted, &r.kind, class, t);
                    policy.observe_retry(&r.kind, class, attempt, t - ff, ok, t);
                    if ok {
                        successes += 1;
                        time_to_success += (t - ff) as f64 / 1000.0;
                    } else {
                        heap.push(std::cmp::Reverse((t, Step::Failed(j, attempt))));
                    }
                }
            }
        }
        let outage_minutes = world
            .firsts
            .iter()
            .flat_map(|(k, bins)| bins.keys().map(move |b| (k, b)))
            .filter(|(k, b)| **b * BIN_MS >= split_at && world.outage(k, **b * BIN_MS))
            .count();
        let n = jobs.len() as f64;
        rows.push(Row {
            name: policy.name().to_string(),
            role,
            values: vec![
                (n > 0.0).then(|| successes as f64 / n),
                (successes > 0).then(|| attempts as f64 / successes as f64),
                (successes > 0).then(|| time_to_success / successes as f64),
                (outage_minutes > 0).then(|| outage_retries as f64 / outage_minutes as f64),
            ],
        });
    }
    Table {
        title: "retry",
        samples: (jobs.len() as u64, "jobs whose first attempt failed"),
        metrics: vec![
            Metric {
                name: "eventual success",
                better: Better::Higher,
            },
            Metric {
                name: "attempts/success",
                better: Better::Lower,
            },
            Metric {
                name: "time to success (s)",
                better: Better::Lower,
            },
            Metric {
                name: "outage retries/min",
                better: Better::Lower,
            },
        ],
        rows,
        main: 1,
        guard: Some((0, 0.01)),
    }
}
