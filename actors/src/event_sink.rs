//! The event sink: worker and node events go live to subscribers at once and to the
//! store in batches. (Job events are written by the store inside each transition; the
//! completer only publishes them live.)

use std::time::Duration;

use jobmesh::event::LifecycleEvent;
use jobmesh::store::SharedStore;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::{next_batch, retry_transient};

/// Events waiting to be persisted; a full buffer makes emitters wait (backpressure).
const PERSIST_BUFFER: usize = 4096;
/// Events persisted per store round trip.
const PERSIST_BATCH: usize = 512;
/// Live events kept for slow subscribers before they see `Lagged`.
const LIVE_BUFFER: usize = 16_384;

/// Where actors send lifecycle events.
#[derive(Clone)]
pub(crate) struct EventSink {
    persist: mpsc::Sender<LifecycleEvent>,
    live: broadcast::Sender<LifecycleEvent>,
}

impl EventSink {
    /// Starts the persisting task; it drains what is queued and ends when `close` fires.
    pub fn start(store: SharedStore, close: CancellationToken) -> (Self, JoinHandle<()>) {
        let (persist, mut rx) = mpsc::channel(PERSIST_BUFFER);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let task = tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = next_batch(&mut rx, PERSIST_BATCH) => b,
                    _ = close.cancelled() => {
                        let mut rest = Vec::new();
                        while let Ok(e) = rx.try_recv() {
                            rest.push(e);
                        }
                        persist_batch(&store, rest).await;
                        return;
                    }
                };
                match batch {
                    Some(batch) => persist_batch(&store, batch).await,
                    None => return,
                }
            }
        });
        (Self { persist, live }, task)
    }

    /// Publishes an event live and queues it for the store.
    pub async fn emit(&self, event: LifecycleEvent) {
        let _ = self.live.send(event.clone());
        let _ = self.persist.send(event).await;
    }

    /// Publishes an event live only (the store already has it).
    pub fn publish(&self, event: LifecycleEvent) {
        let _ = self.live.send(event);
    }

    /// A receiver of live events.
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.live.subscribe()
    }
}

async fn persist_batch(store: &SharedStore, batch: Vec<LifecycleEvent>) {
    if batch.is_empty() {
        return;
    }
    let write = || store.record_events(batch.clone());
    match retry_transient(
        "recording events",
        Some(20),
        Duration::from_millis(50),
        write,
    )
    .await
    {
        Ok(()) => {}
        Err(e) if e.is_transient() => {
            tracing::error!(error = %e, n = batch.len(), "events not recorded: store unreachable")
        }
        Err(e) => tracing::error!(error = %e, n = batch.len(), "events not recorded"),
    }
}
