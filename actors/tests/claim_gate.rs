//! The claim gate on real nodes. A node whose own failure score crosses the drain
//! threshold stops claiming, gives back the jobs it claimed but did not start, finishes
//! what it runs, says so in an event and a metric, and claims again once the score has
//! fallen below the exit threshold. A node cut off from the majority of a real libp2p
//! mesh (the chaos fault injector drops its membership traffic both ways) does the
//! same for want of a quorum: jobs enqueued during the partition run on the majority
//! only, and the cut-off node claims again after the partition heals.
//!
//! The node under test claims from a queue of its own (`own`) besides `default`, so
//! what it claimed ahead (its prefetch) can be told apart in the store: nobody else
//! takes those jobs, they wait for it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mesh::*;
use common::*;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::handler::Registry;
use jobmesh::job::{Job, JobState, NewJob, NodeId};
use jobmesh::membership::MembershipConfig;
use jobmesh::payload::PayloadRules;
use jobmesh::predict::{FailurePredictor, NodeSignal};
use jobmesh::store::SharedStore;
use jobmesh_actors::chaos::{self, ActiveFaults};
use jobmesh_actors::mesh::MeshConfig;
use jobmesh_actors::{MeshOptions, Node, NodeOptions};
use libp2p::identity::Keypair;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};

/// The queue only the node under test serves.
const OWN: &str = "own";

/// Jobs claimed ahead in the prefetch test: the node holds at most this many unstarted.
const AHEAD: usize = 8;

/// Builtins plus `hold`, whose first attempt reports itself on the returned channel and
/// then waits until the returned switch is set to `true` (later attempts finish at
/// once).
fn holding_until_released() -> (Registry, mpsc::Receiver<Job>, watch::Sender<bool>) {
    let (held_tx, held) = mpsc::channel::<Job>(4);
    let (go, go_rx) = watch::channel(false);
    let mut r = builtins();
    r.register_fn("hold", PayloadRules::default(), move |ctx| {
        let held = held_tx.clone();
        let mut go = go_rx.clone();
        async move {
            if ctx.job.attempt == 1 {
                let _ = held.send(ctx.job.clone()).await;
                let _ = go.wait_for(|g| *g).await;
            }
            Ok(None)
        }
    });
    (r, held, go)
}

/// Settings of the node under test: one worker, the queues `default` and `own`, and no
/// poll (an hour): it claims when woken by a submit, a finished attempt or its gate
/// opening, so a claimed job stays in its prefetch until the gate gives it back.
fn one_worker() -> jobmesh::config::WorkersSection {
    let mut w = workers(1);
    w.queues = vec!["default".into(), OWN.into()];
    w.poll_interval = Duration::from_secs(3600);
    w.lease = Duration::from_secs(120);
    w
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

/// Counts by state of `queue`.
async fn queue_counts(store: &SharedStore, queue: &str) -> BTreeMap<JobState, u64> {
    store
        .counts()
        .await
        .unwrap()
        .remove(queue)
        .unwrap_or_default()
}

/// Waits until `n` jobs of `queue` succeeded; the deadline only bounds a failure.
async fn until_succeeded(store: &SharedStore, queue: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = queue_counts(store, queue).await;
        if c.get(&JobState::Succeeded).copied().unwrap_or(0) >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{queue}: {c:?}");
        // Jobs finished by other nodes raise no event on the node under test: poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Trains `node`'s prefetch on tiny jobs of its own queue, then submits `hold` and
/// [`AHEAD`] tiny jobs at once: the one worker runs `hold`, the tiny ones wait in the
/// prefetch. Returns how many it holds claimed and unstarted (at least one).
async fn fill_prefetch(node: &Node, store: &SharedStore, held: &mut mpsc::Receiver<Job>) -> u64 {
    node.submit(on_queue("noop", OWN, 20)).await.unwrap();
    until_succeeded(store, OWN, 20).await;
    let mut batch = on_queue("hold", OWN, 1);
    batch.extend(on_queue("noop", OWN, AHEAD));
    node.submit(batch).await.unwrap();
    held.recv().await.unwrap();
    let c = queue_counts(store, OWN).await;
    let running = c.get(&JobState::Running).copied().unwrap_or(0);
    assert!(
        running >= 2,
        "the node claimed tiny jobs ahead of its busy worker: {c:?}"
    );
    running - 1
}

/// The next event of `kind` for `reason`, skipping others (a gate may also close and
/// open for other reasons while a mesh forms).
async fn gate_event(
    events: &mut broadcast::Receiver<LifecycleEvent>,
    kind: EventKind,
    reason: &str,
) -> LifecycleEvent {
    loop {
        let e = next_event(events, kind).await;
        if e.detail["reason"] == reason {
            return e;
        }
    }
}

/// The value of the series `name{labels}` in the node's metrics.
fn metric(node: &Node, series: &str) -> Option<f64> {
    node.metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Teaches `node`'s failure model that its attempts time out where its peers' do not.
fn failing(node: &Node, n: usize) {
    let models = node.models();
    let mut m = models.lock();
    let me = node.id().0.clone();
    let now = SystemClock.now().0;
    for _ in 0..n {
        for (who, bad) in [(me.as_str(), true), ("peer-b", false), ("peer-c", false)] {
            let signal = NodeSignal::Attempt {
                kind: "noop",
                failed: bad,
                timed_out: bad,
                duration_ms: 5.0,
                renew_ms: Some(5.0),
            };
            m.failure.observe(who, now, signal);
        }
    }
}

/// Teaches it that its attempts are as good as its peers' again.
fn healthy(node: &Node, n: usize) {
    let models = node.models();
    let mut m = models.lock();
    let me = node.id().0.clone();
    let now = SystemClock.now().0;
    for _ in 0..n {
        for who in [me.as_str(), "peer-b", "peer-c"] {
            let signal = NodeSignal::Attempt {
                kind: "noop",
                failed: false,
                timed_out: false,
                duration_ms: 5.0,
                renew_ms: Some(5.0),
            };
            m.failure.observe(who, now, signal);
        }
    }
}

/// The position of the store's event log now.
async fn log_end(store: &SharedStore) -> i64 {
    let log = store.events_after(0, 1_000_000).await.unwrap();
    log.last().map_or(0, |e| e.seq)
}

/// Claims `node` made since the log position `after` (every claim writes a
/// `job.claimed` event naming the claiming node in its transaction).
async fn claims_since(store: &SharedStore, node: &NodeId, after: i64) -> usize {
    let log = store.events_after(after, 1_000_000).await.unwrap();
    log.iter()
        .filter(|e| e.event.kind == EventKind::JobClaimed && e.event.node.as_ref() == Some(node))
        .count()
}

/// The recorded gate events of `node`, after the node flushed them (its shutdown).
async fn recorded_gate_events(store: &SharedStore, node: &NodeId) -> Vec<(EventKind, String)> {
    store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::NodeGateClosed | EventKind::NodeGateOpened
            ) && e.event.node.as_ref() == Some(node)
        })
        .map(|e| {
            let reason = e.event.detail["reason"].as_str().unwrap_or("").to_owned();
            (e.event.kind, reason)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_failure_score_crosses_the_threshold_drains_and_comes_back() {
    let (store, _dir) = store().await;
    let (registry, mut held, go) = holding_until_released();
    let a = Node::start(NodeOptions {
        node_id: NodeId("a".into()),
        workers: one_worker(),
        retry: fast_retry(),
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap();
    let mut events = a.subscribe();
    let ahead = fill_prefetch(&a, &store, &mut held).await;
    assert!(a.claim_gate().open);

    failing(&a, 200);
    let closed = gate_event(&mut events, EventKind::NodeGateClosed, "failure score").await;
    assert_eq!(closed.node, Some(a.id().clone()));
    assert_eq!(closed.detail["released"], json!(ahead), "{}", closed.detail);
    assert_eq!(closed.detail["open"], json!(false));
    assert!(
        closed.detail["score"].as_f64().unwrap() > 1.6,
        "{}",
        closed.detail
    );
    assert_eq!(closed.detail["peers"], json!(2), "{}", closed.detail);
    // What it claimed ahead is back in the store; the attempt it runs goes on.
    let c = queue_counts(&store, OWN).await;
    assert_eq!(c.get(&JobState::Available), Some(&(AHEAD as u64)), "{c:?}");
    assert_eq!(c.get(&JobState::Running), Some(&1), "{c:?}");
    let gate = a.claim_gate();
    assert!(!gate.open);
    assert_eq!(gate.released, ahead);
    assert_eq!(
        metric(
            &a,
            r#"jobmesh_claim_gate_closed{node="a",reason="failure_score"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &a,
            r#"jobmesh_claim_gate_closed{node="a",reason="no_quorum"}"#
        ),
        Some(0.0)
    );
    let started = a.stats().started;
    let mark = log_end(&store).await;

    // Its worker goes idle and it is woken by new work: it claims none of it. Another
    // node runs everything.
    go.send(true).unwrap();
    a.submit(jobs("noop", json!({}), 10)).await.unwrap();
    let mut w = workers(2);
    w.queues = vec!["default".into(), OWN.into()];
    let b = node("b", &store, w, builtins()).await;
    until_succeeded(&store, "default", 10).await;
    until_succeeded(&store, OWN, 21 + AHEAD as u64).await;
    assert_eq!(a.stats().started, started, "a drained node started nothing");
    assert_eq!(
        claims_since(&store, a.id(), mark).await,
        0,
        "a drained node claimed nothing"
    );
    b.shutdown(Duration::from_secs(5)).await.unwrap();

    // A steady run of good attempts brings the score below the exit threshold: open.
    healthy(&a, 400);
    let opened = gate_event(&mut events, EventKind::NodeGateOpened, "failure score").await;
    assert_eq!(opened.detail["open"], json!(true), "{}", opened.detail);
    assert!(a.claim_gate().open);
    a.submit(jobs("noop", json!({}), 5)).await.unwrap();
    until_succeeded(&store, "default", 15).await;
    assert_eq!(a.stats().started, started + 5, "claims again");
    assert_eq!(
        metric(
            &a,
            r#"jobmesh_claim_gate_closings_total{node="a",reason="failure_score"}"#
        ),
        Some(1.0)
    );

    let id = a.id().clone();
    a.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        recorded_gate_events(&store, &id).await,
        [
            (EventKind::NodeGateClosed, "failure score".to_owned()),
            (EventKind::NodeGateOpened, "failure score".to_owned()),
        ]
    );
}

/// Node `i` of a mesh, with `workers`, its membership traffic passing `faults`.
#[allow(clippy::too_many_arguments)]
async fn meshed(
    i: usize,
    key: &Keypair,
    store: &SharedStore,
    bootstrap: Vec<libp2p::Multiaddr>,
    registry: Registry,
    membership: MembershipConfig,
    workers: jobmesh::config::WorkersSection,
    faults: watch::Receiver<ActiveFaults>,
) -> Node {
    let opts = NodeOptions {
        node_id: NodeId(format!("n{i}")),
        workers,
        retry: fast_retry(),
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    };
    let mesh = MeshOptions {
        keypair: key.clone(),
        mesh: MeshConfig {
            bootstrap,
            ..MeshConfig::default()
        },
        membership,
        seed: i as u64,
        join: None,
    };
    chaos::start_meshed(opts, mesh, faults).await.unwrap()
}

/// Cuts `victim` off from everyone (both directions) or heals.
fn partition(controls: &[watch::Sender<ActiveFaults>], keys: &[Keypair], victim: usize, cut: bool) {
    let id = |i: usize| keys[i].public().to_peer_id();
    for (i, tx) in controls.iter().enumerate() {
        let mut f = ActiveFaults::default();
        if cut {
            f.drop_from = if i == victim {
                (0..keys.len()).filter(|j| *j != victim).map(id).collect()
            } else {
                [id(victim)].into_iter().collect()
            };
        }
        tx.send(f).unwrap();
    }
}

/// Waits until `node`'s gate is open (a mesh that forms may close it on the way).
async fn until_open(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.claim_gate().open {
        assert!(Instant::now() < deadline, "{:?}", node.claim_gate());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_stops_claiming_and_claims_again_after_the_heal() {
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate_ed25519()).collect();
    let (controls, receivers): (Vec<_>, Vec<_>) = (0..N)
        .map(|_| watch::channel(ActiveFaults::default()))
        .unzip();
    let mut membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
    // Probes time out late, so the majority evicts the cut-off node seconds after it
    // stopped hearing a quorum: what it gives back is counted by its gate, not taken
    // from it by the eviction first.
    membership.probe_timeout = Duration::from_secs(3);

    let mut receivers = receivers.into_iter();
    let mut nodes: Vec<Node> = Vec::new();
    let mut addr = None;
    for (i, key) in keys.iter().enumerate().take(N - 1) {
        let bootstrap = addr.iter().cloned().collect();
        let n = meshed(
            i,
            key,
            &store,
            bootstrap,
            builtins(),
            membership.clone(),
            workers(4),
            receivers.next().unwrap(),
        )
        .await;
        if addr.is_none() {
            addr = Some(n.mesh().unwrap().listen_addrs().await.unwrap()[0].clone());
        }
        nodes.push(n);
    }
    let (registry, mut held, go) = holding_until_released();
    let victim = meshed(
        N - 1,
        &keys[N - 1],
        &store,
        addr.into_iter().collect(),
        registry,
        membership,
        one_worker(),
        receivers.next().unwrap(),
    )
    .await;
    nodes.push(victim);
    until_meshed(&nodes).await;
    let victim = nodes.pop().unwrap();
    let victim_id = victim.id().clone();
    until_open(&victim).await;
    let mut events = victim.subscribe();
    let ahead = fill_prefetch(&victim, &store, &mut held).await;
    let started = victim.stats().started;

    partition(&controls, &keys, N - 1, true);
    let closed = gate_event(&mut events, EventKind::NodeGateClosed, "no quorum").await;
    assert_eq!(closed.node.as_ref(), Some(&victim_id));
    assert_eq!(closed.detail["released"], json!(ahead), "{}", closed.detail);
    assert_eq!(closed.detail["members"], json!(N), "{}", closed.detail);
    assert!(
        closed.detail["live"].as_u64().unwrap() < 3,
        "{}",
        closed.detail
    );
    // Its prefetch is back in the store (only it serves `own`: the jobs wait there);
    // its running attempt goes on, unless the majority's eviction revoked it already.
    let c = queue_counts(&store, OWN).await;
    let available = c.get(&JobState::Available).copied().unwrap_or(0);
    let running = c.get(&JobState::Running).copied().unwrap_or(0);
    assert!(
        available >= AHEAD as u64 && available + running == AHEAD as u64 + 1,
        "{c:?}"
    );
    assert!(!victim.claim_gate().open);
    let mark = log_end(&store).await;
    let series = format!(r#"jobmesh_claim_gate_closed{{node="{victim_id}",reason="no_quorum"}}"#);
    assert_eq!(metric(&victim, &series), Some(1.0));

    // Its worker goes idle and jobs are enqueued through it (which wakes it): the
    // majority runs all of them, the cut-off node none.
    go.send(true).unwrap();
    victim.submit(jobs("noop", json!({}), 20)).await.unwrap();
    until_succeeded(&store, "default", 20).await;
    assert_eq!(
        victim.stats().started,
        started,
        "the cut-off node started nothing during the partition"
    );
    assert_eq!(
        claims_since(&store, &victim_id, mark).await,
        0,
        "the cut-off node claimed nothing during the partition"
    );
    let c = queue_counts(&store, OWN).await;
    assert!(
        c.get(&JobState::Available).copied().unwrap_or(0) >= AHEAD as u64,
        "its own queue waits for it: {c:?}"
    );

    // Heal: it hears a quorum again, opens, and runs what waited for it.
    partition(&controls, &keys, N - 1, false);
    let opened = gate_event(&mut events, EventKind::NodeGateOpened, "no quorum").await;
    assert_eq!(opened.detail["open"], json!(true), "{}", opened.detail);
    until_succeeded(&store, OWN, 21 + AHEAD as u64).await;
    assert!(
        victim.stats().started >= started + AHEAD as u64,
        "claims again: started {} (was {started})",
        victim.stats().started
    );

    nodes.push(victim);
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    let recorded = recorded_gate_events(&store, &victim_id).await;
    assert!(
        recorded.contains(&(EventKind::NodeGateClosed, "no quorum".to_owned())),
        "{recorded:?}"
    );
}
