//! The reconciler: makes Redis's ready ZSETs hold every job Postgres holds as
//! `available`, and the pump that runs it (with the event relay) in the background.
//!
//! A reconcile first makes sure the Redis prefix belongs to this Postgres store (see
//! `store_identity`), copies the paused queues from Postgres (see `queues.rs`), then pages through the available jobs (by id) and pushes them with
//! [`crate::store::redis::RedisDispatch::rebuild`], which queues what Redis lacks and
//! leaves alone what it has, then sets the generation marker if it is missing. It runs:
//! at connect; whenever the generation marker is missing or differs from the one this
//! store last saw (Redis was flushed, restarted empty, or failed over); whenever a push
//! after a commit failed (the dirty counter moved); and every `reconcile_interval`
//! regardless, to pick up jobs whose push was lost with a crashed node.
//!
//! A reconcile may push a job that a concurrent claim has just taken: that stale id is
//! dropped by the next claim's Postgres confirmation (the job is no longer
//! `available`), so reconciling needs no lock against claims.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::clock::{Clock, SystemClock};
use crate::job::JobId;
use crate::store::{QueueControl, StoreError};

use super::Shared;
use super::outbox::ready_jobs;

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Available jobs read from Postgres.
    pub scanned: usize,
    /// Of those, jobs Redis lacked and now has.
    pub queued: usize,
}

impl Shared {
    /// One full reconcile (see the module doc). Reconciles of one store do not overlap.
    pub(super) async fn reconcile(&self) -> Result<ReconcileReport, StoreError> {
        let _one = self.reconcile_lock.lock().await;
        // Also after a flush: the prefix is this store's before anything is pushed.
        self.check_origin()
            .await
            .inspect_err(|e| self.redis_failed(e))?;
        // Failures reported from here on need another round; earlier ones are covered.
        let dirty_at_start = self.dirty.load(Ordering::SeqCst);
        // The paused set first, so that jobs pushed below are not taken from a paused queue.
        let paused: Vec<String> = self
            .pg
            .paused_queues()
            .await?
            .into_iter()
            .map(|p| p.queue)
            .collect();
        self.redis
            .set_paused(&paused)
            .await
            .inspect_err(|e| self.redis_failed(e))?;
        let mut report = ReconcileReport::default();
        let mut after = JobId(0);
        let page = self.config.reconcile_page.max(1);
        let mut generation;
        loop {
            let rows = self.pg.ready_page(after, page).await?;
            let full = rows.len() == page as usize;
            if let Some(last) = rows.iter().map(|r| r.id).max() {
                after = last;
            }
            report.scanned += rows.len();
            let r = self
                .redis
                .rebuild(&ready_jobs(rows), SystemClock.now())
                .await
                .inspect_err(|e| self.redis_failed(e))?;
            report.queued += r.queued;
            generation = Some(r.generation);
            if !full {
                break;
            }
        }
        self.redis_ok();
        *self.generation.lock().expect("generation lock") = generation;
        self.clean.store(dirty_at_start, Ordering::SeqCst);
        *self.last_reconcile.lock().expect("reconcile time lock") = Instant::now();
        if report.queued > 0 {
            tracing::info!(?report, "reconciled Redis with Postgres");
        }
        Ok(report)
    }

    /// Whether a reconcile is due: the index is dirty, the generation marker is missing
    /// or changed, or the periodic interval passed. Checking costs one Redis `GET`.
    async fn reconcile_due(&self) -> Result<bool, StoreError> {
        let now = self
            .redis
            .generation()
            .await
            .inspect_err(|e| self.redis_failed(e))?;
        self.redis_ok();
        let seen = self.generation.lock().expect("generation lock").clone();
        let dirty = self.dirty.load(Ordering::SeqCst) != self.clean.load(Ordering::SeqCst);
        let stale = self
            .last_reconcile
            .lock()
            .expect("reconcile time lock")
            .elapsed()
            >= self.config.reconcile_interval;
        Ok(dirty || stale || now.is_none() || now != seen)
    }

    /// One round of background work: reconcile if due, then relay events.
    async fn pump_round(&self) {
        match self.reconcile_due().await {
            Ok(true) => {
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(error = %e, "reconciling Redis with Postgres failed; will retry");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "Redis unreachable; dispatch falls back to Postgres")
            }
        }
        if !self.config.relay {
            return;
        }
        if let Err(e) = self.relay_events().await {
            tracing::debug!(error = %e, "relaying events to the Redis stream failed; will retry");
        }
    }
}

/// Runs [`Shared::pump_round`] every `pump_interval`, or at once when kicked (connect
/// has just reconciled, so the first round waits too). Ends when the store is dropped.
pub(super) async fn pump(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        tokio::select! {
            _ = tokio::time::sleep(s.config.pump_interval) => {}
            _ = s.kick.notified() => {}
        }
        s.pump_round().await;
    }
}

impl Shared {
    /// Claims the Redis prefix for this Postgres store, or refuses a prefix that holds
    /// another store's dispatch state: job ids of two stores would collide, and one
    /// store's stale entries could hide the other's jobs from dispatch.
    pub(super) async fn check_origin(&self) -> Result<(), StoreError> {
        let ours = self.pg.identity().await?;
        let key = self.redis.keys().origin();
        let mut conn = self.redis.conn();
        let (theirs,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&ours)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        if theirs != ours {
            return Err(StoreError::Invalid(format!(
                "Redis prefix `{}` holds the dispatch state of another Postgres store \
                 (identity {theirs}, this one is {ours}): use another store.redis_prefix, or \
                 delete the prefix's keys if that store is gone",
                self.redis.keys().prefix()
            )));
        }
        Ok(())
    }
}
