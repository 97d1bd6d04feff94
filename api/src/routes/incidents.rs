//! `GET /api/v1/stats/incidents`: jobs rescued, workers crashed and restarted and nodes
//! evicted per minute over the last hour, cluster-wide, from the store's lifecycle
//! events (see [`jobmesh::store::incidents`]), read once per `api.counts_max_age` for
//! every caller.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::incidents::IncidentRow;
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::QueryParams;
use crate::problem::Problem;
use crate::state::AppState;

/// The length of an interval.
const MINUTE_MS: i64 = 60_000;
/// Minutes read: the hour and the current minute.
const MINUTES_READ: i64 = 61;

/// Which minutes to give.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentParams {
    /// Minutes back from now, the current one included: 1..=60 (default 60).
    pub minutes: Option<u32>,
}

/// One minute with some incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentMinute {
    /// The minute's start (ms since the epoch).
    pub at: i64,
    /// Jobs rescued (a lapsed or revoked lease gave the job back to its queue).
    pub rescued: u64,
    /// Workers that crashed.
    pub worker_crashed: u64,
    /// Crashed workers restarted by their supervisor.
    pub worker_restarted: u64,
    /// Evictions recorded (each node that applies a certificate records one).
    pub node_evicted: u64,
}

/// The last hour's incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentsView {
    /// The minutes with some incident, oldest first; a minute absent had none.
    pub minutes: Vec<IncidentMinute>,
    /// The sums over those minutes.
    pub total: IncidentMinute,
    /// The first minute counted (ms).
    pub since: i64,
    /// When the store was read (ms; shared by every caller for up to
    /// `api.counts_max_age`).
    pub read_at: i64,
}

/// Jobs rescued, workers crashed and restarted and nodes evicted per minute over the
/// last hour, for the whole cluster, from the store's events. The counts span every
/// queue, so a token limited to queues is refused.
#[utoipa::path(
    get,
    path = "/api/v1/stats/incidents",
    tag = "stats",
    params(IncidentParams),
    responses(
        (status = 200, description = "The last hour", body = IncidentsView),
        (status = 400, description = "A bad parameter, named in `field`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token without `read`, or limited to queues", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn incidents(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(p): QueryParams<IncidentParams>,
) -> Result<Json<IncidentsView>, Problem> {
    caller.require(Scope::Read)?;
    caller.require_all_queues("the incident history")?;
    let minutes = super::throughput::minutes_back(p.minutes)?;
    let store = state.store.clone();
    let read = state
        .incidents
        .get(state.config.counts_max_age, |_, now| async move {
            let current = now.0.div_euclid(MINUTE_MS) * MINUTE_MS;
            let from = jobmesh::clock::Millis(current - (MINUTES_READ - 1) * MINUTE_MS);
            let to = jobmesh::clock::Millis(current + MINUTE_MS);
            store.incidents(from, to, MINUTE_MS).await
        })
        .await?;
    let current = read.read_at.0.div_euclid(MINUTE_MS) * MINUTE_MS;
    let since = current - (i64::from(minutes) - 1) * MINUTE_MS;
    let shown: Vec<IncidentMinute> = read
        .value
        .iter()
        .filter(|r| r.start.0 >= since)
        .map(minute)
        .collect();
    let mut total = IncidentMinute {
        at: since,
        rescued: 0,
        worker_crashed: 0,
        worker_restarted: 0,
        node_evicted: 0,
    };
    for m in &shown {
        total.rescued += m.rescued;
        total.worker_crashed += m.worker_crashed;
        total.worker_restarted += m.worker_restarted;
        total.node_evicted += m.node_evicted;
    }
    Ok(Json(IncidentsView {
        minutes: shown,
        total,
        since,
        read_at: read.read_at.0,
    }))
}

fn minute(r: &IncidentRow) -> IncidentMinute {
    IncidentMinute {
        at: r.start.0,
        rescued: r.incidents.rescued,
        worker_crashed: r.incidents.worker_crashed,
        worker_restarted: r.incidents.worker_restarted,
        node_evicted: r.incidents.node_evicted,
    }
}
