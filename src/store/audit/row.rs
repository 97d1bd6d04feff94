//! What an audit row holds, decided once for every backend: the row written for an
//! action ([`AuditRow`]), the parts of the rows the store's own actions write, and a
//! stored row read back ([`AuditColumns`]).

use serde_json::{Value, json};

use super::{
    Actor, AuditAction, AuditContext, AuditId, AuditOutcome, AuditRecord, AuditResult, AuditTarget,
    CLI_PREFIX, MAX_ACTOR, MAX_JSON_BYTES, MAX_TARGET_IDS, clean_name,
};
use crate::clock::Millis;
use crate::job::JobId;
use crate::store::tokens::TokenId;
use crate::store::{Redrive, StoreError};

/// The audit row's parts for cancelling job `id`, which ended with `outcome` (`None`:
/// there was no such job, a refusal).
pub(crate) fn cancel_audit(
    id: JobId,
    outcome: Option<(crate::store::CancelOutcome, crate::job::JobState)>,
) -> (AuditAction, AuditTarget, AuditOutcome) {
    let outcome = match outcome {
        None => AuditOutcome::Refused(format!("job {id} not found")),
        Some((crate::store::CancelOutcome::Cancelled, from)) => {
            AuditOutcome::Ok(json!({ "cancelled": true, "from": from.as_str() }))
        }
        Some((crate::store::CancelOutcome::AlreadyFinished(s), _)) => {
            AuditOutcome::Ok(json!({ "cancelled": false, "state": s.as_str() }))
        }
    };
    (AuditAction::Cancel, AuditTarget::Jobs(vec![id]), outcome)
}

/// The audit row's parts for a redrive of `which` that sent back `redriven`.
pub(crate) fn redrive_audit(
    which: &Redrive,
    redriven: &[JobId],
) -> (AuditAction, AuditTarget, AuditOutcome) {
    let kept: Vec<i64> = redriven.iter().take(MAX_TARGET_IDS).map(|i| i.0).collect();
    (
        AuditAction::Redrive,
        AuditTarget::DeadLetters(which.clone()),
        AuditOutcome::Ok(json!({ "redriven": kept, "count": redriven.len() })),
    )
}

/// A row as every backend binds it: decided here so the stores cannot differ.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuditRow {
    pub at: i64,
    pub actor_kind: &'static str,
    pub actor_token: Option<i64>,
    pub actor_name: String,
    pub address: Option<String>,
    pub action: &'static str,
    pub target: Value,
    pub result: &'static str,
    pub detail: Option<Value>,
}

impl AuditRow {
    /// The row recording `action` by `ctx` on `target` ending with `outcome` at `now`,
    /// with every string made storable and its credentials masked.
    pub(crate) fn new(
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        outcome: &AuditOutcome,
        now: Millis,
    ) -> Self {
        let detail = outcome.detail();
        Self {
            at: now.0,
            actor_kind: ctx.actor.kind(),
            actor_token: match &ctx.actor {
                Actor::Token { id, .. } => Some(id.0),
                _ => None,
            },
            actor_name: clean_name(&ctx.actor.name(), MAX_ACTOR),
            address: ctx.address.map(|a| a.to_string()),
            action: action.as_str(),
            target: storable(target.to_json()),
            result: outcome.result().as_str(),
            detail: (!detail.is_null()).then(|| storable(detail)),
        }
    }
}

/// The columns of a stored row, as each backend reads them.
#[derive(Debug, Clone)]
pub(crate) struct AuditColumns {
    pub id: i64,
    pub at: i64,
    pub actor_kind: String,
    pub actor_token: Option<i64>,
    pub actor_name: String,
    pub address: Option<String>,
    pub action: String,
    pub target: Value,
    pub result: String,
    pub detail: Option<Value>,
}

impl AuditColumns {
    /// The record, or why the row cannot be one.
    pub(crate) fn decode(self) -> Result<AuditRecord, StoreError> {
        let corrupt = |col: &str, e: String| StoreError::Corrupt(format!("audit_log.{col}: {e}"));
        let actor = match (self.actor_kind.as_str(), self.actor_token) {
            ("token", Some(id)) => Actor::Token {
                id: TokenId(id),
                name: self.actor_name,
            },
            ("cli", _) => Actor::Cli {
                who: self
                    .actor_name
                    .strip_prefix(CLI_PREFIX)
                    .unwrap_or(&self.actor_name)
                    .to_owned(),
            },
            ("system", _) => Actor::System,
            (kind, _) => {
                return Err(corrupt(
                    "actor_kind",
                    format!("`{kind}` in row {}", self.id),
                ));
            }
        };
        Ok(AuditRecord {
            id: AuditId(self.id),
            at: Millis(self.at),
            actor,
            address: self
                .address
                .map(|a| a.parse())
                .transpose()
                .map_err(|e| corrupt("address", format!("{e} in row {}", self.id)))?,
            action: self
                .action
                .parse()
                .map_err(|e| corrupt("action", format!("{e} in row {}", self.id)))?,
            target: self.target,
            result: AuditResult::parse(&self.result)?,
            detail: self.detail.unwrap_or(Value::Null),
        })
    }
}

/// A JSON value as a row keeps it: NUL characters replaced, depth bounded, credentials
/// masked in every string, and at most [`MAX_JSON_BYTES`] of text.
fn storable(mut value: Value) -> Value {
    crate::payload::make_storable(&mut value);
    crate::store::rules::redact_strings(&mut value);
    let bytes = value.to_string().len();
    if bytes > MAX_JSON_BYTES {
        return json!({ "omitted": format!("{bytes} bytes of JSON, more than the {MAX_JSON_BYTES} kept") });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{AuditQuery, MAX_AUDIT_LIMIT};

    fn ctx() -> AuditContext {
        AuditContext::new(Actor::Token {
            id: TokenId(7),
            name: "ops".into(),
        })
        .from_address("10.1.2.3".parse().unwrap())
    }

    #[test]
    fn a_row_names_the_actor_and_round_trips() {
        let row = AuditRow::new(
            &ctx(),
            AuditAction::Pause,
            &AuditTarget::Queue("mail".into()),
            &AuditOutcome::Ok(json!({"changed": true})),
            Millis(5),
        );
        assert_eq!(
            (row.actor_kind, row.actor_token, row.actor_name.as_str()),
            ("token", Some(7), "ops")
        );
        let back = AuditColumns {
            id: 1,
            at: row.at,
            actor_kind: row.actor_kind.into(),
            actor_token: row.actor_token,
            actor_name: row.actor_name,
            address: row.address,
            action: row.action.into(),
            target: row.target,
            result: row.result.into(),
            detail: row.detail,
        }
        .decode()
        .unwrap();
        assert_eq!(back.actor, ctx().actor);
        assert_eq!(back.address, ctx().address);
        assert_eq!(back.action, AuditAction::Pause);
        assert_eq!(back.target, json!({"queue": "mail"}));
        assert_eq!(back.detail, json!({"changed": true}));
        let cli = Actor::cli("root", "box\n1");
        assert_eq!(cli.name(), "cli@root@box?1");
    }

    #[test]
    fn targets_are_bounded_and_secrets_masked() {
        let many: Vec<JobId> = (0..5000).map(JobId).collect();
        let row = AuditRow::new(
            &ctx(),
            AuditAction::Cancel,
            &AuditTarget::Jobs(many),
            &AuditOutcome::Refused(format!("bad jmt_3_{} here\0", "ab".repeat(32))),
            Millis(5),
        );
        assert_eq!(row.target["jobs"]["count"], 5000);
        assert_eq!(
            row.target["jobs"]["ids"].as_array().unwrap().len(),
            MAX_TARGET_IDS
        );
        let reason = row.detail.unwrap()["reason"].as_str().unwrap().to_owned();
        assert!(!reason.contains(&"ab".repeat(32)), "{reason}");
        assert!(!reason.contains('\0'), "{reason}");
        let huge = AuditRow::new(
            &ctx(),
            AuditAction::Cancel,
            &AuditTarget::Filter(json!({"kind": "k".repeat(MAX_JSON_BYTES)})),
            &AuditOutcome::Ok(Value::Null),
            Millis(5),
        );
        assert!(huge.target["omitted"].is_string(), "{}", huge.target);
        assert_eq!(huge.detail, None);
    }

    #[test]
    fn queries_and_actions_are_checked_by_field() {
        assert!(AuditQuery::default().check().is_ok());
        for (q, field) in [
            (
                AuditQuery {
                    limit: 0,
                    ..Default::default()
                },
                "limit",
            ),
            (
                AuditQuery {
                    limit: MAX_AUDIT_LIMIT + 1,
                    ..Default::default()
                },
                "limit",
            ),
            (
                AuditQuery {
                    actor: Some("a".repeat(MAX_ACTOR + 1)),
                    ..Default::default()
                },
                "actor",
            ),
            (
                AuditQuery {
                    actor: Some("a\0b".into()),
                    ..Default::default()
                },
                "actor",
            ),
            (
                AuditQuery {
                    before: Some(AuditId(-1)),
                    ..Default::default()
                },
                "before",
            ),
        ] {
            assert!(q.check().unwrap_err().starts_with(field), "{q:?}");
        }
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), a);
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        let e = "'; DROP".parse::<AuditAction>().unwrap_err();
        assert!(e.contains("unknown action") && !e.contains("DROP"), "{e}");
    }
}
