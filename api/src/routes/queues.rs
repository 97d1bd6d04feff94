//! `/api/v1/queues`: job counts per queue and state, with what `queue_views.rs`
//! adds; pause and resume a queue.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::audit::{AuditAction, AuditTarget};
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::checked;
use crate::auth::Caller;
use crate::idempotency::{Answer, answer_once};
use crate::model::QueueList;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// What a pause or resume did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PauseResponse {
    /// The queue.
    pub queue: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether this request changed it (`false`: it already was).
    pub changed: bool,
}

/// Pause a queue: no node claims from it until it is resumed; enqueues still succeed
/// and running jobs finish. Kept in the store (survives restarts); recorded in the
/// audit log.
#[utoipa::path(
    post,
    path = "/api/v1/queues/{queue}/pause",
    tag = "queues",
    params(
        ("queue" = String, Path, description = "The queue"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Paused (or already paused)", body = PauseResponse),
        (status = 400, description = "Not a queue name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log); nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(queue): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/queues/{queue}/pause");
    let work = set_paused(&state, &caller, queue, true);
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}

/// Resume a paused queue; waiting nodes claim from it at once. Recorded in the audit
/// log.
#[utoipa::path(
    post,
    path = "/api/v1/queues/{queue}/resume",
    tag = "queues",
    params(
        ("queue" = String, Path, description = "The queue"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Resumed (or was not paused)", body = PauseResponse),
        (status = 400, description = "Not a queue name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log); nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(queue): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/queues/{queue}/resume");
    let work = set_paused(&state, &caller, queue, false);
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}

/// Pauses (`pause = true`) or resumes `queue` for `caller`: a name no job could carry
/// is bad input (400, before anything is recorded); a token without `operate` or
/// limited to other queues is refused (403, recorded).
async fn set_paused(state: &AppState, caller: &Caller, queue: String, pause: bool) -> Answer {
    jobmesh::job::check_queue_name(&queue)
        .map_err(|m| Problem::field(ProblemKind::InvalidField, "queue", m))?;
    let action = if pause {
        AuditAction::Pause
    } else {
        AuditAction::Resume
    };
    let target = AuditTarget::Queue(queue.clone());
    let (ctx, ()) = checked(state, caller, action, &target, async {
        caller.require(Scope::Operate)?;
        caller.require_queue(&queue, "queue")
    })
    .await?;
    let now = SystemClock.now();
    let changed = if pause {
        state.store.pause_queue(&ctx, &queue, now).await?
    } else {
        state.store.resume_queue(&ctx, &queue, now).await?
    };
    let body = PauseResponse {
        queue,
        paused: pause,
        changed,
    };
    Ok((
        StatusCode::OK,
        serde_json::to_value(body)
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?,
    ))
}

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
