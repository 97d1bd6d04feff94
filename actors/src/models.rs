//! The node's live models at the edges: resumed from the store when the node starts,
//! fed with store errors (counted by the metered store) every second, with the node's
//! host (load per core, memory in use) every five seconds and with the jobs
//! waiting on each queue (read by the maintenance rounds, see [`read_backlogs`]), saved every
//! `[predict] save_interval` (then merged with the other nodes' saved durations, and
//! the other nodes' own failure states and retry counts adopted) and once more at graceful shutdown. A
//! node whose failure score rose while the others' saved states predate the rise asks
//! every node to save now, and every node answers such a request at its next tick, so
//! the rise is acted on within seconds (see [`ask_peers`]).
//! The mapping from events to observations and from saved rows to the view is the
//! core's ([`jobmesh::predict::live`]); the dispatcher, the completer and the worker
//! supervisor call the feed where each event happens. With `[predict] feed = false`
//! none of this runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmesh::config::PredictSection;
use jobmesh::job::RetryPolicy;
use jobmesh::metrics::{ErrorKind, Metrics};
use jobmesh::predict::live::{FeedState, LiveFeed, LiveModels, SharedModels, host, persist};
use jobmesh::store::{JobFilter, SharedStore, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;

/// How often new store errors are fed.
const ERRORS_EVERY: Duration = Duration::from_secs(1);

/// How often the node's host (load per core, memory in use) is sampled for the failure
/// model: the load average itself moves over a minute, and the model smooths over half
/// of one.
const HOST_EVERY: Duration = Duration::from_secs(5);

/// The key of a node's request that every node save its models now (a post, see
/// [`jobmesh::store::Leadership::post`]): posted by a node whose failure score rose
/// while the other nodes' saved states predate the rise, so that it can act on the rise
/// within seconds instead of at their next save rounds.
const SAVE_WISH: &str = "models.save";

/// How often a node whose rise waits for its peers asks them again.
const ASK_EVERY: Duration = Duration::from_secs(30);

/// For how long after asking a node re-reads the other nodes' rows at every tick.
const LISTEN_FOR: Duration = Duration::from_secs(10);

/// Store errors that say something about the node or its store (not a caller's bad
/// request or a job that does not exist).
const NODE_ERROR_KINDS: [&str; 4] = ["unavailable", "conflict", "corrupt", "backend"];

/// The feed of node `node`, resumed from what the store holds at `now_ms`, with the
/// retry budget of `retry`. A store that cannot give the saved models (an old schema,
/// an outage after the node's first call) costs the node its history, not its start.
/// With the feed off, nothing is read: the models stay empty.
pub(crate) async fn resume(
    store: &SharedStore,
    node: &str,
    predict: &PredictSection,
    retry: &RetryPolicy,
    now_ms: i64,
) -> LiveFeed {
    if !predict.feed {
        let models = LiveModels::default();
        let state = FeedState::new(node, models.duration.clone());
        return LiveFeed::off(SharedModels::new(models), state);
    }
    let saved = match store.load_models().await {
        Ok(saved) => saved,
        Err(e) => {
            tracing::warn!(error = %e, "saved models unreadable; the models start fresh");
            Vec::new()
        }
    };
    let resumed = saved.iter().any(|r| r.node == node);
    let (mut models, state) = persist::resume(node, &saved, now_ms, predict.peer_max_age_ms());
    models.configure(retry);
    if resumed {
        tracing::info!(
            peers = saved.len().saturating_sub(1),
            "resumed this node's saved models"
        );
    }
    LiveFeed::new(SharedModels::new(models), state)
}

/// How often the maintenance rounds read the jobs waiting on each queue (unless a read
/// takes longer than a tenth of this: then ten reads' time).
pub(crate) const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// Most queues read per round: those with a wait SLO first, then those this node took
/// jobs from.
const MAX_BACKLOG_QUEUES: usize = 64;

/// Most waiting jobs counted per queue: past it the wait predicted is already far over
/// any SLO a queue model serves, and a bigger count costs a store more than it tells.
const BACKLOG_CAP: u64 = 100_000;

/// The queues whose waiting jobs the congestion model is told of: those with a wait
/// SLO (their warnings and admission rest on it), then those the model knows (this
/// node took jobs from them), at most [`MAX_BACKLOG_QUEUES`].
fn backlog_queues(ctx: &Ctx) -> Vec<String> {
    let mut queues = ctx.slo.queues();
    let known: Vec<String> = {
        let models = ctx.models.lock();
        let mut k: Vec<String> = models.congestion.queues().map(str::to_owned).collect();
        k.sort();
        k
    };
    for q in known {
        if !queues.contains(&q) {
            queues.push(q);
        }
    }
    queues.truncate(MAX_BACKLOG_QUEUES);
    queues
}

/// Reads from the store how many jobs wait on each queue of [`backlog_queues`] and when
/// the oldest became available, and tells the congestion model (a count from the
/// per-state counts where the backend keeps them, the oldest from the claim index);
/// how long the reads took. With the feed off nothing is read. A failed read leaves
/// the queue's last one in place (the metered store counts the error).
pub(crate) async fn read_backlogs(ctx: &Ctx) -> Duration {
    let started = Instant::now();
    if !ctx.feed.is_on() {
        return Duration::ZERO;
    }
    for queue in backlog_queues(ctx) {
        let filter = JobFilter {
            queues: vec![queue.clone()],
            ..JobFilter::default()
        };
        let waiting = match ctx
            .store
            .count_jobs(&filter, &["available"], BACKLOG_CAP)
            .await
        {
            Ok(n) => n.min(BACKLOG_CAP),
            Err(e) => {
                tracing::debug!(error = %e, queue, "counting the jobs waiting failed");
                continue;
            }
        };
        let oldest = if waiting == 0 {
            None
        } else {
            match ctx.store.oldest_available(&queue).await {
                Ok(oldest) => oldest.map(|m| m.0),
                Err(e) => {
                    tracing::debug!(error = %e, queue, "reading the oldest waiting job failed");
                    continue;
                }
            }
        };
        ctx.feed.backlog(&queue, waiting, oldest, ctx.now().0);
    }
    started.elapsed()
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
/// view and adopts the other nodes' own failure states and retry counts (those saved
/// within [`PredictSection::peer_max_age`]). Does nothing with the feed off.
pub(crate) async fn save(ctx: &Ctx) -> Result<(), StoreError> {
    if !ctx.feed.is_on() {
        return Ok(());
    }
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
    let mut models = ctx.models.lock();
    let peers = persist::from_peers(
        &mut models,
        &state.own_duration,
        &ctx.node.0,
        &saved,
        ctx.now().0,
        ctx.predict.peer_max_age_ms(),
    );
    tracing::debug!(
        peers,
        "saved models; adopted the other nodes' failure states and retry counts"
    );
    Ok(())
}

/// Starts the task feeding store errors and saving the models; it ends when `close`
/// fires (the last save is [`Node::shutdown`](crate::Node::shutdown)'s, after the
/// completer has applied its last completions). With the feed off it ends at once.
pub(crate) fn start(ctx: Arc<Ctx>, close: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        if !ctx.feed.is_on() {
            return;
        }
        let save_every = ctx.predict.save_interval;
        let mut tick = tokio::time::interval(ERRORS_EVERY.min(save_every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = node_errors(&ctx.metrics);
        let (mut saved_at, mut errors_at) = (Instant::now(), Instant::now());
        let mut host_at: Option<Instant> = None;
        // The machine's online CPUs, not available_parallelism: the load average is the
        // whole machine's, however few CPUs this process's cgroup may use.
        let root = host::HostRoot::default();
        let cores = root.cores();
        let mut asked_at: Option<Instant> = None;
        let mut answered = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = close.cancelled() => return,
            }
            let listening = ask_peers(&ctx, &mut asked_at).await;
            let wished = save_wished(&ctx, &mut answered).await;
            // Store errors at most once a second, however short the save interval: the
            // cap per feed is a cap per second.
            if errors_at.elapsed() >= ERRORS_EVERY {
                errors_at = Instant::now();
                let errors = node_errors(&ctx.metrics);
                ctx.feed
                    .store_errors(errors.saturating_sub(seen), ctx.now().0);
                seen = errors;
            }
            if host_at.is_none_or(|t| t.elapsed() >= HOST_EVERY) {
                host_at = Some(Instant::now());
                sample_host(&ctx, &root, cores).await;
            }
            if saved_at.elapsed() >= save_every || listening || wished {
                saved_at = Instant::now();
                if let Err(e) = save(&ctx).await {
                    tracing::warn!(error = %e, "saving the models failed; next try at the next save interval");
                }
            }
        }
    })
}

/// Samples the node's host off the runtime's threads (reads of virtual files, but reads)
/// and feeds it.
async fn sample_host(ctx: &Ctx, root: &host::HostRoot, cores: usize) {
    let root = root.clone();
    match tokio::task::spawn_blocking(move || host::read_sample(&root, cores)).await {
        Ok(sample) => ctx.feed.host(sample, ctx.now().0),
        Err(e) => tracing::debug!(error = %e, "sampling the host failed"),
    }
}

/// While this node's failure score waits for fresher peer states
/// ([`jobmesh::predict::NodeScore::awaits_peers`]), asks every node to save its models
/// now (at most every [`ASK_EVERY`]); true for [`LISTEN_FOR`] after asking, while the
/// node re-reads the others' rows at every tick to see their answers.
async fn ask_peers(ctx: &Ctx, asked_at: &mut Option<Instant>) -> bool {
    let awaits = ctx.models.lock().failure.awaits_peers(&ctx.node.0);
    if !awaits {
        return false;
    }
    if asked_at.is_none_or(|t| t.elapsed() >= ASK_EVERY) {
        *asked_at = Some(Instant::now());
        match ctx
            .store
            .post(SAVE_WISH, ctx.node.0.as_bytes(), ctx.now())
            .await
        {
            Ok(()) => tracing::info!(
                "the failure score rose; asked the other nodes to save their models now"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "asking the other nodes to save their models failed")
            }
        }
    }
    asked_at.is_some_and(|t| t.elapsed() < LISTEN_FOR)
}

/// Whether some node asked every node to save its models since this one last
/// answered (each request is answered once; the first one seen is answered too: it
/// costs one save).
async fn save_wished(ctx: &Ctx, answered: &mut Option<jobmesh::clock::Millis>) -> bool {
    match ctx.store.posted(SAVE_WISH).await {
        Ok(Some((at, _))) if *answered != Some(at) => {
            *answered = Some(at);
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!(error = %e, "reading the request to save the models failed");
            false
        }
    }
}
