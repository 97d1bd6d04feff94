//! The job counts behind `GET /api/v1/queues`, read once and shared by every caller for
//! `api.counts_max_age`.
//!
//! A dashboard per operator, each polling its queues page, must not mean a grouped
//! count over the jobs table per tab per poll: that is what makes other job dashboards
//! time out on big tables. Here one read (the counts, the oldest available job of each
//! queue with some, the last minute's finishes) serves every request until it is older
//! than the limit; concurrent requests for a stale one wait for a single re-read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::metrics::QueueSnapshot;
use jobmesh::store::{Counts, Store, StoreError};

/// What one read holds.
#[derive(Debug, Clone)]
pub struct QueueCounts {
    /// Counts per queue and state, and each queue's oldest available job, read at
    /// `snapshot.taken_at`.
    pub snapshot: QueueSnapshot,
    /// Per queue and final state, the jobs finished in the `window` before the read.
    pub finished: Counts,
    /// The window of `finished`.
    pub window: Duration,
}

/// The shared read.
#[derive(Debug, Default)]
pub struct CountsCache {
    cached: Mutex<Option<Arc<QueueCounts>>>,
    /// One re-read at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl CountsCache {
    fn current(&self, max_age: Duration, now: Millis) -> Option<Arc<QueueCounts>> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|c| !max_age.is_zero() && now.since(c.snapshot.taken_at) < max_age)
            .cloned()
    }

    /// The cached counts if they are younger than `max_age`, without reading any:
    /// for callers to whom they are a free answer but not worth a read (a grouped count
    /// over the whole jobs table).
    pub fn fresh(&self, max_age: Duration) -> Option<Arc<QueueCounts>> {
        self.current(max_age, SystemClock.now())
    }

    /// The counts, re-read from `store` if the cached ones are older than `max_age`
    /// (`0`: always). A failed read fails the request and keeps the cached ones.
    pub async fn get(
        &self,
        store: &dyn Store,
        max_age: Duration,
        window: Duration,
    ) -> Result<Arc<QueueCounts>, StoreError> {
        if let Some(c) = self.current(max_age, SystemClock.now()) {
            return Ok(c);
        }
        let _one = self.refreshing.lock().await;
        // Whoever held the lock before may have just read them.
        if let Some(c) = self.current(max_age, SystemClock.now()) {
            return Ok(c);
        }
        let now = SystemClock.now();
        let snapshot = QueueSnapshot::read(store, now).await?;
        let since = Millis(now.0.saturating_sub(window.as_millis() as i64));
        let finished = store.finished_since(since).await?;
        let fresh = Arc::new(QueueCounts {
            snapshot,
            finished,
            window,
        });
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}
