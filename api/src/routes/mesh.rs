//! `GET /api/v1/mesh`: the mesh as the node serving the API sees it, what `jobmesh mesh
//! peers` shows (state, incarnation, phi, votes, certificate signers). Only a node
//! that runs a mesh has one: `jobmesh api` and a node without `--listen`/`--join`
//! answer 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::tokens::Scope;

use crate::auth::Caller;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use crate::views::MeshView;

/// The mesh members as this node sees them.
#[utoipa::path(
    get,
    path = "/api/v1/mesh",
    tag = "cluster",
    responses(
        (status = 200, description = "This node's view of the mesh", body = MeshView),
        (status = 404, description = "This process runs no mesh node", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn mesh(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<MeshView>, Problem> {
    caller.require(Scope::Read)?;
    state
        .mesh
        .as_ref()
        .and_then(|source| source())
        .map(Json)
        .ok_or_else(|| {
            Problem::new(
                ProblemKind::NotFound,
                "this process runs no mesh node: start the API with `jobmesh node --api ADDR` \
                 and --listen/--join (or mesh.enabled) to see the mesh",
            )
        })
}
