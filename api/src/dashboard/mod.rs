//! The web dashboard: a few static ES modules and a stylesheet, embedded in the binary
//! and served by the node at `/` beside the API they call.
//!
//! The pages are built in the browser from the same public JSON API anyone may call
//! (`/api/v1/...`), so the dashboard cannot show or do what the API does not; this
//! module only serves the files and turns a token into the session cookie
//! ([`crate::session`]) the API accepts alongside bearer tokens.
//!
//! - [`assets`]: the embedded files.
//! - [`login`]: the log-in page, `POST /login` and `POST /logout`.
//! - [`headers`]: the security headers every response carries (a strict CSP).

pub mod assets;
pub mod headers;
pub mod login;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::AppState;

/// The largest log-in form accepted: a token is 86 bytes.
const MAX_FORM_BYTES: usize = 4096;

/// The dashboard's routes: `/`, `/login`, `/logout`, `/assets/{file}`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(login::index))
        .route("/login", get(login::page).post(login::log_in))
        .route("/logout", post(login::log_out))
        .route("/assets/{file}", get(assets::serve))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}
