//! What `GET /api/v1/queues` shows of each queue beyond its counts: the pause, the age
//! of its oldest available job, its throughput over the last minute and the live nodes
//! serving it.
//!
//! Costs: the counts, the oldest available job of each queue with some (one skip scan
//! of the claim index each: a seek per distinct priority present, not per job) and the
//! last minute's finishes (the finished-jobs indexes the purge uses) are read by the
//! maintenance leader and posted, and served here to every caller for
//! `api.counts_max_age` ([`crate::counts`]); only the paused set and the nodes' presence
//! rows (two small tables) are read per request, so a pause or a lost node shows at once.

use std::collections::BTreeMap;
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::job::JobState;

use crate::auth::Caller;
use crate::model::{QueueList, QueueView};
use crate::problem::Problem;
use crate::state::AppState;
use crate::views::Throughput;

/// The window of [`Throughput`]: the one the maintenance leader posts.
pub const THROUGHPUT_WINDOW: Duration = jobmesh::metrics::posted_counts::FINISHED_WINDOW;

/// Every queue that holds jobs or is paused, among those `caller` may see, by name.
pub(crate) async fn queue_list(state: &AppState, caller: &Caller) -> Result<QueueList, Problem> {
    let now = SystemClock.now();
    let read = state
        .counts
        .get(
            &*state.store,
            state.config.counts_max_age,
            THROUGHPUT_WINDOW,
        )
        .await?;
    let counts = &read.snapshot.counts;
    let paused: BTreeMap<String, Millis> = state
        .store
        .paused_queues()
        .await?
        .into_iter()
        .map(|p| (p.queue, p.paused_at))
        .collect();
    let served = jobmesh::store::presence::served_by(&state.store.presences().await?, now);
    // Predictions are a view: without them the counts still answer.
    let predictions = match state.predictions.get(&*state.store).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "reading the saved models failed; queues without predicted waits");
            None
        }
    };
    let window_ms = read.window.as_millis() as u64;
    let finished = &read.finished;
    let mut names: Vec<&String> = counts.keys().chain(paused.keys()).collect();
    names.sort();
    names.dedup();
    let mut queues = Vec::new();
    for name in names.into_iter().filter(|n| caller.allows_queue(n)) {
        let by_state = counts.get(name).cloned().unwrap_or_default();
        let oldest = read.snapshot.oldest_available.get(name).copied();
        let done = finished.get(name);
        let n = |s: JobState| done.and_then(|d| d.get(&s)).copied().unwrap_or(0);
        let (succeeded, discarded, cancelled) = (
            n(JobState::Succeeded),
            n(JobState::Discarded),
            n(JobState::Cancelled),
        );
        let total = succeeded + discarded + cancelled;
        queues.push(QueueView {
            name: name.clone(),
            total: by_state.values().sum(),
            counts: by_state
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect(),
            paused: paused.contains_key(name),
            paused_at: paused.get(name).map(|t| t.0),
            // A job due in the future is not available; clock skew between nodes can
            // still put a run_at a little ahead of this clock: that reads as 0.
            oldest_available_age_ms: oldest.map(|t| now.0.saturating_sub(t.0).max(0) as u64),
            throughput: Throughput {
                window_ms,
                finished: total,
                succeeded,
                discarded,
                cancelled,
                per_second: total as f64 * 1000.0 / window_ms as f64,
            },
            predicted_wait_ms: predictions.as_ref().and_then(|p| p.queue_wait_ms(name)),
            served_by: served
                .get(name)
                .map(|nodes| nodes.iter().map(|n| n.0.clone()).collect())
                .unwrap_or_default(),
        });
    }
    Ok(QueueList {
        queues,
        counts_at: read.snapshot.taken_at.0,
        counted_by: read.source.as_str().into(),
    })
}
