//! `GET /metrics`: the process's Prometheus metrics as OpenMetrics text, and the
//! middleware that counts every request by route template and status.
//!
//! A scrape needs a token with the `read` scope that is not limited to queues (the
//! text names every queue). Prometheus sends it with `authorization: {type: Bearer,
//! credentials_file: ...}` in its scrape config. A scrape runs no store query in a
//! node (the maintenance leader caches the queue counts); `jobmesh api`, which has no
//! maintenance, re-reads them when scraped, at most once per [`API_COUNTS_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jobmesh::metrics::CONTENT_TYPE;
use jobmesh::store::tokens::Scope;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// How stale `jobmesh api` lets its queue counts get before a scrape re-reads them.
pub const API_COUNTS_EVERY: Duration = Duration::from_secs(30);

/// The metrics, as OpenMetrics text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Every metric, OpenMetrics 1.0 text", body = String, content_type = "application/openmetrics-text"),
        (status = 403, description = "The token lacks `read` or is limited to queues", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, Problem> {
    caller.require(Scope::Read)?;
    caller.require_all_queues("the metrics")?;
    if let Some(every) = state.counts_refresh
        && let Err(e) = state
            .metrics
            .queue_stats
            .refresh_if_older(&*state.store, every)
            .await
    {
        // The rest of the metrics are still worth serving; the counts stay as they were.
        tracing::warn!(error = %e, "reading queue counts for the metrics failed");
    }
    let text = state.metrics.encode();
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        text,
    )
        .into_response())
}

/// Counts each request by its route's path template (never the raw path, which holds
/// ids), method and status; 429s are also counted as rate-limited.
pub async fn count_requests(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let response = next.run(req).await;
    state.metrics.api_request(
        route.as_ref().map(MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
    );
    response
}
