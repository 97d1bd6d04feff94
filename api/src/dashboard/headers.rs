//! Security headers on every response of the server, pages and API alike.
//!
//! The Content-Security-Policy allows scripts, styles, images and connections from
//! this origin only: no inline script (the pages have none, so no nonce is needed), no
//! `eval`, no inline style attribute (the scripts set styles through the CSSOM), no
//! framing (`frame-ancestors 'none'`, clickjacking), forms posting only here. Even if a
//! value from a job reached the page as markup, the browser would run none of it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; font-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers (leaving any a handler set).
pub async fn secure(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}
