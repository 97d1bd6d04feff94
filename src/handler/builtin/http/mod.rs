//! `http`: calls a webhook.
//!
//! One `reqwest` client is built per registry and shared by every job, so connections
//! are pooled. The body, when given, is sent as JSON. 5xx, 429 and network errors are
//! retryable; other 4xx are permanent (the same request would be refused again).
//!
//! Whoever may submit jobs chooses the URL, so the kind is fenced in (see the README's
//! "Security" section):
//! - internal addresses (loopback, private, link-local, metadata ...) are refused unless
//!   `http.allow_private` opens them, checked on the address of every connection: literal
//!   IPs here, names in the client's resolver ([`resolver`]), which also defeats DNS
//!   rebinding;
//! - `http.allow_hosts`, when not empty, is the list of hosts that may be called at all;
//! - no proxy is ever used (a proxy would connect on our behalf, past the checks);
//! - redirects stay on the same host, never downgrade https to http, at most
//!   [`MAX_REDIRECTS`], each hop checked again;
//! - payloads may not set `Host`, hop-by-hop or cloud-metadata headers;
//! - errors and output never quote the URL's credentials or secret header values.

pub mod address;
pub mod resolver;

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
use crate::handler::fence;
use crate::handler::{Handler, HandlerError, HandlerOutput, JobContext, Registry};
use crate::payload::{PayloadError, PayloadRules, Schema};
use crate::redact::Redactor;
use address::{AddressPolicy, AddressRefused, normalize_host};
use resolver::GuardedResolver;

/// How long to wait for a TCP (and TLS) connection before a retryable failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed (each on the same host) before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// Longest URL accepted.
const MAX_URL_CHARS: usize = 2048;
/// Characters of the response body quoted in the error of a failed call.
const BODY_TAIL_CHARS: usize = 300;

/// Headers whose values are credentials whatever the config says.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Why a payload header is refused, if it is: `Host` would aim the request elsewhere,
/// hop-by-hop headers belong to the connection (and enable request smuggling), and
/// metadata headers exist precisely so that a forged request cannot reach a cloud
/// metadata service.
fn refused_header(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "host" => Some("the host comes from the URL"),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        | "content-length" => Some("it belongs to the connection, which the node manages"),
        "metadata" | "metadata-flavor" | "x-google-metadata-request" => {
            Some("cloud metadata headers are never sent")
        }
        _ if n.starts_with("proxy-") => Some("no proxy is used"),
        _ if n.starts_with(fence::RESERVED_HEADER_PREFIX) => {
            Some("`jobmesh-*` headers carry the job's id, attempt and lease token, set by the node")
        }
        _ if n.starts_with("x-aws-ec2-metadata-token") => {
            Some("cloud metadata headers are never sent")
        }
        _ => None,
    }
}

/// Checks `[http]`: hosts and header names are sane (the `allow_private` entries were
/// parsed when the config was read).
pub fn validate_config(c: &HttpSection) -> Result<(), String> {
    for h in &c.allow_hosts {
        let ok = !h.is_empty() && !h.contains("://") && !h.contains(['/', '@', ' ']);
        if !ok {
            return Err(format!(
                "http.allow_hosts: `{h}` is not a host or host:port (no scheme, path or user)"
            ));
        }
    }
    for h in &c.secret_headers {
        if HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err(format!("http.secret_headers: `{h}` is not a header name"));
        }
    }
    if c.max_response_bytes == 0 {
        return Err("http.max_response_bytes must be at least 1".into());
    }
    Ok(())
}

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
    policy: Arc<AddressPolicy>,
}

impl HttpHandler {
    /// A handler with this configuration and its own client.
    pub fn new(config: &HttpSection) -> Self {
        let config = Arc::new(config.clone());
        let policy = Arc::new(config.allow_private.clone());
        let (hosts, addresses) = (Arc::clone(&config), Arc::clone(&policy));
        let redirects = redirect::Policy::custom(move |attempt| {
            let previous = attempt.previous().last().cloned();
            match check_redirect(
                &hosts,
                &addresses,
                previous.as_ref(),
                attempt.previous().len(),
                attempt.url(),
            ) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirects)
            .dns_resolver(GuardedResolver::new(Arc::clone(&policy)))
            // HTTP_PROXY and friends are ignored: a proxy connects on our behalf, to
            // addresses the resolver never sees.
            .no_proxy()
            // The next hop need not learn where the job came from.
            .referer(false)
            .build()
            // Only fails when the TLS backend cannot start, which no job could work around.
            .expect("the HTTP client's TLS backend failed to start");
        Self {
            client,
            config,
            policy,
        }
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

    /// What the schema cannot say: the URL parses, is http(s), names an allowed host and
    /// no refused address, and the headers are valid names and values that a payload may
    /// set.
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
        // The parse error may quote the URL: masked, as it may hold credentials.
        let parsed = Url::parse(url).map_err(|e| {
            invalid(
                path,
                crate::redact::redact(&format!("`{url}`: {e}")).into_owned(),
            )
        })?;
        check_target(&self.config, &self.policy, &parsed).map_err(|m| invalid(path, m))?;
        Ok(parsed)
    }

    async fn call(&self, ctx: &JobContext, p: HttpPayload) -> Result<HandlerOutput, HandlerError> {
        let secrets = self.secrets(&p);
        let redacted = |e: HandlerError| e.map_message(|m| secrets.redact(m));
        let (status, body, truncated) = self.request(ctx, p).await.map_err(redacted)?;
        let body = if secrets.is_empty() {
            body
        } else {
            // A server may echo the request back (headers included): the output is
            // part of the record too.
            secrets.redact(&body)
        };
        Ok(Some(json!({
            "status": status.as_u16(),
            "body": body,
            "truncated": truncated,
        })))
    }

    /// The values of this job that must not reach the record: the URL's user
    /// information and the values of secret headers.
    fn secrets(&self, p: &HttpPayload) -> Redactor {
        let mut r = Redactor::new();
        if let Ok(url) = Url::parse(&p.url) {
            for part in [url.username(), url.password().unwrap_or("")] {
                r.add(part);
                if let Ok(decoded) = urlencoding_decode(part) {
                    r.add(decoded);
                }
            }
        }
        for (name, value) in &p.headers {
            let secret = SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s))
                || self
                    .config
                    .secret_headers
                    .iter()
                    .any(|s| name.eq_ignore_ascii_case(s));
            if secret {
                r.add(value.as_str());
                // `Bearer <token>`: a server may quote the token alone.
                for word in value.split_whitespace().skip(1) {
                    r.add(word);
                }
            }
        }
        r
    }

    /// Makes the call; the status, the kept body and whether it was cut.
    async fn request(
        &self,
        ctx: &JobContext,
        p: HttpPayload,
    ) -> Result<(StatusCode, String, bool), HandlerError> {
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
        // The fence lets the receiver apply the effect once (see `handler::fence`); a
        // payload's own `Idempotency-Key` is kept, being as stable as the job.
        for (name, value) in ctx.fence().headers() {
            if name != fence::IDEMPOTENCY_HEADER || !headers.contains_key(name) {
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    HandlerError::Permanent(format!("header {name} cannot carry `{value}`"))
                })?;
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        req = req.headers(headers);
        if !ctx.timeout.is_zero() {
            // The worker would cancel at the deadline anyway; timing out here first
            // yields an error that says what was slow.
            req = req.timeout(ctx.timeout);
        }
        let what = format!("{method} {}", shown(&url));
        let mut resp = tokio::select! {
            r = req.send() => r.map_err(|e| send_error(&what, e))?,
            // Cancelled: abort the request rather than wait for its answer.
            _ = ctx.cancel.cancelled() => {
                return Err(HandlerError::Retryable(format!("{what}: cancelled")));
            }
        };
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
        Ok((status, body, truncated))
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
    // `what` names the call already, without the URL's credentials; reqwest's own
    // message would repeat the URL with them.
    let e = e.without_url();
    // Show the whole cause chain: reqwest's top-level message alone ("error sending
    // request") does not say whether it was DNS, a refused connection or a timeout.
    let mut msg = format!("{what}: {e}");
    let mut refused = false;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        refused |= s.downcast_ref::<AddressRefused>().is_some();
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    if refused || e.is_builder() || e.is_redirect() {
        // A refused address, a request that cannot be built, or a refused redirect
        // fails the same way every time.
        HandlerError::Permanent(msg)
    } else {
        HandlerError::Retryable(msg)
    }
}

/// The URL as errors show it: without user information.
fn shown(url: &Url) -> Url {
    let mut shown = url.clone();
    // Only fails for URLs that cannot have credentials, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown
}

/// Decodes `%XX` escapes (user information is stored escaped in a parsed URL).
fn urlencoding_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// Everything a URL must pass before any connection: http(s), a host on
/// `allow_hosts` (when set), and not an internal address or name unless opened by
/// `allow_private`. Names are checked again, address by address, when resolved.
fn check_target(config: &HttpSection, policy: &AddressPolicy, url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not allowed (only http and https)",
            url.scheme()
        ));
    }
    check_host(config, url)?;
    let Some(host) = url.host_str() else {
        return Err("the URL has no host".into());
    };
    // The client connects to a literal address without asking the resolver, so it is
    // checked here. The URL parser has already turned every spelling of an address
    // (`2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`) into its canonical form, so a host
    // that does not parse as one is a name.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return policy.check(None, ip).map_err(|e| e.to_string());
    }
    // Names reserved for the local machine (RFC 6761) are refused without a lookup,
    // for an early, clear error at submit time; the resolver refuses every other name
    // that leads inside.
    let name = normalize_host(host);
    let local = name == "localhost" || name.ends_with(".localhost");
    if local && !policy.host_opened(&name) && !policy.opens_loopback() {
        return Err(format!(
            "host `{host}` is the local machine: refused (http.allow_private opens internal \
             targets)"
        ));
    }
    Ok(())
}

/// Checks a redirect before it is followed: at most [`MAX_REDIRECTS`], the same host as
/// the hop before (another host could be anything the first one wanted us to call,
/// internal targets opened by `allow_private` included), no downgrade from https to
/// http, and every rule a submitted URL must pass.
fn check_redirect(
    config: &HttpSection,
    policy: &AddressPolicy,
    previous: Option<&Url>,
    hops: usize,
    next: &Url,
) -> Result<(), String> {
    if hops > MAX_REDIRECTS {
        return Err(format!("more than {MAX_REDIRECTS} redirects"));
    }
    if let Some(prev) = previous {
        let host = |u: &Url| u.host_str().map(normalize_host);
        if host(prev) != host(next) {
            return Err(format!(
                "redirect to another host ({}) refused: redirects are followed on the same                  host only",
                shown(next)
            ));
        }
        if prev.scheme() == "https" && next.scheme() == "http" {
            return Err(format!(
                "redirect from https to http ({}) refused",
                shown(next)
            ));
        }
    }
    check_target(config, policy, next).map_err(|e| format!("redirect to {}: {e}", shown(next)))
}

/// Checks the URL's host against `allow_hosts` (empty allows any). An entry matches the
/// host (case-insensitively) on any port, or `host:port` exactly.
fn check_host(config: &HttpSection, url: &Url) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Err("the URL has no host".into());
    };
    if config.allow_hosts.is_empty() {
        return Ok(());
    }
    let host = normalize_host(host);
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
        if let Some(why) = refused_header(k) {
            return Err(invalid(&path, format!("may not be set: {why}")));
        }
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
            ..HttpSection::default()
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn every_spelling_of_an_internal_address_is_refused() {
        let (c, p) = (cfg(&[]), AddressPolicy::default());
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://0/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.1/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            let e = check_target(&c, &p, &url(u)).expect_err(u);
            assert!(e.contains("refused"), "{u}: {e}");
        }
        assert!(check_target(&c, &p, &url("https://example.com/")).is_ok());
        assert!(check_target(&c, &p, &url("http://93.184.215.14/")).is_ok());
    }

    #[test]
    fn redirects_stay_on_the_host_and_are_capped() {
        let c = cfg(&[]);
        let p = AddressPolicy::parse(&["127.0.0.1"]).unwrap();
        let from = url("http://127.0.0.1:8080/a");
        assert!(check_redirect(&c, &p, Some(&from), 1, &url("http://127.0.0.1:8080/b")).is_ok());
        let e = check_redirect(&c, &p, Some(&from), 1, &url("http://localhost:8080/")).unwrap_err();
        assert!(e.contains("another host"), "{e}");
        let e = check_redirect(
            &c,
            &p,
            Some(&from),
            MAX_REDIRECTS + 1,
            &url("http://127.0.0.1:8080/c"),
        )
        .unwrap_err();
        assert_eq!(e, format!("more than {MAX_REDIRECTS} redirects"));
        let e = check_redirect(
            &c,
            &p,
            Some(&url("https://example.com/")),
            1,
            &url("http://example.com/"),
        )
        .unwrap_err();
        assert!(e.contains("from https to http"), "{e}");
        let e = check_redirect(&c, &p, Some(&from), 1, &url("file:///etc/passwd")).unwrap_err();
        assert!(e.contains("another host"), "{e}");
    }

    #[test]
    fn config_entries_are_checked_by_name() {
        let bad = |c: HttpSection| validate_config(&c).unwrap_err();
        let e = bad(HttpSection {
            allow_hosts: vec!["https://x/".into()],
            ..HttpSection::default()
        });
        assert!(e.starts_with("http.allow_hosts: `https://x/`"), "{e}");
        let e = bad(HttpSection {
            secret_headers: vec!["bad header".into()],
            ..HttpSection::default()
        });
        assert_eq!(e, "http.secret_headers: `bad header` is not a header name");
        assert!(validate_config(&HttpSection::default()).is_ok());
    }

    #[test]
    fn secrets_cover_url_credentials_and_secret_headers() {
        let h = HttpHandler::new(&HttpSection {
            secret_headers: vec!["X-Api-Key".into()],
            ..HttpSection::default()
        });
        let p: HttpPayload = serde_json::from_value(json!({
            "url": "http://bob:pa%40ss@example.com/",
            "headers": {"Authorization": "Bearer tok-abcdef", "x-api-key": "key-123456", "X-Other": "visible"}
        }))
        .unwrap();
        let r = h.secrets(&p);
        let text = "bob pa@ss pa%40ss tok-abcdef key-123456 visible";
        // `bob` is shorter than the shortest value searched for.
        assert_eq!(r.redact(text), "bob *** *** *** *** visible");
    }

    #[test]
    fn host_matching() {
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
        for (name, why) in [
            ("Host", "the host comes from the URL"),
            ("transfer-encoding", "it belongs to the connection"),
            ("Connection", "it belongs to the connection"),
            ("Proxy-Authorization", "no proxy is used"),
            ("Metadata-Flavor", "cloud metadata headers"),
            (
                "X-aws-ec2-metadata-token-ttl-seconds",
                "cloud metadata headers",
            ),
        ] {
            let e = h
                .check(&json!({"url": "http://x/", "headers": {name: "v"}}))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("payload.headers.{name}: may not be set: {why}")),
                "{e}"
            );
        }
    }
}
