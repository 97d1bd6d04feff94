//! The routes, each registered through [`utoipa_axum::routes!`] so that a route cannot
//! exist without its place in the OpenAPI document.

pub mod audit;
pub mod bulk;
pub mod bulk_count;
pub mod dlq;
pub mod events;
pub mod graph;
pub mod health;
pub mod incidents;
pub mod job_detail;
pub mod job_list;
pub mod jobs;
pub mod latency;
pub mod me;
pub mod mesh;
pub mod metrics;
pub mod nodes;
pub mod periodic;
pub mod predictions;
mod queue_views;
pub mod queues;
pub mod throughput;
pub mod tokens;
pub mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, authenticate};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// The document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jobmesh",
        description = "Enqueue, inspect and operate jobs. Every route but /healthz and /readyz needs `Authorization: Bearer <token>` (`jobmesh token create`); errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json")),
    security(("bearer" = []))
)]
pub async fn openapi_json(State(state): State<Arc<AppState>>, _caller: Caller) -> Response {
    let text = state.openapi.get().cloned().unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

/// The router and its OpenAPI document.
pub fn router(state: Arc<AppState>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let timeout = state.config.request_timeout;
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::enqueue, job_list::list_jobs))
        .routes(routes!(jobs::enqueue_batch))
        .routes(routes!(job_detail::get_job))
        .routes(routes!(jobs::cancel))
        .routes(routes!(bulk::delete_job))
        .routes(routes!(bulk::retry_job))
        .routes(routes!(bulk::bulk))
        .routes(routes!(bulk_count::count))
        .routes(routes!(graph::job_graph))
        .routes(routes!(latency::latency))
        .routes(routes!(throughput::throughput))
        .routes(routes!(incidents::incidents))
        .routes(routes!(dlq::groups))
        .routes(routes!(workflows::submit))
        .routes(routes!(dlq::redrive))
        .routes(routes!(queues::list_queues))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(predictions::predictions))
        .routes(routes!(mesh::mesh))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(periodic::list_schedules, periodic::create_schedule))
        .routes(routes!(periodic::delete_schedule))
        .routes(routes!(periodic::pause_schedule))
        .routes(routes!(periodic::resume_schedule))
        .routes(routes!(periodic::trigger_schedule))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(openapi_json))
        .routes(routes!(me::me))
        .routes(routes!(metrics::metrics))
        // Every route above answers within the timeout; the event stream below is
        // long-lived by design.
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        .routes(routes!(events::events))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .with_state(state.clone())
        .split_for_parts();
    let text = serde_json::to_string_pretty(&api).expect("the OpenAPI document serialises");
    let _ = state.openapi.set(text);
    // The dashboard's pages and files, outside the API's document, and the security
    // headers (a strict CSP) on every response.
    let router = router
        .merge(crate::dashboard::router(state.clone()))
        .layer(middleware::from_fn(crate::dashboard::headers::secure));
    (router, api)
}

async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => Problem::new(
            ProblemKind::Timeout,
            format!("no answer within {limit:?} (api.request_timeout)"),
        )
        .into_response(),
    }
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

/// One line per request: method, path (never the query or headers), status, caller.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        path = %jobmesh::redact::redact(&path),
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "api request"
    );
    response
}
