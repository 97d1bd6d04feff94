//! API tokens and idempotent answers: what the HTTP API keeps in the store.
//!
//! A token is 256 bits of randomness shown once, as `jmt_<id>_<64 hex digits>`. The
//! store keeps only the SHA-256 of the random part ([`TokenHash`]) beside the token's
//! name, scopes, queues and times; [`TokenSecret::verify`] compares hashes in constant
//! time. The id in the text is not secret: it says which row to compare against, so a
//! request costs one primary-key read and one constant-time compare, never a search by
//! secret. The `jmt_` prefix lets [`crate::redact`] recognise a token in any text.
//!
//! Idempotent answers (the `Idempotency-Key` header) live beside the tokens because
//! they are keyed by token: a key is reserved before the work and the answer recorded
//! after it, so a retried request gets the first answer instead of doing the work twice.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::StoreError;
use super::audit::{AuditAction, AuditContext, AuditOutcome, AuditTarget};
use crate::clock::Millis;

/// What every token text starts with; [`crate::redact`] masks what follows it.
pub const TOKEN_PREFIX: &str = "jmt_";

/// Random bytes in a token: 256 bits.
pub const TOKEN_SECRET_BYTES: usize = 32;

/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME: usize = 128;

/// Most queues one token may be limited to.
pub const MAX_TOKEN_QUEUES: usize = 100;

/// Longest `Idempotency-Key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Store-assigned identity of a token (not secret: `token list` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(pub i64);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a token may do. `admin` includes every other scope and `operate` includes
/// `read` (an operator acts on what they can see); `read` and `enqueue` are separate, so
/// an application that only submits cannot list other applications' jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read jobs, queues, counts and events.
    Read,
    /// Submit jobs and workflows.
    Enqueue,
    /// Cancel jobs, redrive the dead-letter queue (and `read`).
    Operate,
    /// Everything, including token management.
    Admin,
}

impl Scope {
    /// All scopes, weakest first.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Enqueue, Scope::Operate, Scope::Admin];

    /// The name used in storage, config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Enqueue => "enqueue",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// Whether holding `self` grants `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin || (self == Scope::Operate && needed == Scope::Read)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}` (known: read, enqueue, operate, admin)"))
    }
}

/// A token to create: who it is for and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiToken {
    /// Who holds it (`billing-app`), for listings and, later, the audit log.
    pub name: String,
    /// What it may do (at least one).
    pub scopes: Vec<Scope>,
    /// The queues it may act on; empty means every queue.
    pub queues: Vec<String>,
}

impl NewApiToken {
    /// Checks the name (1 to [`MAX_TOKEN_NAME`] bytes, no control characters), that
    /// there is a scope, and every queue name; the error names the field. Every store
    /// calls it before writing.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > MAX_TOKEN_NAME
            || self.name.chars().any(char::is_control)
        {
            return Err(format!(
                "name must be 1-{MAX_TOKEN_NAME} bytes without control characters"
            ));
        }
        if self.scopes.is_empty() {
            return Err("scopes: name at least one of read, enqueue, operate, admin".into());
        }
        if self.queues.len() > MAX_TOKEN_QUEUES {
            return Err(format!(
                "queues: at most {MAX_TOKEN_QUEUES}, got {}",
                self.queues.len()
            ));
        }
        for q in &self.queues {
            crate::job::check_queue_name(q).map_err(|e| format!("queues: {e}"))?;
        }
        Ok(())
    }
}

/// A token as the store keeps it (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The queues it may act on; empty means every queue.
    pub queues: Vec<String>,
    /// When it was created.
    pub created_at: Millis,
    /// When it last authenticated a request (recorded at most once a minute).
    pub last_used_at: Option<Millis>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<Millis>,
}

impl ApiToken {
    /// Whether one of its scopes grants `needed`.
    pub fn grants(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|s| s.grants(needed))
    }

    /// Whether it may act on `queue`.
    pub fn allows_queue(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }
}

/// The SHA-256 of a token's random part: all the store keeps of the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is no credential, but there is no reason to print it either.
        f.write_str("TokenHash(..)")
    }
}

/// The random part of a token, as generated or as presented by a caller.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret([u8; TOKEN_SECRET_BYTES]);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(***)")
    }
}

impl TokenSecret {
    /// 256 fresh bits from the operating system's generator.
    pub fn generate() -> Self {
        use rand::TryRngCore as _;
        let mut bytes = [0u8; TOKEN_SECRET_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random number generator failed");
        Self(bytes)
    }

    /// What the store keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }

    /// Whether this secret is the one `stored` was made from, compared in constant time.
    pub fn verify(&self, stored: &TokenHash) -> bool {
        self.hash().0.ct_eq(&stored.0).into()
    }

    /// The text shown once to the operator: `jmt_<id>_<64 hex digits>`.
    pub fn text(&self, id: TokenId) -> String {
        let mut out = format!("{TOKEN_PREFIX}{id}_");
        for b in self.0 {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Splits a presented token into its id and secret; `None` for anything that is
    /// not shaped like one (the caller answers 401 without saying more).
    pub fn parse(text: &str) -> Option<(TokenId, TokenSecret)> {
        let rest = text.strip_prefix(TOKEN_PREFIX)?;
        let (id, hex) = rest.split_once('_')?;
        if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id: i64 = id.parse().ok()?;
        if hex.len() != TOKEN_SECRET_BYTES * 2 {
            return None;
        }
        let mut bytes = [0u8; TOKEN_SECRET_BYTES];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).ok()?;
            bytes[i] = u8::from_str_radix(digits, 16).ok()?;
        }
        Some((TokenId(id), TokenSecret(bytes)))
    }
}

/// An answer recorded for an `Idempotency-Key`: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body as sent.
    pub body: serde_json::Value,
}

/// What reserving an `Idempotency-Key` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// The key is now reserved for this request: do the work, then
    /// [`ApiTokens::record_answer`] (or [`ApiTokens::forget_answer`] if it failed in a
    /// way a retry may fix).
    Reserved,
    /// Another request with this key is still being answered.
    InProgress,
    /// The key was used with a different request (another fingerprint).
    Mismatch,
    /// The key was answered: send this answer again.
    Answered(StoredAnswer),
}

/// The token store and its idempotent answers (one capability: answers belong to tokens
/// and go when their token is deleted).
#[async_trait]
pub trait ApiTokens: Send + Sync + 'static {
    /// Stores a new token (checked with [`NewApiToken::check`]) with the hash of its
    /// secret; returns its id. Writes the audit row of `ctx` (the token's id, name,
    /// scopes and queues; never its hash) in the same transaction.
    async fn create_token(
        &self,
        ctx: &AuditContext,
        token: &NewApiToken,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<TokenId, StoreError>;

    /// One token with its hash, revoked or not (read on every request: a revoke counts
    /// at once).
    async fn token(&self, id: TokenId) -> Result<Option<(ApiToken, TokenHash)>, StoreError>;

    /// Every token, by id.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;

    /// Revokes a token; `false` if there is no such token. Revoking twice keeps the
    /// first time. Writes the audit row of `ctx` in the same transaction (`refused`
    /// for an unknown token).
    async fn revoke_token(
        &self,
        ctx: &AuditContext,
        id: TokenId,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Records that the token authenticated a request at `now`.
    async fn touch_token(&self, id: TokenId, now: Millis) -> Result<(), StoreError>;

    /// Whether any token is not revoked.
    async fn has_live_tokens(&self) -> Result<bool, StoreError>;

    /// Reserves `key` for `token`'s request with `fingerprint` (a hash of what was
    /// asked). A reservation older than `stale_before` that never got its answer (its
    /// request died) is taken over.
    async fn reserve_answer(
        &self,
        token: TokenId,
        key: &str,
        fingerprint: &str,
        now: Millis,
        stale_before: Millis,
    ) -> Result<Reservation, StoreError>;

    /// Records the answer to a reserved key.
    async fn record_answer(
        &self,
        token: TokenId,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError>;

    /// Drops a reservation whose request failed in a way a retry may fix.
    async fn forget_answer(&self, token: TokenId, key: &str) -> Result<(), StoreError>;

    /// Removes answers reserved before `before`; returns how many.
    async fn purge_answers(&self, before: Millis) -> Result<u64, StoreError>;
}

/// The audit row's parts for creating `token` as `id`: its name, scopes and queues,
/// never its hash.
pub(crate) fn create_audit(
    id: TokenId,
    token: &NewApiToken,
) -> (AuditAction, AuditTarget, AuditOutcome) {
    (
        AuditAction::TokenCreate,
        AuditTarget::Token {
            id: Some(id),
            name: Some(token.name.clone()),
        },
        AuditOutcome::Ok(serde_json::json!({
            "scopes": token.scopes,
            "queues": token.queues,
        })),
    )
}

/// The audit row's parts for revoking token `id`, which `name`d a token (`None`: there
/// was no such token, a refusal) and was `already` revoked or not.
pub(crate) fn revoke_audit(
    id: TokenId,
    name: Option<String>,
    already: bool,
) -> (AuditAction, AuditTarget, AuditOutcome) {
    let outcome = match name {
        None => AuditOutcome::Refused(format!("no token {id}")),
        Some(_) => AuditOutcome::Ok(serde_json::json!({ "already_revoked": already })),
    };
    (
        AuditAction::TokenRevoke,
        AuditTarget::Token { id: Some(id), name },
        outcome,
    )
}

/// Scopes as stored: comma-separated names.
pub(crate) fn scopes_text(scopes: &[Scope]) -> String {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Scopes read back; an unknown name makes the row corrupt.
pub(crate) fn parse_scopes(text: &str) -> Result<Vec<Scope>, StoreError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e| StoreError::Corrupt(format!("api_tokens.scopes: {e}")))
        })
        .collect()
}

/// Queues as stored: comma-separated (queue names cannot hold a comma).
pub(crate) fn queues_text(queues: &[String]) -> String {
    queues.join(",")
}

/// Queues read back.
pub(crate) fn parse_queues(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A stored hash read back; anything but 32 bytes makes the row corrupt.
pub(crate) fn parse_hash(bytes: &[u8]) -> Result<TokenHash, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(TokenHash)
        .map_err(|_| StoreError::Corrupt(format!("api_tokens.hash: {} bytes", bytes.len())))
}

/// Checks an `Idempotency-Key` before it is stored: 1 to [`MAX_IDEMPOTENCY_KEY`]
/// visible ASCII characters.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_text_and_only_its_secret_verifies() {
        let s = TokenSecret::generate();
        let text = s.text(TokenId(42));
        assert!(text.starts_with("jmt_42_"), "{text}");
        assert_eq!(text.len(), "jmt_42_".len() + 64);
        let (id, back) = TokenSecret::parse(&text).unwrap();
        assert_eq!(id, TokenId(42));
        assert!(back.verify(&s.hash()));
        assert!(!TokenSecret::generate().verify(&s.hash()));
        assert_ne!(TokenSecret::generate(), s, "256 random bits never repeat");
        for bad in [
            "",
            "jmt_",
            "jmt_42",
            "jmt_x_00",
            &text[..text.len() - 1],
            &format!("{text}0"),
            &text.replace("jmt_", "jmx_"),
            &format!("jmt_-1_{}", &text[7..]),
            &format!("{}g", &text[..text.len() - 1]),
        ] {
            assert!(TokenSecret::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(format!("{s:?}"), "TokenSecret(***)");
    }

    #[test]
    fn scopes_grant_what_they_include() {
        assert!(Scope::Admin.grants(Scope::Enqueue));
        assert!(Scope::Operate.grants(Scope::Read));
        assert!(!Scope::Operate.grants(Scope::Enqueue));
        assert!(!Scope::Enqueue.grants(Scope::Read));
        assert!(!Scope::Read.grants(Scope::Operate));
        assert_eq!(
            parse_scopes(&scopes_text(&[Scope::Operate, Scope::Read, Scope::Read])).unwrap(),
            vec![Scope::Read, Scope::Operate]
        );
        assert!(parse_scopes("read,root").is_err());
    }

    #[test]
    fn new_tokens_and_keys_are_checked_by_field() {
        let mut t = NewApiToken {
            name: "billing".into(),
            scopes: vec![Scope::Enqueue],
            queues: vec!["emails".into()],
        };
        t.check().unwrap();
        t.queues.push("a,b".into());
        assert!(t.check().unwrap_err().starts_with("queues: "));
        t.queues.pop();
        t.queues = (0..=MAX_TOKEN_QUEUES).map(|i| format!("q{i}")).collect();
        assert!(t.check().unwrap_err().contains("at most"));
        t.queues.clear();
        t.scopes.clear();
        assert!(t.check().unwrap_err().starts_with("scopes: "));
        t.scopes.push(Scope::Read);
        t.name = "a\nb".into();
        assert!(t.check().unwrap_err().starts_with("name "));
        check_idempotency_key("order-17").unwrap();
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("a b").is_err());
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
    }
}
