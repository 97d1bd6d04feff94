//! `GET /api/v1/queues`: job counts per queue and state, with what `queue_views.rs`
//! adds.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::tokens::Scope;

use crate::auth::Caller;
use crate::model::QueueList;
use crate::problem::Problem;
use crate::state::AppState;

/// Every queue that holds jobs or is paused (those the token may see), with counts per
/// state, the pause, the age of the oldest available job and the last minute's
/// throughput.
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
    Ok(Json(super::queue_views::queue_list(&state, &caller).await?))
}
