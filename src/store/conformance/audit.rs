//! The audit log: rows written by refusals and failures (and, in `admin`-like cases,
//! by the changes themselves), listed newest first with filters, purged by retention.

use super::*;
use crate::store::audit::{
    Actor, AuditAction, AuditContext, AuditId, AuditQuery, AuditResult, AuditTarget,
    MAX_AUDIT_LIMIT,
};
use crate::store::tokens::TokenId;

/// A caller of the API holding token `id` named `name`, from 192.0.2.7.
pub fn token_ctx(id: i64, name: &str) -> AuditContext {
    AuditContext::new(Actor::Token {
        id: TokenId(id),
        name: name.into(),
    })
    .from_address("192.0.2.7".parse().expect("an address"))
}

fn q() -> AuditQuery {
    AuditQuery::default()
}

/// Refusals and failures are recorded as such (never as successes), with who, from
/// where, what and why; the log lists newest first, pages by id without repeats, and
/// filters by action and actor, hostile filter values being data. A token's text in a
/// reason is masked, and a bad query is refused by field.
pub async fn audit_log_lists_newest_first_with_filters(s: &dyn Store) {
    assert!(s.list_audit(&q()).await.unwrap().is_empty(), "fresh store");
    let ops = token_ctx(3, "ops");
    let cli = AuditContext::new(Actor::cli("alice", "box"));
    let secret = format!("jmt_3_{}", "ab".repeat(32));
    let mut ids = Vec::new();
    for (i, (ctx, action)) in [
        (&ops, AuditAction::Cancel),
        (&cli, AuditAction::Pause),
        (&ops, AuditAction::Pause),
        (&cli, AuditAction::Cancel),
        (&ops, AuditAction::TokenRevoke),
    ]
    .into_iter()
    .enumerate()
    {
        let at = T0.plus(Duration::from_millis(i as u64));
        let target = AuditTarget::Queue(format!("q{i}"));
        let id = s
            .record_refusal(ctx, action, &target, &format!("scope; {secret}"), at)
            .await
            .unwrap();
        ids.push(id);
    }
    let failed = s
        .record_failure(
            &ops,
            AuditAction::Redrive,
            &AuditTarget::DeadLetters(Redrive::All),
            "store down",
            T0,
        )
        .await
        .unwrap();
    ids.push(failed);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");

    let all = s.list_audit(&q()).await.unwrap();
    let listed: Vec<AuditId> = all.iter().map(|r| r.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first, "newest first");
    let first = &all[5];
    assert_eq!(first.actor, ops.actor);
    assert_eq!(first.address, ops.address);
    assert_eq!(first.action, AuditAction::Cancel);
    assert_eq!(
        first.result,
        AuditResult::Refused,
        "a refusal is no success"
    );
    assert_eq!(first.at, T0);
    assert_eq!(first.target, json!({"queue": "q0"}));
    let reason = first.detail["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("scope; "), "{reason}");
    assert!(
        !reason.contains(&"ab".repeat(32)),
        "token text kept: {reason}"
    );
    assert_eq!(all[0].result, AuditResult::Failed);
    assert_eq!(all[0].detail["error"], "store down");
    assert_eq!(all[0].target, json!({"dead_letters": "all"}));
    assert_eq!(all[1].actor, ops.actor);
    assert_eq!(all[2].actor.name(), "cli@alice@box");
    assert_eq!(all[2].address, None);

    // Pages of two, each starting below the last id seen: every row once.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_audit(&AuditQuery {
                before,
                limit: 2,
                ..q()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before = page.last().map(|r| r.id);
        paged.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, newest_first, "pages cover every row once");

    let pauses = s
        .list_audit(&AuditQuery {
            action: Some(AuditAction::Pause),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(
        pauses.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let by_cli = s
        .list_audit(&AuditQuery {
            actor: Some("cli@alice@box".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(
        by_cli.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[3], ids[1]]
    );
    let both = s
        .list_audit(&AuditQuery {
            action: Some(AuditAction::Cancel),
            actor: Some("ops".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(both.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]]);
    let hostile = s
        .list_audit(&AuditQuery {
            actor: Some("ops' OR '1'='1".into()),
            ..q()
        })
        .await
        .unwrap();
    assert!(hostile.is_empty(), "a filter value is data: {hostile:?}");

    for bad in [
        AuditQuery { limit: 0, ..q() },
        AuditQuery {
            limit: MAX_AUDIT_LIMIT + 1,
            ..q()
        },
        AuditQuery {
            actor: Some(String::new()),
            ..q()
        },
    ] {
        let e = s.list_audit(&bad).await.unwrap_err().to_string();
        assert!(e.contains("limit") || e.contains("actor"), "{e}");
    }
}

/// Audit rows are kept for `retention.audit` after they were written, then purged by
/// the leader's purge like the other namespaces (at most `retention.batch` per call).
pub async fn audit_rows_are_purged_after_their_retention(s: &dyn Store) {
    use crate::store::retention::Retention;
    let hour = Duration::from_secs(3600);
    let r = Retention {
        audit: hour,
        batch: 2,
        ..Retention::default()
    };
    let ctx = token_ctx(1, "ops");
    let target = AuditTarget::Queue("mail".into());
    for i in 0..3 {
        let at = T0.plus(Duration::from_secs(i));
        s.record_refusal(&ctx, AuditAction::Pause, &target, "no", at)
            .await
            .unwrap();
    }
    let late = T0.plus(hour);
    let kept = s
        .record_refusal(&ctx, AuditAction::Resume, &target, "no", late)
        .await
        .unwrap();
    let p = s.purge(&r, T0.plus(hour / 2)).await.unwrap();
    assert_eq!(p.audit, 0, "nothing is old enough yet");
    let p = s
        .purge(&r, late.plus(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(p.audit, 2, "one batch per call");
    let p = s
        .purge(&r, late.plus(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(p.audit, 1);
    let left = s.list_audit(&q()).await.unwrap();
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), [kept]);
    let p = s.purge(&r, late.plus(hour * 2)).await.unwrap();
    assert_eq!(p.audit, 1);
    assert!(s.list_audit(&q()).await.unwrap().is_empty());
}
