//! `Idempotency-Key`: a retried request gets the first answer.
//!
//! The key is reserved in the store (per token) before the work and the answer recorded
//! after it, so two requests with one key never both do the work: the second waits
//! for nothing and is told the first is running (409), or, once it finished, gets its
//! answer. An answer is kept for success and for refusals of the request itself (4xx);
//! a store outage (5xx) drops the reservation so that the retry can do the work. A
//! reservation whose request died (a crash between the two writes) is taken over after
//! twice the request timeout.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::store::tokens::{Reservation, StoredAnswer, check_idempotency_key};

use crate::auth::Caller;
use crate::problem::{PROBLEM_JSON, Problem, ProblemKind};
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on an answer sent again for a retried request.
pub const REPLAYED: &str = "idempotent-replayed";

/// A handler's answer: a status and a JSON body, or a problem.
pub type Answer = Result<(StatusCode, serde_json::Value), Problem>;

/// Runs `work` once per `Idempotency-Key` of the caller's token (or every time without
/// a key). `fingerprint` identifies the request (route and body), so a key reused for
/// another request is refused.
pub async fn answer_once<F>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    route: &str,
    body_digest: &[u8; 32],
    work: F,
) -> Response
where
    F: Future<Output = Answer>,
{
    let Some(key) = headers.get(HEADER) else {
        return respond(work.await, false);
    };
    let key = match key.to_str().map_err(|e| e.to_string()).and_then(|k| {
        check_idempotency_key(k)?;
        Ok(k.to_string())
    }) {
        Ok(k) => k,
        Err(m) => {
            return Problem::field(ProblemKind::InvalidField, "Idempotency-Key", m).into_response();
        }
    };
    let Some(token) = caller.token else {
        return Problem::new(ProblemKind::Forbidden, "Idempotency-Key needs a token")
            .into_response();
    };
    let mut print = String::with_capacity(route.len() + 65);
    print.push_str(route);
    print.push(' ');
    for b in body_digest {
        print.push_str(&format!("{b:02x}"));
    }
    let now = SystemClock.now();
    let stale = Millis(now.0.saturating_sub(stale_after(state).as_millis() as i64));
    let reservation = match state
        .store
        .reserve_answer(token, &key, &print, now, stale)
        .await
    {
        Ok(r) => r,
        Err(e) => return Problem::from(e).into_response(),
    };
    match reservation {
        Reservation::Answered(a) => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
            respond_raw(status, a.body, true)
        }
        Reservation::InProgress => Problem::field(
            ProblemKind::IdempotencyInProgress,
            "Idempotency-Key",
            "a request with this key is still being answered; retry shortly",
        )
        .into_response(),
        Reservation::Mismatch => Problem::field(
            ProblemKind::IdempotencyMismatch,
            "Idempotency-Key",
            "this key was used for a different request",
        )
        .into_response(),
        Reservation::Reserved => {
            let answer = work.await;
            let (status, body) = match &answer {
                Ok((s, b)) => (*s, b.clone()),
                Err(p) => (p.status_code(), p.to_json()),
            };
            let kept = if status.is_server_error() {
                state.store.forget_answer(token, &key).await
            } else {
                let stored = StoredAnswer {
                    status: status.as_u16(),
                    body,
                };
                state.store.record_answer(token, &key, &stored).await
            };
            if let Err(e) = kept {
                // The work is done; its answer stands. A retry will find the key
                // reserved until it is stale.
                tracing::warn!(error = %e, "recording an idempotent answer failed");
            }
            respond(answer, false)
        }
    }
}

/// How long a reservation without an answer blocks its key.
fn stale_after(state: &AppState) -> Duration {
    state.config.request_timeout * 2
}

fn respond(answer: Answer, replayed: bool) -> Response {
    match answer {
        Ok((status, body)) => respond_raw(status, body, replayed),
        Err(p) => p.into_response(),
    }
}

fn respond_raw(status: StatusCode, body: serde_json::Value, replayed: bool) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if status.is_client_error() || status.is_server_error() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    }
    if replayed {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
