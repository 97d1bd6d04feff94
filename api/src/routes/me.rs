//! `GET /api/v1/me`: who the caller is and what it may do. The dashboard asks it once
//! per page load to leave out the buttons the token may not use (the server refuses
//! those actions anyway: hiding them is for the reader, not for security).

use axum::{Extension, Json};
use jobmesh::store::tokens::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Credential};
use crate::problem::Problem;

/// The caller.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    /// The token's id (`null` for an anonymous loopback reader).
    pub token: Option<i64>,
    /// The token's name.
    pub name: String,
    /// Its scopes as granted (`operate` includes `read`, `admin` everything).
    pub scopes: Vec<String>,
    /// The queues it may act on; empty means every queue.
    pub queues: Vec<String>,
    /// What each scope comes to for this caller: the dashboard's switches.
    pub may: May,
    /// How this request proved who it is.
    pub credential: Credential,
}

/// What the caller's scopes grant.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct May {
    /// Read jobs, queues, nodes, the mesh, events.
    pub read: bool,
    /// Enqueue jobs.
    pub enqueue: bool,
    /// Cancel, retry, redrive, delete jobs; pause and resume queues.
    pub operate: bool,
    /// Tokens and the audit log.
    pub admin: bool,
}

/// Who is calling.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "meta",
    responses((status = 200, description = "The caller", body = Me)),
    security(("bearer" = []))
)]
pub async fn me(
    caller: Caller,
    Extension(credential): Extension<Credential>,
) -> Result<Json<Me>, Problem> {
    let may = |s: Scope| caller.scopes.iter().any(|have| have.grants(s));
    Ok(Json(Me {
        token: caller.token.map(|t| t.0),
        name: caller.name.clone(),
        scopes: caller.scopes.iter().map(|s| s.to_string()).collect(),
        queues: caller.queues.clone(),
        may: May {
            read: may(Scope::Read),
            enqueue: may(Scope::Enqueue),
            operate: may(Scope::Operate),
            admin: may(Scope::Admin),
        },
        credential,
    }))
}
