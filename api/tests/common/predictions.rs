//! `GET /api/v1/predictions`, the predicted wait in `GET /api/v1/queues` and a job's
//! ETA, from the models a real node saved after running jobs: refused without a token
//! or without `read`, narrowed to its queues for a queue-limited token, bad parameters
//! named.

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::job::{JobState, NewJob};
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::Scope;
use serde_json::json;

use super::{Harness, job, seed};

const RUNS: usize = 20;

pub async fn predictions_show_what_a_node_learned(store: SharedStore) {
    let h = Harness::start(store, true, |_| {}).await;
    let (_, all) = h.token(&[Scope::Enqueue, Scope::Read], &[]).await;
    let (_, limited) = h.token(&[Scope::Read], &["elsewhere"]).await;
    let (_, enqueue_only) = h.token(&[Scope::Enqueue], &[]).await;

    // Refused before anything is read.
    let (status, body) =
        super::send(h.req(reqwest::Method::GET, "/api/v1/predictions", None)).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = h.get("/api/v1/predictions", &enqueue_only).await;
    assert_eq!(status, 403, "{body}");

    let mut ids = Vec::new();
    for _ in 0..RUNS {
        let (status, body) = h
            .post("/api/v1/jobs", &all, &job("sleep", json!({"ms": 10})))
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_i64().unwrap());
    }
    for id in &ids {
        h.wait_state(*id, JobState::Succeeded).await;
    }
    // What the node saves every minute, now.
    h.node.as_ref().unwrap().save_models().await.unwrap();

    let (status, p) = h.get("/api/v1/predictions", &all).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["nodes"][0]["node"], "api-test", "{p}");
    assert!(p["nodes"][0]["failure_score"].as_f64().unwrap() >= 0.0);
    let d = p["durations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "sleep" && d["queue"] == "default")
        .unwrap_or_else(|| panic!("sleep durations: {p}"));
    assert_eq!(d["runs"], RUNS, "{d}");
    let p50 = d["p50_ms"].as_f64().unwrap();
    assert!((9.0..2_000.0).contains(&p50), "a 10 ms sleep: {d}");
    let q = p["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap_or_else(|| panic!("default queue: {p}"));
    assert_eq!(q["wait_ms"].as_array().unwrap().len(), 4, "{q}");
    assert_eq!(q["breach_probability"].as_array().unwrap().len(), 4, "{q}");
    assert_eq!(p["slo_ms"], 30_000.0);
    assert!(
        p["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "sleep"),
        "{p}"
    );

    // A token of another queue sees no queue data, only node scores.
    let (status, mine) = h.get("/api/v1/predictions", &limited).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["durations"], json!([]), "{mine}");
    assert_eq!(mine["queues"], json!([]), "{mine}");
    assert_eq!(mine["budgets"], json!([]), "{mine}");
    assert_eq!(mine["nodes"][0]["node"], "api-test");

    // Another SLO; bad ones are named.
    let (status, strict) = h.get("/api/v1/predictions?slo_ms=1", &all).await;
    assert_eq!(
        (status, strict["slo_ms"].as_f64()),
        (200, Some(1.0)),
        "{strict}"
    );
    for bad in ["slo_ms=0", "slo_ms=86400001", "slo_ms=x", "other=1"] {
        let (status, body) = h.get(&format!("/api/v1/predictions?{bad}"), &all).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (_, body) = h.get("/api/v1/predictions?slo_ms=0", &all).await;
    assert_eq!(body["field"], "slo_ms", "{body}");

    // The predicted wait beside the counts.
    let (status, queues) = h.get("/api/v1/queues", &all).await;
    assert_eq!(status, 200, "{queues}");
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap();
    assert!(default["predicted_wait_ms"].as_f64().is_some(), "{default}");

    // The ETA of a queued job: after it is due, a median run later.
    let due = SystemClock.now().0 + 3_600_000;
    let queued = seed(
        &h.store,
        vec![NewJob {
            run_at: Some(Millis(due)),
            ..NewJob::new("sleep", json!({"ms": 10}))
        }],
    )
    .await[0];
    let (status, view) = h.get(&format!("/api/v1/jobs/{queued}"), &all).await;
    assert_eq!(status, 200, "{view}");
    let eta = &view["eta"];
    assert!(eta["start_at_ms"].as_i64().unwrap() >= due, "{view}");
    assert!(
        eta["finish_at_ms"].as_i64().unwrap() >= eta["start_at_ms"].as_i64().unwrap(),
        "{view}"
    );
    // A finished job has none.
    let (_, view) = h.get(&format!("/api/v1/jobs/{}", ids[0]), &all).await;
    assert!(view["eta"].is_null(), "{view}");

    // The ETA of a running job: from its start, a median run later (never before now),
    // with no wait.
    let (_, operator) = h.token(&[Scope::Operate], &[]).await;
    let before = SystemClock.now().0;
    let (status, body) = h
        .post("/api/v1/jobs", &all, &job("sleep", json!({"ms": 60_000})))
        .await;
    assert_eq!(status, 201, "{body}");
    let long = body["id"].as_i64().unwrap();
    h.wait_state(long, JobState::Running).await;
    let (status, view) = h.get(&format!("/api/v1/jobs/{long}"), &all).await;
    let asked = SystemClock.now().0;
    assert_eq!(status, 200, "{view}");
    let eta = &view["eta"];
    let start = eta["start_at_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("a running job's ETA: {view}"));
    assert!(
        (before..=asked).contains(&start),
        "started at {start}, between {before} and {asked}: {view}"
    );
    assert!(
        eta["wait_ms"].is_null(),
        "a running job waits no more: {view}"
    );
    let finish = eta["finish_at_ms"].as_i64().unwrap();
    assert!(
        finish >= start + p50 as i64 - 1 && finish + 1 >= before,
        "finish {finish} from start {start} and p50 {p50}: {view}"
    );
    let (status, body) = h
        .post(
            &format!("/api/v1/jobs/{long}/cancel"),
            &operator,
            &json!({}),
        )
        .await;
    assert!(status == 200 || status == 202, "{status}: {body}");
    h.stop().await;
}
