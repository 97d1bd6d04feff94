//! Logging in and out: the log-in page takes an API token and, if the store knows it
//! and it may read, keeps it in the session cookie; `/` serves the dashboard only to a
//! browser holding a valid one.
//!
//! Both forms are checked like any cookie-authenticated change ([`crate::csrf`]): a
//! hostile page can neither log a browser out nor log it in under the attacker's token.
//! Attempts share the per-address rate of anonymous callers, and the token is never
//! logged or echoed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobmesh::store::tokens::Scope;
use serde::Deserialize;

use super::assets::{INDEX, LOGIN};
use crate::auth::{RateKey, caller_from_token};
use crate::session;
use crate::state::AppState;

/// The log-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    /// The API token (`jmt_...`).
    token: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginForm { token: *** }")
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// The log-in page with a fixed notice (never text from the request).
fn login_page(status: StatusCode, notice: &'static str) -> Response {
    let notice = if notice.is_empty() {
        String::new()
    } else {
        format!("<p class=\"notice\" role=\"alert\">{notice}</p>")
    };
    html(status, LOGIN.replace("<!--message-->", &notice))
}

fn see_other(to: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut r = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(to))],
    )
        .into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// `GET /`: the dashboard for a browser with a valid session (or, under
/// `api.allow_anonymous_loopback_read`, for a loopback browser without one: its pages
/// then read as the anonymous caller), else the log-in page.
pub async fn index(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let allowed = match session::from_headers(&headers) {
        Some(token) => caller_from_token(&state, peer, token).await.is_ok(),
        None => state.config.allow_anonymous_loopback_read && peer.ip().is_loopback(),
    };
    if allowed {
        html(StatusCode::OK, INDEX.to_string())
    } else {
        see_other("/login", None)
    }
}

/// `GET /login`.
pub async fn page() -> Response {
    login_page(StatusCode::OK, "")
}

/// `POST /login`: keeps a valid token that may read in the session cookie.
pub async fn log_in(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if crate::csrf::check(&Method::POST, &headers).is_err() {
        return login_page(
            StatusCode::FORBIDDEN,
            "Refused: the form was not sent from this dashboard.",
        );
    }
    if state.rates.check(&RateKey::Anonymous(peer.ip())).is_err() {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts from this address: wait a moment.",
        );
    }
    let token = form.token.trim();
    let caller = match caller_from_token(&state, peer, token).await {
        Ok(c) => c,
        Err(p) if p.status == 401 => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                "That token is not valid (unknown, revoked or mistyped).",
            );
        }
        Err(_) => {
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The store could not check the token; try again.",
            );
        }
    };
    if caller.require(Scope::Read).is_err() {
        return login_page(
            StatusCode::FORBIDDEN,
            "That token may not read: the dashboard needs the read scope (or operate, or admin).",
        );
    }
    match session::set(token, session::over_tls(&headers)) {
        Some(cookie) => {
            tracing::info!(token = ?caller.token, name = %caller.name, "dashboard log-in");
            see_other("/", Some(cookie))
        }
        None => login_page(StatusCode::UNAUTHORIZED, "That token is not valid."),
    }
}

/// `POST /logout`: forgets the session cookie.
pub async fn log_out(headers: HeaderMap) -> Response {
    if crate::csrf::check(&Method::POST, &headers).is_err() {
        return login_page(
            StatusCode::FORBIDDEN,
            "Refused: the form was not sent from this dashboard.",
        );
    }
    see_other("/login", Some(session::clear(session::over_tls(&headers))))
}
