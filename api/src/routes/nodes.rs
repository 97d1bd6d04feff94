//! `GET /api/v1/nodes`: nodes and their workers, from the record of their lifecycle
//! events on every backend, and from live heartbeats where the store keeps them
//! (redis_postgres). The rules that turn events into states are the core's
//! ([`jobmesh::store::fold_members`]); this route only reads and renders.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::activity::MEMBER_EVENTS;
use jobmesh::store::fold_members;
use jobmesh::store::tokens::Scope;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;
use crate::views::{HeartbeatSource, NodeList};

/// Nodes and workers: state, last sign of life, heartbeats, restarts.
///
/// Read from the newest node and worker events (at most `events_window`) and the live
/// heartbeats; no job data, so a token limited to queues may read it too.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "cluster",
    responses((status = 200, description = "The nodes, by id", body = NodeList)),
    security(("bearer" = ["read"]))
)]
pub async fn list_nodes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<NodeList>, Problem> {
    caller.require(Scope::Read)?;
    let events = state.store.member_events(MEMBER_EVENTS).await?;
    let (live, heartbeats) = match state.store.heartbeats() {
        None => (None, HeartbeatSource::None),
        // Heartbeats are best-effort on redis_postgres: without them the record still
        // answers, and the answer says what it lacks.
        Some(h) => match h.live_members().await {
            Ok(live) => (Some(live), HeartbeatSource::Live),
            Err(e) => {
                tracing::warn!(error = %e, "reading live heartbeats failed; answering from the record");
                (None, HeartbeatSource::Unavailable)
            }
        },
    };
    let nodes = fold_members(&events, live.as_ref());
    Ok(Json(NodeList {
        nodes: nodes.into_iter().map(Into::into).collect(),
        heartbeats,
        events_read: events.len(),
        events_window: MEMBER_EVENTS,
    }))
}
