//! `/api/v1/tokens`: list, create and revoke API tokens (scope `admin`, with a token not
//! limited to queues: one that is could otherwise mint itself a wider one).
//!
//! Creating answers with the token's text, once. It is never stored (only its hash),
//! so this route takes no `Idempotency-Key`: a stored answer would keep the text.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::audit::{AuditAction, AuditTarget};
use jobmesh::store::tokens::{ApiToken, NewApiToken, Scope, TokenId, TokenSecret};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::checked;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// A token to create.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Who holds it (1-128 bytes, no control characters).
    pub name: String,
    /// What it may do: `read`, `enqueue`, `operate`, `admin` (at least one).
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// The queues it may act on (at most 100); empty or absent: every queue.
    #[serde(default)]
    pub queues: Vec<String>,
}

/// A created token, with its text: shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The token, to send as `Authorization: Bearer <token>`. Not shown again.
    pub token: String,
}

/// A token as listed (never its text or hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Its id.
    pub id: i64,
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// The queues it may act on; empty: every queue.
    pub queues: Vec<String>,
    /// Created, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Last authenticated a request (to the minute), if ever.
    pub last_used_at: Option<i64>,
    /// Revoked, if it was.
    pub revoked_at: Option<i64>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            queues: t.queues,
            created_at: t.created_at.0,
            last_used_at: t.last_used_at.map(|m| m.0),
            revoked_at: t.revoked_at.map(|m| m.0),
        }
    }
}

/// The tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// By id.
    pub tokens: Vec<TokenView>,
}

/// What a revoke did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// The token revoked (requests with it are refused from now on).
    pub revoked: i64,
}

fn admin(caller: &Caller) -> Result<(), Problem> {
    caller.require(Scope::Admin)?;
    caller.require_all_queues("managing tokens")
}

/// Every token, by id (never a token's text or hash).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 403, description = "Needs `admin` on every queue", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<TokenList>, Problem> {
    admin(&caller)?;
    let tokens = state.store.list_tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(Into::into).collect(),
    }))
}

/// Create a token; the answer holds its text, shown this once. Recorded in the audit
/// log (its id, name, scopes and queues; never its text).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created; the text is not shown again", body = CreatedToken),
        (status = 400, description = "A bad field", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Needs `admin` on every queue (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), Problem> {
    let r = body.value;
    let new = NewApiToken {
        name: r.name,
        scopes: r.scopes,
        queues: r.queues,
    };
    let target = AuditTarget::Token {
        id: None,
        name: Some(new.name.clone()),
    };
    let (ctx, ()) = checked(&state, &caller, AuditAction::TokenCreate, &target, async {
        admin(&caller)
    })
    .await?;
    new.check().map_err(|m| {
        let field = m.split([' ', ':']).next().unwrap_or("name").to_owned();
        Problem::field(ProblemKind::InvalidField, field, m)
    })?;
    let secret = TokenSecret::generate();
    let id = state
        .store
        .create_token(&ctx, &new, &secret.hash(), SystemClock.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: id.0,
            name: new.name,
            token: secret.text(id),
        }),
    ))
}

/// Revoke a token: requests with it are refused from now on. Recorded in the audit
/// log (a token that does not exist as a refusal).
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = Revoked),
        (status = 403, description = "Needs `admin` on every queue (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, Problem> {
    let id = id.parse::<i64>().map(TokenId).map_err(|_| {
        Problem::field(
            ProblemKind::InvalidField,
            "id",
            format!("`{}` is not a token id", id.escape_debug()),
        )
    })?;
    let target = AuditTarget::Token {
        id: Some(id),
        name: None,
    };
    let (ctx, ()) = checked(&state, &caller, AuditAction::TokenRevoke, &target, async {
        admin(&caller)
    })
    .await?;
    // The store records an unknown token as a refusal itself, in its transaction.
    if !state
        .store
        .revoke_token(&ctx, id, SystemClock.now())
        .await?
    {
        return Err(Problem::field(
            ProblemKind::NotFound,
            "id",
            format!("no token {id}"),
        ));
    }
    Ok(Json(Revoked { revoked: id.0 }))
}
