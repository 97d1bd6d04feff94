//! The audit log through the API: every mutating call writes a row naming the token,
//! refusals are recorded as refusals and change nothing, callers without a valid token
//! write nothing, rows never hold a token, and retention purges old rows.

use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::{JobId, JobState, NewJob};
use jobmesh::store::SharedStore;
use jobmesh::store::audit::AuditQuery;
use jobmesh::store::tokens::Scope;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Harness, job, seed, send};

/// Every row in the store, oldest first, as JSON (what an operator could read),
/// without those of the harness creating its tokens (actor `system`).
async fn rows(h: &Harness) -> Vec<Value> {
    let mut rows = h
        .store
        .list_audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows.iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["actor"]["kind"] != "system")
        .collect()
}

/// `(action, actor name, result)` of each row, oldest first.
fn summary(rows: &[Value]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| {
            let actor = match r["actor"]["kind"].as_str().unwrap() {
                "token" => r["actor"]["name"].as_str().unwrap().to_owned(),
                other => other.to_owned(),
            };
            (
                r["action"].as_str().unwrap().to_owned(),
                actor,
                r["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(action: &str, actor: &str, result: &str) -> (String, String, String) {
    (action.into(), actor.into(), result.into())
}

async fn delete(h: &Harness, path: &str, token: &str) -> (u16, Value) {
    send(h.req(Method::DELETE, path, Some(token))).await
}

/// Cancel, redrive, pause, resume, token create and revoke through the API each write
/// one row with the token's name, the caller's address and the result; the listing
/// pages and filters; no row (nor the listing) holds a token's text.
pub async fn audit_rows_for_every_mutating_call(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, admin) = h.token(&[Scope::Admin], &[]).await;
    let (_, op) = h.token(&[Scope::Operate], &[]).await;
    let ids = seed(&h.store, vec![NewJob::new("noop", json!({}))]).await;
    let (status, body) = h
        .post(&format!("/api/v1/jobs/{}/cancel", ids[0]), &op, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h
        .post("/api/v1/dlq/redrive", &op, &json!({"queue": "default"}))
        .await;
    assert_eq!(
        (status, body["redriven"].clone()),
        (200, json!([])),
        "{body}"
    );
    let (status, body) = h.post("/api/v1/queues/mail/pause", &op, &json!({})).await;
    assert_eq!(
        (status, body.clone()),
        (
            200,
            json!({"queue": "mail", "paused": true, "changed": true})
        ),
        "{body}"
    );
    assert_eq!(h.store.paused_queues().await.unwrap()[0].queue, "mail");
    let (_, body) = h.post("/api/v1/queues/mail/pause", &op, &json!({})).await;
    assert_eq!(body["changed"], false, "{body}");
    let (status, _) = h.post("/api/v1/queues/mail/resume", &op, &json!({})).await;
    assert_eq!(status, 200);
    assert!(h.store.paused_queues().await.unwrap().is_empty());
    let (status, created) = h
        .post(
            "/api/v1/tokens",
            &admin,
            &json!({"name": "billing", "scopes": ["enqueue"], "queues": ["emails"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let new_text = created["token"].as_str().unwrap().to_owned();
    let new_id = created["id"].as_i64().unwrap();
    // The created token works at once.
    let mut email = job("noop", json!({}));
    email["queue"] = json!("emails");
    let (status, _) = h.post("/api/v1/jobs", &new_text, &email).await;
    assert_eq!(status, 201);
    let (status, list) = h.get("/api/v1/tokens", &admin).await;
    assert_eq!(status, 200);
    assert!(
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "billing" && t["queues"] == json!(["emails"])),
        "{list}"
    );
    let (status, body) = delete(&h, &format!("/api/v1/tokens/{new_id}"), &admin).await;
    assert_eq!((status, body["revoked"].as_i64()), (200, Some(new_id)));
    let (status, _) = h.post("/api/v1/jobs", &new_text, &email).await;
    assert_eq!(status, 401, "revoked through the API, at once");

    let all = rows(&h).await;
    assert_eq!(
        summary(&all),
        [
            row("cancel", "test-operate", "ok"),
            row("redrive", "test-operate", "ok"),
            row("pause", "test-operate", "ok"),
            row("pause", "test-operate", "ok"),
            row("resume", "test-operate", "ok"),
            row("token.create", "test-admin", "ok"),
            row("token.revoke", "test-admin", "ok"),
        ],
        "one row per mutating call: {all:?}"
    );
    for r in &all {
        assert_eq!(r["address"], "127.0.0.1", "{r}");
    }
    assert_eq!(all[0]["target"]["jobs"]["ids"], json!([ids[0]]));
    assert_eq!(all[0]["detail"]["cancelled"], true);
    assert_eq!(all[2]["target"], json!({"queue": "mail"}));
    assert_eq!(all[3]["detail"]["changed"], false);
    assert_eq!(all[5]["target"]["token"]["name"], "billing");
    assert_eq!(all[6]["target"]["token"]["id"], new_id);

    // The same through GET /api/v1/audit, newest first, in pages of 4 (keyset by id),
    // with the harness's two token creations: 9 rows, each once.
    let mut seen: Vec<i64> = Vec::new();
    let mut path = "/api/v1/audit?limit=4".to_owned();
    loop {
        let (status, page) = h.get(&path, &admin).await;
        assert_eq!(status, 200, "{page}");
        let got = page["rows"].as_array().unwrap();
        assert!(got.len() <= 4);
        seen.extend(got.iter().map(|r| r["id"].as_i64().unwrap()));
        match page["next_before"].as_i64() {
            Some(before) => path = format!("/api/v1/audit?limit=4&before={before}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeat: {seen:?}"
    );
    let (_, pauses) = h.get("/api/v1/audit?action=pause", &admin).await;
    assert_eq!(pauses["rows"].as_array().unwrap().len(), 2, "{pauses}");
    let (_, by_admin) = h.get("/api/v1/audit?actor=test-admin", &admin).await;
    assert_eq!(by_admin["rows"].as_array().unwrap().len(), 2, "{by_admin}");

    // No token's text (nor its secret part) in a row or in the listing.
    let secret = &new_text[new_text.rfind('_').unwrap() + 1..];
    let (_, whole) = h.get("/api/v1/audit?limit=1000", &admin).await;
    for text in [json!(all).to_string(), whole.to_string()] {
        assert!(!text.contains(secret), "a token's secret in the audit log");
        for t in [&admin, &op] {
            assert!(!text.contains(&t[t.rfind('_').unwrap() + 1..]));
        }
    }
    h.stop().await;
}

/// A 403 (scope, queue, token management by a non-admin) and a 404 (unknown job or
/// token) are recorded as refusals with the reason, and nothing changed.
pub async fn refusals_are_audited_and_change_nothing(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let (_, mail_op) = h.token(&[Scope::Operate], &["mail"]).await;
    let ids = seed(&h.store, vec![NewJob::new("noop", json!({}))]).await;

    let (status, _) = h
        .post(
            &format!("/api/v1/jobs/{}/cancel", ids[0]),
            &reader,
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .post(
            &format!("/api/v1/jobs/{}/cancel", ids[0]),
            &mail_op,
            &json!({}),
        )
        .await;
    assert_eq!(status, 403, "the job is on another queue");
    let job = h.store.get_job(JobId(ids[0])).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Available, "nothing changed");
    let (status, _) = h
        .post("/api/v1/queues/sms/pause", &mail_op, &json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .post("/api/v1/queues/mail/pause", &reader, &json!({}))
        .await;
    assert_eq!(status, 403);
    assert!(h.store.paused_queues().await.unwrap().is_empty());
    let (status, _) = h
        .post("/api/v1/dlq/redrive", &mail_op, &json!({"all": true}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .post(
            "/api/v1/tokens",
            &mail_op,
            &json!({"name": "mine", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(status, 403);
    let tokens_before = h.store.list_tokens().await.unwrap().len();
    let (status, _) = delete(&h, "/api/v1/tokens/1", &reader).await;
    assert_eq!(status, 403);
    assert!(h.store.list_tokens().await.unwrap()[0].revoked_at.is_none());
    let (status, _) = h
        .post("/api/v1/jobs/999999999/cancel", &mail_op, &json!({}))
        .await;
    assert_eq!(status, 404);
    let (_, admin) = h.token(&[Scope::Admin], &[]).await;
    let (status, _) = delete(&h, "/api/v1/tokens/999999", &admin).await;
    assert_eq!(status, 404);
    assert_eq!(
        h.store.list_tokens().await.unwrap().len(),
        tokens_before + 1,
        "only the test's own admin token was added"
    );
    // Bad input names no target: answered 400 without a row.
    let (status, _) = h
        .post("/api/v1/jobs/abc/cancel", &mail_op, &json!({}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .post("/api/v1/queues/a%20b/pause", &mail_op, &json!({}))
        .await;
    assert_eq!(status, 400);

    let all = rows(&h).await;
    assert_eq!(
        summary(&all),
        [
            row("cancel", "test-read", "refused"),
            row("cancel", "test-operate", "refused"),
            row("pause", "test-operate", "refused"),
            row("pause", "test-read", "refused"),
            row("redrive", "test-operate", "refused"),
            row("token.create", "test-operate", "refused"),
            row("token.revoke", "test-read", "refused"),
            row("cancel", "test-operate", "refused"),
            row("token.revoke", "test-admin", "refused"),
        ],
        "every refusal, as a refusal: {all:?}"
    );
    assert!(
        all[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("operate"),
        "{}",
        all[0]
    );
    assert!(
        all[2]["detail"]["reason"].as_str().unwrap().contains("sms"),
        "{}",
        all[2]
    );
    assert!(
        all[7]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert_eq!(all[5]["target"]["token"]["name"], "mine");
    h.stop().await;
}

/// A request without a valid token (none, malformed, unknown, revoked) or from an
/// anonymous loopback reader writes no audit row: it has no identity, and anonymous
/// callers must not be able to fill the store.
pub async fn unauthenticated_calls_write_no_audit_row(store: SharedStore) {
    let h = Harness::start(store, false, |a| a.allow_anonymous_loopback_read = true).await;
    let ids = seed(&h.store, vec![NewJob::new("noop", json!({}))]).await;
    let (revoked_id, revoked) = h.token(&[Scope::Admin], &[]).await;
    h.store
        .revoke_token(
            &jobmesh::store::conformance::sys(),
            revoked_id,
            SystemClock.now(),
        )
        .await
        .unwrap();
    let before = rows(&h).await.len();
    let cancel = format!("/api/v1/jobs/{}/cancel", ids[0]);
    for token in [
        None,
        Some("jmt_1_00"),
        Some("jmt_999_0000000000000000000000000000000000000000000000000000000000000000"),
        Some(revoked.as_str()),
    ] {
        for (method, path) in [
            (Method::POST, cancel.as_str()),
            (Method::POST, "/api/v1/queues/mail/pause"),
            (Method::POST, "/api/v1/tokens"),
            (Method::DELETE, "/api/v1/tokens/1"),
        ] {
            let (status, body) = send(
                h.req(method.clone(), path, token)
                    .header("content-type", "application/json")
                    .body(json!({"name": "x", "scopes": ["admin"]}).to_string()),
            )
            .await;
            let want = if token.is_none() { 403 } else { 401 };
            assert_eq!(status, want, "{method} {path} with {token:?}: {body}");
        }
    }
    assert_eq!(rows(&h).await.len(), before, "no row without an identity");
    assert_eq!(
        h.store.get_job(JobId(ids[0])).await.unwrap().unwrap().state,
        JobState::Available
    );
    assert!(h.store.paused_queues().await.unwrap().is_empty());
    h.stop().await;
}

/// The listing's parameters are bounded and checked by name; hostile values are data;
/// the log needs `admin` on every queue.
pub async fn audit_parameters_are_checked(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, admin) = h.token(&[Scope::Admin], &[]).await;
    let (_, op) = h.token(&[Scope::Operate], &[]).await;
    let (_, mail_admin) = h.token(&[Scope::Admin], &["mail"]).await;
    h.post("/api/v1/queues/mail/pause", &op, &json!({})).await;
    for (query, field) in [
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        ("limit=-1", Some("limit")),
        ("limit=abc", Some("limit")),
        ("before=0", Some("before")),
        ("before=1e99", Some("before")),
        ("action=drop%20table", Some("action")),
        ("action=", Some("action")),
        ("actor=", Some("actor")),
        ("actor=test-operate%00", Some("actor")),
        (&format!("actor={}", "a".repeat(300)), Some("actor")),
        ("sort=id", None),
    ] {
        let (status, body) = h.get(&format!("/api/v1/audit?{query}"), &admin).await;
        assert_eq!(status, 400, "{query}: {body}");
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{query}: {body}");
        }
    }
    for actor in ["test-operate'%20OR%20'1'='1", "%25", "%F0%9F%98%80"] {
        let (status, body) = h.get(&format!("/api/v1/audit?actor={actor}"), &admin).await;
        assert_eq!(status, 200, "{actor}: {body}");
        assert_eq!(body["rows"], json!([]), "a filter value is data: {body}");
    }
    let (status, body) = h
        .get("/api/v1/audit?actor=test-operate&action=pause", &admin)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"].as_array().unwrap().len(), 1, "{body}");
    let (status, _) = h.get("/api/v1/audit", &op).await;
    assert_eq!(status, 403, "operate does not read the audit log");
    let (status, _) = h.get("/api/v1/audit", &mail_admin).await;
    assert_eq!(status, 403, "the log spans every queue");
    let (status, body) = h
        .post(
            "/api/v1/tokens",
            &admin,
            &json!({"name": "", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("name")),
        "{body}"
    );
    let many: Vec<String> = (0..101).map(|i| format!("q{i}")).collect();
    let (status, body) = h
        .post(
            "/api/v1/tokens",
            &admin,
            &json!({"name": "n", "scopes": ["read"], "queues": many}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("queues")),
        "{body}"
    );
    let (status, _) = h
        .post(
            "/api/v1/tokens",
            &admin,
            &json!({"name": "n", "scopes": ["root"]}),
        )
        .await;
    assert_eq!(status, 400);
    let long = "q".repeat(201);
    let (status, _) = h
        .post(&format!("/api/v1/queues/{long}/pause"), &op, &json!({}))
        .await;
    assert_eq!(status, 400);
    h.stop().await;
}

/// Audit rows written through the API are purged by the leader's purge once older than
/// `retention.audit`, and the listing no longer shows them.
pub async fn retention_purges_old_audit_rows(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, admin) = h.token(&[Scope::Admin], &[]).await;
    h.post("/api/v1/queues/mail/pause", &admin, &json!({}))
        .await;
    h.post("/api/v1/queues/mail/resume", &admin, &json!({}))
        .await;
    assert_eq!(rows(&h).await.len(), 2);
    let retention = jobmesh::store::retention::Retention {
        audit: Duration::from_secs(60),
        ..Default::default()
    };
    let now = SystemClock.now();
    let kept = h.store.purge(&retention, now).await.unwrap();
    assert_eq!(kept.audit, 0, "younger than the retention");
    let purged = h
        .store
        .purge(&retention, now.plus(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(
        purged.audit, 3,
        "the two calls and the harness creating the token"
    );
    let (status, body) = h.get("/api/v1/audit", &admin).await;
    assert_eq!((status, body["rows"].clone()), (200, json!([])), "{body}");
    h.stop().await;
}
