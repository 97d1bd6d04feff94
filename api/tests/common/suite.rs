//! The cases of [`crate::api_suite`].

use std::time::Duration;

use jobmesh::job::{JobState, NewJob};
use jobmesh::store::SharedStore;
use jobmesh::store::conformance::sys;
use jobmesh::store::tokens::Scope;
use reqwest::Method;
use serde_json::{Value, json};

pub use super::bulk::{
    bad_filters_are_refused_naming_the_field, bulk_actions_respect_scopes_and_queues,
    bulk_cancel_by_filter_over_10k_jobs, filters_and_cursors_over_10k_jobs,
};
use super::{Harness, job, read_sse, seed, send};

const PROBLEM: &str = "application/problem+json";

/// Enqueue through the API; a real node claims and finishes the job; GET shows it
/// succeeded, and the event stream shows its life, resumable with `Last-Event-ID`.
pub async fn enqueue_claim_finish_seen_through_get_and_sse(store: SharedStore) {
    let h = Harness::start(store, true, |_| {}).await;
    let (_, admin) = h.token(&[Scope::Admin], &[]).await;
    let (status, body) = h
        .post("/api/v1/jobs", &admin, &job("noop", json!({})))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["outcome"], "inserted");
    let id = body["id"].as_i64().unwrap();
    h.wait_state(id, JobState::Succeeded).await;
    let (status, body) = h.get(&format!("/api/v1/jobs/{id}"), &admin).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
    assert_eq!(body["attempt"], 1);

    let resp = h
        .req(Method::GET, "/api/v1/events?after=0", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(resp, |evs| {
        evs.iter()
            .any(|(_, k, d)| k == "job.succeeded" && d["job"] == id)
    })
    .await;
    let mine: Vec<&str> = events
        .iter()
        .filter(|(_, _, d)| d["job"] == id)
        .map(|(_, k, _)| k.as_str())
        .collect();
    assert_eq!(mine, ["job.enqueued", "job.claimed", "job.succeeded"]);
    for (seq, kind, data) in &events {
        assert_eq!(
            (data["seq"].as_i64(), data["kind"].as_str()),
            (Some(*seq), Some(kind.as_str()))
        );
    }
    // Resuming after the claim gives what followed it, and a job enqueued now arrives
    // on the open stream without a new request.
    let claimed = events
        .iter()
        .find(|(_, k, d)| k == "job.claimed" && d["job"] == id)
        .unwrap()
        .0;
    let resp = h
        .req(Method::GET, "/api/v1/events", Some(&admin))
        .header("last-event-id", claimed.to_string())
        .send()
        .await
        .unwrap();
    let (_, body) = h
        .post("/api/v1/jobs", &admin, &job("noop", json!({})))
        .await;
    let second = body["id"].as_i64().unwrap();
    let resumed = read_sse(resp, |evs| {
        evs.iter()
            .any(|(_, k, d)| k == "job.succeeded" && d["job"] == second)
    })
    .await;
    assert!(
        resumed.iter().all(|(seq, _, _)| *seq > claimed),
        "nothing at or before Last-Event-ID"
    );
    // Other writers' events (the node's own, on a shared store) may fall between; of
    // this job's events, the first after the claim is its success.
    let first_of_job = resumed
        .iter()
        .find(|(_, _, d)| d["job"] == id)
        .expect("the job's success follows its claim");
    assert_eq!(
        first_of_job.1, "job.succeeded",
        "the first event of the job after the claim is its success: {resumed:?}"
    );
    h.stop().await;
}

/// 401 without a token or with a bad one, 403 for a missing scope or queue (with
/// nothing stored), a revoked token refused on its next request, health open to all.
pub async fn access_control(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let (emails_id, emails) = h.token(&[Scope::Enqueue], &["emails"]).await;
    let before = h.job_count().await;

    let resp = h
        .req(Method::GET, "/api/v1/jobs", None)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], PROBLEM);
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, body) = send(h.req(Method::GET, "/api/v1/jobs", None)).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (401, Some("urn:jobmesh:problem:unauthorized"))
    );
    // The real token with its last hex digit changed (to another digit, whatever the
    // real one is).
    let last = if emails.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &emails[..emails.len() - 1]);
    assert_ne!(forged, emails);
    for bad in ["nonsense", "jmt_999999_00", forged.as_str()] {
        let (status, _) = h.get("/api/v1/jobs", bad).await;
        assert_eq!(status, 401, "{bad}");
    }
    let (status, _) = send(
        h.req(Method::GET, "/api/v1/jobs", None)
            .header("authorization", format!("Basic {emails}")),
    )
    .await;
    assert_eq!(status, 401, "only Bearer");

    let (status, body) = h
        .post("/api/v1/jobs", &reader, &job("noop", json!({})))
        .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("urn:jobmesh:problem:forbidden"))
    );
    let mut sms = job("noop", json!({}));
    sms["queue"] = json!("sms");
    let (status, body) = h.post("/api/v1/jobs", &emails, &sms).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("queue")),
        "{body}"
    );
    let (status, _) = h.get("/api/v1/jobs", &emails).await;
    assert_eq!(status, 403, "enqueue does not include read");
    assert_eq!(
        h.job_count().await,
        before,
        "refused requests stored nothing"
    );

    let mut ok = job("noop", json!({}));
    ok["queue"] = json!("emails");
    let (status, _) = h.post("/api/v1/jobs", &emails, &ok).await;
    assert_eq!(status, 201);
    assert!(
        h.store
            .revoke_token(&sys(), emails_id, jobmesh::clock::Millis(1))
            .await
            .unwrap()
    );
    let (status, body) = h.post("/api/v1/jobs", &emails, &ok).await;
    assert_eq!(status, 401, "revoked at once: {body}");
    assert_eq!(h.job_count().await, before + 1);

    for path in ["/healthz", "/readyz"] {
        let (status, _) = send(h.req(Method::GET, path, None)).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, body) = h.get("/api/v1/nope", &reader).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (404, Some("urn:jobmesh:problem:not-found"))
    );
    h.stop().await;
}

/// 413 for a body over the limit and for a batch over `max_batch`, 400 for 100k-deep
/// JSON (no stack overflow), unknown fields and wrong types named, 415 for a non-JSON
/// body, payload rules applied, and 429 with `Retry-After` once the rate is spent.
pub async fn limits(store: SharedStore) {
    let h = Harness::start(store, false, |a| {
        a.max_batch = 3;
        a.rate_per_second = 1;
        a.burst = 12;
    })
    .await;
    let (_, t) = h.token(&[Scope::Admin], &[]).await;
    let before = h.job_count().await;
    let big = json!({"kind": "noop", "payload": {"x": "a".repeat(1024 * 1024 + 1)}});
    let (status, body) = h.post("/api/v1/jobs", &t, &big).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (413, Some("urn:jobmesh:problem:body-too-large"))
    );

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = send(
        h.req(Method::POST, "/api/v1/jobs", Some(&t))
            .header("content-type", "application/json")
            .body(deep),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("urn:jobmesh:problem:malformed-json"))
    );

    let (status, body) = h
        .post("/api/v1/jobs", &t, &json!({"kind": "noop", "prio": 1}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `prio`"),
        "{body}"
    );
    let (status, body) = h
        .post(
            "/api/v1/jobs",
            &t,
            &json!({"kind": "noop", "priority": "high"}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("priority")),
        "{body}"
    );
    let (status, body) = h
        .post(
            "/api/v1/jobs",
            &t,
            &json!({"kind": "noop", "priority": 101}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("priority")),
        "{body}"
    );
    let (status, body) = h
        .post("/api/v1/jobs", &t, &job("sleep", json!({"ms": "long"})))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("payload.ms")),
        "{body}"
    );
    let (status, _) = send(
        h.req(Method::POST, "/api/v1/jobs", Some(&t))
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 415);
    let four: Vec<Value> = (0..4).map(|_| job("noop", json!({}))).collect();
    let (status, body) = h
        .post("/api/v1/jobs/batch", &t, &json!({"jobs": four}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (413, Some("jobs")),
        "{body}"
    );
    assert_eq!(h.job_count().await, before, "nothing refused was stored");

    // 10 requests above; the burst of 12 allows two more at most, then 429.
    let mut limited = None;
    for _ in 0..40 {
        let resp = h
            .req(Method::GET, "/api/v1/queues", Some(&t))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("the rate was never enforced");
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["type"], "urn:jobmesh:problem:rate-limited");
    // Health is not rate limited (nor authenticated).
    let (status, _) = send(h.req(Method::GET, "/healthz", None)).await;
    assert_eq!(status, 200);
    h.stop().await;
}

/// Filter values with SQL metacharacters are data: they match nothing, or exactly the
/// job that holds them, and never widen a listing. Pages by cursor never repeat.
pub async fn filters_treat_metacharacters_as_data(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &[]).await;
    let odd = "k' OR '1'='1; DROP TABLE jobs; --";
    let mut jobs: Vec<NewJob> = (0..5).map(|_| NewJob::new("noop", json!({}))).collect();
    jobs.push(NewJob::new(odd, json!({})));
    let ids = seed(&h.store, jobs).await;
    let q = |v: &str| {
        let mut s = String::new();
        for b in v.bytes() {
            s.push_str(&format!("%{b:02X}"));
        }
        s
    };
    for param in ["queue", "kind"] {
        let (status, body) = h
            .get(&format!("/api/v1/jobs?{param}={}", q("x' OR '1'='1")), &t)
            .await;
        assert_eq!(
            (status, body["jobs"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{param}: {body}"
        );
    }
    let (status, body) = h.get(&format!("/api/v1/jobs?kind={}", q(odd)), &t).await;
    assert_eq!(status, 200);
    let found: Vec<i64> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(found, vec![ids[5]]);
    let (status, body) = h
        .get(&format!("/api/v1/jobs?state={}", q("available' --")), &t)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("state")),
        "{body}"
    );
    let (status, body) = h
        .get(&format!("/api/v1/jobs?cursor={}", q("1 OR 1=1")), &t)
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("cursor")));
    let (status, body) = h.get("/api/v1/jobs/1%20OR%201=1", &t).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("id")));

    let mut seen = Vec::new();
    let mut path = "/api/v1/jobs?limit=2".to_string();
    loop {
        let (status, body) = h.get(&path, &t).await;
        assert_eq!(status, 200);
        seen.extend(
            body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_i64().unwrap()),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every job once, in id order");
    h.stop().await;
}

/// A retried request with the same `Idempotency-Key` gets the first answer (and one
/// job is stored); the key reused for another body is refused; keys are per token.
pub async fn idempotent_retries(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Enqueue, Scope::Read], &[]).await;
    let (_, other) = h.token(&[Scope::Enqueue], &[]).await;
    let before = h.job_count().await;
    let body = job("noop", json!({"order": 17}));
    let post = |token: &str, body: &Value| {
        h.req(Method::POST, "/api/v1/jobs", Some(token))
            .header("content-type", "application/json")
            .header("idempotency-key", "order-17")
            .body(body.to_string())
    };
    let first = post(&t, &body).send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = serde_json::from_slice(&first.bytes().await.unwrap()).unwrap();
    let again = post(&t, &body).send().await.unwrap();
    assert_eq!(again.status(), 201, "the first answer, status included");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = serde_json::from_slice(&again.bytes().await.unwrap()).unwrap();
    assert_eq!(again, first);
    assert_eq!(h.job_count().await, before + 1, "the retry stored nothing");

    let (status, problem) = send(post(&t, &job("noop", json!({"order": 18})))).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("urn:jobmesh:problem:idempotency-mismatch"))
    );
    let (status, other_answer) = send(post(&other, &body)).await;
    assert_eq!(status, 201, "another token's key is its own");
    assert_ne!(other_answer["id"], first["id"]);
    // A refusal is an answer too: the retry gets the same refusal.
    let bad = job("no-such-kind", json!({}));
    let refuse = |key: &'static str| {
        h.req(Method::POST, "/api/v1/jobs", Some(&t))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(bad.to_string())
    };
    let (s1, p1) = send(refuse("bad-1")).await;
    let (s2, p2) = send(refuse("bad-1")).await;
    assert_eq!((s1, s2), (422, 422));
    assert_eq!(p1, p2);
    let (status, _) = send(
        h.req(Method::POST, "/api/v1/jobs", Some(&t))
            .header("content-type", "application/json")
            .header("idempotency-key", "has space")
            .body(body.to_string()),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(h.job_count().await, before + 2);
    h.stop().await;
}

/// A batch stores what passes and reports each refused job with its reason (nothing
/// stored for it); a workflow is stored parents first with its links, or not at all.
pub async fn batches_and_workflows(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h
        .token(&[Scope::Enqueue, Scope::Read], &["default", "emails"])
        .await;
    let before = h.job_count().await;
    let mut wrong_queue = job("noop", json!({}));
    wrong_queue["queue"] = json!("sms");
    let mut orphan = job("noop", json!({}));
    orphan["depends_on"] = json!([987_654_321]);
    let batch = json!({"jobs": [
        job("noop", json!({})),
        job("nope", json!({})),
        wrong_queue,
        orphan,
        job("sleep", json!({"ms": 1})),
    ]});
    let (status, body) = h.post("/api/v1/jobs/batch", &t, &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["refused"].as_u64()),
        (Some(2), Some(3))
    );
    let items = body["items"].as_array().unwrap();
    let fields: Vec<Option<&str>> = items
        .iter()
        .map(|i| i["problem"]["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            None,
            Some("jobs[1].kind"),
            Some("jobs[2].queue"),
            Some("jobs[3].depends_on"),
            None
        ]
    );
    assert!(items[0]["id"].is_i64() && items[4]["id"].is_i64());
    assert_eq!(
        h.job_count().await,
        before + 2,
        "nothing stored for the refused"
    );

    let flow = json!({"steps": [
        {"name": "b", "kind": "noop", "after": ["a"]},
        {"name": "a", "kind": "noop"},
    ]});
    let (status, body) = h.post("/api/v1/workflows", &t, &flow).await;
    assert_eq!(status, 201, "{body}");
    let names: Vec<&str> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "parents first");
    let (a, b) = (
        body["jobs"][0]["id"].as_i64().unwrap(),
        body["jobs"][1]["id"].as_i64().unwrap(),
    );
    let (_, child) = h.get(&format!("/api/v1/jobs/{b}"), &t).await;
    assert_eq!(
        (child["state"].as_str(), child["depends_on"].clone()),
        (Some("waiting"), json!([a]))
    );
    let cycle = json!({"steps": [
        {"name": "a", "kind": "noop", "after": ["b"]},
        {"name": "b", "kind": "noop", "after": ["a"]},
    ]});
    let (status, body) = h.post("/api/v1/workflows", &t, &cycle).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("steps")),
        "{body}"
    );
    let bad_step = json!({"steps": [
        {"name": "a", "kind": "noop"},
        {"name": "b", "kind": "sleep", "payload": {"ms": -1}, "after": ["a"]},
    ]});
    let (status, body) = h.post("/api/v1/workflows", &t, &bad_step).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("steps[1].payload.ms")),
        "{body}"
    );
    assert_eq!(
        h.job_count().await,
        before + 4,
        "refused workflows stored nothing"
    );
    h.stop().await;
}

/// Cancel and redrive through the API, with their scopes.
pub async fn cancel_and_redrive(store: SharedStore) {
    let h = Harness::start(store, true, |_| {}).await;
    let (_, op) = h.token(&[Scope::Operate, Scope::Enqueue], &[]).await;
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let mut later = job("noop", json!({}));
    later["run_at"] = json!(
        {
            use jobmesh::clock::Clock;
            jobmesh::clock::SystemClock.now().0
        } + 3_600_000
    );
    let (_, body) = h.post("/api/v1/jobs", &op, &later).await;
    let id = body["id"].as_i64().unwrap();
    let (status, _) = h
        .post(&format!("/api/v1/jobs/{id}/cancel"), &reader, &json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = h
        .post(&format!("/api/v1/jobs/{id}/cancel"), &op, &json!({}))
        .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    let (_, body) = h
        .post(&format!("/api/v1/jobs/{id}/cancel"), &op, &json!({}))
        .await;
    assert_eq!(body["outcome"], "already_finished");
    let (status, _) = h
        .post("/api/v1/jobs/999999999/cancel", &op, &json!({}))
        .await;
    assert_eq!(status, 404);

    let mut failing = job("fail", json!({"retryable": false}));
    failing["max_attempts"] = json!(1);
    let (_, body) = h.post("/api/v1/jobs", &op, &failing).await;
    let dead = body["id"].as_i64().unwrap();
    h.wait_state(dead, JobState::Discarded).await;
    let (status, body) = h
        .post(
            "/api/v1/dlq/redrive",
            &op,
            &json!({"ids": [dead], "all": true}),
        )
        .await;
    assert_eq!(status, 400, "one of ids, queue, all: {body}");
    let (status, body) = h
        .post("/api/v1/dlq/redrive", &op, &json!({"ids": [dead]}))
        .await;
    assert_eq!(
        (status, body["redriven"].clone()),
        (200, json!([dead])),
        "{body}"
    );
    h.wait_state(dead, JobState::Discarded).await;
    let (status, body) = h.get("/api/v1/queues", &op).await;
    assert_eq!(status, 200);
    let default = body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap();
    assert_eq!(default["counts"]["cancelled"], 1, "{body}");
    assert_eq!(default["counts"]["discarded"], 1, "{body}");
    h.stop().await;
}

/// The OpenAPI document is 3.1 and lists every route with its methods.
pub async fn openapi_lists_every_route(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &[]).await;
    let (status, doc) = h.get("/api/v1/openapi.json", &t).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let expected = [
        ("/api/v1/jobs", "post"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/batch", "post"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}", "delete"),
        ("/api/v1/jobs/{id}/cancel", "post"),
        ("/api/v1/jobs/{id}/retry", "post"),
        ("/api/v1/jobs/bulk/{action}", "post"),
        ("/api/v1/workflows", "post"),
        ("/api/v1/dlq/redrive", "post"),
        ("/api/v1/queues", "get"),
        ("/api/v1/nodes", "get"),
        ("/api/v1/mesh", "get"),
        ("/api/v1/queues/{queue}/pause", "post"),
        ("/api/v1/queues/{queue}/resume", "post"),
        ("/api/v1/periodic", "get"),
        ("/api/v1/periodic", "post"),
        ("/api/v1/periodic/{name}", "delete"),
        ("/api/v1/periodic/{name}/pause", "post"),
        ("/api/v1/periodic/{name}/resume", "post"),
        ("/api/v1/periodic/{name}/trigger", "post"),
        ("/api/v1/tokens", "get"),
        ("/api/v1/tokens", "post"),
        ("/api/v1/tokens/{id}", "delete"),
        ("/api/v1/audit", "get"),
        ("/api/v1/events", "get"),
        ("/api/v1/openapi.json", "get"),
        ("/api/v1/me", "get"),
        ("/api/v1/jobs/{id}/graph", "get"),
        ("/api/v1/jobs/bulk/{action}/count", "post"),
        ("/api/v1/stats/latency", "get"),
        ("/api/v1/stats/throughput", "get"),
        ("/api/v1/stats/incidents", "get"),
        ("/api/v1/dlq/groups", "get"),
        ("/api/v1/predictions", "get"),
        ("/metrics", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut listed = 0;
    for (path, item) in paths {
        listed += item.as_object().unwrap().len();
        let _ = path;
    }
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert_eq!(
        listed,
        expected.len(),
        "no route beyond those: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every documented route answers (not 404 or 405).
    for (path, method) in expected {
        let path = path.replace("{id}", "1").replace("{queue}", "q1");
        let m = match method {
            "get" => Method::GET,
            "delete" => Method::DELETE,
            _ => Method::POST,
        };
        // Not JSON: the event stream, and the metrics (api/tests/metrics.rs).
        if path == "/api/v1/events" || path == "/metrics" {
            continue;
        }
        let (status, _) = send(
            h.req(m, &path, Some(&t))
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
        // A job that does not exist, and the mesh of a process without one, are 404.
        assert!(
            ![404, 405].contains(&status) || path.contains("/1") || path == "/api/v1/mesh",
            "{method} {path}: {status}"
        );
    }
    h.stop().await;
}

/// The token appears nowhere in the log, whatever the request did (a success, a
/// refusal, a revoked token).
pub async fn tokens_stay_out_of_the_log(store: SharedStore) {
    let log = super::captured_log();
    let h = Harness::start(store, false, |_| {}).await;
    let (id, t) = h.token(&[Scope::Enqueue], &[]).await;
    h.post("/api/v1/jobs", &t, &job("noop", json!({}))).await;
    h.post("/api/v1/jobs", &t, &job("nope", json!({}))).await;
    h.get("/api/v1/jobs", &t).await;
    h.store
        .revoke_token(&sys(), id, jobmesh::clock::Millis(1))
        .await
        .unwrap();
    let (status, body) = h.post("/api/v1/jobs", &t, &job("noop", json!({}))).await;
    assert_eq!(status, 401);
    assert!(
        !body.to_string().contains(&t[4..]),
        "not in the problem either"
    );
    h.stop().await;
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("api request"),
        "the requests were logged: {text}"
    );
    let secret = &t[t.rfind('_').unwrap() + 1..];
    assert!(!text.contains(secret), "the token's secret is in the log");
}

/// A non-loopback address with no live token is refused unless allowed; anonymous
/// loopback reads work only when enabled, and never write.
pub async fn startup_rules_and_anonymous_loopback_read(store: SharedStore) {
    let config = |allow: bool| jobmesh::config::ApiSection {
        listen: Some("0.0.0.0:0".parse().expect("address")),
        allow_without_tokens: allow,
        ..Default::default()
    };
    let registry = std::sync::Arc::new(jobmesh::handler::Registry::new());
    let err = jobmesh_api::ApiServer::start(store.clone(), registry.clone(), config(false), None)
        .await
        .unwrap_err();
    assert!(matches!(err, jobmesh_api::StartError::NoTokens(_)), "{err}");
    let server = jobmesh_api::ApiServer::start(store.clone(), registry, config(true), None)
        .await
        .unwrap();
    server.shutdown(Duration::from_secs(1)).await;

    let h = Harness::start(store, false, |a| a.allow_anonymous_loopback_read = true).await;
    let (status, _) = send(h.req(Method::GET, "/api/v1/jobs", None)).await;
    assert_eq!(status, 200, "anonymous loopback read");
    let (status, _) = send(
        h.req(Method::POST, "/api/v1/jobs", None)
            .header("content-type", "application/json")
            .body(job("noop", json!({})).to_string()),
    )
    .await;
    assert_eq!(status, 403, "anonymous callers only read");
    let (status, _) = h.get("/api/v1/jobs", "jmt_1_bad").await;
    assert_eq!(status, 401, "a bad token is not anonymous");
    h.stop().await;
}
