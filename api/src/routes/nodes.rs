//! `GET /api/v1/nodes`: nodes and their workers, from the record of their lifecycle
//! events, the nodes' presence rows and the running jobs on every backend, and from
//! live heartbeats where the store keeps them (redis_postgres). The rules that turn
//! these into states are the core's ([`jobmesh::store::fold_members`],
//! [`jobmesh::store::presence::with_presence`]); this route only reads and renders.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::activity::MEMBER_EVENTS;
use jobmesh::store::fold_members;
use jobmesh::store::presence::{MAX_RUNNING, with_presence};
use jobmesh::store::tokens::Scope;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;
use crate::views::{HeartbeatSource, NodeList};

/// Nodes and workers: state, last sign of life, heartbeats, restarts, slots, running
/// jobs, and each worker's current job.
///
/// Read from the newest node and worker events (at most `events_window`), the nodes'
/// presence rows, the running jobs (at most 10000) and the live heartbeats. A token
/// limited to queues may read it too: it sees only its queues among a node's served
/// queues, and only the current jobs of its queues.
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
    let presences = state.store.presences().await?;
    let running = state.store.running_jobs(MAX_RUNNING).await?;
    let running_truncated = running.len() >= MAX_RUNNING as usize;
    let members = fold_members(&events, live.as_ref());
    let mut nodes = with_presence(members, &presences, &running, SystemClock.now());
    for node in &mut nodes {
        node.queues.retain(|q| caller.allows_queue(q));
        for w in &mut node.workers {
            if w.current_job
                .as_ref()
                .is_some_and(|j| !caller.allows_queue(&j.queue))
            {
                w.current_job = None;
            }
        }
    }
    Ok(Json(NodeList {
        nodes: nodes.into_iter().map(Into::into).collect(),
        heartbeats,
        events_read: events.len(),
        events_window: MEMBER_EVENTS,
        running_truncated,
    }))
}
