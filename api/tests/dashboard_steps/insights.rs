//! The dashboard's cluster-wide views in the browser: queue wait and run time read from
//! the store (jobs finished by no node of this test), the workflow graph with children
//! and its cut, dead letters grouped over every dead job with a group redriven, and the
//! "all matching" confirmation giving the number of jobs the action touches.

use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{ClaimRequest, Completion, JobId, JobState, NewJob, NodeId, Outcome, WorkerId};
use jobmesh::store::SharedStore;
use serde_json::json;

use super::browser::Browser;
use super::common::Harness;
use super::{assert_inert, shot, text_of};

/// Claims every available job of `queue` through the store (no node serves it) as of
/// `now`.
async fn claim_all(store: &SharedStore, queue: &str, now: Millis) -> Vec<jobmesh::job::ClaimedJob> {
    let mut all = Vec::new();
    loop {
        let got = store
            .claim(&ClaimRequest {
                queues: vec![queue.into()],
                worker: WorkerId("elsewhere/w0".into()),
                node: NodeId("elsewhere".into()),
                limit: 500,
                lease_for: Duration::from_secs(300),
                now,
            })
            .await
            .unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Enqueues `n` jobs of `kind` on `queue` at `at` and returns their ids.
async fn enqueue(store: &SharedStore, queue: &str, kind: &str, n: usize, at: Millis) -> Vec<i64> {
    let jobs = (0..n)
        .map(|_| NewJob {
            queue: queue.into(),
            ..NewJob::new(kind, json!({}))
        })
        .collect();
    store
        .enqueue(jobs, at)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id().0)
        .collect()
}

/// Dead-letters every available job of `queue`, with `reason(i)` as the error.
async fn kill_all(store: &SharedStore, queue: &str, at: Millis, reason: impl Fn(usize) -> String) {
    let claimed = claim_all(store, queue, at).await;
    let done: Vec<Completion> = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| Completion {
            lease: c.lease.clone(),
            outcome: Outcome::Discard { error: reason(i) },
            started_at: at,
            finished_at: at,
        })
        .collect();
    for chunk in done.chunks(500) {
        store.complete(chunk.to_vec()).await.unwrap();
    }
}

/// 37 jobs enqueued twenty minutes ago on queue `past` and finished a minute later by
/// a "node" this test does not run: 30 succeeded, 7 dead-lettered.
pub async fn run_in_the_past(store: &SharedStore) {
    let past = Millis(SystemClock.now().0 - 20 * 60_000);
    enqueue(store, "past", "noop", 37, past).await;
    let claimed = claim_all(store, "past", past).await;
    assert_eq!(claimed.len(), 37);
    let done = claimed
        .iter()
        .enumerate()
        .map(|(i, c)| Completion {
            lease: c.lease.clone(),
            outcome: if i < 7 {
                Outcome::Discard {
                    error: "twenty minutes ago".into(),
                }
            } else {
                Outcome::Succeeded { output: None }
            },
            started_at: past,
            finished_at: Millis(past.0 + 60_000),
        })
        .collect();
    store.complete(done).await.unwrap();
    // Incidents of that time: two rescues, a worker crash and its restart.
    let ev = |kind: EventKind| LifecycleEvent::new(kind, Millis(past.0 + 30_000));
    store
        .record_events(vec![
            ev(EventKind::JobRescued),
            ev(EventKind::JobRescued),
            ev(EventKind::WorkerCrashed),
            ev(EventKind::WorkerRestarted),
        ])
        .await
        .unwrap();
}

/// Waits until `script` returns an array (not null) and gives its numbers.
async fn numbers(b: &Browser, what: &str, script: &str) -> Vec<f64> {
    b.wait(what, || async {
        b.exec(script, json!([]))
            .await
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap()).collect())
    })
    .await
}

pub async fn cluster_views(b: &Browser, h: &Harness, admin: &str) {
    let base = &h.base;
    let store = &h.store;

    // 1. Queue wait and run time from the store: five jobs due 4 s before they started
    // and running 3 s, finished through the store by a "node" this test does not run,
    // so no histogram of the serving node ever saw them.
    let now = SystemClock.now();
    let due = Millis(now.0 - 8_000);
    enqueue(store, "timed", "noop", 5, due).await;
    let started = Millis(due.0 + 4_000);
    let claimed = claim_all(store, "timed", started).await;
    assert_eq!(claimed.len(), 5);
    let done = claimed
        .iter()
        .map(|c| Completion {
            lease: c.lease.clone(),
            outcome: Outcome::Succeeded { output: None },
            started_at: started,
            finished_at: Millis(started.0 + 3_000),
        })
        .collect();
    store.complete(done).await.unwrap();
    b.goto(&format!("{base}/#/")).await;
    b.wait("the store's latency on the overview", || async {
        let t = b.text(&b.find("#latency").await).await;
        (t.contains("p99 4,000 ms; run") && t.contains("p99 3,000 ms")).then_some(())
    })
    .await;
    b.find("#latency svg.chart").await;
    // Throughput from before the page opened: the jobs of `run_in_the_past` (stored
    // before the browser first opened the Overview) are in its chart, read from the
    // store (their events are older than the page's read: the live count leaves them
    // out).
    let totals = numbers(
        b,
        "the last hour in the throughput chart",
        "const d = document.querySelector('#throughput')?.dataset; \
         return d && d.history === 'loaded' ? [+d.enqueued, +d.succeeded, +d.failed] : null",
    )
    .await;
    assert!(
        totals[0] >= 42.0 && totals[1] >= 35.0 && totals[2] >= 7.0,
        "enqueued, succeeded, failed in the chart's hour: {totals:?}"
    );
    b.find("#throughput svg.chart").await;
    // Rescues and restarts of the hour from the store's events, as a chart and as the
    // cards' rates.
    let incidents = numbers(
        b,
        "the hour's incidents on the overview",
        "const d = document.querySelector('#incidents')?.dataset; \
         return d && d.rescued !== undefined ? [+d.rescued, +d.crashed, +d.restarted] : null",
    )
    .await;
    assert!(
        incidents[0] >= 2.0 && incidents[1] >= 1.0 && incidents[2] >= 1.0,
        "rescued, crashed, restarted in the incidents chart: {incidents:?}"
    );
    b.find("#incidents svg.chart").await;
    b.wait("the hour's rescues as a rate on the cards", || async {
        let cards = b.text(&b.find("#overview-cards").await).await;
        (cards.contains("rescues (last hour)") && cards.contains("/ h")).then_some(())
    })
    .await;
    shot(b, "overview-latency").await;

    // 2. The workflow graph: parents and children, each a link, kinds as text; a
    // fan-out past the bound is cut and says so.
    let (status, body) = h
        .post(
            "/api/v1/workflows",
            admin,
            &json!({"steps": [
                {"name": "a", "kind": "noop", "queue": "flow"},
                {"name": "b", "kind": "noop", "queue": "flow", "after": ["a"]},
                {"name": "c", "kind": "noop", "queue": "flow", "after": ["a"]},
                {"name": "d", "kind": "noop", "queue": "flow", "after": ["b", "c"]},
            ]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ids: Vec<i64> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    let hostile = store
        .enqueue(
            vec![NewJob {
                queue: "flow".into(),
                depends_on: vec![JobId(ids[3])],
                ..NewJob::new("<img src=x onerror=alert('graph')>", json!({}))
            }],
            SystemClock.now(),
        )
        .await
        .unwrap()[0]
        .id()
        .0;
    b.goto(&format!("{base}/#/jobs/{}", ids[1])).await;
    let mut drawn: Vec<i64> = b
        .wait("the workflow graph", || async {
            let v = b
                .exec(
                    "return [...document.querySelectorAll('#job-graph a[data-job]')].map(a => [Number(a.dataset.job), a.getAttribute('href')])",
                    json!([]),
                )
                .await;
            let nodes = v.as_array()?.clone();
            (nodes.len() == 5).then_some(nodes)
        })
        .await
        .into_iter()
        .map(|n| {
            let id = n[0].as_i64().unwrap();
            assert_eq!(n[1], json!(format!("#/jobs/{id}")), "each job links to its page");
            id
        })
        .collect();
    drawn.sort();
    let mut expected = ids.clone();
    expected.push(hostile);
    expected.sort();
    assert_eq!(drawn, expected, "parents, children and grandchildren");
    let graph_text = b
        .exec(
            "return document.querySelector('#job-graph').textContent",
            json!([]),
        )
        .await;
    assert!(
        graph_text
            .as_str()
            .unwrap_or_default()
            .contains("<img src=x onerror=alert('graph')>"),
        "the hostile kind as text in the graph: {graph_text}"
    );
    assert_inert(b, "workflow graph").await;
    shot(b, "job-graph").await;

    let mut fan = vec![NewJob {
        queue: "flow".into(),
        ..NewJob::new("noop", json!({}))
    }];
    fan.extend((0..210).map(|_| NewJob {
        queue: "flow".into(),
        depends_on_index: vec![0],
        ..NewJob::new("noop", json!({}))
    }));
    let root = store.enqueue(fan, SystemClock.now()).await.unwrap()[0]
        .id()
        .0;
    b.goto(&format!("{base}/#/jobs/{root}")).await;
    b.wait("the cut graph", || async {
        let note = b.text(&b.find("#job-graph-note").await).await;
        note.contains("Cut at 200 jobs").then_some(())
    })
    .await;
    assert_eq!(b.find_all("#job-graph a[data-job]").await.len(), 200);

    // 3. Dead letters grouped over every dead job: an older group of 40 stays counted
    // behind 1010 newer dead jobs (more than a listing of the newest 1000 holds), and
    // redriving it from its row sends back exactly its jobs.
    let t = SystemClock.now();
    let old = enqueue(store, "dead", "noop", 40, t).await;
    kill_all(store, "dead", t, |i| format!("disk full on volume {i}")).await;
    enqueue(store, "dead", "noop", 1010, t).await;
    kill_all(store, "dead", Millis(t.0 + 1), |i| {
        format!("timeout after {} ms", 100 + i)
    })
    .await;
    b.goto(&format!("{base}/#/dlq")).await;
    let row = "tr[data-queue=\"dead\"][data-jobs=\"40\"]";
    b.wait("the old group, counted in full", || async {
        let t = b.text(&b.find(row).await).await;
        t.contains("disk full on volume #").then_some(())
    })
    .await;
    let big = b
        .text(&b.find("tr[data-queue=\"dead\"][data-jobs=\"1010\"]").await)
        .await;
    assert!(big.contains("timeout after # ms"), "{big}");
    shot(b, "dead-letter-groups").await;
    b.click_css(&format!("{row} button.redrive-group")).await;
    let question = text_of(b, "#confirm p").await;
    assert!(
        question.contains("Redrive the 40 dead job(s)"),
        "{question}"
    );
    b.click_css("#confirm-yes").await;
    b.wait("the group redriven", || async {
        let t = b.text(&b.find("#dlq-result").await).await;
        t.contains("Redrove 40").then_some(())
    })
    .await;
    for id in &old {
        let job = store.get_job(JobId(*id)).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Available, "job {id} redriven");
    }
    let (_, audit) = h.get("/api/v1/audit?action=redrive", admin).await;
    assert_eq!(
        audit["rows"][0]["target"],
        json!({"dead_letters": {"queue": "dead", "reason": "disk full on volume #"}}),
        "{audit}"
    );

    // 4. "Cancel all" matching a filter says how many jobs it touches: of the 1050
    // jobs of queue `dead` of kind noop, the 40 redriven ones are unfinished; the 1010
    // dead ones are not cancelled.
    b.goto(&format!("{base}/#/jobs?queue=dead&kind=noop")).await;
    b.find("#job-table tr[data-id]").await;
    b.click_css("button.all-cancel").await;
    let question = text_of(b, "#confirm p").await;
    assert!(question.contains("Cancel 40 jobs"), "{question}");
    assert!(question.contains("counted now"), "{question}");
    shot(b, "jobs-count").await;
    b.click_css("#confirm-yes").await;
    b.wait("the bulk result", || async {
        let t = b.text(&b.find("#bulk-result").await).await;
        t.contains("40 changed").then_some(())
    })
    .await;
    // By queue and state alone (the shared counts are never fresh in this test:
    // `api.counts_max_age` is 0, so the store counts).
    b.goto(&format!("{base}/#/jobs?queue=dead&state=discarded"))
        .await;
    b.find("#job-table tr[data-id]").await;
    b.click_css("button.all-delete").await;
    let question = text_of(b, "#confirm p").await;
    assert!(question.contains("Delete 1,010 jobs"), "{question}");
    b.click_css("#confirm-no").await;
}
