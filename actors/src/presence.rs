//! The presence writer: the node's row in the store ([`jobmesh::store::presence`]),
//! written when the node starts and every [`EVERY`] after, with the queues it serves,
//! its slots and what each slot runs, and deleted when the node stops serving at a
//! graceful shutdown. A node that dies without a shutdown leaves its row to lapse, which
//! is how the nodes view tells it is lost and the queues view that its queues may have
//! no live server, on every backend, with or without a mesh.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::store::presence::{Presence, SlotJob};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;

/// How often the row is written: one small upsert per node, so readers see a killed
/// node as lost within [`jobmesh::store::presence::FRESH_INTERVALS`] of these.
pub(crate) const EVERY: Duration = Duration::from_secs(5);

/// The node's row as of now, for its run that started at `started_at`.
fn row(ctx: &Ctx, started_at: Millis) -> Presence {
    Presence {
        node: ctx.node.clone(),
        queues: ctx.workers.queues.clone(),
        slots: ctx.workers.concurrency,
        working: ctx
            .inflight
            .by_slot()
            .into_iter()
            .map(|s| s.map(|(job, at)| SlotJob { job, at }))
            .collect(),
        started_at,
        seen_at: ctx.now(),
        every: EVERY,
    }
}

/// Writes the node's row now. A failure is logged, not fatal: the row is a view, and
/// the next round writes it again.
pub(crate) async fn announce(ctx: &Ctx, started_at: Millis) {
    if let Err(e) = ctx.store.announce(&row(ctx, started_at)).await {
        tracing::warn!(error = %e, "writing the node's presence row failed; will retry");
    }
}

/// Starts the writer (the first row is written by [`announce`] before it); when
/// `serving` fires it deletes the row and ends.
pub(crate) fn start(
    ctx: Arc<Ctx>,
    started_at: Millis,
    serving: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate, and the row was just written.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => announce(&ctx, started_at).await,
                _ = serving.cancelled() => break,
            }
        }
        if let Err(e) = ctx.store.withdraw(&ctx.node, started_at).await {
            tracing::warn!(error = %e, "deleting the node's presence row failed; it will lapse");
        }
    })
}
