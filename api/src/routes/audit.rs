//! `GET /api/v1/audit`: the audit log of operator actions, newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::store::audit::{AuditAction, AuditId, AuditQuery, AuditRecord, MAX_AUDIT_LIMIT};
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::QueryParams;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Which rows to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only rows older than this audit id (the `next_before` of the previous page).
    pub before: Option<i64>,
    /// At most this many (1..=1000, default 100).
    pub limit: Option<u32>,
    /// Only this action: cancel, retry, redrive, delete, pause, resume, token.create,
    /// token.revoke, periodic.create, periodic.pause, periodic.resume, periodic.delete,
    /// periodic.trigger.
    pub action: Option<String>,
    /// Only this actor: a token's name, or `cli@user@host`.
    pub actor: Option<String>,
}

/// A page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Rows, newest first: `id`, `at` (ms since the Unix epoch), `actor` (`kind`
    /// token with `id` and `name`, cli with `who`, or system), `address`, `action`,
    /// `target`, `result` (`ok`, `refused`, `failed`) and `detail`.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<AuditRecord>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The audit log: every mutating API call and CLI admin action, and refusals, newest
/// first, a page at a time (keyset by audit id).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `admin` on every queue", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn list_audit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(p): QueryParams<AuditParams>,
) -> Result<Json<AuditPage>, Problem> {
    caller.require(Scope::Admin)?;
    caller.require_all_queues("the audit log")?;
    let action = p
        .action
        .map(|a| a.parse::<AuditAction>())
        .transpose()
        .map_err(|m| Problem::field(ProblemKind::InvalidField, "action", m))?;
    let query = AuditQuery {
        before: p.before.map(AuditId),
        limit: p.limit.unwrap_or(100),
        action,
        actor: p.actor,
    };
    query.check().map_err(|m| {
        let field = m.split(' ').next().unwrap_or("limit").to_owned();
        Problem::field(ProblemKind::InvalidField, field, m)
    })?;
    let rows = state.store.list_audit(&query).await?;
    let next_before = (rows.len() == query.limit as usize)
        .then(|| rows.last().map(|r| r.id.0))
        .flatten();
    debug_assert!(query.limit <= MAX_AUDIT_LIMIT);
    Ok(Json(AuditPage { rows, next_before }))
}
