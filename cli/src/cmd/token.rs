//! `jobmesh token`: create, list and revoke HTTP API tokens.

use anyhow::bail;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::store::tokens::{NewApiToken, TokenId, TokenSecret};

use crate::args::TokenVerb;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, verb: TokenVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    match verb {
        TokenVerb::Create { scope, queue, name } => {
            let new = NewApiToken {
                name,
                scopes: scope,
                queues: queue,
            };
            new.check()
                .map_err(|m| anyhow::anyhow!("invalid token: {m}"))?;
            let secret = TokenSecret::generate();
            let id = store
                .create_token(
                    &setup::audit_context(),
                    &new,
                    &secret.hash(),
                    SystemClock.now(),
                )
                .await?;
            // The one time the token is shown: stdout only, never the log.
            let text = secret.text(id);
            if json {
                return output::json(&serde_json::json!({
                    "id": id, "name": new.name, "token": text,
                }));
            }
            outln!("{text}")?;
            eprintln!(
                "token {id} `{}` created; it is shown only now (the store keeps its hash): \
                 send it as `Authorization: Bearer <token>`",
                new.name
            );
        }
        TokenVerb::List => {
            let tokens = store.list_tokens().await?;
            if json {
                return output::json(&tokens);
            }
            let opt_time = |t: Option<jobmesh::clock::Millis>| t.map_or("-".into(), output::time);
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.scopes
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        if t.queues.is_empty() {
                            "*".into()
                        } else {
                            t.queues.join(",")
                        },
                        output::time(t.created_at),
                        opt_time(t.last_used_at),
                        opt_time(t.revoked_at),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "NAME",
                    "SCOPES",
                    "QUEUES",
                    "CREATED",
                    "LAST_USED",
                    "REVOKED",
                ],
                &rows,
            )?;
        }
        TokenVerb::Revoke { id } => {
            if !store
                .revoke_token(&setup::audit_context(), TokenId(id), SystemClock.now())
                .await?
            {
                bail!("no token {id} (see `jobmesh token list`)");
            }
            if json {
                return output::json(&serde_json::json!({"revoked": id}));
            }
            outln!("token {id} revoked")?;
        }
    }
    Ok(())
}
