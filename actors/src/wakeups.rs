//! Store wake-ups into the dispatcher: jobs committed by other processes (other nodes,
//! `jobmesh submit`, an application writing to the store) start at once instead of at
//! the dispatcher's next poll, which stays as the fallback for lost wake-ups.

use jobmesh::store::{SharedStore, Wakeups};
use ractor::ActorRef;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::dispatcher::DispatchMsg;

/// Subscribes to the store's wake-ups for `queues` and forwards them to `dispatcher`
/// until `close` fires or the dispatcher is gone. `None` when the backend has no
/// wake-ups or subscribing failed (the node then finds jobs by polling).
pub(crate) async fn start(
    store: &SharedStore,
    queues: &[String],
    dispatcher: ActorRef<DispatchMsg>,
    close: CancellationToken,
) -> Option<JoinHandle<()>> {
    let wakeups = match store.wakeup_source()?.wakeups(queues).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "subscribing to store wake-ups failed; the node polls for jobs");
            return None;
        }
    };
    Some(tokio::spawn(forward(wakeups, dispatcher, close)))
}

async fn forward(
    mut wakeups: Wakeups,
    dispatcher: ActorRef<DispatchMsg>,
    close: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            w = wakeups.recv() => w,
            _ = close.cancelled() => return,
        };
        if next.is_none() {
            return;
        }
        // One wake covers every wake-up already waiting: a claim reads all the queues.
        while wakeups.try_recv().is_some() {}
        if dispatcher.cast(DispatchMsg::Wake).is_err() {
            return;
        }
    }
}
