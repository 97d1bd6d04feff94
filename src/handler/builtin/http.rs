//! `http`: calls a webhook.
//!
//! One `reqwest` client is built per registry and shared by every job, so connections
//! are pooled. The body, when given, is sent as JSON. 5xx, 429 and network errors are
//! retryable; other 4xx are permanent (the same request would be refused again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode, Url, redirect};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{check_string_map, decode, invalid, string, tail, utf8_head};
use crate::config::HttpSection;
use crate::handler::{Handler, HandlerError, HandlerOutput, JobContext, Registry};
use crate::payload::{PayloadError, PayloadRules, Schema};

/// How long to wait for a TCP (and TLS) connection before a retryable failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed (each to an allowed host) before giving up.
const MAX_REDIRECTS: usize = 5;
/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2048;
/// Characters of the response body quoted in the error of a failed call.
const BODY_TAIL_CHARS: usize = 300;

pub(super) fn register(r: &mut Registry, config: &HttpSection) {
    let handler = HttpHandler::new(config);
    let checker = handler.clone();
    r.register_checked(
        "http",
        PayloadRules::with_schema(HttpHandler::schema()),
        move |p: &Value| checker.check(p),
        handler,
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpPayload {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

/// The `http` handler. Output: `{status, body, truncated}`.
#[derive(Debug, Clone)]
pub struct HttpHandler {
    client: Client,
    config: Arc<HttpSection>,
}

impl HttpHandler {
    /// A handler with this host allowlist and response limit, and its own client.
    pub fn new(config: &HttpSection) -> Self {
        let config = Arc::new(config.clone());
        let hosts = Arc::clone(&config);
        // Redirects are followed only to allowed hosts: otherwise any allowed host could
        // bounce the call anywhere.
        let policy = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if let Err(e) = check_host(&hosts, attempt.url()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        });
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(policy)
            .build()
            // Only fails when the TLS backend cannot start, which no job could work around.
            .expect("the HTTP client's TLS backend failed to start");
        Self { client, config }
    }

    /// The payload schema of `http`.
    pub fn schema() -> Schema {
        Schema::object(
            &["url"],
            [
                (
                    "url",
                    Schema {
                        min_length: Some(1),
                        ..string(MAX_URL_CHARS)
                    },
                ),
                (
                    "method",
                    Schema {
                        one_of: Some(
                            ["POST", "PUT", "GET", "DELETE"]
                                .map(|m| Value::String(m.into()))
                                .to_vec(),
                        ),
                        ..Schema::default()
                    },
                ),
                ("headers", Schema::of_type(crate::payload::JsonType::Object)),
                // Any JSON value is a valid body.
                ("body", Schema::default()),
            ],
        )
    }

    /// What the schema cannot say: the URL parses, is http(s), names an allowed host, and
    /// the headers are valid names and values.
    pub fn check(&self, payload: &Value) -> Result<(), PayloadError> {
        check_string_map(payload, "headers", 8192)?;
        let p: HttpPayload =
            HttpPayload::deserialize(payload).map_err(|e| invalid("payload", e.to_string()))?;
        self.check_url(&p.url)?;
        headers(&p.headers)?;
        Ok(())
    }

    fn check_url(&self, url: &str) -> Result<Url, PayloadError> {
        let path = "payload.url";
        let parsed = Url::parse(url).map_err(|e| invalid(path, format!("`{url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                path,
                format!(
                    "scheme `{}` is not allowed (only http and https)",
                    parsed.scheme()
                ),
            ));
        }
        check_host(&self.config, &parsed).map_err(|m| invalid(path, m))?;
        Ok(parsed)
    }

    async fn call(&self, ctx: &JobContext, p: HttpPayload) -> Result<HandlerOutput, HandlerError> {
        let permanent = |e: PayloadError| HandlerError::Permanent(e.to_string());
        let url = self.check_url(&p.url).map_err(permanent)?;
        let mut headers = headers(&p.headers).map_err(permanent)?;
        let method = match p.method.as_deref().unwrap_or("POST") {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "GET" => Method::GET,
            "DELETE" => Method::DELETE,
            other => {
                return Err(HandlerError::Permanent(format!(
                    "method `{other}` is not allowed"
                )));
            }
        };
        let mut req = self.client.request(method.clone(), url.clone());
        if let Some(body) = &p.body {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            let bytes = serde_json::to_vec(body)
                .map_err(|e| HandlerError::Permanent(format!("encoding body: {e}")))?;
            req = req.body(bytes);
        }
        req = req.headers(headers);
        if !ctx.timeout.is_zero() {
            // The worker would cancel at the deadline anyway; timing out here first
            // yields an error that says what was slow.
            req = req.timeout(ctx.timeout);
        }
        let what = format!("{method} {url}");
        let mut resp = req.send().await.map_err(|e| send_error(&what, e))?;
        let status = resp.status();
        let limit = self.config.max_response_bytes;
        let mut kept = Vec::new();
        let mut truncated = false;
        // Read only what is kept: a huge response must not fill the worker's memory.
        while let Some(chunk) = resp.chunk().await.map_err(|e| send_error(&what, e))? {
            let room = limit - kept.len();
            if chunk.len() > room {
                kept.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            kept.extend_from_slice(&chunk);
        }
        let body = utf8_head(&kept, truncated);
        if status.is_client_error() || status.is_server_error() {
            let msg = format!("{what} returned {status}: {}", tail(&body, BODY_TAIL_CHARS));
            return Err(if retryable_status(status) {
                HandlerError::Retryable(msg)
            } else {
                HandlerError::Permanent(msg)
            });
        }
        Ok(Some(json!({
            "status": status.as_u16(),
            "body": body,
            "truncated": truncated,
        })))
    }
}

#[async_trait]
impl Handler for HttpHandler {
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        let p: HttpPayload = decode("http", &ctx.job.payload)?;
        self.call(&ctx, p).await
    }
}

/// 5xx and 429 mean "not now"; any other 4xx means "never like this".
fn retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn send_error(what: &str, e: reqwest::Error) -> HandlerError {
    // Show the whole cause chain: reqwest's top-level message alone ("error sending
    // request") does not say whether it was DNS, a refused connection or a timeout.
    let mut msg = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_builder() || e.is_redirect() {
        // A request that cannot be built, or a redirect to a refused host, fails the
        // same way every time.
        HandlerError::Permanent(msg)
    } else {
        HandlerError::Retryable(msg)
    }
}

/// Checks the URL's host against `allow_hosts` (empty allows any). An entry matches the
/// host (case-insensitively) on any port, or `host:port` exactly.
fn check_host(config: &HttpSection, url: &Url) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err(format!("`{url}` has no host"));
    };
    if config.allow_hosts.is_empty() {
        return Ok(());
    }
    let host = host.to_ascii_lowercase();
    let with_port = url
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"))
        .unwrap_or_default();
    let ok = config.allow_hosts.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == host || a == with_port
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host `{host}` is not in http.allow_hosts (allowed: {})",
            config.allow_hosts.join(", ")
        ))
    }
}

fn headers(map: &BTreeMap<String, String>) -> Result<HeaderMap, PayloadError> {
    let mut out = HeaderMap::new();
    for (k, v) in map {
        let path = format!("payload.headers.{k}");
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| invalid(&path, "is not a valid header name"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| invalid(&path, "is not a valid header value"))?;
        out.insert(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(hosts: &[&str]) -> HttpSection {
        HttpSection {
            allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            max_response_bytes: 1024,
        }
    }

    #[test]
    fn host_matching() {
        let url = |s: &str| Url::parse(s).unwrap();
        let c = cfg(&["Example.com", "127.0.0.1:8080", "[::1]"]);
        assert!(check_host(&c, &url("https://EXAMPLE.com/x")).is_ok());
        assert!(check_host(&c, &url("http://127.0.0.1:8080/")).is_ok());
        assert!(check_host(&c, &url("http://127.0.0.1:9090/")).is_err());
        assert!(check_host(&c, &url("http://[::1]:1/")).is_ok());
        assert!(check_host(&c, &url("http://example.org/")).is_err());
        assert!(check_host(&cfg(&[]), &url("http://anything/")).is_ok());
    }

    #[test]
    fn status_classes() {
        assert!(retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable_status(StatusCode::NOT_FOUND));
        assert!(!retryable_status(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn refuses_bad_schemes_and_headers() {
        let h = HttpHandler::new(&cfg(&[]));
        let e = h.check(&json!({"url": "file:///etc/passwd"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.url: scheme `file` is not allowed (only http and https)"
        );
        let e = h
            .check(&json!({"url": "http://x/", "headers": {"bad header": "v"}}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.headers.bad header: is not a valid header name"
        );
        let e = h
            .check(&json!({"url": "http://x/", "headers": {"X-N": 1}}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.headers.X-N: expected string, got integer"
        );
    }
}
