//! One read of the store shared by every caller for a while: what many open dashboards
//! ask for on every poll (the dead letters by reason, the latency of the last hour)
//! costs one read per period, not one per tab. Concurrent callers of a stale value wait
//! for a single re-read. As [`crate::counts`] does for the queue counts.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::store::StoreError;

/// A value and when it was read.
#[derive(Debug)]
pub struct Read<T> {
    /// The value.
    pub value: T,
    /// When it was read (the serving node's clock).
    pub read_at: Millis,
}

/// The shared read of one value.
#[derive(Debug)]
pub struct SharedRead<T> {
    cached: Mutex<Option<Arc<Read<T>>>>,
    /// One re-read at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl<T> Default for SharedRead<T> {
    fn default() -> Self {
        Self {
            cached: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> SharedRead<T> {
    fn current(&self, max_age: Duration, now: Millis) -> Option<Arc<Read<T>>> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|c| !max_age.is_zero() && now.since(c.read_at) < max_age)
            .cloned()
    }

    /// Forgets the cached value, so the next call reads again (after a change the
    /// caller made, such as a redrive emptying a group).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The value, read again by `read` (given the previous value, if any) when the
    /// cached one is older than `max_age` (`0`: always). A failed read fails the call
    /// and keeps the cached value.
    pub async fn get<F, Fut>(&self, max_age: Duration, read: F) -> Result<Arc<Read<T>>, StoreError>
    where
        F: FnOnce(Option<Arc<Read<T>>>, Millis) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        if let Some(c) = self.current(max_age, SystemClock.now()) {
            return Ok(c);
        }
        let _one = self.refreshing.lock().await;
        // Whoever held the lock before may have just read it.
        if let Some(c) = self.current(max_age, SystemClock.now()) {
            return Ok(c);
        }
        let previous = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = SystemClock.now();
        let fresh = Arc::new(Read {
            value: read(previous, now).await?,
            read_at: now,
        });
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_read() {
        let shared: Arc<SharedRead<u32>> = Arc::default();
        let reads = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (shared, reads) = (shared.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                shared
                    .get(Duration::from_secs(60), |_, _| async {
                        tokio::task::yield_now().await;
                        Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
                    })
                    .await
                    .unwrap()
                    .value
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1, "every caller got the one read");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Max age zero: every call reads, and sees the previous value.
        let again = shared
            .get(Duration::ZERO, |prev, _| async move {
                Ok(prev.map_or(0, |p| p.value) + 10)
            })
            .await
            .unwrap();
        assert_eq!(again.value, 11);
    }
}
