//! Wake-ups: a claimer sleeps until jobs may be available on its queues.
//!
//! Backend-neutral: a backend feeds a [`Wakeups`] from a task of its own (Postgres from
//! LISTEN/NOTIFY, redis_postgres from the Redis wake lists) through a
//! [`WakeupSender`], and retries its signal with a [`Backoff`] while it is down.
//!
//! Wake-ups are hints, not a delivery guarantee: a signal may be lost while its
//! connection is down, and this module drops wake-ups when the receiver falls behind.
//! Callers therefore keep a poll fallback (claim every few hundred milliseconds anyway);
//! the wake-up only cuts pickup latency.

use std::fmt::Display;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How many wake-ups may wait unread before newer ones are folded into [`Wakeup::Lagged`].
pub const WAKEUP_BUFFER: usize = 256;

/// Why a claimer should look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// Jobs became available on this queue (enqueue, promotion, retry, rescue, redrive or
    /// a released dependency).
    Queue(String),
    /// Wake-ups may have been lost (the signal's connection failed or was re-established,
    /// or the receiver fell behind): claim from every queue.
    Lagged,
}

/// A stream of wake-ups for some queues; dropping it stops the task that feeds it.
#[derive(Debug)]
pub struct Wakeups {
    rx: mpsc::Receiver<Wakeup>,
    task: JoinHandle<()>,
}

impl Wakeups {
    /// Wake-ups fed by a backend's own task (`feed`, given the sending side). The task
    /// is aborted when the [`Wakeups`] is dropped.
    pub(crate) fn spawn<F, Fut>(feed: F) -> Self
    where
        F: FnOnce(WakeupSender) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(WAKEUP_BUFFER);
        let task = tokio::spawn(feed(WakeupSender { tx, lagged: false }));
        Self { rx, task }
    }

    /// The next wake-up; `None` once the feeding task has stopped for good (Postgres:
    /// only when the listener's pool is closed).
    pub async fn recv(&mut self) -> Option<Wakeup> {
        self.rx.recv().await
    }

    /// A wake-up that is already waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<Wakeup> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sending side of a [`Wakeups`] built with [`Wakeups::spawn`]. It delivers without
/// blocking the feeding task: when the buffer is full, the wake-up is folded into one
/// [`Wakeup::Lagged`] sent as soon as there is room.
pub(crate) struct WakeupSender {
    tx: mpsc::Sender<Wakeup>,
    /// A `Lagged` is owed to the receiver.
    lagged: bool,
}

impl WakeupSender {
    /// Delivers without blocking (folding into [`Wakeup::Lagged`] when the receiver is
    /// behind); `false` once the receiver is gone.
    pub(crate) fn deliver(&mut self, w: Wakeup) -> bool {
        use mpsc::error::TrySendError;
        if self.lagged {
            match self.tx.try_send(Wakeup::Lagged) {
                Ok(()) => self.lagged = false,
                // Still no room: this wake-up is covered by the pending `Lagged`.
                Err(TrySendError::Full(_)) => return true,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(w) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lagged = true;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes once the receiver is gone (to race against a blocking wait for the
    /// signal).
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The pause before a wake-up task retries its signal after a failure: 50 ms, doubling
/// up to 2 s, and 50 ms again after a success. The cap is the longest a task stays
/// deaf after its backend comes back (the poll fallback covers that gap); 2 s keeps it
/// short while an outage costs one attempt (and one warning) every 2 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    /// A backoff at its first (shortest) delay.
    pub(crate) fn new() -> Self {
        Self { delay: Self::FIRST }
    }

    /// The signal works again: the next failure waits the shortest delay.
    pub(crate) fn reset(&mut self) {
        self.delay = Self::FIRST;
    }

    /// Logs that `what` failed with `error` and sleeps the next delay.
    pub(crate) async fn failed(&mut self, what: &str, error: &(dyn Display + Sync)) {
        let delay = self.next_delay();
        tracing::warn!(%error, "{what} failed; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
    }

    /// The pause before the next retry; the one after it is twice as long (up to the cap).
    fn next_delay(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (delay * 2).min(Self::MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_full_buffer_folds_the_overflow_into_one_lagged() {
        let (filled_tx, filled) = tokio::sync::oneshot::channel();
        let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
        let mut w = Wakeups::spawn(|mut out| async move {
            for _ in 0..WAKEUP_BUFFER + 10 {
                assert!(out.deliver(Wakeup::Queue("q".into())));
            }
            filled_tx.send(()).unwrap();
            go_rx.await.unwrap();
            assert!(out.deliver(Wakeup::Queue("after".into())));
            out.closed().await;
        });
        filled.await.unwrap();
        for _ in 0..WAKEUP_BUFFER {
            assert_eq!(w.recv().await, Some(Wakeup::Queue("q".into())));
        }
        assert_eq!(w.try_recv(), None, "the overflow is owed, not queued");
        go.send(()).unwrap();
        assert_eq!(w.recv().await, Some(Wakeup::Lagged));
        assert_eq!(w.recv().await, Some(Wakeup::Queue("after".into())));
    }
}
