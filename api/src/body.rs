//! Reading JSON bodies and query strings into problems a client can act on.
//!
//! [`JsonBody`] refuses, in order: a media type other than JSON (415), a body over
//! `api.max_body_bytes` (413, enforced while reading, so an oversized body is never
//! held whole), nesting deeper than [`MAX_BODY_DEPTH`] (400, found by a scan that
//! keeps no stack, so a 100k-deep body cannot overflow anything), then whatever serde
//! refuses (400, naming the field: unknown fields are refused by the request types).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::problem::{Problem, ProblemKind};

/// Deepest nesting a request body may have: a job's payload may be
/// [`jobmesh::payload::MAX_PAYLOAD_DEPTH`] deep and sits a few levels inside a request
/// (`{"jobs": [{"payload": ...}]}`).
pub const MAX_BODY_DEPTH: usize = jobmesh::payload::MAX_PAYLOAD_DEPTH + 4;

/// A JSON body of type `T`, with the SHA-256 of its bytes (the fingerprint an
/// `Idempotency-Key` is checked against).
#[derive(Debug)]
pub struct JsonBody<T> {
    /// The value.
    pub value: T,
    /// SHA-256 of the body as sent.
    pub digest: [u8; 32],
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !json {
            return Err(Problem::new(
                ProblemKind::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ProblemKind::BodyTooLarge,
                    "the body is over the limit (api.max_body_bytes)",
                )
            } else {
                Problem::new(ProblemKind::MalformedJson, e.body_text())
            }
        })?;
        let value = parse(&bytes)?;
        Ok(JsonBody {
            value,
            digest: Sha256::digest(&bytes).into(),
        })
    }
}

/// Parses a JSON body after [`check_depth`], naming the field serde refused.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    check_depth(bytes)?;
    // Most bodies are fine: parse them without tracking the path, and parse again with
    // it only to say where a refused one went wrong.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let kind = if inner.is_data() {
            ProblemKind::InvalidField
        } else {
            ProblemKind::MalformedJson
        };
        if path == "." || kind == ProblemKind::MalformedJson {
            Problem::new(kind, inner.to_string())
        } else {
            Problem::field(kind, path, inner.to_string())
        }
    })?;
    de.end()
        .map_err(|e| Problem::new(ProblemKind::MalformedJson, e.to_string()))?;
    Ok(value)
}

/// Refuses JSON nested deeper than [`MAX_BODY_DEPTH`] before any parser recurses into
/// it: one pass over the bytes counting brackets outside strings.
pub fn check_depth(bytes: &[u8]) -> Result<(), Problem> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_BODY_DEPTH {
                    return Err(Problem::new(
                        ProblemKind::MalformedJson,
                        format!(
                            "the body is nested deeper than {MAX_BODY_DEPTH} levels (at byte {at})"
                        ),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A query string of type `T` (unknown parameters refused by `T`), refused with the
/// parameter named.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_string();
                match detail.split_once(": ") {
                    // serde_path_to_error puts the parameter first: `state: unknown variant`.
                    Some((param, _))
                        if param.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                    {
                        Problem::field(ProblemKind::InvalidField, param, detail.clone())
                    }
                    _ => Problem::new(ProblemKind::InvalidField, detail),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        kind: String,
        #[serde(default)]
        priority: i16,
    }

    #[test]
    fn deep_bodies_are_refused_without_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let p = parse::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert_eq!(p.status, 400);
        assert!(p.detail.contains("nested deeper"), "{}", p.detail);
        // Brackets inside strings do not count.
        let text = format!(r#"{{"kind": "{}"}}"#, "[".repeat(1000));
        parse::<Req>(text.as_bytes()).unwrap();
    }

    #[test]
    fn serde_refusals_name_the_field() {
        let p = parse::<Req>(br#"{"kind": "noop", "prio": 1}"#).unwrap_err();
        assert_eq!(p.type_uri, ProblemKind::InvalidField.type_uri());
        assert!(p.detail.contains("unknown field `prio`"), "{}", p.detail);
        let p = parse::<Req>(br#"{"kind": "noop", "priority": "high"}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("priority"));
        let p = parse::<Req>(br#"{"kind": "noop""#).unwrap_err();
        assert_eq!(p.type_uri, ProblemKind::MalformedJson.type_uri());
        let p = parse::<Req>(br#"{"kind": "noop"} x"#).unwrap_err();
        assert_eq!(p.type_uri, ProblemKind::MalformedJson.type_uri());
    }
}
