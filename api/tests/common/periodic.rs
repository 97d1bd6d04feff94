//! `/api/v1/periodic` against a real node (it holds the `periodic` lease and enqueues
//! ticks) on every backend: create with every field checked, list with next run times,
//! pause (no job for its ticks), resume, trigger (exactly one job), delete (ticks
//! stop), scopes and queues, and an audit row per call.

use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::JobState;
use jobmesh::periodic::{PeriodicJob, Schedule};
use jobmesh::store::audit::{AuditAction, AuditQuery, AuditResult};
use jobmesh::store::tokens::Scope;
use jobmesh::store::{JobFilter, SharedStore};
use serde_json::{Value, json};

use super::{Harness, WAIT, send};

/// The unique keys of the jobs whose key starts with `prefix`.
async fn keys(store: &SharedStore, prefix: &str) -> Vec<String> {
    store
        .list_jobs(&JobFilter {
            limit: 10_000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| j.unique_key)
        .filter(|k| k.starts_with(prefix))
        .collect()
}

/// Polls until at least `n` jobs have keys starting with `prefix`.
async fn wait_jobs(store: &SharedStore, prefix: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let k = keys(store, prefix).await;
        if k.len() >= n {
            return k;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} jobs with keys {prefix}*, not {n}, within {WAIT:?}",
            k.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn every_second(name: &str) -> Value {
    json!({"name": name, "schedule": "every 1s", "kind": "noop", "payload": {"from": name}})
}

async fn delete(h: &Harness, path: &str, token: &str) -> (u16, Value) {
    send(h.req(reqwest::Method::DELETE, path, Some(token))).await
}

/// Every field of a create is checked, each refusal naming it, and nothing is stored;
/// a queue-limited token acts and sees only on its queues.
pub async fn periodic_create_checks_every_field(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, ops) = h.token(&[Scope::Operate], &[]).await;
    let (_, read) = h.token(&[Scope::Read], &[]).await;
    let (_, mail_only) = h.token(&[Scope::Operate], &["mail"]).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = every_second("p");
        f(&mut v);
        v
    };
    for (body, status, field) in [
        (with(&|v| v["name"] = json!("a b")), 400, "name"),
        (with(&|v| v["name"] = json!("n".repeat(101))), 400, "name"),
        (
            with(&|v| v["schedule"] = json!("99 * * * *")),
            400,
            "schedule",
        ),
        (
            with(&|v| v["schedule"] = json!("every 10ms")),
            400,
            "schedule",
        ),
        (
            with(&|v| v["schedule"] = json!("0 0 30 2 *")),
            400,
            "schedule",
        ),
        (
            with(&|v| v["timezone"] = json!("Mars/Olympus")),
            400,
            "timezone",
        ),
        (
            with(&|v| v["backfill_ms"] = json!(1000)),
            400,
            "backfill_ms",
        ),
        (
            with(&|v| {
                v["policy"] = json!("catch_up");
                v["backfill_ms"] = json!(30u64 * 86_400_000);
            }),
            400,
            "backfill_ms",
        ),
        (with(&|v| v["policy"] = json!("sometimes")), 400, "policy"),
        (with(&|v| v["surprise"] = json!(1)), 400, ""),
        (with(&|v| v["kind"] = json!("nope")), 422, "kind"),
        (
            with(&|v| {
                v["kind"] = json!("sleep");
                v["payload"] = json!({"ms": "long"});
            }),
            422,
            "",
        ),
        (with(&|v| v["priority"] = json!(500)), 422, "priority"),
        // Over the kind's payload limit (256 KiB), then over the body limit (1 MiB).
        (
            with(&|v| v["payload"] = json!({"big": "x".repeat(300 * 1024)})),
            422,
            "",
        ),
        (
            with(&|v| v["payload"] = json!({"big": "x".repeat(1024 * 1024 + 1)})),
            413,
            "",
        ),
    ] {
        let (s, p) = h.post("/api/v1/periodic", &ops, &body).await;
        assert_eq!(s, status, "{p}");
        assert!(
            p["field"].as_str().unwrap_or_default().contains(field),
            "{field}: {p}"
        );
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:jobmesh:problem:")
        );
    }
    let (s, _) = h.post("/api/v1/periodic", &read, &every_second("p")).await;
    assert_eq!(s, 403, "creating needs operate");
    let (s, p) = h
        .post("/api/v1/periodic", &mail_only, &every_second("p"))
        .await;
    assert_eq!((s, p["field"].as_str()), (403, Some("queue")), "{p}");
    assert!(
        h.store.schedules().await.unwrap().is_empty(),
        "nothing stored"
    );
    let (s, list) = h.get("/api/v1/periodic", &read).await;
    assert_eq!((s, list["schedules"].as_array().unwrap().len()), (200, 0));

    // A token limited to `mail` creates on `mail`, sees only those schedules, and may
    // not pause another queue's.
    let mut on_mail = every_second("mailer");
    on_mail["queue"] = json!("mail");
    let (s, p) = h.post("/api/v1/periodic", &mail_only, &on_mail).await;
    assert_eq!(s, 201, "{p}");
    let (s, _) = h
        .post("/api/v1/periodic", &ops, &every_second("other"))
        .await;
    assert_eq!(s, 201);
    let names = |list: &Value| -> Vec<String> {
        list["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&h.get("/api/v1/periodic", &mail_only).await.1),
        ["mailer"]
    );
    assert_eq!(
        names(&h.get("/api/v1/periodic", &read).await.1),
        ["mailer", "other"]
    );
    let (s, p) = h
        .post("/api/v1/periodic/other/pause", &mail_only, &json!({}))
        .await;
    assert_eq!((s, p["field"].as_str()), (403, Some("queue")), "{p}");
    let (s, _) = h
        .post("/api/v1/periodic/mailer/pause", &mail_only, &json!({}))
        .await;
    assert_eq!(s, 200);
    h.stop().await;
}

/// The life of a schedule with a node running it: its ticks run; paused, none runs
/// (while another schedule keeps ticking); resumed, they run again; a trigger is one
/// job; deleted, its ticks stop. Each call is in the audit log.
pub async fn periodic_schedules_run_pause_trigger_delete(store: SharedStore) {
    let h = Harness::start(store, true, |_| {}).await;
    let (_, ops) = h.token(&[Scope::Operate], &[]).await;
    let (_, read) = h.token(&[Scope::Read], &[]).await;
    let before = SystemClock.now().0;
    let (s, made) = h
        .post("/api/v1/periodic", &ops, &every_second("beat"))
        .await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(
        (made["origin"].as_str(), made["paused"].as_bool()),
        (Some("api"), Some(false))
    );
    let (s, p) = h
        .post("/api/v1/periodic", &ops, &every_second("beat"))
        .await;
    assert_eq!((s, p["field"].as_str()), (409, Some("name")), "{p}");
    let (s, list) = h.get("/api/v1/periodic", &read).await;
    assert_eq!(s, 200);
    let beat = &list["schedules"][0];
    assert_eq!(beat["name"], "beat");
    let next = beat["next_run"].as_i64().expect("a next run");
    assert!(
        next > before && next <= SystemClock.now().0 + 1000,
        "{beat}"
    );

    // Its ticks run (the leader reads the store within a renewal period).
    wait_jobs(&h.store, "periodic:beat:", 2).await;

    let (s, p) = h
        .post("/api/v1/periodic/beat/pause", &ops, &json!({}))
        .await;
    assert_eq!((s, p["changed"].as_bool()), (200, Some(true)), "{p}");
    let paused = keys(&h.store, "periodic:beat:").await.len();
    let (_, list) = h.get("/api/v1/periodic", &read).await;
    assert!(list["schedules"][0]["next_run"].is_null(), "{list}");
    // A second schedule ticking three times shows the leader ran rounds past the
    // paused schedule's ticks.
    h.post("/api/v1/periodic", &ops, &every_second("ctl")).await;
    wait_jobs(&h.store, "periodic:ctl:", 3).await;
    assert_eq!(
        keys(&h.store, "periodic:beat:").await.len(),
        paused,
        "a paused schedule gets no job for its ticks"
    );

    let (s, p) = h
        .post("/api/v1/periodic/beat/resume", &ops, &json!({}))
        .await;
    assert_eq!((s, p["changed"].as_bool()), (200, Some(true)), "{p}");
    wait_jobs(&h.store, "periodic:beat:", paused + 1).await;

    let (s, t) = h
        .post("/api/v1/periodic/beat/trigger", &ops, &json!({}))
        .await;
    assert_eq!((s, t["duplicate"].as_bool()), (201, Some(false)), "{t}");
    h.wait_state(t["id"].as_i64().unwrap(), JobState::Succeeded)
        .await;
    let triggered = keys(&h.store, "periodic-trigger:beat:").await;
    assert_eq!(triggered.len(), 1, "one trigger, one job: {triggered:?}");
    // A retried trigger with the same Idempotency-Key enqueues nothing more.
    let retry = || {
        h.req(
            reqwest::Method::POST,
            "/api/v1/periodic/ctl/trigger",
            Some(&ops),
        )
        .header("idempotency-key", "trigger-ctl-1")
    };
    let (s1, a) = send(retry()).await;
    let (s2, b) = send(retry()).await;
    assert_eq!((s1, s2, a["id"].clone()), (201, 201, b["id"].clone()));
    assert_eq!(keys(&h.store, "periodic-trigger:ctl:").await.len(), 1);

    let (s, p) = delete(&h, "/api/v1/periodic/beat", &ops).await;
    assert_eq!(s, 200, "{p}");
    let deleted = keys(&h.store, "periodic:beat:").await.len();
    let ctl = keys(&h.store, "periodic:ctl:").await.len();
    wait_jobs(&h.store, "periodic:ctl:", ctl + 3).await;
    assert_eq!(
        keys(&h.store, "periodic:beat:").await.len(),
        deleted,
        "a deleted schedule's ticks stop"
    );
    let (s, _) = delete(&h, "/api/v1/periodic/beat", &ops).await;
    assert_eq!(s, 404);
    let (s, _) = h
        .post("/api/v1/periodic/beat/trigger", &ops, &json!({}))
        .await;
    assert_eq!(s, 404);
    let (s, p) = h
        .post("/api/v1/periodic/a%20b/pause", &ops, &json!({}))
        .await;
    assert_eq!((s, p["field"].as_str()), (400, Some("name")), "{p}");

    // A config schedule is the config's to delete.
    let cfg = PeriodicJob::new(
        "from-config",
        Schedule::parse("every 1h").unwrap(),
        jobmesh::job::NewJob::new("noop", json!({})),
    );
    h.store
        .sync_config_schedules(&[cfg], SystemClock.now())
        .await
        .unwrap();
    let (s, p) = delete(&h, "/api/v1/periodic/from-config", &ops).await;
    assert_eq!(s, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("config"), "{p}");
    let (s, _) = h
        .post("/api/v1/periodic/from-config/pause", &read, &json!({}))
        .await;
    assert_eq!(s, 403, "pausing needs operate");

    let results = |action| {
        let store = h.store.clone();
        async move {
            let mut rows = store
                .list_audit(&AuditQuery {
                    action: Some(action),
                    ..AuditQuery::default()
                })
                .await
                .unwrap();
            rows.reverse();
            rows.into_iter()
                .map(|r| (r.actor.name(), r.result))
                .collect::<Vec<_>>()
        }
    };
    let ok = |n: &str| (n.to_string(), AuditResult::Ok);
    let refused = |n: &str| (n.to_string(), AuditResult::Refused);
    assert_eq!(
        results(AuditAction::PeriodicCreate).await,
        [
            ok("test-operate"),
            refused("test-operate"),
            ok("test-operate")
        ]
    );
    assert_eq!(
        results(AuditAction::PeriodicPause).await,
        [ok("test-operate"), refused("test-read")]
    );
    assert_eq!(
        results(AuditAction::PeriodicResume).await,
        [ok("test-operate")]
    );
    assert_eq!(
        results(AuditAction::PeriodicTrigger).await,
        [
            ok("test-operate"),
            ok("test-operate"),
            refused("test-operate")
        ]
    );
    assert_eq!(
        results(AuditAction::PeriodicDelete).await,
        [
            ok("test-operate"),
            refused("test-operate"),
            refused("test-operate")
        ]
    );
    h.stop().await;
}
