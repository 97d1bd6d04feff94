//! `POST /api/v1/jobs/bulk/{action}/count`: how many jobs a bulk action by filter would
//! touch now, for the confirmation that asks before it runs.
//!
//! Exact and free when the filter names only queues and states and the queue counts
//! every caller shares ([`crate::counts`]) were read within `api.counts_max_age`.
//! Otherwise the store counts the matches in the states the action applies to, from
//! the indexes (on SQLite, from the counts it keeps per queue, kind and state when the
//! filter names nothing else), up to a cap, within 150 ms: an answer past the cap, or
//! cut short by the time, says "more than" instead of a number it did not count.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::JobFilter;
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::bulk::action;
use super::job_list::FilterBody;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::problem::Problem;
use crate::state::AppState;

/// Most matches the store counts (a filter past it is "more than 100000").
pub const COUNT_CAP: u64 = 100_000;
/// Most matches the quick count counts: the answer when counting up to [`COUNT_CAP`]
/// takes longer than [`COUNT_BUDGET`] ("more than 1000").
pub const QUICK_CAP: u64 = 1_000;
/// Longest the store may count (the confirmation waits for it): past it the answer is
/// the quick count's, or says it did not count when even that took longer (matches
/// spread thin over a huge table).
pub const COUNT_BUDGET: Duration = Duration::from_millis(150);

/// The jobs to count: the filter a bulk action would take.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    /// The filter, as in `POST /api/v1/jobs/bulk/{action}`.
    pub filter: FilterBody,
}

/// How many jobs the action would touch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    /// The action.
    pub action: String,
    /// Jobs matching the filter in a state the action changes: exact when `exact`,
    /// else more than `cap` (or, when not `counted`, 0 meaning nothing).
    pub jobs: u64,
    /// Whether `jobs` is the count (false: there are more than `cap`, or it was not
    /// counted).
    pub exact: bool,
    /// False when even the count up to 1000 took longer than 150 ms and was given up.
    pub counted: bool,
    /// The most this count counted: 100000, or 1000 when counting further took longer
    /// than 150 ms.
    pub cap: u64,
    /// The states counted (those of the filter the action changes).
    pub states: Vec<String>,
    /// `counts`: from the shared queue counts (no read of the jobs); `store`: counted
    /// by the store for this request.
    pub source: String,
    /// When the figure was read (ms).
    pub counted_at: i64,
}

/// Whether `filter` names nothing but queues and states.
fn queues_and_states_only(f: &JobFilter) -> bool {
    f.kind.is_none()
        && f.priority_min.is_none()
        && f.priority_max.is_none()
        && f.created.from.is_none()
        && f.created.to.is_none()
        && f.finished.from.is_none()
        && f.finished.to.is_none()
        && f.payload.is_none()
}

/// How many jobs a bulk action by this filter would touch now (it changes only jobs in
/// the states it applies to: cancel unfinished ones, retry scheduled and retryable,
/// redrive discarded, delete finished). Changes nothing; needs `read`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/bulk/{action}/count",
    tag = "jobs",
    request_body = CountRequest,
    params(("action" = String, Path, description = "cancel, retry, redrive or delete")),
    responses(
        (status = 200, description = "The count", body = CountResponse),
        (status = "4XX", description = "A bad action or filter, named in `field`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn count(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<CountRequest>,
) -> Result<Json<CountResponse>, Problem> {
    caller.require(Scope::Read)?;
    let action = action(&name)?;
    let filter = body.value.filter.into_filter(&caller)?;
    let states = action.states_within(&filter);
    let answer = |jobs: u64, exact: bool, source: &str, at: i64| CountResponse {
        action: action.as_str().into(),
        jobs,
        exact,
        counted: true,
        cap: COUNT_CAP,
        states: states.iter().map(|s| s.to_string()).collect(),
        source: source.into(),
        counted_at: at,
    };
    let now = SystemClock.now().0;
    if states.is_empty() {
        // The filter's states and the action's have none in common.
        return Ok(Json(answer(0, true, "store", now)));
    }
    // A filter by queues and states alone is answered by the shared counts when some
    // request read them lately; never by reading them for this (a grouped count of the
    // whole table: seconds at a million jobs on SQLite), but by the bounded count below.
    if queues_and_states_only(&filter)
        && let Some(read) = state.counts.fresh(state.config.counts_max_age)
    {
        let jobs = read
            .snapshot
            .counts
            .iter()
            .filter(|(q, _)| filter.queues.is_empty() || filter.queues.contains(*q))
            .flat_map(|(_, by_state)| by_state.iter())
            .filter(|(s, _)| states.contains(&s.as_str()))
            .map(|(_, n)| *n)
            .sum();
        return Ok(Json(answer(jobs, true, "counts", read.snapshot.taken_at.0)));
    }
    // Two counts at once: up to QUICK_CAP (dense matches: done in milliseconds) and
    // up to COUNT_CAP. The full one answers if it ends within the budget; else the
    // quick one's "more than QUICK_CAP" (or its exact figure when it found no more),
    // so the confirmation comes within the budget and never gives a number lower
    // than the jobs the action touches without saying "more than".
    let deadline = tokio::time::Instant::now() + COUNT_BUDGET;
    let full = state.store.count_jobs(&filter, &states, COUNT_CAP);
    let quick = state.store.count_jobs(&filter, &states, QUICK_CAP);
    tokio::pin!(full, quick);
    let mut quick_done = false;
    loop {
        tokio::select! {
            n = &mut full => {
                let n = n?;
                return Ok(Json(answer(n.min(COUNT_CAP), n <= COUNT_CAP, "store", now)));
            }
            n = &mut quick, if !quick_done => {
                let n = n?;
                if n <= QUICK_CAP {
                    return Ok(Json(answer(n, true, "store", now)));
                }
                quick_done = true;
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok(Json(if quick_done {
        CountResponse {
            cap: QUICK_CAP,
            ..answer(QUICK_CAP, false, "store", now)
        }
    } else {
        CountResponse {
            counted: false,
            ..answer(0, false, "store", now)
        }
    }))
}
