//! Store incarnations: what keeps lease tokens unique when claims commit asynchronously.
//!
//! A claim may commit with `synchronous_commit = off` (the default, see
//! [`PostgresStore::with_async_claims`]): Postgres answers before the commit reaches the
//! disk, and a crash of the server loses the last such commits. The holder of a lost
//! claim still runs its job under the token the claim returned, while the row went back
//! to the previous token; with `lease_token + 1` the next claim would hand that same
//! token to a second holder, and either holder's completion would pass the fence.
//!
//! So each connection draws an incarnation of the store, a counter bumped with a durable
//! commit (`jm_draw_incarnation`, migration 0016), before its first claim, and every
//! claim sets the token to at least `incarnation << 24` (`jm_claim_base`). A connection
//! never outlives a crash of the server (every backend dies with it), so after a crash
//! every claim comes from a connection that drew an incarnation above all those drawn
//! before, and its tokens lie above every token handed out before (see the migration for
//! the arithmetic). Drawing per connection, rather than when the pool notices a restart,
//! needs no detection: a connection that has not drawn cannot claim (`JM001`), and one
//! that has drawn has not lived through a crash.
//!
//! Completions, enqueues, rescues and admin actions keep the session's durability: only
//! the claim statement (its implicit transaction, or the limited claim's transaction)
//! lowers `synchronous_commit`, with `SET LOCAL` semantics.
//!
//! Limits: the incarnation lives in the server session (`jobmesh.incarnation`), so the
//! store must own its connections (no transaction-pooling proxy between them, which
//! would hand one session to several stores). And "never twice" holds for crashes of
//! the server; after a failover to a standby, the draws must have reached it
//! (synchronous replication), as any durable commit must.

use sqlx::PgConnection;

use super::PostgresStore;
use crate::store::StoreError;

/// The token a claim hands out: the next one of the job, and at least the base of the
/// connection's incarnation. An uncorrelated subquery, so `jm_claim_base` runs once per
/// statement (and not at all when nothing is claimed).
macro_rules! next_token {
    () => {
        "greatest(lease_token + 1, (SELECT jm_claim_base()))"
    };
}
pub(super) use next_token;

/// The SQLSTATE `jm_claim_base` raises on a connection that has drawn no incarnation.
const NO_INCARNATION: &str = "JM001";

/// Whether `e` says the connection has drawn no incarnation yet.
pub(super) fn lacks_incarnation(e: &StoreError) -> bool {
    let StoreError::Backend(b) = e else {
        return false;
    };
    b.get_ref()
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .is_some_and(|d| d.code().as_deref() == Some(NO_INCARNATION))
}

/// Draws an incarnation for `conn` (one durable commit of its own); returns it.
pub(super) async fn draw(conn: &mut PgConnection, async_claims: bool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT jm_draw_incarnation($1)")
        .bind(async_claims)
        .fetch_one(conn)
        .await?)
}

/// Runs `$body` (statements that hand out lease tokens, an expression of type
/// `Result<_, StoreError>` using `$conn: &mut PgConnection`) on one connection of
/// `$store`'s pool. On a connection that has drawn no incarnation yet, `$body` fails with
/// `JM001` before it changed anything; the connection then draws one and `$body` runs
/// again. That happens once per connection: at start-up, and after every reconnection
/// (after a restart of the server, every connection is new). A macro rather than a
/// function taking an async closure, whose future the compiler cannot show `Send`.
macro_rules! on_claim_connection {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let store: &$crate::store::postgres::PostgresStore = $store;
        let mut pooled = store.pool.acquire().await?;
        let first = {
            let $conn: &mut sqlx::PgConnection = &mut pooled;
            $body
        };
        match first {
            Err(e) if $crate::store::postgres::incarnation::lacks_incarnation(&e) => {
                store.draw_incarnation(&mut pooled).await?;
                let $conn: &mut sqlx::PgConnection = &mut pooled;
                $body
            }
            other => other,
        }
    }};
}
pub(super) use on_claim_connection;

impl PostgresStore {
    /// Draws an incarnation for `conn` (see [`draw`]), logging it.
    pub(super) async fn draw_incarnation(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let drawn = draw(conn, self.async_claims).await?;
        tracing::debug!(
            incarnation = drawn,
            async_claims = self.async_claims,
            "a Postgres connection drew a store incarnation"
        );
        Ok(())
    }
}
