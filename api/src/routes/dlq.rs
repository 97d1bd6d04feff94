//! `POST /api/v1/dlq/redrive`: send dead-lettered jobs back with fresh attempts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::JobId;
use jobmesh::store::Redrive;
use jobmesh::store::audit::{AuditAction, AuditTarget};
use jobmesh::store::tokens::Scope;

use super::jobs::visible_job;
use crate::audit::checked;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::idempotency::answer_once;
use crate::model::{RedriveRequest, RedriveResponse};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Redrive by ids, by queue, or all. Ids not in the dead-letter queue are left alone
/// (the answer lists the ids that were sent back).
#[utoipa::path(
    post,
    path = "/api/v1/dlq/redrive",
    tag = "dlq",
    request_body = RedriveRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    responses(
        (status = 200, description = "The jobs sent back", body = RedriveResponse),
        (status = "4XX", description = "Refused; nothing changed (a 403 is recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<RedriveRequest>,
) -> Response {
    let work = async {
        let r = body.value;
        let which = match (r.ids, r.queue, r.all) {
            (Some(ids), None, false) => {
                if ids.is_empty() {
                    return Err(Problem::field(
                        ProblemKind::InvalidField,
                        "ids",
                        "name at least one job",
                    ));
                }
                if ids.len() > state.config.max_batch as usize {
                    return Err(Problem::field(
                        ProblemKind::BatchTooLarge,
                        "ids",
                        format!(
                            "over the limit of {} (api.max_batch)",
                            state.config.max_batch
                        ),
                    ));
                }
                Redrive::Ids(ids.into_iter().map(JobId).collect())
            }
            (None, Some(q), false) => Redrive::Queue(q),
            (None, None, true) => Redrive::All,
            _ => {
                return Err(Problem::new(
                    ProblemKind::InvalidField,
                    "name exactly one of `ids`, `queue` or `all: true`",
                ));
            }
        };
        let target = AuditTarget::DeadLetters(which.clone());
        let (ctx, ()) = checked(&state, &caller, AuditAction::Redrive, &target, async {
            caller.require(Scope::Operate)?;
            match &which {
                Redrive::Ids(ids) if !caller.queues.is_empty() => {
                    for &id in ids {
                        match visible_job(&state, &caller, id).await {
                            Ok(_) => {}
                            // An unknown id is simply not redriven, as for other tokens.
                            Err(p) if p.status == 404 => {}
                            Err(p) => return Err(p),
                        }
                    }
                }
                Redrive::Ids(_) => {}
                Redrive::Queue(q) => caller.require_queue(q, "queue")?,
                Redrive::All => caller.require_all_queues("redriving every queue")?,
            }
            Ok(())
        })
        .await?;
        let redriven = state.store.redrive(&ctx, which, SystemClock.now()).await?;
        let body = serde_json::to_value(RedriveResponse {
            redriven: redriven.into_iter().map(|id| id.0).collect(),
        })
        .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        Ok((StatusCode::OK, body))
    };
    answer_once(
        &state,
        &caller,
        &headers,
        "POST /api/v1/dlq/redrive",
        &body.digest,
        work,
    )
    .await
}
