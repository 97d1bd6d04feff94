//! The audit log: who did what to which jobs, queues or tokens, when, from which
//! address, and what came of it.
//!
//! Every mutating operator action (cancel, retry, redrive, delete, pause, resume, token
//! create and revoke, periodic schedule create, pause, resume, delete and trigger) writes one [`AuditRecord`] in the transaction of the change it
//! records, so the log never shows a change that was rolled back nor misses one that
//! committed. The caller says who acts with an [`AuditContext`], passed into the store
//! method that makes the change. A refusal that changed nothing (a wrong scope, an
//! unknown job) is recorded on its own with [`AuditLog::record_refusal`], with result
//! `refused`, never as a success. Callers without an identity (no valid token) write
//! nothing: anonymous callers must not be able to fill the store.
//!
//! Conventions for store methods that change something: take `ctx: &AuditContext` as
//! their first argument, and write the row with the backend's
//! `audit::write(tx, ctx, action, target, outcome, now)` (`store/sqlite/audit.rs`,
//! `store/postgres/audit.rs`; `redis_postgres` calls the Postgres store's method, which
//! writes it) inside the transaction of the change. A refusal the store itself decides
//! (an unknown job or token) is written the same way, in a transaction that changes
//! nothing else; refusals decided before the store is called (a wrong scope) go through
//! [`AuditLog::record_refusal`].
//!
//! What a row holds is decided once, in `row.rs`: every backend binds the same
//! columns. Strings are stored with credentials masked ([`crate::redact`]) and NUL
//! characters replaced, and a target naming many jobs keeps the first
//! [`MAX_TARGET_IDS`] ids and their count, so one bulk action cannot write an unbounded
//! row. No secret belongs in a row: a token is named by its id and name, never its text
//! or hash.

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tokens::TokenId;
use super::{Redrive, StoreError};
use crate::clock::Millis;
use crate::job::JobId;

mod row;

pub(crate) use row::{AuditColumns, AuditRow, cancel_audit, redrive_audit};

/// Longest actor name kept, in bytes (a token name is at most
/// [`super::tokens::MAX_TOKEN_NAME`]; a CLI `user@host` is cut to this).
pub const MAX_ACTOR: usize = 255;

/// Most rows one [`AuditLog::list_audit`] call returns.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// Most job ids a target keeps (the count of all of them is kept beside).
pub const MAX_TARGET_IDS: usize = 1000;

/// Longest reason or error text kept, in bytes.
pub const MAX_REASON: usize = 2000;

/// Longest target or detail kept, as JSON text in bytes; a larger one (a filter with a
/// huge value) is replaced by a note of its size.
pub const MAX_JSON_BYTES: usize = 16 * 1024;

/// Store-assigned identity of an audit row; rows are listed by it, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditId(pub i64);

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A caller of the HTTP API, by its token's id and name (never the token itself).
    Token {
        /// The token's id.
        id: TokenId,
        /// The token's name.
        name: String,
    },
    /// An operator at the `jobmesh` command line, as `user@host`.
    Cli {
        /// `user@host`.
        who: String,
    },
    /// The node itself (a chore, not a person).
    System,
}

impl Actor {
    /// An operator at the command line: `user@host`, control characters replaced and
    /// cut to [`MAX_ACTOR`] bytes (both come from the environment, not from a person we
    /// can ask to fix them).
    pub fn cli(user: &str, host: &str) -> Self {
        Actor::Cli {
            who: clean_name(&format!("{user}@{host}"), MAX_ACTOR - CLI_PREFIX.len()),
        }
    }

    /// The name a listing shows and the actor filter matches: the token's name,
    /// `cli@user@host`, or `system`.
    pub fn name(&self) -> String {
        match self {
            Actor::Token { name, .. } => name.clone(),
            Actor::Cli { who } => format!("{CLI_PREFIX}{who}"),
            Actor::System => "system".into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Actor::Token { .. } => "token",
            Actor::Cli { .. } => "cli",
            Actor::System => "system",
        }
    }
}

const CLI_PREFIX: &str = "cli@";

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Token { id, name } => write!(f, "{name} (token {id})"),
            _ => f.write_str(&self.name()),
        }
    }
}

/// Who is acting and from where: what a caller passes into each mutating store method,
/// so the store can write the audit row in the transaction of the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContext {
    /// Who.
    pub actor: Actor,
    /// The address the request came from (the connection's peer; `None` at the CLI).
    pub address: Option<IpAddr>,
}

impl AuditContext {
    /// `actor`, from no particular address.
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            address: None,
        }
    }

    /// The same, from `address`.
    pub fn from_address(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }

    /// The node itself, for changes no person asked for (and for tests of store code
    /// that is not about the audit log).
    pub fn system() -> Self {
        Self::new(Actor::System)
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AuditAction {
    /// Cancel jobs.
    #[serde(rename = "cancel")]
    Cancel,
    /// Run jobs again now.
    #[serde(rename = "retry")]
    Retry,
    /// Send dead-lettered jobs back to their queues.
    #[serde(rename = "redrive")]
    Redrive,
    /// Delete finished jobs.
    #[serde(rename = "delete")]
    Delete,
    /// Pause a queue.
    #[serde(rename = "pause")]
    Pause,
    /// Resume a queue.
    #[serde(rename = "resume")]
    Resume,
    /// Create an API token.
    #[serde(rename = "token.create")]
    TokenCreate,
    /// Revoke an API token.
    #[serde(rename = "token.revoke")]
    TokenRevoke,
    /// Create a periodic schedule.
    #[serde(rename = "periodic.create")]
    PeriodicCreate,
    /// Pause a periodic schedule.
    #[serde(rename = "periodic.pause")]
    PeriodicPause,
    /// Resume a periodic schedule.
    #[serde(rename = "periodic.resume")]
    PeriodicResume,
    /// Delete a periodic schedule.
    #[serde(rename = "periodic.delete")]
    PeriodicDelete,
    /// Enqueue a periodic schedule's job now.
    #[serde(rename = "periodic.trigger")]
    PeriodicTrigger,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 13] = [
        AuditAction::Cancel,
        AuditAction::Retry,
        AuditAction::Redrive,
        AuditAction::Delete,
        AuditAction::Pause,
        AuditAction::Resume,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::PeriodicCreate,
        AuditAction::PeriodicPause,
        AuditAction::PeriodicResume,
        AuditAction::PeriodicDelete,
        AuditAction::PeriodicTrigger,
    ];

    /// The name stored, listed and filtered by.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Cancel => "cancel",
            AuditAction::Retry => "retry",
            AuditAction::Redrive => "redrive",
            AuditAction::Delete => "delete",
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::PeriodicCreate => "periodic.create",
            AuditAction::PeriodicPause => "periodic.pause",
            AuditAction::PeriodicResume => "periodic.resume",
            AuditAction::PeriodicDelete => "periodic.delete",
            AuditAction::PeriodicTrigger => "periodic.trigger",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                // The refused text is not echoed: it may be anything a caller sent.
                format!("unknown action (known: {})", known.join(", "))
            })
    }
}

/// What an action was applied to.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditTarget {
    /// These jobs.
    Jobs(Vec<JobId>),
    /// Jobs chosen by a filter ("all matching"), as the caller gave it.
    Filter(Value),
    /// Dead-lettered jobs, as a redrive chose them.
    DeadLetters(Redrive),
    /// A queue.
    Queue(String),
    /// A periodic schedule, by name.
    Schedule(String),
    /// An API token: its id where it has one (not yet, for a refused create) and its
    /// name where known. Never its text or hash.
    Token {
        /// The token's id.
        id: Option<TokenId>,
        /// The token's name.
        name: Option<String>,
    },
}

impl AuditTarget {
    /// The JSON kept in the row (before it is made storable): lists of ids cut to
    /// [`MAX_TARGET_IDS`] with their full count.
    pub fn to_json(&self) -> Value {
        fn ids(ids: &[JobId]) -> Value {
            let kept: Vec<i64> = ids.iter().take(MAX_TARGET_IDS).map(|i| i.0).collect();
            json!({ "ids": kept, "count": ids.len() })
        }
        match self {
            AuditTarget::Jobs(j) => json!({ "jobs": ids(j) }),
            AuditTarget::Filter(f) => json!({ "filter": f }),
            AuditTarget::DeadLetters(Redrive::Ids(j)) => json!({ "dead_letters": ids(j) }),
            AuditTarget::DeadLetters(Redrive::Queue(q)) => {
                json!({ "dead_letters": { "queue": q } })
            }
            AuditTarget::DeadLetters(Redrive::All) => json!({ "dead_letters": "all" }),
            AuditTarget::DeadLetters(Redrive::Group { queue, reason }) => {
                json!({ "dead_letters": { "queue": queue, "reason": reason } })
            }
            AuditTarget::Queue(q) => json!({ "queue": q }),
            AuditTarget::Schedule(n) => json!({ "schedule": n }),
            AuditTarget::Token { id, name } => json!({ "token": { "id": id, "name": name } }),
        }
    }
}

/// How an action ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// Done (possibly changing nothing, as pausing a paused queue; the detail says).
    Ok,
    /// Refused without changing anything (wrong scope or queue, unknown job or token,
    /// already finished).
    Refused,
    /// Tried and failed (a store error); nothing changed.
    Failed,
}

impl AuditResult {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Refused => "refused",
            AuditResult::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "ok" => Ok(AuditResult::Ok),
            "refused" => Ok(AuditResult::Refused),
            "failed" => Ok(AuditResult::Failed),
            other => Err(StoreError::Corrupt(format!("audit_log.result: `{other}`"))),
        }
    }
}

/// How an action ended, with what it did or why not: the result and the detail of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditOutcome {
    /// Done; what it did (`{"cancelled": true}`, `{"redriven": [..]}`).
    Ok(Value),
    /// Refused, with the reason.
    Refused(String),
    /// Failed, with the error.
    Failed(String),
}

impl AuditOutcome {
    /// The result column.
    pub fn result(&self) -> AuditResult {
        match self {
            AuditOutcome::Ok(_) => AuditResult::Ok,
            AuditOutcome::Refused(_) => AuditResult::Refused,
            AuditOutcome::Failed(_) => AuditResult::Failed,
        }
    }

    fn detail(&self) -> Value {
        match self {
            AuditOutcome::Ok(v) => v.clone(),
            AuditOutcome::Refused(r) => json!({ "reason": cut(r, MAX_REASON) }),
            AuditOutcome::Failed(e) => json!({ "error": cut(e, MAX_REASON) }),
        }
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its id (newest is highest).
    pub id: AuditId,
    /// When.
    pub at: Millis,
    /// Who.
    pub actor: Actor,
    /// From which address, where known.
    pub address: Option<IpAddr>,
    /// What.
    pub action: AuditAction,
    /// On what (see [`AuditTarget::to_json`]).
    pub target: Value,
    /// How it ended.
    pub result: AuditResult,
    /// What it did, or why it was refused or failed.
    pub detail: Value,
}

/// Which audit rows to list: newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only rows older than this one (the last id of the previous page).
    pub before: Option<AuditId>,
    /// At most this many (1 to [`MAX_AUDIT_LIMIT`]).
    pub limit: u32,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only this actor, by [`Actor::name`] (exact).
    pub actor: Option<String>,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            before: None,
            limit: 100,
            action: None,
            actor: None,
        }
    }
}

impl AuditQuery {
    /// Checks the bounds, naming the field that is out of them. Every store calls it.
    pub fn check(&self) -> Result<(), String> {
        if self.limit == 0 || self.limit > MAX_AUDIT_LIMIT {
            return Err(format!("limit must be 1-{MAX_AUDIT_LIMIT}"));
        }
        if let Some(a) = &self.actor
            && (a.is_empty() || a.len() > MAX_ACTOR || a.chars().any(char::is_control))
        {
            // No stored name has a control character (see `clean_name`), and Postgres
            // refuses a NUL in a parameter.
            return Err(format!(
                "actor must be 1-{MAX_ACTOR} bytes without control characters"
            ));
        }
        if self.before.is_some_and(|b| b.0 <= 0) {
            return Err("before must be a positive audit id".into());
        }
        Ok(())
    }
}

/// The audit log of a store. Rows of a change are written by the store method making
/// the change, in its transaction; this records the rest and reads the log.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Rows matching `query` (checked with [`AuditQuery::check`]), newest first. A row
    /// this version cannot decode is left out with a warning.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Records that `ctx`'s request for `action` on `target` was refused for `reason`
    /// and changed nothing (result `refused`).
    async fn record_refusal(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        reason: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError>;

    /// Records that `ctx`'s request for `action` on `target` failed with `error`, after
    /// the transaction that would have made the change rolled back (result `failed`).
    async fn record_failure(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        error: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError>;
}

/// `s` without control characters, cut to at most `max` bytes on a character boundary.
pub(super) fn clean_name(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    cut(&clean, max)
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(super) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
