//! Periodic jobs through the library: schedules set on running nodes with
//! `Node::set_periodic` are enqueued by the node holding the `periodic` lease, one job
//! per tick, while a second node on the same store stays quiet; bad schedule sets are
//! refused whole, naming the schedule, and the stored set stays; and create, pause,
//! resume, trigger and delete through `Node` on a manual clock.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
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

/// The jobs' unique keys that start with `prefix`.
async fn keys_with(store: &SharedStore, prefix: &str) -> BTreeSet<String> {
    tick_keys(store)
        .await
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

/// Polls until the job with unique key `key` exists (each library call pokes the
/// node's periodic task, which then runs a round at the manual clock's time).
async fn wait_key(store: &SharedStore, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !tick_keys(store).await.contains(key) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no job {key} within 20 s: {:?}",
            tick_keys(store).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Schedules through the library on a node with a manual clock: a created schedule's
/// first tick runs; paused, its ticks get no job while another schedule's tick at the
/// same instant does; resumed, the ticks of the pause are passed over and the next
/// runs; a trigger is one job under its own key; deleted, no more ticks. Every round
/// is driven by advancing the clock and poking the task through a library call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_schedules_pause_resume_trigger_delete_on_a_manual_clock() {
    use jobmesh::clock::{ManualClock, Millis};
    use jobmesh::store::{AuditContext, ScheduleOutcome};

    let (store, _dir) = store().await;
    let t0 = Millis(1_800_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let n = jobmesh_actors::Node::start(jobmesh_actors::NodeOptions {
        node_id: jobmesh::job::NodeId("manual".into()),
        workers: workers(2),
        retry: fast_retry(),
        store: store.clone(),
        registry: builtins(),
        clock: clock.clone(),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap();
    let ops = AuditContext::system();
    let at = |s: i64| Millis(t0.0 + s * 1000);
    let key = |name: &str, s: i64| jobmesh::periodic::tick_key(name, at(s));

    let made = n.create_periodic(&ops, every_second("beat"), false).await;
    assert!(matches!(made, Ok(ScheduleOutcome::Done(_))), "{made:?}");
    clock.advance(Duration::from_secs(2));
    n.create_periodic(&ops, every_second("ctl"), false)
        .await
        .unwrap();
    // Catch-up within 60 s: the ticks at +1 s and +2 s.
    wait_key(&store, &key("beat", 2)).await;
    assert_eq!(keys_with(&store, "periodic:beat:").await.len(), 2);

    assert_eq!(
        n.pause_periodic(&ops, "beat").await.unwrap(),
        ScheduleOutcome::Done(true)
    );
    clock.advance(Duration::from_secs(3));
    // A no-op resume of `ctl` pokes a round at +5 s: `ctl` ticks, `beat` does not.
    n.resume_periodic(&ops, "ctl").await.unwrap();
    wait_key(&store, &key("ctl", 5)).await;
    assert_eq!(
        keys_with(&store, "periodic:beat:").await.len(),
        2,
        "a paused schedule gets no job for its ticks"
    );

    assert_eq!(
        n.resume_periodic(&ops, "beat").await.unwrap(),
        ScheduleOutcome::Done(true)
    );
    clock.advance(Duration::from_secs(1));
    n.resume_periodic(&ops, "ctl").await.unwrap();
    wait_key(&store, &key("beat", 6)).await;
    let beat = keys_with(&store, "periodic:beat:").await;
    assert_eq!(
        beat,
        BTreeSet::from([key("beat", 1), key("beat", 2), key("beat", 6)]),
        "the ticks of the pause (+3 s to +5 s) are passed over"
    );

    let ScheduleOutcome::Done(triggered) = n.trigger_periodic(&ops, "beat").await.unwrap() else {
        panic!("beat exists")
    };
    let job = store.get_job(triggered.id()).await.unwrap().unwrap();
    assert_eq!(
        job.unique_key.as_deref(),
        Some(format!("periodic-trigger:beat:{}", at(6).0).as_str())
    );

    assert_eq!(
        n.delete_periodic(&ops, "beat").await.unwrap(),
        ScheduleOutcome::Done(())
    );
    clock.advance(Duration::from_secs(2));
    n.resume_periodic(&ops, "ctl").await.unwrap();
    wait_key(&store, &key("ctl", 8)).await;
    assert_eq!(
        keys_with(&store, "periodic:beat:").await.len(),
        3,
        "a deleted schedule's ticks stop"
    );
    let names: Vec<String> = n
        .periodic()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.job.name)
        .collect();
    assert_eq!(names, ["ctl"]);
    n.shutdown(Duration::from_secs(5)).await.unwrap();
}
