//! Who is calling: the bearer token, checked against the store on every request (a
//! revoke counts at once: there is no cache to outlive it), then the token's rate.
//!
//! The result is a [`Caller`], put in the request's extensions for the handlers, which
//! check its scope and queues. It is also what an audit row names
//! ([`Caller::audit_context`]).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::tokens::{Scope, TokenId, TokenSecret};
use jobmesh::store::{Actor, AuditContext};

use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// How stale a token's `last_used_at` may get before a request refreshes it: a write
/// per request would put the token table on every request's path (and SQLite has one
/// writer).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token, or `None` for an anonymous loopback reader.
    pub token: Option<TokenId>,
    /// The token's name (`anonymous` without one).
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The queues it may act on; empty means every queue.
    pub queues: Vec<String>,
    /// Where the request came from.
    pub peer: SocketAddr,
}

impl Caller {
    /// Refuses (403) unless one of the caller's scopes grants `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), Problem> {
        if self.scopes.iter().any(|s| s.grants(needed)) {
            Ok(())
        } else {
            Err(Problem::new(
                ProblemKind::Forbidden,
                format!("this needs the `{needed}` scope"),
            ))
        }
    }

    /// Whether the caller may act on `queue`.
    pub fn allows_queue(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }

    /// Refuses (403) a queue the caller may not act on; `field` names where the queue
    /// came from.
    pub fn require_queue(&self, queue: &str, field: &str) -> Result<(), Problem> {
        if self.allows_queue(queue) {
            Ok(())
        } else {
            Err(Problem::field(
                ProblemKind::Forbidden,
                field,
                format!("the token may not act on queue `{queue}`"),
            ))
        }
    }

    /// Who the audit log names for this caller: its token (id and name) and the
    /// connection's address. `None` for an anonymous loopback reader: with no identity
    /// there is nothing to record, and anonymous callers must not write to the store.
    pub fn audit_context(&self) -> Option<AuditContext> {
        let id = self.token?;
        Some(
            AuditContext::new(Actor::Token {
                id,
                name: self.name.clone(),
            })
            .from_address(self.peer.ip()),
        )
    }

    /// Refuses (403) a caller limited to some queues, for what spans all of them.
    pub fn require_all_queues(&self, what: &str) -> Result<(), Problem> {
        if self.queues.is_empty() {
            Ok(())
        } else {
            Err(Problem::new(
                ProblemKind::Forbidden,
                format!("{what} spans every queue: it needs a token not limited to queues"),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Problem::new(ProblemKind::Internal, "route served without authentication")
        })
    }
}

/// Whom a rate applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A token.
    Token(TokenId),
    /// An anonymous loopback reader, by address.
    Anonymous(IpAddr),
}

/// Per-caller request rates.
pub struct RateLimits {
    limiter: DefaultKeyedRateLimiter<RateKey>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    /// `per_second` on average with `burst` above it, per key.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Self {
            limiter: governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// `Ok` if `key` may make a request now, else the whole seconds to wait (at least 1).
    pub fn check(&self, key: &RateKey) -> Result<(), u64> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs_f64().ceil() as u64).max(1)
        })
    }

    /// Forgets keys whose state is back to full (bounds memory).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The dashboard's session cookie (see [`crate::session`]); its changes pass the
    /// CSRF check of [`crate::csrf`].
    Session,
    /// No token: a loopback reader under `api.allow_anonymous_loopback_read`.
    Anonymous,
}

/// The authentication middleware: puts a [`Caller`] and its [`Credential`] in the
/// request or answers 401/403/429.
///
/// A bearer token wins over the session cookie. A cookie-authenticated request that
/// changes something must come from a page of this origin ([`crate::csrf::check`]):
/// else 403, before the token is even read.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let found = if let Some(value) = headers.get(header::AUTHORIZATION) {
        match bearer_text(value) {
            Some(text) => caller_from_token(&state, peer, text)
                .await
                .map(|c| (c, Credential::Bearer)),
            None => Err(Problem::new(
                ProblemKind::Unauthorized,
                "send the token in the `Authorization` header, scheme `Bearer`",
            )),
        }
    } else if let Some(text) = crate::session::from_headers(headers) {
        match crate::csrf::check(req.method(), headers) {
            Ok(()) => caller_from_token(&state, peer, text)
                .await
                .map(|c| (c, Credential::Session)),
            Err(why) => Err(Problem::new(ProblemKind::Forbidden, why)),
        }
    } else if state.config.allow_anonymous_loopback_read && peer.ip().is_loopback() {
        Ok((
            Caller {
                token: None,
                name: "anonymous".into(),
                scopes: vec![Scope::Read],
                queues: Vec::new(),
                peer,
            },
            Credential::Anonymous,
        ))
    } else {
        Err(Problem::new(
            ProblemKind::Unauthorized,
            "send the token in the `Authorization` header, scheme `Bearer`",
        ))
    };
    let (caller, credential) = match found {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    let key = match caller.token {
        Some(id) => RateKey::Token(id),
        None => RateKey::Anonymous(peer.ip()),
    };
    if let Err(secs) = state.rates.check(&key) {
        let mut p = Problem::new(
            ProblemKind::RateLimited,
            format!(
                "the token's rate ({}/s, burst {}) is spent",
                state.config.rate_per_second, state.config.burst
            ),
        );
        p.retry_after = Some(secs);
        return p.into_response();
    }
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(credential);
    next.run(req).await
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_text(value: &axum::http::HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The caller a presented token stands for: 401 for anything but a live token of the
/// store (the same answer whether it is malformed, unknown or of the wrong secret).
pub async fn caller_from_token(
    state: &AppState,
    peer: SocketAddr,
    text: &str,
) -> Result<Caller, Problem> {
    let unauthorized = |why: &str| Problem::new(ProblemKind::Unauthorized, why);
    let invalid = || unauthorized("the token is not valid");
    let (id, secret) = TokenSecret::parse(text).ok_or_else(invalid)?;
    let (token, hash) = state.store.token(id).await?.ok_or_else(invalid)?;
    // Compared in constant time, and checked before anything about the row is told.
    if !secret.verify(&hash) {
        return Err(invalid());
    }
    if token.revoked_at.is_some() {
        return Err(unauthorized("the token was revoked"));
    }
    let now = SystemClock.now();
    if token
        .last_used_at
        .is_none_or(|t| now.since(t) >= TOUCH_EVERY)
    {
        // Off the request's path: a slow or failing write delays nobody.
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id, now).await {
                tracing::debug!(error = %e, token = %id, "recording the token's last use failed");
            }
        });
    }
    Ok(Caller {
        token: Some(token.id),
        name: token.name,
        scopes: token.scopes,
        queues: token.queues,
        peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_rate_says_how_long_to_wait() {
        let rates = RateLimits::new(1, 2);
        let key = RateKey::Token(TokenId(1));
        assert!(rates.check(&key).is_ok());
        assert!(rates.check(&key).is_ok());
        let wait = rates.check(&key).unwrap_err();
        assert_eq!(wait, 1, "one request per second: wait a second");
        assert!(
            rates.check(&RateKey::Token(TokenId(2))).is_ok(),
            "another token has its own rate"
        );
    }

    #[test]
    fn scopes_and_queues_are_checked() {
        let c = Caller {
            token: Some(TokenId(1)),
            name: "app".into(),
            scopes: vec![Scope::Enqueue],
            queues: vec!["emails".into()],
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        assert!(c.require(Scope::Enqueue).is_ok());
        assert_eq!(c.require(Scope::Read).unwrap_err().status, 403);
        assert!(c.require_queue("emails", "queue").is_ok());
        let p = c.require_queue("sms", "queue").unwrap_err();
        assert_eq!((p.status, p.field.as_deref()), (403, Some("queue")));
        assert!(c.require_all_queues("the event stream").is_err());
    }
}
