//! Where jobs run when several nodes share a store: a node claims long jobs only for the
//! workers it has free, so the others stay `available` for nodes with idle workers, and
//! jobs rescued from a dead node spread over the nodes with free slots instead of
//! queueing behind one node's busy workers. Asserted on the store's own `job.claimed`
//! and `job.succeeded` events (which node, when).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::event::{EventKind, StoredEvent};
use jobmesh::handler::Registry;
use jobmesh::job::{JobId, NewJob, NodeId};
use jobmesh::payload::PayloadRules;
use jobmesh::store::SharedStore;
use serde_json::json;
use tokio::sync::mpsc;

/// How long a `work` job runs on a node that finishes it.
const RUN: Duration = Duration::from_millis(2000);

/// How long a job may wait for a worker on a mesh with free slots: pickup by a 20 ms
/// poll plus a claim, with room for a loaded machine; far below [`RUN`], so a job that
/// waited for a busy worker to finish its job first cannot pass.
const PICKUP: Duration = Duration::from_millis(1500);

/// Builtins plus `work` (runs [`RUN`], reporting each start on the channel) and `block`
/// (reports its start, then never finishes: it keeps a worker busy).
fn registry(started: mpsc::UnboundedSender<(String, JobId)>, node: &str) -> Registry {
    let mut r = builtins();
    let (tx, name) = (started.clone(), node.to_string());
    r.register_fn("work", PayloadRules::default(), move |ctx| {
        let (tx, name) = (tx.clone(), name.clone());
        async move {
            let _ = tx.send((name, ctx.job.id));
            tokio::time::sleep(RUN).await;
            Ok(None)
        }
    });
    let name = node.to_string();
    r.register_fn("block", PayloadRules::default(), move |ctx| {
        let (tx, name) = (started.clone(), name.clone());
        async move {
            let _ = tx.send((name, ctx.job.id));
            std::future::pending::<()>().await;
            Ok(None)
        }
    });
    r
}

/// Builtins plus `work` that reports its start and never finishes: the node that dies
/// holding them.
fn holding_registry(started: mpsc::UnboundedSender<(String, JobId)>, node: &str) -> Registry {
    let mut r = builtins();
    let name = node.to_string();
    r.register_fn("work", PayloadRules::default(), move |ctx| {
        let (tx, name) = (started.clone(), name.clone());
        async move {
            let _ = tx.send((name, ctx.job.id));
            std::future::pending::<()>().await;
            Ok(None)
        }
    });
    r
}

fn on_queue(kind: &str, queue: &str, n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|_| {
            let mut j = NewJob::new(kind, json!({}));
            j.queue = queue.into();
            j
        })
        .collect()
}

/// Waits for `n` starts reported by the handlers.
async fn starts(
    rx: &mut mpsc::UnboundedReceiver<(String, JobId)>,
    n: usize,
) -> Vec<(String, JobId)> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        out.push(next.expect("jobs did not start within 30 s").unwrap());
    }
    out
}

/// Every event in the store, oldest first.
async fn all_events(store: &SharedStore) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = store.events_after(after, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Waits, by the store's events (re-read every 50 ms; the deadline only bounds a
/// failure), until `jobs` all succeeded; returns the events.
async fn until_succeeded(store: &SharedStore, jobs: &[JobId]) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = all_events(store).await;
        let done = jobs.iter().all(|id| {
            events
                .iter()
                .any(|e| e.event.kind == EventKind::JobSucceeded && e.event.job == Some(*id))
        });
        if done {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs {jobs:?} did not all succeed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Of `jobs`, the claims after `since`: which node took each, by node.
fn claims_by_node(
    events: &[StoredEvent],
    jobs: &[JobId],
    since: Millis,
) -> BTreeMap<NodeId, Vec<JobId>> {
    let mut by_node: BTreeMap<NodeId, Vec<JobId>> = BTreeMap::new();
    for e in events.iter().map(|e| &e.event) {
        if e.kind == EventKind::JobClaimed
            && e.at >= since
            && let Some(job) = e.job.filter(|j| jobs.contains(j))
        {
            by_node
                .entry(e.node.clone().expect("a claim names its node"))
                .or_default()
                .push(job);
        }
    }
    by_node
}

/// The latest success among `jobs`.
fn last_success(events: &[StoredEvent], jobs: &[JobId]) -> Millis {
    events
        .iter()
        .map(|e| &e.event)
        .filter(|e| e.kind == EventKind::JobSucceeded && e.job.is_some_and(|j| jobs.contains(&j)))
        .map(|e| e.at)
        .max()
        .expect("successes")
}

fn ids(outcomes: Vec<jobmesh::store::EnqueueOutcome>) -> Vec<JobId> {
    outcomes.into_iter().map(|o| o.id()).collect()
}

/// Three nodes of four workers, twelve jobs of 2 s submitted at once through one node
/// (which is woken first): each node claims only what its workers start, so all twelve
/// run at once, and the last finishes about one run after the submit. A node that
/// claimed ahead (its four workers plus a prefetch) would make the others' workers wait
/// idle while its prefetched jobs wait a whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jobs_are_claimed_only_for_free_workers() {
    let (store, _dir) = store().await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("p{i}");
        nodes.push(node(&name, &store, workers(4), registry(tx.clone(), &name)).await);
    }
    let submitted = SystemClock.now();
    let jobs = ids(nodes[0].submit(jobs("work", json!({}), 12)).await.unwrap());
    let events = until_succeeded(&store, &jobs).await;

    let by_node = claims_by_node(&events, &jobs, submitted);
    for (node, claimed) in &by_node {
        assert!(
            claimed.len() <= 4,
            "{node} claimed {} jobs for its 4 workers: {by_node:?}",
            claimed.len()
        );
    }
    assert_eq!(by_node.len(), 3, "every node ran some: {by_node:?}");
    let took = Duration::from_millis((last_success(&events, &jobs).0 - submitted.0) as u64);
    assert!(
        took <= RUN + PICKUP,
        "the last job finished {took:?} after the submit: some waited for a busy worker"
    );
}

/// A node dies holding four running jobs while two others each have two of four
/// workers busy: its leases are revoked (as an eviction does) and the four rescued jobs
/// go two to each survivor, all starting at once, instead of all to the first survivor
/// to claim (two running, two waiting behind its busy workers for a whole run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescued_jobs_spread_over_nodes_with_free_slots() {
    let (store, _dir) = store().await;
    let (tx, mut started) = mpsc::unbounded_channel();

    // The victim starts alone and takes the four jobs.
    let victim = node(
        "victim",
        &store,
        workers(4),
        holding_registry(tx.clone(), "victim"),
    )
    .await;
    let jobs = ids(victim.submit(jobs("work", json!({}), 4)).await.unwrap());
    let held = starts(&mut started, 4).await;
    assert!(held.iter().all(|(n, _)| n == "victim"), "{held:?}");

    // Two survivors, each with two workers kept busy by jobs of its own queue.
    let mut survivors = Vec::new();
    for name in ["a", "b"] {
        let mut w = workers(4);
        w.queues = vec!["default".into(), format!("only-{name}")];
        let n = node(name, &store, w, registry(tx.clone(), name)).await;
        n.submit(on_queue("block", &format!("only-{name}"), 2))
            .await
            .unwrap();
        let blocked = starts(&mut started, 2).await;
        assert!(blocked.iter().all(|(n, _)| n == name), "{blocked:?}");
        survivors.push(n);
    }

    victim.abort();
    let revoked_at = SystemClock.now();
    let rescued = store
        .revoke_node(
            &NodeId("victim".into()),
            revoked_at,
            json!({"test": "victim died"}),
        )
        .await
        .unwrap();
    assert_eq!(rescued.len(), 4, "{rescued:?}");

    let events = until_succeeded(&store, &jobs).await;
    let by_node = claims_by_node(&events, &jobs, revoked_at);
    assert_eq!(
        by_node.keys().map(|n| n.0.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "the rescued jobs went to both survivors: {by_node:?}"
    );
    for (node, claimed) in &by_node {
        assert_eq!(
            claimed.len(),
            2,
            "{node} took {} rescued jobs for its 2 free workers: {by_node:?}",
            claimed.len()
        );
    }
    let took = Duration::from_millis((last_success(&events, &jobs).0 - revoked_at.0) as u64);
    assert!(
        took <= RUN + PICKUP,
        "the last rescued job finished {took:?} after the revocation: some waited for a busy worker"
    );
}
