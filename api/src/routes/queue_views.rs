//! What `GET /api/v1/queues` shows of each queue beyond its counts: the pause, the age
//! of its oldest available job and its throughput over the last minute.
//!
//! Costs, per request: the counts (one grouped read, as before), the paused set (one
//! small table), one index-backed read of finishes since a minute ago for all queues
//! (the finished-jobs indexes the purge uses: it reads the jobs finished in that minute,
//! not the table), and for each visible queue with available jobs one skip scan of the
//! claim index (a seek per distinct priority present, not per job).

use std::collections::BTreeMap;
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::job::JobState;

use crate::auth::Caller;
use crate::model::{QueueList, QueueView};
use crate::problem::Problem;
use crate::state::AppState;
use crate::views::Throughput;

/// The window of [`Throughput`].
pub const THROUGHPUT_WINDOW: Duration = Duration::from_secs(60);

/// Every queue that holds jobs or is paused, among those `caller` may see, by name.
pub(crate) async fn queue_list(state: &AppState, caller: &Caller) -> Result<QueueList, Problem> {
    let now = SystemClock.now();
    let counts = state.store.counts().await?;
    let paused: BTreeMap<String, Millis> = state
        .store
        .paused_queues()
        .await?
        .into_iter()
        .map(|p| (p.queue, p.paused_at))
        .collect();
    let window_ms = THROUGHPUT_WINDOW.as_millis() as u64;
    let finished = state
        .store
        .finished_since(Millis(now.0.saturating_sub(window_ms as i64)))
        .await?;
    let mut names: Vec<&String> = counts.keys().chain(paused.keys()).collect();
    names.sort();
    names.dedup();
    let mut queues = Vec::new();
    for name in names.into_iter().filter(|n| caller.allows_queue(n)) {
        let by_state = counts.get(name).cloned().unwrap_or_default();
        let oldest = if by_state.get(&JobState::Available).copied().unwrap_or(0) > 0 {
            state.store.oldest_available(name).await?
        } else {
            None
        };
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
        });
    }
    Ok(QueueList { queues })
}
