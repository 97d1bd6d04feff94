//! The node's live models on real stores: a running node learns from the attempts it
//! runs (durations, retries, waits), saves its models at graceful shutdown, and a node
//! restarted under the same name resumes them; another node sees the first one's
//! durations merged into its own view, and its retry counts added to its own. SQLite in a temporary directory, and the
//! machine's Postgres (`JOBMESH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) in a fresh schema.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use jobmesh::job::NewJob;
use jobmesh::predict::congestion::CongestionPredictor;
use jobmesh::predict::duration::{DurationKey, DurationPredictor};
use jobmesh::predict::live::Predictions;
use jobmesh::store::SharedStore;
use jobmesh::store::postgres::PostgresStore;

const SLEEPS: usize = 40;
const FLAKY: usize = 10;

fn sleep_key() -> DurationKey<'static> {
    DurationKey {
        kind: "sleep",
        queue: "default",
        payload_bytes: 9,
    }
}

/// 40 sleeps of 20 ms, and 10 jobs that fail once ("smtp down") then succeed.
fn workload() -> Vec<NewJob> {
    let mut v = jobs("sleep", serde_json::json!({"ms": 20}), SLEEPS);
    v.extend(jobs(
        "fail",
        serde_json::json!({"times": 1, "message": "smtp down: 10.0.0.1:25"}),
        FLAKY,
    ));
    v
}

async fn resumes_and_merges(store: SharedStore) {
    let node_a = node("model-a", &store, workers(4), builtins()).await;
    let mut events = node_a.subscribe();
    node_a.submit(workload()).await.unwrap();
    let c = until_finished(&store, &mut events, (SLEEPS + FLAKY) as u64).await;
    assert_eq!(
        c.get(&jobmesh::job::JobState::Succeeded),
        Some(&((SLEEPS + FLAKY) as u64))
    );
    // The feed is wired: the running node learned from what it ran.
    let learned = {
        let m = node_a.models();
        let m = m.lock();
        let q = m
            .duration
            .predict(sleep_key(), 0)
            .expect("sleep durations learned");
        let classes: Vec<(&str, &str)> = m.retry.keys().collect();
        assert_eq!(
            classes,
            [("fail", "smtp_down")],
            "the error's class, details dropped"
        );
        let (p, n) = m
            .retry
            .success_probability("fail", "smtp_down", 2, 0)
            .expect("the retries of `fail` were learned");
        // Counts decay (3 h half-life): ten observations a moment ago weigh just under 10.
        assert!(n > FLAKY as f64 - 0.1 && p > 0.5, "p {p} over {n}");
        assert!(m.congestion.predict_wait("default", 0, 0).is_some());
        q
    };
    assert!(
        learned.p50 >= 19.0 && learned.p50 < 2_000.0,
        "a 20 ms sleep: {learned:?}"
    );
    node_a.shutdown(Duration::from_secs(5)).await.unwrap();

    // Saved at shutdown, readable by anyone.
    let saved = store.load_models().await.unwrap();
    assert_eq!(saved.len(), 1, "one row for the one node");
    assert_eq!(saved[0].node, "model-a");
    let shown = Predictions::from_saved(&saved, i64::MAX / 4, 30_000.0, i64::MAX);
    let d = shown.duration("sleep", "default").expect("shown durations");
    assert_eq!(d.runs, SLEEPS as u64);

    // Restarted under the same name: it resumes what it learned.
    let node_a = node("model-a", &store, workers(2), builtins()).await;
    {
        let m = node_a.models();
        let m = m.lock();
        let q = m
            .duration
            .predict(sleep_key(), 0)
            .expect("resumed durations");
        assert_eq!(q, learned, "the resumed model answers as before");
        assert!(
            m.retry
                .success_probability("fail", "smtp_down", 2, 0)
                .is_some(),
            "resumed retry posteriors"
        );
    }
    // Another node starts with its own (empty) models and the first one's durations
    // merged into its view; saving writes only its own.
    let node_b = node("model-b", &store, workers(2), builtins()).await;
    assert!(
        node_b
            .models()
            .lock()
            .duration
            .predict(sleep_key(), 0)
            .is_some(),
        "b sees a's durations"
    );
    {
        // And a's retry counts and budget window beside its own (none): the nodes decide
        // retries from what both saw, and share one budget.
        let m = node_b.models();
        let m = m.lock();
        assert_eq!(m.retry.keys().count(), 0, "b retried nothing itself");
        let (_, n) = m
            .retry
            .success_probability("fail", "smtp_down", 2, 0)
            .expect("b sees a's retries");
        assert!(n > FLAKY as f64 - 0.1, "{n}");
        let now = jobmesh::clock::Clock::now(&jobmesh::clock::SystemClock).0;
        let budget = m.retry.budget_use("fail", now).expect("a's budget window");
        assert!(budget.firsts >= FLAKY as f64, "{budget:?}");
    }
    node_b.save_models().await.unwrap();
    let saved = store.load_models().await.unwrap();
    assert_eq!(saved.len(), 2);
    let shown = Predictions::from_saved(&saved, i64::MAX / 4, 30_000.0, i64::MAX);
    assert_eq!(
        shown.duration("sleep", "default").unwrap().runs,
        SLEEPS as u64,
        "b saved none of a's runs as its own"
    );
    node_b.shutdown(Duration::from_secs(5)).await.unwrap();
    node_a.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_its_models_on_sqlite() {
    let (store, _dir) = store().await;
    resumes_and_merges(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_its_models_on_postgres() {
    logs();
    let url = std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let schema = format!(
        "jm_test_{}_{:016x}",
        now.as_secs(),
        u64::from(now.subsec_nanos()) << 20 ^ u64::from(std::process::id())
    );
    let store: SharedStore = Arc::new(
        PostgresStore::connect(&url, Some(&schema))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach Postgres at {url} ({e}); install and start PostgreSQL")
            }),
    );
    resumes_and_merges(store).await;
}
