//! Cluster-wide reads for operators' pages that no single node can answer from its own
//! memory: how long jobs waited and ran lately (from the record of finished attempts),
//! the workflow around a job (its dependency links), the dead-letter queue grouped by
//! reason, and how many jobs a filter matches.
//!
//! Every read is bounded by its caller's limit and served by an index (named at each
//! backend's statement), so a page that asks on every refresh costs a bounded amount
//! whatever the size of the tables. What the reads mean is decided here, once: the
//! quantiles of a sample ([`LatencySummary::of`]) and the walk of a workflow
//! ([`workflow_graph`]); the backends only read rows.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::incidents::IncidentRow;
use super::throughput::ThroughputRow;
use super::{JobFilter, StoreError};
use crate::clock::Millis;
use crate::job::{JobId, JobState};

/// Most rows one [`Insights::finish_timings`] call returns, over all its slices.
pub const MAX_TIMINGS: u32 = 10_000;
/// Most slices one [`Insights::finish_timings`] call reads.
pub const MAX_SLICES: usize = 64;
/// Most links one [`Insights::links_of`] call returns.
pub const MAX_LINKS: u32 = 10_000;
/// Most groups one [`Insights::dead_letter_groups`] call returns.
pub const MAX_GROUPS: u32 = 1_000;
/// Most jobs [`Insights::count_jobs`] counts (it answers `cap + 1` for "more").
pub const MAX_COUNT: u64 = 1_000_000;

/// The last attempt of a job that finished: when, how long it waited for a worker, how
/// long it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishTiming {
    /// The job.
    pub job: JobId,
    /// When the job finished (`jobs.finished_at`).
    pub finished_at: Millis,
    /// From the job's `run_at` (when its last attempt became due) to that attempt's
    /// start, in ms; `None` when the job finished without a recorded attempt (cancelled
    /// while it waited) or the attempt has no start.
    pub wait_ms: Option<i64>,
    /// The last attempt's run time (`job_executions.finished_at - started_at`), in ms.
    pub run_ms: Option<i64>,
}

/// A job as a workflow graph shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobBrief {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
}

/// A dependency: `child` waits for `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Link {
    /// The job waited for.
    pub parent: JobId,
    /// The waiting job.
    pub child: JobId,
}

/// Dead-lettered jobs of one queue whose reasons have the same shape: the reason with
/// every run of digits written `#` and cut at 200 characters (so `timeout after 1200 ms`
/// and `timeout after 87 ms` are one group). The shape is computed by the store when a
/// job is dead-lettered (a generated column, the same expression on every backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterGroup {
    /// The queue.
    pub queue: String,
    /// The reasons' shape.
    pub reason: String,
    /// Dead jobs in the group.
    pub jobs: u64,
    /// The oldest discard in the group.
    pub first_at: Millis,
    /// The newest discard in the group.
    pub last_at: Millis,
    /// The newest job of the group (highest id), to show one.
    pub sample: JobId,
}

/// The largest groups of the dead-letter queue, and how much of it they cover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterGroups {
    /// At most the limit asked, largest first (ties by queue, then reason).
    pub groups: Vec<DeadLetterGroup>,
    /// Groups in all.
    pub total_groups: u64,
    /// Dead-lettered jobs in all.
    pub total_jobs: u64,
}

/// Reads for operators' pages (see the module). Every backend has them, so
/// [`super::Store`] requires them.
#[async_trait]
pub trait Insights: Send + Sync + 'static {
    /// For each slice `[from, to)` of finish times, the last attempts of at most
    /// `per_slice` jobs that finished in it, earliest first (by the index on
    /// `(finished_at, id)`): every job when a slice holds no more, else its first ones.
    /// A job that finished without an attempt (cancelled while it waited) takes its
    /// place among a slice's first and is left out of the answer. At most
    /// [`MAX_SLICES`] slices and [`MAX_TIMINGS`] rows in all.
    async fn finish_timings(
        &self,
        slices: &[(Millis, Millis)],
        per_slice: u32,
    ) -> Result<Vec<FinishTiming>, StoreError>;

    /// The dependency links with a job of `jobs` at either end, at most `limit` (capped
    /// at [`MAX_LINKS`]), in no particular order.
    async fn links_of(&self, jobs: &[JobId], limit: u32) -> Result<Vec<Link>, StoreError>;

    /// Queue, kind and state of each of `jobs` that exists, by id.
    async fn job_briefs(&self, jobs: &[JobId]) -> Result<Vec<JobBrief>, StoreError>;

    /// The dead-letter queue grouped by queue and reason shape ([`DeadLetterGroup`]),
    /// the `limit` largest groups (capped at [`MAX_GROUPS`]) and the totals.
    async fn dead_letter_groups(&self, limit: u32) -> Result<DeadLetterGroups, StoreError>;

    /// How many jobs match `filter` (its `after`, `order` and `limit` ignored) with a
    /// state among `states` (empty: any), counting at most `cap + 1` (capped at
    /// [`MAX_COUNT`]): an answer above `cap` means "more than `cap`".
    async fn count_jobs(
        &self,
        filter: &JobFilter,
        states: &[&str],
        cap: u64,
    ) -> Result<u64, StoreError>;

    /// Per queue and `interval_ms`-long interval of `[from, to)` (counted from `from`),
    /// the jobs enqueued, succeeded and dead-lettered (what each means:
    /// [`super::throughput`]), only intervals and queues with some, by interval then
    /// queue. At most [`super::throughput::MAX_INTERVALS`] intervals.
    async fn throughput(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<ThroughputRow>, StoreError>;

    /// Per `interval_ms`-long interval of `[from, to)` (counted from `from`), the jobs
    /// rescued, workers crashed and restarted and nodes evicted, cluster-wide, by their
    /// events' times; only intervals with some, oldest first. At most
    /// [`super::throughput::MAX_INTERVALS`] intervals.
    async fn incidents(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<IncidentRow>, StoreError>;
}

/// Checks the slices a [`Insights::finish_timings`] call reads.
pub(crate) fn check_slices(slices: &[(Millis, Millis)], per_slice: u32) -> Result<(), StoreError> {
    if slices.len() > MAX_SLICES {
        return Err(StoreError::Invalid(format!(
            "{} slices; at most {MAX_SLICES}",
            slices.len()
        )));
    }
    if (slices.len() as u64) * u64::from(per_slice) > u64::from(MAX_TIMINGS) {
        return Err(StoreError::Invalid(format!(
            "{} slices of {per_slice} rows; at most {MAX_TIMINGS} rows in all",
            slices.len()
        )));
    }
    Ok(())
}

/// p50 and p99 of one window's queue waits and run times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Jobs whose timings went into the summary.
    pub jobs: u32,
    /// Whether some jobs of the window were left out (only the first of each slice
    /// were read), so the quantiles are those of a sample.
    pub sampled: bool,
    /// Median queue wait, ms.
    pub wait_p50_ms: Option<i64>,
    /// 99th percentile of queue wait, ms.
    pub wait_p99_ms: Option<i64>,
    /// Median run time, ms.
    pub run_p50_ms: Option<i64>,
    /// 99th percentile of run time, ms.
    pub run_p99_ms: Option<i64>,
}

/// The `q` quantile (nearest rank) of sorted values.
fn nearest_rank(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl LatencySummary {
    /// The summary of `timings` (one window's), `sampled` when the store left some out.
    /// Negative waits (a clock on the worker's node behind the one that set `run_at`)
    /// count as zero.
    pub fn of(timings: &[FinishTiming], sampled: bool) -> Self {
        let mut wait: Vec<i64> = timings
            .iter()
            .filter_map(|t| t.wait_ms)
            .map(|w| w.max(0))
            .collect();
        let mut run: Vec<i64> = timings
            .iter()
            .filter_map(|t| t.run_ms)
            .map(|r| r.max(0))
            .collect();
        wait.sort_unstable();
        run.sort_unstable();
        Self {
            jobs: timings.len() as u32,
            sampled,
            wait_p50_ms: nearest_rank(&wait, 0.5),
            wait_p99_ms: nearest_rank(&wait, 0.99),
            run_p50_ms: nearest_rank(&run, 0.5),
            run_p99_ms: nearest_rank(&run, 0.99),
        }
    }
}

/// Reads the latency summary of `[from, to)`: the window cut into `slices` equal slices
/// with at most `per_slice` jobs read from each, so a busy window is sampled across its
/// whole length rather than at its start.
pub async fn window_latency(
    store: &dyn Insights,
    from: Millis,
    to: Millis,
    slices: u32,
    per_slice: u32,
) -> Result<LatencySummary, StoreError> {
    let slices = slices.max(1);
    let step = ((to.0 - from.0) / i64::from(slices)).max(1);
    let bounds: Vec<(Millis, Millis)> = (0..i64::from(slices))
        .map(|i| {
            let a = from.0 + i * step;
            let b = if i + 1 == i64::from(slices) {
                to.0
            } else {
                a + step
            };
            (Millis(a), Millis(b))
        })
        .filter(|(a, b)| a < b)
        .collect();
    let timings = store.finish_timings(&bounds, per_slice).await?;
    let mut per: Vec<u32> = vec![0; bounds.len()];
    for t in &timings {
        if let Some(i) = bounds
            .iter()
            .position(|(a, b)| *a <= t.finished_at && t.finished_at < *b)
        {
            per[i] += 1;
        }
    }
    let sampled = per.iter().any(|n| *n >= per_slice);
    Ok(LatencySummary::of(&timings, sampled))
}

/// A job's workflow as far as a bound allows: the jobs linked to it through parents and
/// children, transitively, found breadth first from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowGraph {
    /// The jobs found, the asked one first, then in the order found.
    pub jobs: Vec<JobId>,
    /// The links between jobs found.
    pub links: Vec<Link>,
    /// Whether the walk stopped at the bound with jobs or links left unread.
    pub truncated: bool,
}

/// Walks the workflow around `job` breadth first through its links (both directions),
/// reading the links of one layer per store call, keeping at most `max_jobs` jobs and
/// the links between them. A layer whose links exceed what is left of a budget of
/// `4 * max_jobs` links is cut (and the graph marked truncated): a job with a
/// million children costs one bounded read, not a million rows.
pub async fn workflow_graph(
    store: &dyn Insights,
    job: JobId,
    max_jobs: usize,
) -> Result<WorkflowGraph, StoreError> {
    let max_jobs = max_jobs.max(1);
    let mut budget = (max_jobs as u32).saturating_mul(4).min(MAX_LINKS);
    let mut found: Vec<JobId> = vec![job];
    let mut known: HashSet<JobId> = HashSet::from([job]);
    let mut links: BTreeSet<Link> = BTreeSet::new();
    let mut truncated = false;
    let mut frontier = vec![job];
    while !frontier.is_empty() {
        if budget == 0 {
            truncated = true;
            break;
        }
        let mut read = store.links_of(&frontier, budget + 1).await?;
        if read.len() > budget as usize {
            truncated = true;
            read.truncate(budget as usize);
        }
        budget -= read.len() as u32;
        // The same order whatever order the store answered in.
        read.sort_unstable();
        let mut next = Vec::new();
        for link in read {
            for end in [link.parent, link.child] {
                if known.contains(&end) {
                    continue;
                }
                if found.len() < max_jobs {
                    known.insert(end);
                    found.push(end);
                    next.push(end);
                } else {
                    truncated = true;
                }
            }
            if known.contains(&link.parent) && known.contains(&link.child) {
                links.insert(link);
            }
        }
        frontier = next;
    }
    Ok(WorkflowGraph {
        jobs: found,
        links: links.into_iter().collect(),
        truncated,
    })
}

/// A group as the stores read it: `(queue, shape, jobs, first, last, sample, groups,
/// total)`, the last two the same on every row (window functions over all groups).
pub(crate) type GroupRow = (String, String, i64, i64, i64, i64, i64, i64);

/// The groups of [`GroupRow`]s.
pub(crate) fn groups_of(rows: Vec<GroupRow>) -> DeadLetterGroups {
    let (total_groups, total_jobs) = rows
        .first()
        .map(|r| (r.6.max(0) as u64, r.7.max(0) as u64))
        .unwrap_or_default();
    DeadLetterGroups {
        groups: rows
            .into_iter()
            .map(
                |(queue, reason, n, first, last, sample, _, _)| DeadLetterGroup {
                    queue,
                    reason,
                    jobs: n.max(0) as u64,
                    first_at: Millis(first),
                    last_at: Millis(last),
                    sample: JobId(sample),
                },
            )
            .collect(),
        total_groups,
        total_jobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(wait: i64, run: i64) -> FinishTiming {
        FinishTiming {
            job: JobId(1),
            finished_at: Millis(0),
            wait_ms: Some(wait),
            run_ms: Some(run),
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let timings: Vec<FinishTiming> = (1..=100).map(|i| t(i, 1000 + i)).collect();
        let s = LatencySummary::of(&timings, false);
        assert_eq!(s.jobs, 100);
        assert_eq!((s.wait_p50_ms, s.wait_p99_ms), (Some(50), Some(99)));
        assert_eq!((s.run_p50_ms, s.run_p99_ms), (Some(1050), Some(1099)));
        let one = LatencySummary::of(&[t(-5, 7)], true);
        assert_eq!((one.wait_p50_ms, one.wait_p99_ms), (Some(0), Some(0)));
        assert!(one.sampled);
        let none = LatencySummary::of(&[], false);
        assert_eq!((none.jobs, none.run_p99_ms), (0, None));
    }

    #[test]
    fn too_many_slices_are_refused() {
        let s = vec![(Millis(0), Millis(1)); MAX_SLICES + 1];
        assert!(check_slices(&s, 1).is_err());
        assert!(check_slices(&s[..10], MAX_TIMINGS / 10).is_ok());
        assert!(check_slices(&s[..10], MAX_TIMINGS / 10 + 1).is_err());
    }

    /// An in-memory graph for the walk.
    struct Links(Vec<Link>);

    #[async_trait]
    impl Insights for Links {
        async fn finish_timings(
            &self,
            _: &[(Millis, Millis)],
            _: u32,
        ) -> Result<Vec<FinishTiming>, StoreError> {
            Ok(Vec::new())
        }
        async fn links_of(&self, jobs: &[JobId], limit: u32) -> Result<Vec<Link>, StoreError> {
            Ok(self
                .0
                .iter()
                .filter(|l| jobs.contains(&l.parent) || jobs.contains(&l.child))
                .take(limit as usize)
                .copied()
                .collect())
        }
        async fn job_briefs(&self, _: &[JobId]) -> Result<Vec<JobBrief>, StoreError> {
            Ok(Vec::new())
        }
        async fn dead_letter_groups(&self, _: u32) -> Result<DeadLetterGroups, StoreError> {
            Ok(DeadLetterGroups::default())
        }
        async fn count_jobs(&self, _: &JobFilter, _: &[&str], _: u64) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn throughput(
            &self,
            _: Millis,
            _: Millis,
            _: i64,
        ) -> Result<Vec<ThroughputRow>, StoreError> {
            Ok(Vec::new())
        }
        async fn incidents(
            &self,
            _: Millis,
            _: Millis,
            _: i64,
        ) -> Result<Vec<IncidentRow>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn l(p: i64, c: i64) -> Link {
        Link {
            parent: JobId(p),
            child: JobId(c),
        }
    }

    #[tokio::test]
    async fn the_walk_finds_ancestors_and_descendants_within_the_bound() {
        // 1 -> 2 -> 4, 1 -> 3 -> 4, 4 -> 5; 9 -> 10 unrelated.
        let g = Links(vec![l(1, 2), l(1, 3), l(2, 4), l(3, 4), l(4, 5), l(9, 10)]);
        let w = workflow_graph(&g, JobId(4), 100).await.unwrap();
        let mut jobs = w.jobs.clone();
        jobs.sort();
        assert_eq!(jobs, [1, 2, 3, 4, 5].map(JobId));
        assert_eq!(w.jobs[0], JobId(4), "the asked job first");
        assert_eq!(w.links.len(), 5);
        assert!(!w.truncated);

        let cut = workflow_graph(&g, JobId(4), 3).await.unwrap();
        assert_eq!(cut.jobs.len(), 3);
        assert!(cut.truncated);
        for link in &cut.links {
            assert!(cut.jobs.contains(&link.parent) && cut.jobs.contains(&link.child));
        }

        // A fan-out larger than the link budget is cut in one read.
        let wide = Links((2..=1000).map(|c| l(1, c)).collect());
        let w = workflow_graph(&wide, JobId(1), 10).await.unwrap();
        assert_eq!(w.jobs.len(), 10);
        assert!(w.truncated);
    }
}
