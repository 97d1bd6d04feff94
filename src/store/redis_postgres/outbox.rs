//! Telling Redis about jobs that became ready, after Postgres committed them.
//!
//! The "outbox" of this store is the `jobs` table itself: a job whose row says
//! `available` must be in its queue's ready ZSET, and nothing else is. Every write path
//! that makes jobs available pushes them right after its commit; a push that fails
//! (Redis down, timed out) is not an error of the write (the job is stored, and the
//! caller must not retry and store it twice) but marks the dispatch index dirty, which
//! makes the reconciler put every available job back as soon as Redis answers. A node
//! that dies between a commit and its push leaves the job to the periodic reconcile of
//! any node: a delay of at most one reconcile interval, never a loss.

use std::sync::atomic::Ordering;

use crate::clock::Millis;
use crate::job::{JobId, JobState};
use crate::store::postgres::ReadyRow;
use crate::store::redis::ReadyJob;
use crate::store::{ClaimOrder, RescuedJob, StoreError};

use super::Shared;

/// Converts rows to pushes, in dispatch order (priority, then `run_at`, then id), so that
/// Redis's push order (its tie-break within a priority) follows `run_at` as Postgres does.
pub(super) fn ready_jobs(mut rows: Vec<ReadyRow>) -> Vec<ReadyJob> {
    rows.sort_by_key(|r| ClaimOrder::new(r.priority, r.run_at, r.id));
    rows.into_iter()
        .map(|r| ReadyJob {
            id: r.id,
            queue: r.queue,
            priority: r.priority,
            run_at: r.run_at,
            epoch: r.token,
        })
        .collect()
}

impl Shared {
    /// Pushes jobs Postgres has committed as available. Never fails: a failed push marks
    /// the index dirty for the reconciler (see the module doc).
    pub(super) async fn push_ready(&self, jobs: Vec<ReadyJob>, now: Millis) {
        if jobs.is_empty() {
            return;
        }
        if self.redis_is_down() {
            self.mark_dirty();
            return;
        }
        if let Err(e) = self.redis.push(&jobs, now).await {
            tracing::warn!(error = %e, n = jobs.len(), "pushing ready jobs to Redis failed; the reconciler will");
            self.redis_failed(&e);
            self.mark_dirty();
        }
    }

    /// Pushes those of `ids` that Postgres now holds as available (one query).
    pub(super) async fn push_ids(&self, ids: &[JobId], now: Millis) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let rows = self.pg.ready_by_ids(ids).await?;
        self.push_ready(ready_jobs(rows), now).await;
        Ok(())
    }

    /// Pushes the waiting children of `parents` that their success made available.
    pub(super) async fn push_released_children(
        &self,
        parents: &[JobId],
        now: Millis,
    ) -> Result<(), StoreError> {
        if parents.is_empty() {
            return Ok(());
        }
        let rows = self.pg.ready_children(parents).await?;
        let ids: Vec<JobId> = rows.iter().map(|r| r.id).collect();
        self.push_ready(ready_jobs(rows), now).await;
        self.note_available(&ids).await;
        Ok(())
    }

    /// Records that Redis may be missing ready jobs; the reconciler clears it.
    pub(super) fn mark_dirty(&self) {
        self.dirty.fetch_add(1, Ordering::SeqCst);
        self.kick.notify_one();
    }

    /// [`Shared::push_ids`] after a commit: a failure is the reconciler's to repair.
    pub(super) async fn push_after_commit(&self, ids: &[JobId], now: Millis) {
        if let Err(e) = self.push_ids(ids, now).await {
            tracing::warn!(error = %e, "reading jobs back for Redis failed; the reconciler will push them");
            self.mark_dirty();
        }
    }

    /// Pushes rescued jobs that run again.
    pub(super) async fn push_rescued(&self, rescued: &[RescuedJob], now: Millis) {
        let ids: Vec<JobId> = rescued
            .iter()
            .filter(|r| r.state == JobState::Available)
            .map(|r| r.id)
            .collect();
        self.push_after_commit(&ids, now).await;
    }
}
