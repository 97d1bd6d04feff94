//! LISTEN/NOTIFY wake-ups: a claimer sleeps until jobs may be available on its queues.
//!
//! Notifications are hints, not a delivery guarantee: Postgres drops them while the
//! listening connection is down, and this module drops them when the receiver falls
//! behind. Callers therefore keep a poll fallback (claim every few hundred
//! milliseconds anyway); the wake-up only cuts pickup latency.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::StoreError;

/// How many wake-ups may wait unread before newer ones are folded into [`Wakeup::Lagged`].
pub const WAKEUP_BUFFER: usize = 256;

/// Why a claimer should look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// Jobs became available on this queue (enqueue, promotion, retry, rescue, redrive or
    /// a released dependency).
    Queue(String),
    /// Wake-ups may have been lost (the listening connection was re-established, or the
    /// receiver fell behind): claim from every queue.
    Lagged,
}

/// A stream of wake-ups for some queues; dropping it stops listening.
#[derive(Debug)]
pub struct Wakeups {
    rx: mpsc::Receiver<Wakeup>,
    task: JoinHandle<()>,
}

impl Wakeups {
    /// Starts listening on `channel` with a connection of its own from `pool` (which the
    /// listener owns for its whole life), forwarding notifications for `queues` (all
    /// queues when empty). Returns once `LISTEN` is in effect, so anything committed
    /// afterwards is seen.
    pub(super) async fn start(
        pool: PgPool,
        channel: &str,
        queues: &[String],
    ) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(channel).await?;
        let (tx, rx) = mpsc::channel(WAKEUP_BUFFER);
        let queues: HashSet<String> = queues.iter().cloned().collect();
        let task = tokio::spawn(forward(listener, queues, tx));
        Ok(Self { rx, task })
    }

    /// The next wake-up; `None` once the listener has stopped for good (which only
    /// happens when its pool is closed).
    pub async fn recv(&mut self) -> Option<Wakeup> {
        self.rx.recv().await
    }

    /// A wake-up that is already waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<Wakeup> {
        self.rx.try_recv().ok()
    }
}

impl Wakeups {
    /// Wake-ups fed by a backend's own task (`feed`, given the sending side), for
    /// signals other than LISTEN. The task is aborted when the [`Wakeups`] is dropped.
    pub(crate) fn spawn<F, Fut>(feed: F) -> Self
    where
        F: FnOnce(WakeupSender) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(WAKEUP_BUFFER);
        let task = tokio::spawn(feed(WakeupSender(Outbox { tx, lagged: false })));
        Self { rx, task }
    }
}

/// The sending side of a [`Wakeups`] built with [`Wakeups::spawn`].
pub(crate) struct WakeupSender(Outbox);

impl WakeupSender {
    /// Delivers without blocking (folding into [`Wakeup::Lagged`] when the receiver is
    /// behind); `false` once the receiver is gone.
    pub(crate) fn deliver(&mut self, w: Wakeup) -> bool {
        self.0.deliver(w)
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.tx.is_closed()
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Delivers without blocking the listener: when the buffer is full, the wake-up is
/// folded into one [`Wakeup::Lagged`] sent as soon as there is room.
struct Outbox {
    tx: mpsc::Sender<Wakeup>,
    lagged: bool,
}

impl Outbox {
    /// Returns `false` once the receiver is gone.
    fn deliver(&mut self, w: Wakeup) -> bool {
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
}

async fn forward(mut listener: PgListener, queues: HashSet<String>, tx: mpsc::Sender<Wakeup>) {
    let mut out = Outbox {
        tx: tx.clone(),
        lagged: false,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            next = listener.try_recv() => next,
        };
        let keep_going = match next {
            Ok(Some(n)) => {
                backoff = Duration::from_millis(50);
                if queues.is_empty() || queues.contains(n.payload()) {
                    out.deliver(Wakeup::Queue(n.payload().to_owned()))
                } else {
                    true
                }
            }
            // The connection dropped and was re-established: whatever was notified in
            // between is lost.
            Ok(None) => out.deliver(Wakeup::Lagged),
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "postgres listener failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                out.deliver(Wakeup::Lagged)
            }
        };
        if !keep_going {
            return;
        }
    }
}
