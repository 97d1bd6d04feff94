//! `GET /api/v1/queues`: job counts per queue and state.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::tokens::Scope;

use crate::auth::Caller;
use crate::model::{QueueList, QueueView};
use crate::problem::Problem;
use crate::state::AppState;

/// Every queue that holds jobs (those the token may see), with counts per state.
#[utoipa::path(
    get,
    path = "/api/v1/queues",
    tag = "queues",
    responses((status = 200, description = "The queues", body = QueueList)),
    security(("bearer" = ["read"]))
)]
pub async fn list_queues(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<QueueList>, Problem> {
    caller.require(Scope::Read)?;
    let counts = state.store.counts().await?;
    let queues = counts
        .into_iter()
        .filter(|(name, _)| caller.allows_queue(name))
        .map(|(name, by_state)| QueueView {
            total: by_state.values().sum(),
            counts: by_state
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect(),
            name,
        })
        .collect();
    Ok(Json(QueueList { queues }))
}
