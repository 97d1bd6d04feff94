//! The drain in a running cluster. Three nodes share one store (SQLite, and a Postgres
//! schema with a connection pool per node, as three processes would have); each feeds its
//! failure model only from the attempts it runs itself, saves its models every 200 ms
//! and, at each save, adopts the other nodes' own failure states from their saved rows.
//! Nothing teaches a model by hand: the nodes run `ledger.post` jobs, which succeed on
//! every node except one whose route to the ledger is broken (there the attempts fail
//! with the ledger's timeout). That node drains: its gate closes for the failure score,
//! it gives back what it claimed ahead, claims nothing more, and the others run all the
//! work. When every node fails alike, none drains.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use jobmesh::claim_gate::GateReason;
use jobmesh::clock::SystemClock;
use jobmesh::config::PredictSection;
use jobmesh::event::EventKind;
use jobmesh::handler::{HandlerError, Registry};
use jobmesh::job::{JobState, NewJob, NodeId};
use jobmesh::payload::PayloadRules;
use jobmesh::store::SharedStore;
use jobmesh_actors::{Node, NodeOptions};
use serde_json::json;

const KIND: &str = "ledger.post";

/// How often each node saves its models and adopts the others' states.
const SAVE: Duration = Duration::from_millis(200);

/// Jobs kept waiting in the store while the cluster runs.
const BACKLOG: u64 = 100;

/// One cluster at a time: these tests judge nodes against each other, and two clusters
/// of three nodes on two cores made one node's lease renewals slow enough to raise its
/// score (seen once in a full test run, in `when_every_node_fails_alike_none_drains`).
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The builtins plus `ledger.post`: it succeeds at once, or, where the ledger cannot be
/// reached (`broken`), fails after 2 ms with the ledger client's timeout.
fn registry(broken: Arc<AtomicBool>) -> Registry {
    let mut r = builtins();
    r.register_fn(KIND, PayloadRules::default(), move |_| {
        let broken = broken.load(Ordering::Relaxed);
        async move {
            if broken {
                tokio::time::sleep(Duration::from_millis(2)).await;
                return Err(HandlerError::Retryable(
                    "ledger: request timed out after 2ms".into(),
                ));
            }
            Ok(None)
        }
    });
    r
}

/// A member of the cluster: four workers, models saved every [`SAVE`]. Its lease is
/// longer than any wait of these tests, so a job it kept claimed instead of giving it
/// back would never finish in time.
async fn member(name: &str, store: &SharedStore, broken: bool) -> Node {
    member_saving(name, store, Arc::new(AtomicBool::new(broken)), SAVE).await
}

/// A member whose route to the ledger breaks when `broken` is set, saving its models
/// every `save`.
async fn member_saving(
    name: &str,
    store: &SharedStore,
    broken: Arc<AtomicBool>,
    save: Duration,
) -> Node {
    let mut w = workers(4);
    w.lease = Duration::from_secs(120);
    Node::start(NodeOptions {
        node_id: NodeId(name.into()),
        workers: w,
        retry: fast_retry(),
        store: store.clone(),
        registry: registry(broken),
        clock: Arc::new(SystemClock),
        retention: None,
        predict: PredictSection {
            feed: true,
            save_interval: save,
        },
    })
    .await
    .unwrap()
}

fn ledger_jobs(n: u64, max_attempts: u32) -> Vec<NewJob> {
    (0..n)
        .map(|_| {
            let mut j = NewJob::new(KIND, json!({}));
            j.max_attempts = max_attempts;
            j
        })
        .collect()
}

fn count(c: &std::collections::BTreeMap<JobState, u64>, states: &[JobState]) -> u64 {
    states.iter().map(|s| c.get(s).copied().unwrap_or(0)).sum()
}

/// Keeps about [`BACKLOG`] jobs waiting (submitted through `via`) until `done` is
/// ready; returns its output and how many jobs were submitted.
async fn keep_fed<T>(
    store: &SharedStore,
    via: &Node,
    max_attempts: u32,
    done: impl Future<Output = T>,
) -> (T, u64) {
    tokio::pin!(done);
    let mut submitted = 0;
    loop {
        let c = counts(store).await;
        let waiting = count(&c, &[JobState::Available, JobState::Retryable]);
        if waiting < BACKLOG {
            via.submit(ledger_jobs(BACKLOG, max_attempts))
                .await
                .unwrap();
            submitted += BACKLOG;
        }
        assert!(submitted < 100_000, "runaway: {c:?}");
        // Pacing the top-ups, not waiting for anything: `done` is awaited here.
        tokio::select! {
            out = &mut done => return (out, submitted),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Waits until `n` jobs of the default queue are final; the deadline only bounds a
/// failure. Returns the counts.
async fn until_final(store: &SharedStore, n: u64) -> std::collections::BTreeMap<JobState, u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(store).await;
        if count(&c, &[JobState::Succeeded, JobState::Discarded]) >= n {
            return c;
        }
        assert!(Instant::now() < deadline, "{c:?}");
        // Jobs finished by other nodes raise no event on any one node: poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The position of the store's event log now.
async fn log_end(store: &SharedStore) -> i64 {
    let log = store.events_after(0, 1_000_000).await.unwrap();
    log.last().map_or(0, |e| e.seq)
}

/// Claims `node` made since the log position `after`.
async fn claims_since(store: &SharedStore, node: &NodeId, after: i64) -> usize {
    let log = store.events_after(after, 1_000_000).await.unwrap();
    log.iter()
        .filter(|e| e.event.kind == EventKind::JobClaimed && e.event.node.as_ref() == Some(node))
        .count()
}

/// The recorded `node.gate_closed` events for the failure score, per node.
async fn failure_drains(store: &SharedStore) -> Vec<NodeId> {
    store
        .events_after(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.event.kind == EventKind::NodeGateClosed && e.event.detail["reason"] == "failure score"
        })
        .filter_map(|e| e.event.node)
        .collect()
}

fn failure_closings(node: &Node) -> u64 {
    let i = GateReason::ALL
        .iter()
        .position(|r| *r == GateReason::FailureScore)
        .unwrap();
    node.claim_gate().closings[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_whose_attempts_fail_where_the_others_succeed_drains() {
    let _one = ONE_CLUSTER.lock().await;
    let (store, _dir) = store().await;
    one_failing_node_drains([store.clone(), store.clone(), store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_whose_attempts_fail_where_the_others_succeed_drains_on_postgres() {
    let _one = ONE_CLUSTER.lock().await;
    one_failing_node_drains(postgres_handles().await).await;
}

/// Three handles on one new Postgres schema, each with a pool of its own.
async fn postgres_handles() -> [SharedStore; 3] {
    let schema = pg_schema();
    [
        pg_store(&schema).await,
        pg_store(&schema).await,
        pg_store(&schema).await,
    ]
}

/// Two good nodes and a bad one, each on its own handle of one store.
async fn one_failing_node_drains([s1, s2, s3]: [SharedStore; 3]) {
    let store = s1.clone();
    let good = [
        member("good-1", &s1, false).await,
        member("good-2", &s2, false).await,
    ];
    let bad = member("bad", &s3, true).await;
    let mut events = bad.subscribe();

    let closed_event = async {
        loop {
            let e = next_event(&mut events, EventKind::NodeGateClosed).await;
            if e.detail["reason"] == "failure score" {
                return e;
            }
        }
    };
    let (closed, submitted) = keep_fed(&store, &good[0], 25, closed_event).await;
    assert_eq!(closed.node.as_ref(), Some(bad.id()));
    let d = &closed.detail;
    assert!(d["score"].as_f64().unwrap() > 1.6, "{d}");
    assert_eq!(
        d["peers"],
        json!(2),
        "it knows the others from their rows: {d}"
    );
    assert_eq!(d["peers_draining"], json!(0), "{d}");
    assert_eq!(d["held_off"], json!(false), "{d}");
    let gate = bad.claim_gate();
    assert!(!gate.open);
    assert_eq!(d["released"], json!(gate.released), "{d}");
    let started = bad.stats().started;
    let mark = log_end(&store).await;

    // Everything submitted finishes, on the others: what the drained node had claimed
    // ahead went back to the store (kept, it would wait out a two-minute lease).
    let c = until_final(&store, submitted).await;
    assert_eq!(c.get(&JobState::Succeeded), Some(&submitted), "{c:?}");
    assert_eq!(
        bad.stats().started,
        started,
        "a drained node starts nothing"
    );
    assert_eq!(claims_since(&store, bad.id(), mark).await, 0);
    for g in &good {
        assert!(g.claim_gate().open, "{}", g.id());
        assert_eq!(failure_closings(g), 0, "{}", g.id());
    }
    assert_eq!(failure_closings(&bad), 1);

    let bad_id = bad.id().clone();
    for n in good.into_iter().chain([bad]) {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(failure_drains(&store).await, [bad_id]);
}

/// With saves a minute apart (the default), a rise is acted on within seconds: the
/// node whose attempts start failing finds the others' saved states older than the
/// rise, asks every node to save its models now (a post in the store) and re-reads their
/// rows, instead of waiting up to a minute for their next saves. The bound of 20 s only
/// bounds a failure; without the request the drain comes at the others' next save, a
/// minute after they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rise_is_acted_on_in_seconds_not_at_the_next_save_round() {
    let _one = ONE_CLUSTER.lock().await;
    let (store, _dir) = store().await;
    let minute = Duration::from_secs(60);
    let healthy = || Arc::new(AtomicBool::new(false));
    let good = [
        member_saving("good-1", &store, healthy(), minute).await,
        member_saving("good-2", &store, healthy(), minute).await,
    ];
    let route = healthy();
    let bad = member_saving("bad", &store, route.clone(), minute).await;
    let mut events = bad.subscribe();

    // Every node runs some jobs while the ledger answers everyone.
    let each_ran = async {
        while [&good[0], &good[1], &bad]
            .iter()
            .any(|n| n.stats().started < 50)
        {
            // Pacing the check: the nodes' progress raises no event here.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    keep_fed(&store, &good[0], 25, each_ran).await;
    // The others' rows, saved before the rise; the bad node adopts them.
    for n in good.iter().chain([&bad]) {
        n.save_models().await.unwrap();
    }
    let before = bad.models().lock().failure.peers_of(bad.id().0.as_str());
    assert_eq!(before, 2, "the bad node knows the others before its rise");

    route.store(true, Ordering::Relaxed);
    let broke = Instant::now();
    let closed_event = async {
        loop {
            let e = next_event(&mut events, EventKind::NodeGateClosed).await;
            if e.detail["reason"] == "failure score" {
                return e;
            }
        }
    };
    let (closed, _) = keep_fed(
        &store,
        &good[0],
        25,
        tokio::time::timeout(Duration::from_secs(20), closed_event),
    )
    .await;
    let closed = closed.expect("drained within seconds, not at the next save a minute on");
    eprintln!("drained {:?} after the route broke", broke.elapsed());
    assert_eq!(closed.node.as_ref(), Some(bad.id()));
    assert_eq!(closed.detail["peers"], json!(2), "{}", closed.detail);
    for n in good.into_iter().chain([bad]) {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_fails_alike_none_drains() {
    let _one = ONE_CLUSTER.lock().await;
    let (store, _dir) = store().await;
    none_drains([store.clone(), store.clone(), store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_fails_alike_none_drains_on_postgres() {
    let _one = ONE_CLUSTER.lock().await;
    none_drains(postgres_handles().await).await;
}

/// Three failing nodes, each on its own handle of one store.
async fn none_drains([s1, s2, s3]: [SharedStore; 3]) {
    let store = s1.clone();
    let nodes = [
        member("alike-1", &s1, true).await,
        member("alike-2", &s2, true).await,
        member("alike-3", &s3, true).await,
    ];
    // Until every node has adopted the two others, then for another 600 failed jobs
    // (1 800 attempts) after that: every node's score is asked many times over.
    let adopted_then_more = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "the nodes never adopted each other"
            );
            let known = nodes.iter().all(|n| {
                let me = n.id().0.clone();
                n.models().lock().failure.peers_of(&me) == 2
            });
            if known {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = counts(&store).await;
        until_final(&store, count(&c, &[JobState::Discarded]) + 600).await
    };
    let (_, submitted) = keep_fed(&store, &nodes[0], 3, adopted_then_more).await;
    let c = until_final(&store, submitted).await;
    assert_eq!(c.get(&JobState::Discarded), Some(&submitted), "{c:?}");
    for n in &nodes {
        assert!(n.claim_gate().open, "{}", n.id());
        assert_eq!(failure_closings(n), 0, "{}", n.id());
    }
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(failure_drains(&store).await, []);
}
