//! `GET /healthz` and `GET /readyz`, the two routes without a token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::model::Health;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Liveness: the server answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health)),
    security(())
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers (one indexed read that returns nothing).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Health>, Problem> {
    match state.store.events_after(i64::MAX, 1).await {
        Ok(_) => Ok(Json(Health {
            status: "ready".into(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: the store does not answer");
            Err(Problem::new(
                ProblemKind::StoreUnavailable,
                "the store does not answer",
            ))
        }
    }
}
