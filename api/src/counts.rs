//! The job counts behind `GET /api/v1/queues`: the maintenance leader's, posted in the
//! store ([`posted_counts`]), held here and shared by every caller for
//! `api.counts_max_age`.
//!
//! A dashboard per operator, each polling its queues page, must not mean a grouped
//! count over the jobs table per tab per poll, nor per API process: that is what makes
//! other job dashboards time out on big tables. The leader of the cluster counts; this
//! process reads its post (one row) when the copy here is older than the limit, and
//! posts a wish for counts that fresh while it is asked for them, so the leader re-reads
//! them that often. Only when no leader posts fresh enough counts (no node running, the
//! leader gone, or the first request after a quiet spell) does this process count
//! itself: one read (the counts, the oldest available job of each queue with some, the
//! last minute's finishes) for every request until it is older than the limit;
//! concurrent requests for a stale one wait for a single re-read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::metrics::QueueSnapshot;
use jobmesh::metrics::posted_counts::{self, PostedCounts, WISH_TTL};
use jobmesh::store::{Counts, Store, StoreError};

/// Who counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountsSource {
    /// The maintenance leader, posted in the store.
    Leader,
    /// This process, for want of a fresh post.
    Here,
}

impl CountsSource {
    /// `leader` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            CountsSource::Leader => "leader",
            CountsSource::Here => "api",
        }
    }
}

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
    /// Who counted.
    pub source: CountsSource,
}

/// The shared read.
#[derive(Debug, Default)]
pub struct CountsCache {
    cached: Mutex<Option<Arc<QueueCounts>>>,
    /// One re-read at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// When this process last posted its wish.
    wished_at: Mutex<Option<Millis>>,
    /// Counts this process read itself (for the tests and the curious).
    counted_here: AtomicU64,
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

    /// How many times this process counted the jobs itself.
    pub fn counted_here(&self) -> u64 {
        self.counted_here.load(Ordering::Relaxed)
    }

    /// The counts: the copy here while younger than `max_age`, else the leader's post
    /// if it serves `max_age` (see [`PostedCounts::serves`]), else read from `store`
    /// here (`max_age` 0: always read here). A failed read fails the request and keeps
    /// the copy.
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
        let fresh = match self.posted(store, max_age, window, now).await? {
            Some(posted) => posted,
            None => {
                self.counted_here.fetch_add(1, Ordering::Relaxed);
                let read = PostedCounts::read(store, now, window).await?;
                QueueCounts {
                    snapshot: read.snapshot,
                    finished: read.finished,
                    window,
                    source: CountsSource::Here,
                }
            }
        };
        let fresh = Arc::new(fresh);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    /// The leader's post if it serves `max_age` and counts finishes over `window`;
    /// renews this process's wish first.
    async fn posted(
        &self,
        store: &dyn Store,
        max_age: Duration,
        window: Duration,
        now: Millis,
    ) -> Result<Option<QueueCounts>, StoreError> {
        if max_age.is_zero() {
            return Ok(None);
        }
        self.wish(store, max_age, now).await;
        let Some(p) = PostedCounts::latest(store).await? else {
            return Ok(None);
        };
        if !p.serves(max_age, now) || p.window_ms != window.as_millis() as u64 {
            return Ok(None);
        }
        Ok(Some(QueueCounts {
            snapshot: p.snapshot,
            finished: p.finished,
            window,
            source: CountsSource::Leader,
        }))
    }

    /// Posts the wish for counts within `max_age` if this process has not in the last
    /// third of [`WISH_TTL`]. Best-effort: without it the leader posts at its own pace
    /// and this process counts for itself.
    async fn wish(&self, store: &dyn Store, max_age: Duration, now: Millis) {
        let due = {
            let wished = self.wished_at.lock().unwrap_or_else(|p| p.into_inner());
            wished.is_none_or(|at| now.since(at) >= WISH_TTL / 3)
        };
        if !due {
            return;
        }
        match posted_counts::wish(store, max_age, now).await {
            Ok(()) => *self.wished_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now),
            Err(e) => tracing::debug!(error = %e, "posting the counts wish failed"),
        }
    }
}
