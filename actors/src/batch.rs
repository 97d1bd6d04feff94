//! The batched writers' shared parts: draining a bounded channel in batches (one store
//! round trip carries everything that queued while the previous one was in flight), and
//! retrying a write while the store is unreachable.

use std::future::Future;
use std::time::Duration;

use jobmesh::store::StoreError;
use tokio::sync::mpsc;

/// Longest pause between retries of a write.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds or fails for good. Transient store errors (an outage) are
/// retried after a delay doubling from `first` up to 2 s, at most `attempts` tries in
/// all when given; the last error is returned.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    attempts: Option<u32>,
    first: Duration,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = first;
    let mut tried = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempts.is_none_or(|n| tried < n) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                tried += 1;
            }
            result => return result,
        }
    }
}

/// Waits for one item, then takes whatever else is ready, up to `max` in all; `None`
/// once the channel is closed and empty.
pub async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(max.min(64));
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobmesh::store::BackendError;

    #[tokio::test]
    async fn takes_what_is_ready_up_to_max_then_ends_when_closed() {
        let (tx, mut rx) = mpsc::channel(10);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        assert_eq!(next_batch(&mut rx, 3).await, Some(vec![0, 1, 2]));
        assert_eq!(next_batch(&mut rx, 3).await, Some(vec![3, 4]));
        drop(tx);
        assert_eq!(next_batch(&mut rx, 3).await, None);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_attempts_run_out() {
        let outage = || {
            StoreError::Unavailable(BackendError::new(
                "database",
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ))
        };
        let mut calls = 0;
        let r: Result<(), _> = retry_transient("x", Some(3), Duration::from_millis(1), || {
            calls += 1;
            async { Err(outage()) }
        })
        .await;
        assert!(r.unwrap_err().is_transient());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r = retry_transient("x", None, Duration::from_millis(1), || {
            calls += 1;
            let n = calls;
            async move { if n < 5 { Err(outage()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 5);
        let mut calls = 0;
        let r: Result<(), _> = retry_transient("x", None, Duration::from_millis(1), || {
            calls += 1;
            async { Err(StoreError::Invalid("bad".into())) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1, "a permanent error is not retried");
    }
}
