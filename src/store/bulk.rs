//! Bulk actions on jobs, by ids or by filter ("every matching job", not one page):
//! cancel, retry now, redrive from the dead-letter queue, delete finished jobs.
//!
//! Which states each action applies to is decided here, once ([`BulkAction::applies_to`]),
//! and every backend applies it inside the statement that changes the rows, so a job
//! that changed state between the selection and the change is left alone. A backend
//! works through the target a batch of at most [`BULK_BATCH`] ids per transaction, in
//! id order, and stops at the highest id that existed when the action started: a bulk
//! action over a million jobs never holds one long transaction (claims and completions
//! go on between its batches), and jobs enqueued while it runs are not swept up.
//!
//! Each batch transaction writes one audit row (`store::audit`) with the caller's
//! [`AuditContext`]: the target (the batch's ids, or the filter with the id range the
//! batch covered) and the counts, so the log holds exactly the batches that committed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::StoreError;
use super::audit::{AuditAction, AuditContext, AuditOutcome, AuditTarget};
use super::filter::{FilterError, JobFilter};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent};
use crate::job::{JobId, JobState};

/// Ids per batch transaction.
pub const BULK_BATCH: usize = 1000;
/// Most ids one request names (a larger set is better named by a filter).
pub const MAX_BULK_IDS: usize = 10_000;

/// What to do to each targeted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Cancel unfinished jobs (a running attempt loses its lease; waiting children
    /// follow their parent-failure policy), as a single cancel does.
    Cancel,
    /// Make scheduled and retryable jobs available now (their `run_at` becomes now;
    /// attempts are kept). Discarded jobs are not retried (that is a redrive, which
    /// starts their attempts over), nor cancelled ones (a cancel is final), nor waiting
    /// ones (their parents decide); those are counted as skipped.
    Retry,
    /// Send dead-lettered (discarded) jobs back with fresh attempts, as `redrive` does.
    Redrive,
    /// Delete finished jobs (succeeded, discarded, cancelled) with their executions,
    /// dependency links, dead-letter entries and events, as retention does.
    Delete,
}

impl BulkAction {
    /// All actions.
    pub const ALL: [BulkAction; 4] = [
        BulkAction::Cancel,
        BulkAction::Retry,
        BulkAction::Redrive,
        BulkAction::Delete,
    ];

    /// The name used in routes, the CLI and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
            BulkAction::Redrive => "redrive",
            BulkAction::Delete => "delete",
        }
    }

    /// Whether the action changes a job in `state`; a targeted job in another state is
    /// left as it is and counted as skipped.
    pub fn applies_to(self, state: JobState) -> bool {
        use JobState::*;
        match self {
            BulkAction::Cancel => !state.is_final(),
            BulkAction::Retry => matches!(state, Scheduled | Retryable),
            BulkAction::Redrive => state == Discarded,
            BulkAction::Delete => state.is_final(),
        }
    }

    /// The states the action changes, by stored name.
    pub fn state_names(self) -> Vec<&'static str> {
        JobState::ALL
            .into_iter()
            .filter(|s| self.applies_to(*s))
            .map(JobState::as_str)
            .collect()
    }

    /// The states a bulk action by `filter` reads: those it applies to, narrowed to the
    /// filter's states when it names some (empty: nothing can match).
    pub fn states_within(self, filter: &JobFilter) -> Vec<&'static str> {
        let named = filter.state_names();
        self.state_names()
            .into_iter()
            .filter(|s| named.is_empty() || named.contains(s))
            .collect()
    }

    /// The audit log's name for the action.
    pub fn audit_action(self) -> AuditAction {
        match self {
            BulkAction::Cancel => AuditAction::Cancel,
            BulkAction::Retry => AuditAction::Retry,
            BulkAction::Redrive => AuditAction::Redrive,
            BulkAction::Delete => AuditAction::Delete,
        }
    }

    /// The event of retrying job `id` now (it becomes available at `now`).
    pub(crate) fn retried(id: JobId, attempt: u32, from: JobState, now: Millis) -> LifecycleEvent {
        LifecycleEvent::new(EventKind::JobRetryScheduled, now)
            .job(id, Some(attempt))
            .detail(json!({"run_at": now.0, "from": from.as_str(), "why": "retry now"}))
    }
}

impl std::fmt::Display for BulkAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BulkAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BulkAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown bulk action `{s}`; expected cancel, retry, redrive or delete")
            })
    }
}

/// Which jobs a bulk action targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// One is built per operator action: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum BulkTarget {
    /// These jobs (unknown ids are counted as not found).
    Ids(Vec<JobId>),
    /// Every job matching the filter (its `after`, `order` and `limit` are ignored:
    /// the action covers every match, in id order). Boxed: a filter is ten times the
    /// size of the other variant.
    Filter(Box<JobFilter>),
}

impl BulkTarget {
    /// Checks the target's bounds, naming the field refused: at most [`MAX_BULK_IDS`]
    /// ids (at least one), or a filter that passes [`JobFilter::check`].
    pub fn check(&self) -> Result<(), FilterError> {
        match self {
            BulkTarget::Ids(ids) if ids.is_empty() => Err(FilterError {
                field: "ids",
                reason: "name at least one job".into(),
            }),
            BulkTarget::Ids(ids) if ids.len() > MAX_BULK_IDS => Err(FilterError {
                field: "ids",
                reason: format!(
                    "{} ids; at most {MAX_BULK_IDS} (name the jobs by a filter instead)",
                    ids.len()
                ),
            }),
            BulkTarget::Ids(_) => Ok(()),
            BulkTarget::Filter(f) => f.check(),
        }
    }

    /// The ids in batches of [`BULK_BATCH`], sorted and without repeats (for
    /// [`BulkTarget::Ids`]).
    pub fn id_batches(ids: &[JobId]) -> Vec<Vec<i64>> {
        let mut ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.chunks(BULK_BATCH).map(<[i64]>::to_vec).collect()
    }

    /// What an audit row records as the target: the ids, or the filter.
    pub fn audit_target(&self) -> serde_json::Value {
        match self {
            BulkTarget::Ids(ids) => json!({"ids": ids.iter().map(|i| i.0).collect::<Vec<_>>()}),
            BulkTarget::Filter(f) => json!({"filter": f}),
        }
    }
}

/// What a bulk action did, over all its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BulkOutcome {
    /// Jobs targeted that exist (by filter: that matched in a state the action applies to).
    pub matched: u64,
    /// Jobs changed.
    pub changed: u64,
    /// Jobs targeted but left alone: in a state the action does not apply to (by ids),
    /// or changed by someone else between selection and change.
    pub skipped: u64,
    /// Ids that named no job (by ids only).
    pub not_found: u64,
    /// Batch transactions committed.
    pub batches: u64,
}

impl BulkOutcome {
    /// Adds one batch's counts.
    pub fn add(&mut self, batch: BatchOutcome) {
        self.matched += batch.matched;
        self.changed += batch.changed;
        self.skipped += batch.matched - batch.changed.min(batch.matched);
        self.not_found += batch.not_found;
        self.batches += 1;
    }
}

/// What one batch transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Jobs of the batch that exist.
    pub matched: u64,
    /// Jobs changed.
    pub changed: u64,
    /// Ids of the batch that named no job.
    pub not_found: u64,
}

/// Bulk actions by ids or by filter. Every backend has it.
#[async_trait]
pub trait BulkActions: Send + Sync + 'static {
    /// Applies `action` to every job of `target` it applies to
    /// ([`BulkAction::applies_to`]), in batches of at most [`BULK_BATCH`] jobs per
    /// transaction, each writing the events its changes record. Refuses a target that
    /// fails [`BulkTarget::check`] before changing anything. On an error, the batches
    /// committed before it stay committed (the error says so); repeating the call is
    /// safe, since what was done no longer matches.
    /// `ctx` says who acts: each batch writes its audit row with it.
    async fn bulk(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        target: &BulkTarget,
        now: Millis,
    ) -> Result<BulkOutcome, StoreError>;
}

/// One batch transaction of a bulk action, as a backend applies it. [`run`] drives a
/// whole action through these, so that every backend batches, bounds and counts alike.
#[async_trait]
pub(crate) trait BulkBatches: Send + Sync {
    /// The highest job id now (0 when there are none): an action by filter stops there.
    async fn highest_id(&self) -> Result<i64, StoreError>;

    /// In one transaction: reads the state of `ids` (sorted, at most [`BULK_BATCH`]),
    /// locking them, and applies `action` to those it applies to.
    async fn apply_ids(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        ids: &[i64],
        now: Millis,
    ) -> Result<Batch, StoreError>;

    /// In one transaction: selects, locking them, the first [`BULK_BATCH`] jobs by id
    /// within `ids` that match `filter` (its `after`, `order` and `limit` ignored) and
    /// are in one of `states`, and applies `action` to them.
    async fn apply_matching(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        filter: &JobFilter,
        states: &[&'static str],
        ids: std::ops::RangeInclusive<i64>,
        now: Millis,
    ) -> Result<Batch, StoreError>;
}

/// What one batch transaction did, with what the caller needs to keep other indexes
/// (the Redis side of redis_postgres) in step.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    /// The counts.
    pub outcome: BatchOutcome,
    /// The jobs changed.
    pub changed: Vec<JobId>,
    /// The highest id the batch selected (by filter), where the next batch starts.
    pub last: Option<i64>,
}

/// Runs `action` on `target` through `b`, a batch per transaction (see the module doc).
pub(crate) async fn run(
    b: &dyn BulkBatches,
    ctx: &AuditContext,
    action: BulkAction,
    target: &BulkTarget,
    now: Millis,
) -> Result<BulkOutcome, StoreError> {
    target.check()?;
    let mut total = BulkOutcome::default();
    match target {
        BulkTarget::Ids(ids) => {
            for batch in BulkTarget::id_batches(ids) {
                total.add(b.apply_ids(ctx, action, &batch, now).await?.outcome);
            }
        }
        BulkTarget::Filter(filter) => {
            let states = action.states_within(filter);
            if states.is_empty() {
                return Ok(total);
            }
            let upto = b.highest_id().await?;
            let mut after = 0;
            loop {
                let batch = b
                    .apply_matching(ctx, action, filter, &states, after + 1..=upto, now)
                    .await?;
                let Some(last) = batch.last else { break };
                total.add(batch.outcome);
                after = last;
            }
        }
    }
    Ok(total)
}

/// The audit row of one batch: its target (the ids asked, or the filter with the range
/// of ids the batch read) and its counts. `rows` are the ids the batch read (by filter).
pub(crate) fn batch_audit(
    action: BulkAction,
    filter: Option<&JobFilter>,
    asked: &[i64],
    outcome: &BatchOutcome,
) -> (AuditAction, AuditTarget, AuditOutcome) {
    let target = match filter {
        None => AuditTarget::Jobs(asked.iter().map(|&i| JobId(i)).collect()),
        Some(f) => AuditTarget::Filter(json!({
            "filter": f,
            "ids_from": asked.first(),
            "ids_to": asked.last(),
        })),
    };
    let result = AuditOutcome::Ok(json!({
        "matched": outcome.matched,
        "changed": outcome.changed,
        "skipped": outcome.matched - outcome.changed.min(outcome.matched),
        "not_found": outcome.not_found,
    }));
    (action.audit_action(), target, result)
}

/// Rows a backend locked for a batch, as `(id, state, attempt)`; a row whose state this
/// version cannot read is left out (and so left alone) with a warning.
pub(crate) fn decode_locked(
    rows: impl IntoIterator<Item = (i64, String, i64)>,
) -> Vec<(i64, JobState, u32)> {
    super::skip_undecodable(
        "bulk action",
        rows.into_iter()
            .map(|(id, s, a)| Ok((id, super::columns::state(&s)?, a.max(0) as u32))),
    )
}

/// What a backend decides from the rows a batch locked, `(id, state, attempt)`: the
/// jobs the action changes (with the state each leaves and its attempt), and the counts.
pub(crate) fn plan_batch(
    action: BulkAction,
    asked: usize,
    rows: &[(i64, JobState, u32)],
) -> (Vec<(i64, JobState, u32)>, BatchOutcome) {
    let changing: Vec<(i64, JobState, u32)> = rows
        .iter()
        .copied()
        .filter(|(_, s, _)| action.applies_to(*s))
        .collect();
    let outcome = BatchOutcome {
        matched: rows.len() as u64,
        changed: changing.len() as u64,
        not_found: asked.saturating_sub(rows.len()) as u64,
    };
    (changing, outcome)
}

/// The events of applying `action` to `changed` (`(id, state before, attempt)`) at
/// `now`; delete writes none (the job's events go with it; the audit row records it).
pub(crate) fn batch_events(
    action: BulkAction,
    changed: &[(i64, JobState, u32)],
    now: Millis,
) -> Vec<LifecycleEvent> {
    changed
        .iter()
        .filter_map(|&(id, from, attempt)| match action {
            BulkAction::Cancel => Some(super::rules::cancelled(JobId(id), attempt, from, now)),
            BulkAction::Retry => Some(BulkAction::retried(JobId(id), attempt, from, now)),
            BulkAction::Redrive => Some(super::rules::redriven(JobId(id), now)),
            BulkAction::Delete => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_applies_to_its_states() {
        use JobState::*;
        let applies = |a: BulkAction| -> Vec<JobState> {
            JobState::ALL
                .into_iter()
                .filter(|s| a.applies_to(*s))
                .collect()
        };
        assert_eq!(
            applies(BulkAction::Cancel),
            [Waiting, Scheduled, Available, Running, Retryable]
        );
        assert_eq!(applies(BulkAction::Retry), [Scheduled, Retryable]);
        assert_eq!(applies(BulkAction::Redrive), [Discarded]);
        assert_eq!(
            applies(BulkAction::Delete),
            [Succeeded, Discarded, Cancelled]
        );
        // Every change an action makes is a legal transition (delete removes the row).
        for s in JobState::ALL {
            if BulkAction::Retry.applies_to(s) || BulkAction::Redrive.applies_to(s) {
                assert!(s.can_become(Available), "{s}");
            }
            if BulkAction::Cancel.applies_to(s) {
                assert!(s.can_become(Cancelled), "{s}");
            }
        }
        let f = JobFilter {
            states: vec![Running, Succeeded],
            ..Default::default()
        };
        assert_eq!(BulkAction::Cancel.states_within(&f), ["running"]);
        assert!(BulkAction::Retry.states_within(&f).is_empty());
        assert_eq!(
            BulkAction::Delete.states_within(&JobFilter::default()),
            ["succeeded", "discarded", "cancelled"]
        );
    }

    #[test]
    fn targets_are_bounded_and_batched() {
        assert_eq!(BulkTarget::Ids(vec![]).check().unwrap_err().field, "ids");
        let many: Vec<JobId> = (0..MAX_BULK_IDS as i64 + 1).map(JobId).collect();
        assert_eq!(BulkTarget::Ids(many).check().unwrap_err().field, "ids");
        let ids: Vec<JobId> = (0..2500)
            .rev()
            .chain([JobId(3)].map(|j| j.0))
            .map(JobId)
            .collect();
        let batches = BulkTarget::id_batches(&ids);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert_eq!(batches[0][0], 0);
        let bad = BulkTarget::Filter(Box::new(JobFilter {
            priority_min: Some(1000),
            ..Default::default()
        }));
        assert_eq!(bad.check().unwrap_err().field, "priority_min");
        let mut sum = BulkOutcome::default();
        sum.add(BatchOutcome {
            matched: 5,
            changed: 3,
            not_found: 1,
        });
        assert_eq!(
            (
                sum.matched,
                sum.changed,
                sum.skipped,
                sum.not_found,
                sum.batches
            ),
            (5, 3, 2, 1, 1)
        );
        assert_eq!("delete".parse::<BulkAction>().unwrap(), BulkAction::Delete);
        assert!("drop".parse::<BulkAction>().is_err());
    }
}
