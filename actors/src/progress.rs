//! The progress writer: once per `workers.progress_interval` it takes the newest
//! unwritten progress report of every attempt running here and records them in one
//! store call, which also extends their leases and writes their `job.progress` events
//! (so events are rate-limited to one per job per interval, the newest winning). An
//! attempt's last report goes with its completion instead (see the completer), so it is
//! always recorded. A report refused for a lost lease interrupts its attempt, as a
//! refused lease extension does.

use std::sync::Arc;

use jobmesh::event::LifecycleEvent;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;

/// Starts the writer; it ends when `close` fires (the attempts' last reports go with
/// their completions).
pub(crate) fn start(ctx: Arc<Ctx>, close: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ctx.workers.progress_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => write_pending(&ctx).await,
                _ = close.cancelled() => return,
            }
        }
    })
}

/// Records what is pending, in one store call; a failure hands the reports back to
/// their cells for the next round.
async fn write_pending(ctx: &Ctx) {
    let pending = ctx.inflight.take_progress();
    if pending.is_empty() {
        return;
    }
    let (reports, cells): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    let until = ctx.now().plus(ctx.lease());
    match ctx.store.record_progress(&reports, until).await {
        Ok(kept) => {
            for ((r, cell), kept) in reports.iter().zip(&cells).zip(kept) {
                cell.written(None);
                if kept {
                    ctx.events.publish(LifecycleEvent::of_progress(r));
                } else {
                    tracing::info!(job = %r.lease.job, token = r.lease.token.0,
                        "progress refused: the lease was lost; interrupting the attempt");
                    ctx.inflight.interrupt(r.lease.job, Some(r.lease.token));
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, n = reports.len(), "recording progress failed; will retry");
            for (r, cell) in reports.into_iter().zip(&cells) {
                cell.written(Some(r.progress));
            }
        }
    }
}
