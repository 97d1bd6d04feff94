//! The dashboard's files, compiled into the binary (`api/assets/`): no build step, no
//! Node, no CDN. They are plain ES modules and CSS that browsers load as written.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under `/assets/`.
    pub name: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file `/assets/{name}` serves.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("dom.js", JS),
    asset!("api.js", JS),
    asset!("live.js", JS),
    asset!("overview.js", JS),
    asset!("queues.js", JS),
    asset!("jobs.js", JS),
    asset!("job.js", JS),
    asset!("dlq.js", JS),
    asset!("mesh.js", JS),
    asset!("nodes.js", JS),
    asset!("events.js", JS),
    asset!("admin.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The single page every dashboard route loads.
pub const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/index.html"));
/// The log-in page; `<!--message-->` is replaced by a fixed notice.
pub const LOGIN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/login.html"));

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                ),
                // Revalidated on each load: a new binary's files replace the old ones at
                // once, and they are small.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
