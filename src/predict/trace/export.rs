//! `jobmesh trace export`: a trace from any store, read through the capabilities every
//! backend has ([`JobAdmin::list_jobs`](crate::store::JobAdmin::list_jobs) page by
//! page, then each job's [`JobHistory::attempts`](crate::store::JobHistory::attempts)
//! and [`JobHistory::job_events`](crate::store::JobHistory::job_events)), so a real
//! cluster's record becomes a trace the evaluation can replay.
//!
//! Per job, its finished attempts and its events are merged in time order: an attempt
//! row becomes a record; `job.claimed` gives the node and start of an attempt that
//! never got a row, and `job.rescued` turns it into a `lost` record; `job.retry_scheduled`
//! (its `run_at`), `job.rescued` and `job.redriven` say when the next attempt became
//! available. The first attempt counts from the job's creation. Lease renewal latency is
//! not recorded by the stores, so `renew_ms` stays empty.

use crate::clock::Millis;
use crate::event::{EventKind, StoredEvent};
use crate::job::Job;
use crate::store::history::MAX_HISTORY;
use crate::store::{
    After, Attempt, AttemptOutcome, JobFilter, Order, Store, StoreError, TimeRange,
};

use super::{TraceOutcome, TraceRecord, error_class};

/// Page size of the job listing.
const PAGE: u32 = 500;

/// Which jobs to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Only jobs created at or after this time.
    pub since: Option<Millis>,
    /// At most this many jobs (oldest first).
    pub max_jobs: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            since: None,
            max_jobs: 1_000_000,
        }
    }
}

/// Reads jobs oldest first and returns their attempts as trace records, sorted by
/// finish time. Jobs that never ran contribute nothing.
pub async fn export(
    store: &dyn Store,
    opts: ExportOptions,
) -> Result<Vec<TraceRecord>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    let mut seen = 0usize;
    while seen < opts.max_jobs {
        let filter = JobFilter {
            after,
            order: Order::Asc,
            limit: PAGE
                .min(u32::try_from(opts.max_jobs - seen).unwrap_or(u32::MAX))
                .max(1),
            created: TimeRange {
                from: opts.since,
                to: None,
            },
            ..JobFilter::default()
        };
        let page = store.list_jobs(&filter).await?;
        let Some(last) = page.last() else { break };
        after = Some(After::Id(last.id));
        seen += page.len();
        for job in &page {
            if job.attempt == 0 && job.finished_at.is_none() {
                continue;
            }
            let attempts = store.attempts(job.id, MAX_HISTORY).await?;
            let events = store.job_events(job.id, MAX_HISTORY).await?;
            out.extend(job_records(job, &attempts, &events));
        }
        if page.len() < filter.limit as usize {
            break;
        }
    }
    out.sort_by_key(|r| (r.finished_at, r.job, r.attempt));
    Ok(out)
}

/// The records of one job from its attempt rows and events.
pub fn job_records(job: &Job, attempts: &[Attempt], events: &[StoredEvent]) -> Vec<TraceRecord> {
    enum Step<'a> {
        Row(&'a Attempt),
        Event(&'a StoredEvent),
    }
    let mut steps: Vec<(i64, u8, Step<'_>)> = attempts
        .iter()
        .map(|a| (a.finished_at.0, 0, Step::Row(a)))
        .chain(events.iter().map(|e| (e.event.at.0, 1, Step::Event(e))))
        .collect();
    // At one instant, the attempt row before the events it caused.
    steps.sort_by_key(|s| (s.0, s.1));
    let payload_bytes = serde_json::to_string(&job.payload).map_or(0, |s| s.len() as u64);
    let mut next_available = job.created_at.0;
    // The current claim: attempt, node, when.
    let mut claim: Option<(u32, String, i64)> = None;
    let mut out = Vec::new();
    let record = |attempt: u32, node: String, enq: i64, start: i64, end: i64, outcome, class| {
        let start = start.max(enq);
        TraceRecord {
            job: job.id.0,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            payload_bytes,
            attempt: attempt.max(1),
            enqueued_at: enq.min(start),
            started_at: start,
            finished_at: end.max(start),
            outcome,
            error_class: class,
            node,
            renew_ms: None,
        }
    };
    for (at, _, step) in steps {
        match step {
            Step::Row(a) => {
                let (node, claimed_at) = match claim.take() {
                    Some((_, n, t)) => (n, t),
                    None => (String::new(), at),
                };
                // A snoozed run gave its attempt back: it is not an attempt of the trace.
                if matches!(a.outcome, AttemptOutcome::Snoozed) {
                    continue;
                }
                let node = a.node.as_ref().map_or(node, |n| n.0.clone());
                let outcome = match a.outcome {
                    AttemptOutcome::Snoozed => unreachable!("skipped above"),
                    AttemptOutcome::Succeeded => TraceOutcome::Succeeded,
                    AttemptOutcome::Failed => TraceOutcome::Failed,
                    AttemptOutcome::Discarded => TraceOutcome::Discarded,
                    AttemptOutcome::Cancelled => TraceOutcome::Cancelled,
                };
                let class = outcome
                    .is_failure()
                    .then(|| error_class(a.error.as_deref().unwrap_or("")));
                let start = a.started_at.map_or(claimed_at, |m| m.0);
                out.push(record(
                    a.attempt,
                    if node.is_empty() {
                        "unknown".into()
                    } else {
                        node
                    },
                    next_available,
                    start,
                    at,
                    outcome,
                    class,
                ));
                next_available = at;
            }
            Step::Event(e) => match e.event.kind {
                EventKind::JobClaimed => {
                    let node = e
                        .event
                        .node
                        .as_ref()
                        .map_or_else(|| "unknown".into(), |n| n.0.clone());
                    claim = Some((e.event.attempt.unwrap_or(1), node, at));
                }
                EventKind::JobRetryScheduled => {
                    if let Some(run_at) = e.event.detail.get("run_at").and_then(|v| v.as_i64()) {
                        next_available = run_at;
                    }
                }
                EventKind::JobRescued => {
                    if let Some((attempt, node, t)) = claim.take() {
                        out.push(record(
                            attempt,
                            node,
                            next_available,
                            t,
                            at,
                            TraceOutcome::Lost,
                            None,
                        ));
                    }
                    next_available = at;
                }
                EventKind::JobRedriven => next_available = at,
                _ => {}
            },
        }
    }
    out
}
