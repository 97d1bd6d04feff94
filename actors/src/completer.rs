//! The completer: finished attempts reach the store in batches, one transaction for
//! everything that queued while the previous batch was being written (preceded, when
//! some attempts left a progress report unrecorded, by one call recording those). The store applies
//! each only if its lease is still current, so a late or duplicate completion is refused
//! and nothing is recorded twice.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::event::LifecycleEvent;
use jobmesh::job::{CompletionResult, ProgressReport};
use jobmesh::metrics::FinishOutcome;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::{next_batch, retry_transient};
use crate::context::{Counters, Ctx, Finished};

/// Starts the completer on `rx`; it drains what is queued and ends when `close` fires.
pub(crate) fn start(
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<Finished>,
    close: CancellationToken,
) -> JoinHandle<()> {
    let max = ctx.workers.complete_batch.max(1) as usize;
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                b = next_batch(&mut rx, max) => b,
                _ = close.cancelled() => {
                    let mut rest = Vec::new();
                    while let Ok(c) = rx.try_recv() {
                        rest.push(c);
                    }
                    for chunk in rest.chunks(max) {
                        apply(&ctx, chunk.to_vec()).await;
                    }
                    return;
                }
            };
            match batch {
                Some(batch) => apply(&ctx, batch).await,
                None => return,
            }
        }
    })
}

/// Records the last progress reports of finished attempts, before their completions
/// (while their leases are still current), retrying while the store is unreachable. A
/// report refused as stale has nothing to interrupt: its attempt is over.
async fn record_last_progress(ctx: &Ctx, reports: &[ProgressReport]) {
    if reports.is_empty() {
        return;
    }
    let until = ctx.now().plus(ctx.lease());
    let write = || ctx.store.record_progress(reports, until);
    match retry_transient("recording progress", None, Duration::from_millis(20), write).await {
        Ok(kept) => {
            for (r, kept) in reports.iter().zip(kept) {
                if kept {
                    ctx.events.publish(LifecycleEvent::of_progress(r));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, n = reports.len(), "last progress reports refused"),
    }
}

/// Writes one batch, retrying while the store is unreachable: progress pauses, nothing
/// is dropped (a node that dies meanwhile has its leases rescued instead).
async fn apply(ctx: &Ctx, batch: Vec<Finished>) {
    let mut last_reports = Vec::new();
    let (batch, tags): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|f| {
            last_reports.extend(f.progress);
            (f.completion, f.tag)
        })
        .unzip();
    record_last_progress(ctx, &last_reports).await;
    let write = || ctx.store.complete(batch.clone());
    let results =
        match retry_transient("completing jobs", None, Duration::from_millis(20), write).await {
            Ok(r) => r,
            Err(e) => {
                // Not retryable (a bug or a corrupt row): the leases will lapse and the
                // jobs run again elsewhere, which at-least-once allows.
                tracing::error!(error = %e, n = batch.len(), "completions refused by the store");
                return;
            }
        };
    // One update per series for the batch; only what the store applied counts.
    ctx.metrics.finished(
        batch
            .iter()
            .zip(&tags)
            .zip(&results)
            .filter(|(_, r)| **r == CompletionResult::Applied)
            .map(|((c, tag), _)| {
                let secs = c.finished_at.0.saturating_sub(c.started_at.0) as f64 / 1000.0;
                (tag, FinishOutcome::of(&c.outcome), secs)
            }),
    );
    for (c, r) in batch.into_iter().zip(results) {
        match r {
            CompletionResult::Applied => {
                Counters::bump(&ctx.counters.completed);
                ctx.feed.finished(&c, true);
                for e in LifecycleEvent::of_completion(&c) {
                    ctx.events.publish(e);
                }
            }
            CompletionResult::StaleLease => {
                Counters::bump(&ctx.counters.stale);
                ctx.feed.finished(&c, false);
                tracing::info!(job = %c.lease.job, token = c.lease.token.0,
                    "completion refused: the lease was lost (rescued, revoked or cancelled)");
            }
        }
    }
}
