//! The node's live models at the edges: resumed from the store when the node starts,
//! fed with store errors (counted by the metered store) every second, saved every
//! minute (then merged with the other nodes' saved durations) and once more at graceful
//! shutdown. The mapping from events to observations is the core's
//! ([`jobmesh::predict::live::feed`]); the dispatcher, the completer and the worker
//! supervisor call the feed where each event happens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmesh::metrics::{ErrorKind, Metrics};
use jobmesh::predict::live::{LiveFeed, SharedModels, persist};
use jobmesh::store::{SharedStore, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;

/// How often the models are saved (and the other nodes' durations merged in again).
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(60);

/// How often new store errors are fed.
const ERRORS_EVERY: Duration = Duration::from_secs(1);

/// Store errors that say something about the node or its store (not a caller's bad
/// request or a job that does not exist).
const NODE_ERROR_KINDS: [&str; 4] = ["unavailable", "conflict", "corrupt", "backend"];

/// The feed of node `node`, resumed from what the store holds. A store that cannot
/// give the saved models (an old schema, an outage after the node's first call) costs
/// the node its history, not its start.
pub(crate) async fn resume(store: &SharedStore, node: &str) -> LiveFeed {
    let saved = match store.load_models().await {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(error = %e, "saved models unreadable; the models start fresh");
            Vec::new()
        }
    };
    let resumed = saved.iter().any(|r| r.node == node);
    let (models, state) = persist::resume(node, &saved);
    if resumed {
        tracing::info!(
            peers = saved.len().saturating_sub(1),
            "resumed this node's saved models"
        );
    }
    LiveFeed::new(SharedModels::new(models), state)
}

fn node_errors(metrics: &Metrics) -> u64 {
    NODE_ERROR_KINDS
        .iter()
        // `get`, not `get_or_create`: reading must not add empty series to /metrics.
        .filter_map(|kind| {
            metrics
                .store
                .errors
                .get(&ErrorKind { kind })
                .map(|c| c.get())
        })
        .sum()
}

/// Saves the node's own models, then merges the other nodes' saved durations into its
/// view.
pub(crate) async fn save(ctx: &Ctx) -> Result<(), StoreError> {
    let now = ctx.now();
    let body = {
        let state = ctx.feed.state();
        let models = ctx.models.lock();
        persist::encode(&models, &state, now.0)
    };
    ctx.store.save_models(&ctx.node.0, &body, now).await?;
    let saved = ctx.store.load_models().await?;
    // Held across the merge so that no observation lands in the view being replaced
    // (it would be in the node's own durations, but missing from its view until the
    // next save).
    let state = ctx.feed.state();
    let merged = persist::merged_durations(&state.own_duration, &ctx.node.0, &saved);
    ctx.models.lock().duration = merged;
    Ok(())
}

/// Starts the task feeding store errors and saving the models; it ends when `close`
/// fires (the last save is [`Node::shutdown`](crate::Node::shutdown)'s, after the
/// completer has applied its last completions).
pub(crate) fn start(ctx: Arc<Ctx>, close: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ERRORS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = node_errors(&ctx.metrics);
        let mut saved_at = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = close.cancelled() => return,
            }
            let errors = node_errors(&ctx.metrics);
            ctx.feed
                .store_errors(errors.saturating_sub(seen), ctx.now().0);
            seen = errors;
            if saved_at.elapsed() >= SAVE_EVERY {
                saved_at = Instant::now();
                if let Err(e) = save(&ctx).await {
                    tracing::warn!(error = %e, "saving the models failed; next try in a minute");
                }
            }
        }
    })
}
