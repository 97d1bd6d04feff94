//! `GET /api/v1/stats/throughput`: jobs enqueued, succeeded and dead-lettered per
//! interval over the last hour, read from the store (see [`crate::throughput`]) once
//! per `api.counts_max_age` for every caller, summed over the queues the token may see.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::throughput::Tally;
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::QueryParams;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use crate::throughput::read_hour;

/// Which intervals to give.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ThroughputParams {
    /// Seconds per interval: 10 or 60 (default 10).
    pub interval: Option<u32>,
    /// Minutes back from now, the current one included: 1..=60 (default 60).
    pub minutes: Option<u32>,
    /// Only this queue (one the token may see); default every queue it may see.
    pub queue: Option<String>,
}

/// One interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputInterval {
    /// The interval's start (ms since the epoch).
    pub at: i64,
    /// Jobs enqueued in it (by enqueue time).
    pub enqueued: u64,
    /// Jobs that finished in it and are now succeeded.
    pub succeeded: u64,
    /// Jobs that finished in it and are now dead-lettered (a job redriven since has
    /// left it).
    pub failed: u64,
}

/// The last hour's throughput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThroughputView {
    /// Seconds per interval.
    pub interval: u32,
    /// The intervals, oldest first, the last one still running.
    pub intervals: Vec<ThroughputInterval>,
    /// The queue asked for; absent: every queue the token may see.
    pub queue: Option<String>,
    /// When the open intervals were read (ms; shared by every caller for up to
    /// `api.counts_max_age`): events after it are not in the figures.
    pub read_at: i64,
}

/// Jobs enqueued, succeeded and dead-lettered per 10 s or per minute over the last
/// hour, for the whole cluster (every node's jobs), from the store: each job counted
/// by its enqueue time and, if it is now succeeded or dead-lettered, by its finish
/// time. A token limited to queues sees the sum of its queues.
#[utoipa::path(
    get,
    path = "/api/v1/stats/throughput",
    tag = "stats",
    params(ThroughputParams),
    responses(
        (status = 200, description = "The last hour", body = ThroughputView),
        (status = 400, description = "A bad parameter, named in `field`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token without `read`, or a queue it may not see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn throughput(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(p): QueryParams<ThroughputParams>,
) -> Result<Json<ThroughputView>, Problem> {
    caller.require(Scope::Read)?;
    let interval = p.interval.unwrap_or(10);
    if interval != 10 && interval != 60 {
        return Err(Problem::field(
            ProblemKind::InvalidField,
            "interval",
            format!("interval {interval}: 10 or 60 (seconds)"),
        ));
    }
    let minutes = minutes_back(p.minutes)?;
    if let Some(q) = &p.queue {
        jobmesh::job::check_queue_name(q)
            .map_err(|m| Problem::field(ProblemKind::InvalidField, "queue", m))?;
        caller.require_queue(q, "queue")?;
    }
    let store = state.store.clone();
    let read = state
        .throughput
        .get(state.config.counts_max_age, |previous, now| async move {
            let previous = previous.map(|p| p.value.clone()).unwrap_or_default();
            read_hour(&*store, &previous, now).await
        })
        .await?;
    let sees = |q: &str| match &p.queue {
        Some(only) => q == only.as_str(),
        None => caller.allows_queue(q),
    };
    let step = i64::from(interval) * 1000;
    let now = read.read_at.0;
    // The first interval shown: `minutes` minutes (or 6 × `minutes` 10 s intervals)
    // back to the current one's start.
    let current = now.div_euclid(step) * step;
    let since = current - (i64::from(minutes) * 60_000 / step - 1) * step;
    let mut sums: Vec<(i64, Tally)> = Vec::new();
    for i in read.value.iter().filter(|i| i.start.0 >= since) {
        let at = i.start.0.div_euclid(step) * step;
        let total = i.total(sees);
        match sums.last_mut() {
            Some((last, t)) if *last == at => t.add(&total),
            _ => sums.push((at, total)),
        }
    }
    Ok(Json(ThroughputView {
        interval,
        intervals: sums
            .into_iter()
            .map(|(at, t)| ThroughputInterval {
                at,
                enqueued: t.enqueued,
                succeeded: t.succeeded,
                failed: t.failed,
            })
            .collect(),
        queue: p.queue,
        read_at: now,
    }))
}

/// The `minutes` parameter of the hour's views: 1 to 60, default 60.
pub(crate) fn minutes_back(asked: Option<u32>) -> Result<u32, Problem> {
    let minutes = asked.unwrap_or(60);
    if !(1..=60).contains(&minutes) {
        return Err(Problem::field(
            ProblemKind::InvalidField,
            "minutes",
            format!("minutes {minutes}: 1 to 60"),
        ));
    }
    Ok(minutes)
}
