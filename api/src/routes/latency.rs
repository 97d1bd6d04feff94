//! `GET /api/v1/stats/latency`: queue wait and run time, p50 and p99 per minute over
//! the last hour, for the whole cluster (from the store's record of finished jobs, see
//! [`crate::latency`]), read once per `api.counts_max_age` for every caller.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::latency::{PER_SLICE, SLICES, read_hour};
use crate::problem::Problem;
use crate::state::AppState;

/// One minute of the hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyMinute {
    /// The minute's start (ms since the epoch).
    pub at: i64,
    /// Jobs whose last attempt went into the quantiles.
    pub jobs: u32,
    /// Whether more jobs finished in the minute than were read (the quantiles are those
    /// of a sample spread over the minute: `per_minute` jobs at most).
    pub sampled: bool,
    /// Median wait from due (`run_at`) to the start of the last attempt, ms.
    pub wait_p50_ms: Option<i64>,
    /// 99th percentile of that wait, ms.
    pub wait_p99_ms: Option<i64>,
    /// Median run time of the last attempt, ms.
    pub run_p50_ms: Option<i64>,
    /// 99th percentile of run time, ms.
    pub run_p99_ms: Option<i64>,
}

/// The hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyView {
    /// Sixty minutes, oldest first, the last one still running.
    pub minutes: Vec<LatencyMinute>,
    /// Most jobs read per minute.
    pub per_minute: u32,
    /// When the open minutes were read (ms; shared by every caller for up to
    /// `api.counts_max_age`).
    pub read_at: i64,
}

/// Queue wait and run time per minute over the last hour, cluster-wide: the last
/// attempt of each job that finished (succeeded, dead-lettered or cancelled after it
/// ran), from the store. A busy minute is sampled: at most 100 jobs from each of its
/// six 10 s slices. Needs a token not limited to queues (the figures span all).
#[utoipa::path(
    get,
    path = "/api/v1/stats/latency",
    tag = "stats",
    responses(
        (status = 200, description = "The last hour", body = LatencyView),
        (status = 403, description = "A token without `read`, or limited to queues", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn latency(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<LatencyView>, Problem> {
    caller.require(Scope::Read)?;
    caller.require_all_queues("the cluster's latency")?;
    let store = state.store.clone();
    let read = state
        .latency
        .get(state.config.counts_max_age, |previous, now| async move {
            let previous = previous.map(|p| p.value.clone()).unwrap_or_default();
            read_hour(&*store, &previous, now).await
        })
        .await?;
    let minutes = read
        .value
        .iter()
        .map(|m| LatencyMinute {
            at: m.start.0,
            jobs: m.summary.jobs,
            sampled: m.summary.sampled,
            wait_p50_ms: m.summary.wait_p50_ms,
            wait_p99_ms: m.summary.wait_p99_ms,
            run_p50_ms: m.summary.run_p50_ms,
            run_p99_ms: m.summary.run_p99_ms,
        })
        .collect();
    Ok(Json(LatencyView {
        minutes,
        per_minute: SLICES * PER_SLICE,
        read_at: read.read_at.0,
    }))
}
