//! The cases of [`crate::api_suite`] for filters, cursors and bulk actions.

use std::collections::BTreeSet;

use jobmesh::job::{JobState, NewJob};
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::Scope;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Harness, seed, send};

/// Jobs seeded for the big cases, in transactions of this many.
const SEED_BATCH: usize = 1000;

/// Percent-encodes every byte, so a value reaches the server exactly as written.
fn q(v: &str) -> String {
    v.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Seeds `n` jobs: queue `q0`..`q3` by `i % 4`, kind `even`/`odd`, priority
/// `i % 11 - 5`, payload `{"i": i, "customer": {"id": "c<i % 7>"}}`. Returns their ids
/// by `i`.
async fn seed_many(store: &SharedStore, n: usize, kind_prefix: &str) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(SEED_BATCH) {
        let jobs: Vec<NewJob> = (start..(start + SEED_BATCH).min(n))
            .map(|i| {
                let kind = if i % 2 == 0 { "even" } else { "odd" };
                let mut j = NewJob::new(
                    format!("{kind_prefix}{kind}"),
                    json!({"i": i, "customer": {"id": format!("c{}", i % 7)}}),
                );
                j.queue = format!("q{}", i % 4);
                j.priority = (i % 11) as i16 - 5;
                j
            })
            .collect();
        ids.extend(seed(store, jobs).await);
    }
    ids
}

/// Every job a listing yields, page by page through `next_cursor`; panics on a repeat.
async fn all_pages(h: &Harness, token: &str, query: &str) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut unique = BTreeSet::new();
    let mut path = format!("/api/v1/jobs?limit=1000&{query}");
    for _ in 0..100 {
        let (status, body) = h.get(&path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        for j in body["jobs"].as_array().unwrap() {
            let id = j["id"].as_i64().unwrap();
            assert!(unique.insert(id), "{query}: job {id} came twice");
            seen.push(id);
        }
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/jobs?limit=1000&{query}&cursor={c}"),
            None => return seen,
        }
    }
    panic!("{query}: more than 100 pages");
}

/// Over 10k jobs, every filter's pages, ascending and descending, hold exactly the
/// matching jobs, each once, in order.
pub async fn filters_and_cursors_over_10k_jobs(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read], &[]).await;
    let n = 10_000;
    let ids = seed_many(&h.store, n, "").await;
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<i64> {
        (0..n).filter(|&i| pred(i)).map(|i| ids[i]).collect()
    };
    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("", ids.clone()),
        ("queue=q1", expect(&|i| i % 4 == 1)),
        ("kind=odd&queue=q2", vec![]),
        ("kind=odd&queue=q3", expect(&|i| i % 4 == 3)),
        ("priority_min=3", expect(&|i| (i % 11) as i64 - 5 >= 3)),
        (
            "priority_min=-1&priority_max=1&queue=q0",
            expect(&|i| ((i % 11) as i64 - 5).abs() <= 1 && i % 4 == 0),
        ),
        ("state=available,running", ids.clone()),
        ("state=succeeded", vec![]),
    ];
    for (query, want) in &cases {
        assert_eq!(&all_pages(&h, &t, query).await, want, "{query}");
        let mut desc = want.clone();
        desc.reverse();
        let query = format!("{query}&order=desc");
        assert_eq!(all_pages(&h, &t, &query).await, desc, "{query}");
    }
    let m = format!("payload={}", q(r#"$.customer.id == "c3""#));
    assert_eq!(all_pages(&h, &t, &m).await, expect(&|i| i % 7 == 3));
    let m = format!("payload={}&queue=q1", q("$.i == 4242"));
    assert_eq!(all_pages(&h, &t, &m).await, Vec::<i64>::new());
    let m = format!("payload={}", q("$.i == 4241"));
    assert_eq!(all_pages(&h, &t, &m).await, vec![ids[4241]]);
    let (_, first) = h.get("/api/v1/jobs?limit=1", &t).await;
    let created = first["jobs"][0]["created_at"].as_i64().unwrap();
    let m = format!("created_from={created}&created_to={}", created + 3_600_000);
    assert_eq!(all_pages(&h, &t, &m).await, ids);
    let m = format!("created_to={created}");
    assert!(all_pages(&h, &t, &m).await.is_empty());
    h.stop().await;
}

/// A bulk cancel by filter covers all 10k matching jobs (not one page), in
/// transactions of 1000, and leaves every other job alone.
pub async fn bulk_cancel_by_filter_over_10k_jobs(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, op) = h.token(&[Scope::Operate], &[]).await;
    let n = 10_000;
    seed_many(&h.store, n, "bulk-").await;
    let others = seed_many(&h.store, 20, "keep-").await;
    let body = json!({"filter": {"kind": "bulk-even"}});
    let (status, out) = h.post("/api/v1/jobs/bulk/cancel", &op, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        (
            out["matched"].as_u64(),
            out["changed"].as_u64(),
            out["batches"].as_u64()
        ),
        (Some(5000), Some(5000), Some(5)),
        "{out}"
    );
    let body = json!({"filter": {"kind": "bulk-odd", "states": ["available"]}});
    let (_, out) = h.post("/api/v1/jobs/bulk/cancel", &op, &body).await;
    assert_eq!(out["changed"], 5000, "{out}");
    let counts = h.store.counts().await.unwrap();
    let cancelled: u64 = counts
        .values()
        .filter_map(|c| c.get(&JobState::Cancelled))
        .sum();
    let available: u64 = counts
        .values()
        .filter_map(|c| c.get(&JobState::Available))
        .sum();
    assert_eq!((cancelled, available), (n as u64, others.len() as u64));
    // Again: nothing left to cancel.
    let (_, out) = h.post("/api/v1/jobs/bulk/cancel", &op, &body).await;
    assert_eq!(
        (out["matched"].as_u64(), out["changed"].as_u64()),
        (Some(0), Some(0))
    );
    // Delete what was cancelled, by filter, and the listing agrees.
    let (_, out) = h
        .post(
            "/api/v1/jobs/bulk/delete",
            &op,
            &json!({"filter": {"states": ["cancelled"], "queues": ["q0", "q1"]}}),
        )
        .await;
    assert_eq!(out["changed"], 5000, "{out}");
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    assert_eq!(all_pages(&h, &reader, "state=cancelled").await.len(), 5000);
    h.stop().await;
}

/// Single retry and delete, and bulk actions, need `operate`; a token limited to
/// queues may name only those (a filter naming another, or an id of another queue's
/// job, is refused with 403 and nothing changed).
pub async fn bulk_actions_respect_scopes_and_queues(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, op) = h.token(&[Scope::Operate], &[]).await;
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let (_, emails) = h.token(&[Scope::Operate], &["emails"]).await;
    let mut e = NewJob::new("noop", json!({}));
    e.queue = "emails".into();
    let mut later = NewJob::new("noop", json!({}));
    later.run_at = Some(jobmesh::clock::Millis(
        jobmesh::clock::Clock::now(&jobmesh::clock::SystemClock).0 + 3_600_000,
    ));
    let ids = seed(&h.store, vec![e, later, NewJob::new("noop", json!({}))]).await;
    let (mail, scheduled, plain) = (ids[0], ids[1], ids[2]);

    let (status, _) = h
        .post("/api/v1/jobs/bulk/cancel", &reader, &json!({"ids": [mail]}))
        .await;
    assert_eq!(status, 403, "read is not operate");
    let (status, body) = h
        .post(
            "/api/v1/jobs/bulk/cancel",
            &emails,
            &json!({"ids": [mail, plain]}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("ids")),
        "{body}"
    );
    let (status, body) = h
        .post(
            "/api/v1/jobs/bulk/cancel",
            &emails,
            &json!({"filter": {"queues": ["emails", "default"]}}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("filter.queues")),
        "{body}"
    );
    for id in [mail, plain] {
        let job = h
            .store
            .get_job(jobmesh::job::JobId(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.state, JobState::Available, "refusals changed nothing");
    }
    // Without queues, the filter is the token's own queues.
    let (status, body) = h
        .post("/api/v1/jobs/bulk/cancel", &emails, &json!({"filter": {}}))
        .await;
    assert_eq!((status, body["changed"].as_u64()), (200, Some(1)), "{body}");
    h.wait_state(mail, JobState::Cancelled).await;
    assert_eq!(
        h.store
            .get_job(jobmesh::job::JobId(plain))
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Available
    );

    // Retry one job now; then delete it once finished (not before).
    let (status, body) = h
        .post(&format!("/api/v1/jobs/{scheduled}/retry"), &op, &json!({}))
        .await;
    assert_eq!(
        (status, body["changed"].as_bool(), body["state"].as_str()),
        (200, Some(true), Some("available")),
        "{body}"
    );
    let del = |id: i64| h.req(Method::DELETE, &format!("/api/v1/jobs/{id}"), Some(&op));
    let (status, body) = send(del(scheduled)).await;
    assert_eq!(
        (status, body["changed"].as_bool()),
        (200, Some(false)),
        "unfinished: {body}"
    );
    let (status, body) = send(del(mail)).await;
    assert_eq!(
        (status, body["changed"].as_bool(), body["state"].clone()),
        (200, Some(true), Value::Null),
        "{body}"
    );
    let (status, _) = send(del(mail)).await;
    assert_eq!(status, 404, "gone");
    let (status, _) = send(h.req(
        Method::DELETE,
        &format!("/api/v1/jobs/{plain}"),
        Some(&reader),
    ))
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(h.req(
        Method::DELETE,
        &format!("/api/v1/jobs/{plain}"),
        Some(&emails),
    ))
    .await;
    assert_eq!(status, 403, "another queue's job");
    h.stop().await;
}

/// Bad filters and bulk bodies get 400 naming the field, and SQL metacharacters in
/// every filter are data (they match nothing or exactly the job holding them).
pub async fn bad_filters_are_refused_naming_the_field(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Read, Scope::Operate], &[]).await;
    let odd = "x' OR '1'='1\"; DROP TABLE jobs; --";
    let ids = seed(
        &h.store,
        vec![
            NewJob::new("noop", json!({"who": odd, "n": 1})),
            NewJob::new("noop", json!({"who": "x", "n": 2})),
        ],
    )
    .await;
    let before = h.store.counts().await.unwrap();
    let long = "q".repeat(300);
    for (query, field) in [
        ("limit=0".to_string(), "limit"),
        ("limit=1001".to_string(), "limit"),
        ("limit=-1".to_string(), "limit"),
        ("priority_min=500".to_string(), "priority_min"),
        ("priority_min=5&priority_max=1".to_string(), "priority_min"),
        ("priority_max=x".to_string(), "priority_max"),
        ("created_from=10&created_to=5".to_string(), "created_from"),
        ("finished_from=-5".to_string(), "finished_from"),
        ("state=available,nope".to_string(), "state"),
        (format!("state={}", q("available' --")), "state"),
        ("order=sideways".to_string(), "order"),
        ("cursor=bm9wZQ".to_string(), "cursor"),
        (format!("cursor={}", q("' OR 1=1 --")), "cursor"),
        (format!("queue={long}"), "queue"),
        (format!("kind={}", q("a\u{7}b")), "kind"),
        (format!("payload={}", q("$.a")), "payload"),
        (format!("payload={}", q("$.a[0] == 1")), "payload"),
        (format!("payload={}", q("$.a') OR 1=1 -- == 1")), "payload"),
        (format!("payload={}", q("$.a == {\"b\": 1}")), "payload"),
        (
            format!("payload={}", q(&format!("$.a == \"{}\"", "x".repeat(600)))),
            "payload",
        ),
    ] {
        let (status, body) = h.get(&format!("/api/v1/jobs?{query}"), &t).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
        assert_eq!(body["type"], "urn:jobmesh:problem:invalid-field", "{query}");
    }
    // A descending cursor with an ascending order is refused too.
    let (_, page) = h.get("/api/v1/jobs?limit=1&order=desc", &t).await;
    let c = page["next_cursor"].as_str().unwrap();
    let (status, body) = h
        .get(&format!("/api/v1/jobs?cursor={c}&order=asc"), &t)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("order")),
        "{body}"
    );
    // A cursor by id does not continue a listing by finish time (a finished range).
    let (status, body) = h
        .get(&format!("/api/v1/jobs?cursor={c}&finished_from=0"), &t)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("cursor")),
        "{body}"
    );

    // Metacharacters are data: in a payload match they find exactly the job holding them.
    let m = format!("$.who == {}", serde_json::to_string(odd).unwrap());
    let (status, body) = h.get(&format!("/api/v1/jobs?payload={}", q(&m)), &t).await;
    assert_eq!(status, 200, "{body}");
    let found: Vec<i64> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(found, vec![ids[0]]);
    for query in [
        format!("payload={}", q(r#"$.who == "x' OR '1'='1""#)),
        format!("queue={}", q(odd)),
        format!("kind={}", q(odd)),
        format!("kind={}", q("%")),
    ] {
        let (status, body) = h.get(&format!("/api/v1/jobs?{query}"), &t).await;
        assert_eq!(
            (status, body["jobs"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{query}: {body}"
        );
    }

    for (path, body, field) in [
        (
            "cancel",
            json!({"filter": {"payload": "$.a"}}),
            Some("filter.payload"),
        ),
        (
            "cancel",
            json!({"filter": {"priority_max": 1000}}),
            Some("filter.priority_max"),
        ),
        (
            "cancel",
            json!({"filter": {"states": ["gone"]}}),
            Some("filter.states[0]"),
        ),
        (
            "cancel",
            json!({"filter": {"queues": [""]}}),
            Some("filter.queues"),
        ),
        ("cancel", json!({"filter": {"nope": 1}}), None),
        ("cancel", json!({"ids": []}), Some("ids")),
        ("cancel", json!({"ids": [1], "filter": {}}), None),
        ("cancel", json!({}), None),
        ("explode", json!({"ids": [1]}), Some("action")),
        ("cancel%27%20OR%201=1", json!({"ids": [1]}), Some("action")),
    ] {
        let (status, problem) = h
            .post(&format!("/api/v1/jobs/bulk/{path}"), &t, &body)
            .await;
        assert_eq!(status, 400, "{path} {body}: {problem}");
        if let Some(field) = field {
            assert_eq!(problem["field"].as_str(), Some(field), "{body}: {problem}");
        }
    }
    let many: Vec<i64> = (1..=10_001).collect();
    let (status, problem) = h
        .post("/api/v1/jobs/bulk/cancel", &t, &json!({"ids": many}))
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("ids")),
        "{problem}"
    );
    assert_eq!(h.store.counts().await.unwrap(), before, "nothing changed");
    h.stop().await;
}
