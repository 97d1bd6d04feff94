//! Built-in handlers, so the binary is useful without writing Rust.
//!
//! | kind    | payload |
//! |---------|---------|
//! | `noop`  | any object, e.g. `{}` |
//! | `sleep` | `{"ms": 0..=3600000}` |
//! | `fail`  | `{"message"?: string, "retryable"?: bool = true, "times"?: integer >= 0}` |
//! | `panic` | `{"message"?: string, "times"?: integer >= 0}` |
//! | `exec`  | `{"command": string, "args"?: [string], "env"?: {string: string}, "stdin"?: string, "cwd"?: string}` |
//! | `http`  | `{"url": string, "method"?: "POST"\|"PUT"\|"GET"\|"DELETE", "headers"?: {string: string}, "body"?: any}` |
//!
//! Every schema but `noop`'s refuses unknown fields. `exec` and `http` add a submit-time check
//! (allowlists, map value types) that they repeat at run time, because a job may have
//! been stored under an older configuration.

mod basic;
pub mod exec;
pub mod exec_control;
pub mod http;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{ExecSection, HttpSection};
use crate::handler::{HandlerError, Registry};
use crate::payload::{JsonType, PayloadError, Schema};

pub use basic::{FailHandler, NoopHandler, PanicHandler, SleepHandler};
pub use exec::ExecHandler;
pub use http::HttpHandler;

/// Longest `sleep` allowed: one hour, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 3_600_000;

/// A registry holding every built-in kind, configured from the `[exec]` and `[http]`
/// sections.
pub fn registry(exec: &ExecSection, http: &HttpSection) -> Registry {
    let mut r = Registry::new();
    basic::register(&mut r);
    exec::register(&mut r, exec);
    http::register(&mut r, http);
    r
}

/// A string field no longer than `max` characters.
fn string(max: usize) -> Schema {
    Schema {
        ty: Some(JsonType::String),
        max_length: Some(max),
        ..Default::default()
    }
}

/// An integer field within `min..=max`.
fn integer(min: Option<f64>, max: Option<f64>) -> Schema {
    Schema {
        ty: Some(JsonType::Integer),
        minimum: min,
        maximum: max,
        ..Default::default()
    }
}

/// Checks that every value of the object at `payload.<field>` (if present) is a string
/// no longer than `max` characters: the schema language has no typed maps.
fn check_string_map(payload: &Value, field: &str, max: usize) -> Result<(), PayloadError> {
    let Some(Value::Object(map)) = payload.get(field) else {
        return Ok(());
    };
    for (k, v) in map {
        let path = format!("payload.{field}.{k}");
        match v {
            Value::String(s) if s.chars().count() > max => {
                return Err(invalid(
                    path,
                    format!(
                        "must be at most {max} characters, got {}",
                        s.chars().count()
                    ),
                ));
            }
            Value::String(_) => {}
            other => {
                return Err(invalid(
                    path,
                    format!("expected string, got {}", json_type_name(other)),
                ));
            }
        }
    }
    Ok(())
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> PayloadError {
    PayloadError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Decodes a payload at run time. The schema already passed at submit time, so a failure
/// here means the job was stored under other rules: retrying cannot fix it.
fn decode<T: DeserializeOwned>(kind: &str, payload: &Value) -> Result<T, HandlerError> {
    T::deserialize(payload)
        .map_err(|e| HandlerError::Permanent(format!("invalid `{kind}` payload: {e}")))
}

/// Text of a captured stream. When the capture was cut short, an incomplete UTF-8
/// sequence at the cut is dropped so a multi-byte character is never turned into a
/// replacement character by the truncation itself.
fn utf8_head(bytes: &[u8], truncated: bool) -> String {
    let mut head = bytes;
    if truncated
        && let Err(e) = std::str::from_utf8(head)
        && e.error_len().is_none()
    {
        head = &head[..e.valid_up_to()];
    }
    String::from_utf8_lossy(head).into_owned()
}

/// The last `max` characters of `s`, for error messages.
fn tail(s: &str, max: usize) -> &str {
    // Trailing newlines are noise in a one-line error message.
    let s = s.trim_end();
    let n = s.chars().count();
    if n <= max {
        return s;
    }
    let start = s.char_indices().nth(n - max).map_or(0, |(i, _)| i);
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_never_splits_a_character() {
        let s = "aé".as_bytes(); // 'é' is two bytes
        assert_eq!(utf8_head(&s[..2], true), "a");
        assert_eq!(utf8_head(s, false), "aé");
        // Without truncation, broken input is shown as it is (lossily), not hidden.
        assert_eq!(utf8_head(&s[..2], false), "a\u{fffd}");
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("hello world\n", 5), "world");
        assert_eq!(tail("héllo", 10), "héllo");
        assert_eq!(tail("héllo", 4), "éllo");
    }

    #[test]
    fn registry_has_every_kind() {
        let r = registry(&ExecSection::default(), &HttpSection::default());
        assert_eq!(
            r.kinds().collect::<Vec<_>>(),
            ["exec", "fail", "http", "noop", "panic", "sleep"]
        );
    }
}
