//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every refusal has a [`ProblemKind`] with a stable `type` URI (clients branch on it,
//! never on the wording of `detail`), and bad input names the offending `field`
//! (`jobs[3].payload.to`, `state`). Details are passed through the redactor: a message
//! that quotes a value (a store error quoting a URL) cannot carry a credential out.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jobmesh::store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What went wrong, one variant per `type` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// No token, a malformed one, an unknown one, or a revoked one (401).
    Unauthorized,
    /// The token lacks the scope or the queue (403); nothing was changed.
    Forbidden,
    /// No such job or route (404).
    NotFound,
    /// The body is not JSON, or nested too deep (400).
    MalformedJson,
    /// A field is missing, unknown, of the wrong type or out of range (400).
    InvalidField,
    /// A job's payload or options were refused by the kind's rules (422).
    JobRefused,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The body is over `api.max_body_bytes` (413).
    BodyTooLarge,
    /// More jobs than `api.max_batch` (413).
    BatchTooLarge,
    /// The token's rate is spent (429, with `Retry-After`).
    RateLimited,
    /// The request took longer than `api.request_timeout` (503).
    Timeout,
    /// A request with the same `Idempotency-Key` is still being answered (409).
    IdempotencyInProgress,
    /// The `Idempotency-Key` was used for a different request (422).
    IdempotencyMismatch,
    /// The request conflicts with what exists (409): a name taken, a schedule the
    /// config owns; nothing changed.
    Conflict,
    /// The store could not be reached (503); retrying later may succeed.
    StoreUnavailable,
    /// Admission control refused a low-priority job: its queue is certain to breach its
    /// wait SLO (503); retrying later or with a higher priority may succeed.
    QueueOverloaded,
    /// Anything else (500).
    Internal,
}

impl ProblemKind {
    /// The stable `type` URI.
    pub fn type_uri(self) -> &'static str {
        match self {
            ProblemKind::Unauthorized => "urn:jobmesh:problem:unauthorized",
            ProblemKind::Forbidden => "urn:jobmesh:problem:forbidden",
            ProblemKind::NotFound => "urn:jobmesh:problem:not-found",
            ProblemKind::MalformedJson => "urn:jobmesh:problem:malformed-json",
            ProblemKind::InvalidField => "urn:jobmesh:problem:invalid-field",
            ProblemKind::JobRefused => "urn:jobmesh:problem:job-refused",
            ProblemKind::UnsupportedMediaType => "urn:jobmesh:problem:unsupported-media-type",
            ProblemKind::BodyTooLarge => "urn:jobmesh:problem:body-too-large",
            ProblemKind::BatchTooLarge => "urn:jobmesh:problem:batch-too-large",
            ProblemKind::RateLimited => "urn:jobmesh:problem:rate-limited",
            ProblemKind::Timeout => "urn:jobmesh:problem:timeout",
            ProblemKind::IdempotencyInProgress => "urn:jobmesh:problem:idempotency-in-progress",
            ProblemKind::IdempotencyMismatch => "urn:jobmesh:problem:idempotency-mismatch",
            ProblemKind::Conflict => "urn:jobmesh:problem:conflict",
            ProblemKind::StoreUnavailable => "urn:jobmesh:problem:store-unavailable",
            ProblemKind::QueueOverloaded => "urn:jobmesh:problem:queue-overloaded",
            ProblemKind::Internal => "urn:jobmesh:problem:internal",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::MalformedJson | ProblemKind::InvalidField => StatusCode::BAD_REQUEST,
            ProblemKind::JobRefused | ProblemKind::IdempotencyMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::BodyTooLarge | ProblemKind::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::Timeout | ProblemKind::StoreUnavailable | ProblemKind::QueueOverloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProblemKind::IdempotencyInProgress | ProblemKind::Conflict => StatusCode::CONFLICT,
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short summary that does not change from occurrence to occurrence.
    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::Unauthorized => "A valid bearer token is required",
            ProblemKind::Forbidden => "The token may not do this",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MalformedJson => "The body is not acceptable JSON",
            ProblemKind::InvalidField => "A field is invalid",
            ProblemKind::JobRefused => "The job was refused",
            ProblemKind::UnsupportedMediaType => "The body must be application/json",
            ProblemKind::BodyTooLarge => "The body is too large",
            ProblemKind::BatchTooLarge => "Too many jobs in one request",
            ProblemKind::RateLimited => "Too many requests",
            ProblemKind::Timeout => "The request took too long",
            ProblemKind::IdempotencyInProgress => "A request with this Idempotency-Key is running",
            ProblemKind::IdempotencyMismatch => {
                "The Idempotency-Key was used for a different request"
            }
            ProblemKind::Conflict => "The request conflicts with what exists",
            ProblemKind::StoreUnavailable => "The store is unavailable",
            ProblemKind::QueueOverloaded => "The queue is overloaded",
            ProblemKind::Internal => "Internal error",
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (stable; `urn:jobmesh:problem:...`).
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The offending field or parameter, as a path (`jobs[3].payload.to`), for bad input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before retrying (429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` with `detail` (redacted).
    pub fn new(kind: ProblemKind, detail: impl AsRef<str>) -> Self {
        Self {
            type_uri: kind.type_uri().to_string(),
            title: kind.title().to_string(),
            status: kind.status().as_u16(),
            detail: jobmesh::redact::redact(detail.as_ref()).into_owned(),
            field: None,
            retry_after: None,
        }
    }

    /// Bad input at `field`.
    pub fn field(kind: ProblemKind, field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(kind, detail)
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem as a JSON value (for idempotent answers).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a problem serialises")
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Invalid(m) => Problem::new(ProblemKind::InvalidField, m),
            StoreError::NotFound(id) => Problem::field(
                ProblemKind::NotFound,
                "depends_on",
                format!("job {id} not found"),
            ),
            _ if e.is_transient() => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::new(
                    ProblemKind::StoreUnavailable,
                    "the store could not be reached",
                )
            }
            _ => {
                tracing::error!(error = %e, "store error");
                Problem::new(
                    ProblemKind::Internal,
                    "the store failed; see the node's log",
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let mut response = (status, axum::Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"jobmesh\""),
            );
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_redacted_and_types_are_distinct() {
        let p = Problem::new(
            ProblemKind::InvalidField,
            "bad url postgres://u:pw@h/db and jmt_1_abc",
        );
        assert_eq!(p.detail, "bad url postgres://***@h/db and jmt_***");
        let kinds = [
            ProblemKind::Unauthorized,
            ProblemKind::Forbidden,
            ProblemKind::NotFound,
            ProblemKind::MalformedJson,
            ProblemKind::InvalidField,
            ProblemKind::JobRefused,
            ProblemKind::UnsupportedMediaType,
            ProblemKind::BodyTooLarge,
            ProblemKind::BatchTooLarge,
            ProblemKind::RateLimited,
            ProblemKind::Timeout,
            ProblemKind::IdempotencyInProgress,
            ProblemKind::IdempotencyMismatch,
            ProblemKind::StoreUnavailable,
            ProblemKind::Internal,
        ];
        let uris: std::collections::HashSet<_> = kinds.iter().map(|k| k.type_uri()).collect();
        assert_eq!(uris.len(), kinds.len());
    }
}
