//! Single-job enqueues from concurrent requests share store transactions
//! (`jobmesh_api::coalesce`); each request still gets the answer it would get alone.

use futures::future::join_all;
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::Scope;
use serde_json::{Value, json};

use super::{Harness, job};

/// Forty requests at once: twenty share a unique key (one stores it, the others are
/// told it is a duplicate of that job), one names a parent that does not exist (it
/// alone is refused), the rest are stored one each.
pub async fn concurrent_single_enqueues_answer_each_request(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (_, t) = h.token(&[Scope::Enqueue], &[]).await;
    let before = h.job_count().await;
    let mut bodies: Vec<Value> = Vec::new();
    for _ in 0..20 {
        let mut same = job("noop", json!({}));
        same["unique_key"] = json!("grouped-same");
        bodies.push(same);
    }
    let mut orphan = job("noop", json!({}));
    orphan["depends_on"] = json!([999_999_999]);
    bodies.push(orphan);
    for i in 0..19 {
        bodies.push(job("noop", json!({ "n": i })));
    }
    let answers = join_all(bodies.iter().map(|b| h.post("/api/v1/jobs", &t, b))).await;

    let same = &answers[..20];
    let inserted: Vec<_> = same.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(
        inserted.len(),
        1,
        "one request stores the unique key: {same:?}"
    );
    let id = &inserted[0].1["id"];
    for (status, body) in same {
        assert!(*status == 201 || *status == 200, "{status}: {body}");
        assert_eq!(&body["id"], id, "every duplicate names the stored job");
    }
    let (status, problem) = &answers[20];
    assert_eq!(*status, 400, "the unknown parent is refused: {problem}");
    assert_eq!(problem["type"], "urn:jobmesh:problem:invalid-field");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("999999999")
    );
    let mut ids = Vec::new();
    for (status, body) in &answers[21..] {
        assert_eq!(*status, 201, "{body}");
        ids.push(body["id"].as_i64().unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 19, "each plain request stored its own job");
    assert_eq!(h.job_count().await, before + 20);
    h.stop().await;
}
