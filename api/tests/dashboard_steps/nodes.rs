//! Node presence in the browser: a queue holding jobs that no live node serves warns
//! "no live node serves this queue" (and a served one does not); the Nodes page shows
//! the harness node's slots, running jobs and last heartbeat, and a worker's current
//! job as a link to that job.

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::NewJob;
use serde_json::json;

use super::browser::Browser;
use super::common::{Harness, job};
use super::{shot, text_of};

const WARNING: &str = "no live node serves this queue";

pub async fn presence_views(b: &Browser, h: &Harness, admin: &str) {
    let base = &h.base;

    // 1. A queue with a job and no node serving it warns; `default` (served by the
    // harness node) does not.
    h.store
        .enqueue(
            vec![NewJob {
                queue: "unserved".into(),
                ..NewJob::new("noop", json!({}))
            }],
            SystemClock.now(),
        )
        .await
        .unwrap();
    b.goto(&format!("{base}/#/queues")).await;
    b.wait("the unserved queue's warning", || async {
        let t = text_of(b, "tr[data-queue=\"unserved\"]").await;
        t.contains(WARNING).then_some(())
    })
    .await;
    let served = text_of(b, "tr[data-queue=\"default\"]").await;
    assert!(!served.contains(WARNING), "default is served: {served}");
    assert!(
        served.contains("api-test"),
        "served by the harness node: {served}"
    );
    shot(b, "queues-unserved").await;

    // 2. A worker running a job shows it, as a link, from the node's next presence
    // refresh (every 5 s; the page polls every 5 s).
    let (status, body) = h
        .post("/api/v1/jobs", admin, &job("sleep", json!({"ms": 15_000})))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    b.goto(&format!("{base}/#/nodes")).await;
    let link = format!("a.current-job[href=\"#/jobs/{id}\"]");
    b.wait("the worker's current job", || async {
        (!b.find_all(&link).await.is_empty()).then_some(())
    })
    .await;
    let panel = text_of(b, ".panel[data-node=\"api-test\"]").await;
    assert!(panel.contains("last heartbeat"), "{panel}");
    assert!(panel.contains("slot(s)"), "{panel}");
    assert!(panel.contains("sleep"), "{panel}");
    shot(b, "nodes-current-job").await;

    // The sleep would hold a worker for the steps after this one.
    let (status, body) = h
        .post(&format!("/api/v1/jobs/{id}/cancel"), admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
}
