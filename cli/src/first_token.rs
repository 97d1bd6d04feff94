//! The first token: when a process starts the API on a store that has never held a
//! token, and a person is watching its terminal, it creates an `admin` token and shows
//! it once, so the dashboard it just printed the address of can be logged into without
//! a second command. Anywhere else (a service manager, a pipe, a log file) nothing is
//! created and the line says how to create one: a secret never goes to a stream that may
//! be kept.

use std::io::IsTerminal;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::store::Store;
use jobmesh::store::tokens::{NewApiToken, Scope, TokenSecret};

/// The name the first token is created under.
pub const NAME: &str = "first-start";

/// What [`offer`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstToken {
    /// The store already holds a token (live or revoked): nothing to do.
    NotNeeded,
    /// No token exists and no terminal watches: nothing created.
    NoTerminal,
    /// A token was created; its text, to be shown once.
    Created(String),
}

/// Creates the first token when `store` holds none and `terminal` is true.
pub async fn offer(store: &dyn Store, terminal: bool) -> anyhow::Result<FirstToken> {
    if !store.list_tokens().await?.is_empty() {
        return Ok(FirstToken::NotNeeded);
    }
    if !terminal {
        return Ok(FirstToken::NoTerminal);
    }
    let new = NewApiToken {
        name: NAME.into(),
        scopes: vec![Scope::Admin],
        queues: Vec::new(),
    };
    let secret = TokenSecret::generate();
    let id = store
        .create_token(
            &crate::setup::audit_context(),
            &new,
            &secret.hash(),
            SystemClock.now(),
        )
        .await?;
    Ok(FirstToken::Created(secret.text(id)))
}

/// Offers the first token for a process whose standard output is `stdout`, and says
/// what happened on it (stdout only, never the log).
pub async fn offer_on_stdout(store: &dyn Store) -> anyhow::Result<()> {
    match offer(store, std::io::stdout().is_terminal()).await? {
        FirstToken::NotNeeded => {}
        FirstToken::NoTerminal => {
            let _ = crate::output::outln!(
                "no API token exists yet: create one with `jobmesh token create --scope admin --name me` \
                 (a token is shown only on a terminal, never written to a log)"
            );
        }
        FirstToken::Created(text) => {
            let _ = crate::output::outln!(
                "first start: an admin token to log in with, shown only now (the store keeps its hash; \
                 revoke it with `jobmesh token revoke`):\n  {text}"
            );
        }
    }
    Ok(())
}
