//! Actions on jobs beyond cancel: retry now and delete one job, and bulk actions by ids
//! or by filter (`POST /api/v1/jobs/bulk/{cancel|retry|redrive|delete}`), which cover
//! every matching job (not one page), a batch per store transaction.
//!
//! Which states each action changes is the store's decision ([`BulkAction::applies_to`]);
//! the routes check the caller (scope `operate`, and for a token limited to queues: a
//! filter naming only its queues, ids only of jobs in them, else 403 with nothing changed).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::JobId;
use jobmesh::store::audit::{AuditContext, AuditTarget};
use jobmesh::store::tokens::Scope;
use jobmesh::store::{Actor, BulkAction, BulkOutcome, BulkTarget};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::job_list::{FilterBody, filter_problem};
use super::jobs::{job_id, visible_job};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::idempotency::{Answer, answer_once};
use crate::model::State as JobStateView;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Which jobs a bulk action covers: exactly one of `ids` and `filter`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// These jobs (1 to 10000; unknown ids are counted as `not_found`).
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
    /// Every job matching this filter, however many.
    #[serde(default)]
    pub filter: Option<FilterBody>,
}

/// What a bulk action did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BulkResponse {
    /// The action.
    pub action: String,
    /// Jobs targeted that exist (by filter: that matched in a state the action applies to).
    pub matched: u64,
    /// Jobs changed.
    pub changed: u64,
    /// Jobs targeted but left as they were (in a state the action does not apply to).
    pub skipped: u64,
    /// Ids that named no job.
    pub not_found: u64,
    /// Store transactions used (at most 1000 jobs each).
    pub batches: u64,
}

impl BulkResponse {
    fn new(action: BulkAction, o: BulkOutcome) -> Self {
        Self {
            action: action.as_str().to_string(),
            matched: o.matched,
            changed: o.changed,
            skipped: o.skipped,
            not_found: o.not_found,
            batches: o.batches,
        }
    }
}

/// What an action on one job did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobActionResponse {
    /// The job.
    pub id: i64,
    /// `retry` or `delete`.
    pub action: String,
    /// Whether the job changed (`false`: its state is not one the action applies to).
    pub changed: bool,
    /// Its state now (absent once deleted).
    pub state: Option<JobStateView>,
}

fn json<T: Serialize>(value: &T) -> Answer {
    Ok((
        StatusCode::OK,
        serde_json::to_value(value)
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?,
    ))
}

/// Who acts, for the audit rows: the token (by id and name) and the peer's address.
fn audit_context(caller: &Caller) -> AuditContext {
    let actor = match caller.token {
        Some(id) => Actor::Token {
            id,
            name: caller.name.clone(),
        },
        // Anonymous callers only read; no action reaches the store without a token.
        None => Actor::System,
    };
    AuditContext::new(actor).from_address(caller.peer.ip())
}

/// Records a refusal that changed nothing (a token's queues), then returns it.
async fn refused(
    state: &AppState,
    caller: &Caller,
    action: BulkAction,
    target: &AuditTarget,
    problem: Problem,
) -> Problem {
    let ctx = audit_context(caller);
    if let Err(e) = state
        .store
        .record_refusal(
            &ctx,
            action.audit_action(),
            target,
            &problem.detail,
            SystemClock.now(),
        )
        .await
    {
        tracing::warn!(error = %e, "recording a refused bulk action in the audit log failed");
    }
    problem
}

/// The action named in the path, refused as `action`.
pub(crate) fn action(text: &str) -> Result<BulkAction, Problem> {
    text.parse().map_err(|e: String| {
        Problem::field(
            ProblemKind::InvalidField,
            "action",
            e.escape_debug().to_string(),
        )
    })
}

/// One job, by id, as an operator acts on it: refused (404/403) unless visible.
async fn one(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: BulkAction,
) -> Result<JobActionResponse, Problem> {
    caller.require(Scope::Operate)?;
    let id = job_id(id)?;
    visible_job(state, caller, id).await?;
    let out = state
        .store
        .bulk(
            &audit_context(caller),
            action,
            &BulkTarget::Ids(vec![id]),
            SystemClock.now(),
        )
        .await?;
    let now = state.store.get_job(id).await?;
    Ok(JobActionResponse {
        id: id.0,
        action: action.as_str().to_string(),
        changed: out.changed == 1,
        state: now.map(|j| j.state.into()),
    })
}

/// Retry a scheduled or retryable job now (it becomes available at once, its attempts
/// kept). Other states are left alone (`changed: false`): a discarded job is redriven
/// instead (`/api/v1/dlq/redrive` or the bulk `redrive`), a cancelled one stays cancelled.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/retry",
    tag = "jobs",
    params(
        ("id" = i64, Path, description = "Job id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Retried, or left alone", body = JobActionResponse),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn retry_job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/jobs/{id}/retry");
    let work = async { json(&one(&state, &caller, &id, BulkAction::Retry).await?) };
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}

/// Delete a finished job (succeeded, discarded or cancelled) with its attempts, links
/// and events. An unfinished job is left alone (`changed: false`): cancel it first.
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "Deleted, or left alone", body = JobActionResponse),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn delete_job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<JobActionResponse>, Problem> {
    Ok(axum::Json(
        one(&state, &caller, &id, BulkAction::Delete).await?,
    ))
}

/// A bulk action on jobs by ids or by filter: `cancel` (unfinished jobs), `retry`
/// (scheduled and retryable jobs, now), `redrive` (discarded jobs, with fresh attempts),
/// `delete` (finished jobs). Every matching job, not one page; jobs enqueued after the
/// action started are not included.
#[utoipa::path(
    post,
    path = "/api/v1/jobs/bulk/{action}",
    tag = "jobs",
    request_body = BulkRequest,
    params(
        ("action" = String, Path, description = "cancel, retry, redrive or delete"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "What was done", body = BulkResponse),
        (status = "4XX", description = "Refused; nothing changed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn bulk(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody<BulkRequest>,
) -> Response {
    let route = format!("POST /api/v1/jobs/bulk/{name}");
    let work = async {
        caller.require(Scope::Operate)?;
        let action = action(&name)?;
        let target = match (body.value.ids, body.value.filter) {
            (Some(ids), None) => {
                let target = BulkTarget::Ids(ids.into_iter().map(JobId).collect());
                target.check().map_err(filter_problem)?;
                if !caller.queues.is_empty() {
                    let BulkTarget::Ids(ids) = &target else {
                        unreachable!()
                    };
                    // Every id first, so that a refusal changes nothing.
                    for &id in ids {
                        match visible_job(&state, &caller, id).await {
                            Ok(_) => {}
                            // Unknown ids are counted as not found, as for any token.
                            Err(p) if p.status == 404 => {}
                            Err(p) => {
                                let p = Problem::field(
                                    ProblemKind::Forbidden,
                                    "ids",
                                    format!("job {id}: {}", p.detail),
                                );
                                let target = AuditTarget::Jobs(ids.clone());
                                return Err(refused(&state, &caller, action, &target, p).await);
                            }
                        }
                    }
                }
                target
            }
            (None, Some(filter)) => {
                let asked = serde_json::to_value(&filter).unwrap_or_default();
                match filter.into_filter(&caller) {
                    Ok(f) => BulkTarget::Filter(Box::new(f)),
                    Err(p) if p.status == 403 => {
                        let target = AuditTarget::Filter(asked);
                        return Err(refused(&state, &caller, action, &target, p).await);
                    }
                    Err(p) => return Err(p),
                }
            }
            _ => {
                return Err(Problem::new(
                    ProblemKind::InvalidField,
                    "name exactly one of `ids` and `filter`",
                ));
            }
        };
        let ctx = audit_context(&caller);
        let outcome = state
            .store
            .bulk(&ctx, action, &target, SystemClock.now())
            .await?;
        json(&BulkResponse::new(action, outcome))
    };
    answer_once(&state, &caller, &headers, &route, &body.digest, work).await
}
