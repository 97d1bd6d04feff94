//! Periodic jobs through the library: schedules set on running nodes with
//! `Node::set_periodic` are enqueued by the node holding the `periodic` lease, one job
//! per tick, while a second node on the same store stays quiet; bad schedule sets are
//! refused whole, naming the schedule, and the running set stays.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use jobmesh::job::{JobState, NewJob};
use jobmesh::periodic::{MissedTicks, PeriodicJob, Schedule};
use jobmesh::store::{JobFilter, SharedStore};
use serde_json::json;

fn every_second(name: &str) -> PeriodicJob {
    let mut p = PeriodicJob::new(
        name,
        Schedule::parse("every 1s").unwrap(),
        NewJob::new("noop", json!({"from": name})),
    );
    p.policy = MissedTicks::CatchUp {
        backfill: Duration::from_secs(60),
    };
    p
}

/// The schedules in the store, as the node lists them.
async fn stored(n: &jobmesh_actors::Node) -> Vec<PeriodicJob> {
    n.periodic()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.job)
        .collect()
}

/// The unique keys of the store's jobs, asserting none appears twice.
async fn tick_keys(store: &SharedStore) -> BTreeSet<String> {
    let jobs = store
        .list_jobs(&JobFilter {
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    let mut keys = BTreeSet::new();
    for j in jobs {
        let key = j.unique_key.expect("every job here is a tick's");
        assert!(keys.insert(key.clone()), "two jobs for {key}");
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_the_same_schedule_enqueue_each_tick_once() {
    let (store, _dir) = store().await;
    let a = node("a", &store, workers(2), builtins()).await;
    let b = node("b", &store, workers(2), builtins()).await;
    a.set_periodic(vec![every_second("beat")]).await.unwrap();
    b.set_periodic(vec![every_second("beat")]).await.unwrap();
    assert_eq!(stored(&a).await, vec![every_second("beat")]);
    // Poll (with a deadline) until five ticks ran.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = counts(&store)
            .await
            .get(&JobState::Succeeded)
            .copied()
            .unwrap_or(0);
        if done >= 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "five ticks did not run within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys = tick_keys(&store).await;
    assert!(
        keys.iter().all(|k| k.starts_with("periodic:beat:")),
        "{keys:?}"
    );
    // Ticks are consecutive seconds: none skipped, none twice.
    let ticks: Vec<i64> = keys
        .iter()
        .map(|k| k.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 1000), "{ticks:?}");
    // Clearing the schedules stops the ticks once the round in flight is done.
    a.set_periodic(Vec::new()).await.unwrap();
    b.set_periodic(Vec::new()).await.unwrap();
    a.shutdown(Duration::from_secs(5)).await.unwrap();
    b.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn bad_schedule_sets_are_refused_whole_naming_the_schedule() {
    let (store, _dir) = store().await;
    let n = node("n", &store, workers(1), builtins()).await;
    n.set_periodic(vec![every_second("ok")]).await.unwrap();
    let refused =
        async |set: Vec<PeriodicJob>| n.set_periodic(set).await.expect_err("refused").to_string();
    let mut unknown = every_second("unknown");
    unknown.job.kind = "nope".into();
    let e = refused(vec![every_second("fine"), unknown]).await;
    assert!(
        e.contains("`unknown`") && e.contains("unknown job kind"),
        "{e}"
    );
    let e = refused(vec![every_second("twin"), every_second("twin")]).await;
    assert!(
        e.contains("`twin`") && e.contains("two periodic jobs"),
        "{e}"
    );
    let mut bad_name = every_second("x");
    bad_name.name = "has space\n".into();
    let e = refused(vec![bad_name]).await;
    assert!(e.contains("name"), "{e}");
    let mut bad_payload = every_second("sleepy");
    bad_payload.job.kind = "sleep".into();
    bad_payload.job.payload = json!({"ms": "long"});
    let e = refused(vec![bad_payload]).await;
    assert!(e.contains("`sleepy`") && e.contains("payload"), "{e}");
    let too_many: Vec<PeriodicJob> = (0..=jobmesh::periodic::MAX_SCHEDULES)
        .map(|i| every_second(&format!("p{i}")))
        .collect();
    assert!(refused(too_many).await.contains("at most"));
    // The stored set stays.
    assert_eq!(stored(&n).await, vec![every_second("ok")]);
    n.shutdown(Duration::from_secs(5)).await.unwrap();
}
