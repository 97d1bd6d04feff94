//! Five nodes on a real libp2p mesh over loopback TCP, sharing one store: one node
//! crashes while holding leases; the survivors evict it by a certificate of 2f+1 signed
//! votes, its leases are revoked (its late completion is refused) and its jobs finish
//! elsewhere, long before its leases would have lapsed. A node cut off by a partition
//! (injected faults) is evicted the same way and, once the partition heals, learns of
//! its eviction and rejoins with a higher incarnation. A node admitted by a join
//! certificate signed by the cluster key becomes a member.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jobmesh::clock::Clock;
use jobmesh::clock::SystemClock;
use jobmesh::event::EventKind;
use jobmesh::job::{Completion, CompletionResult, Job, JobState, Lease, NodeId, Outcome, WorkerId};
use jobmesh::membership::{JoinCertificate, MembershipConfig, Monitoring, View};
use jobmesh::payload::PayloadRules;
use jobmesh_actors::faults::ActiveFaults;
use jobmesh_actors::mesh::MeshConfig;
use jobmesh_actors::{MeshOptions, Node, NodeOptions};
use libp2p::identity::Keypair;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::watch;

const N: usize = 5;

async fn start(
    i: usize,
    keys: &[Keypair],
    store: &jobmesh::store::SharedStore,
    bootstrap: Vec<libp2p::Multiaddr>,
    registry: jobmesh::handler::Registry,
) -> Node {
    let membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
    start_with(
        i, &keys[i], store, bootstrap, registry, membership, None, None,
    )
    .await
}

/// A node with its own membership settings, join certificate and fault control.
#[allow(clippy::too_many_arguments)]
async fn start_with(
    i: usize,
    key: &Keypair,
    store: &jobmesh::store::SharedStore,
    bootstrap: Vec<libp2p::Multiaddr>,
    registry: jobmesh::handler::Registry,
    membership: MembershipConfig,
    join: Option<JoinCertificate>,
    faults: Option<watch::Receiver<ActiveFaults>>,
) -> Node {
    let mut w = workers(4);
    // Long leases: a rescue within the test can only come from the eviction.
    w.lease = Duration::from_secs(120);
    let mesh = MeshConfig {
        bootstrap,
        ..MeshConfig::default()
    };
    Node::start_meshed(
        NodeOptions {
            node_id: NodeId(format!("n{i}")),
            workers: w,
            retry: fast_retry(),
            store: store.clone(),
            registry,
            clock: Arc::new(SystemClock),
            retention: None,
        },
        MeshOptions {
            keypair: key.clone(),
            mesh,
            membership,
            seed: i as u64,
            join,
            faults,
        },
    )
    .await
    .unwrap()
}

/// Builtins plus a `hold` kind that finishes at once.
fn finishing_registry() -> jobmesh::handler::Registry {
    let mut r = builtins();
    r.register_fn("hold", PayloadRules::default(), |_ctx| async { Ok(None) });
    r
}

/// Builtins plus a `hold` kind that reports each first attempt it starts on the returned channel
/// (of `capacity`) and then never finishes: the node sits on its lease.
fn holding_registry(capacity: usize) -> (jobmesh::handler::Registry, mpsc::Receiver<Job>) {
    let (held_tx, held) = mpsc::channel::<Job>(capacity);
    let mut r = builtins();
    // Only first attempts are held: a node cut off from the mesh but not from the store
    // may claim its own rescued jobs again, and those must finish.
    r.register_fn("hold", PayloadRules::default(), move |ctx| {
        let held = held_tx.clone();
        async move {
            if ctx.job.attempt == 1 {
                let _ = held.send(ctx.job.clone()).await;
                std::future::pending::<()>().await;
            }
            Ok(None)
        }
    });
    (r, held)
}

/// The success report of `job` by `node` under the lease it was claimed with.
fn late_success(job: &Job, node: &NodeId) -> Completion {
    Completion {
        lease: Lease {
            job: job.id,
            token: job.lease_token,
            worker: WorkerId(format!("{node}/pool")),
            node: node.clone(),
            attempt: job.attempt,
            expires_at: job.lease_expires_at.unwrap(),
        },
        outcome: Outcome::Succeeded { output: None },
        started_at: job.run_at,
        finished_at: SystemClock.now(),
    }
}

/// Waits until every node has heard heartbeats from every other (phi known for all).
async fn until_meshed(nodes: &[Node]) {
    let count = nodes.len();
    // The mesh exposes no "everyone heard everyone" event; poll the status snapshots,
    // bounded by a deadline that only limits a failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = nodes.iter().all(|n| {
            let s = n.mesh_status().unwrap();
            s.members.len() == count
                && s.members
                    .iter()
                    .filter(|m| m.state == "alive")
                    .all(|m| m.heard)
                && s.members.iter().filter(|m| m.state == "alive").count() == count - 1
        });
        if ready {
            return;
        }
        if Instant::now() > deadline {
            for n in nodes {
                let peers = n.mesh().unwrap().connected_peers().await.unwrap();
                eprintln!(
                    "{:?} connected to {} peers: {:#?}",
                    n.id(),
                    peers.len(),
                    n.mesh_status()
                );
            }
            panic!("mesh did not form");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_is_evicted_by_certificate_and_its_jobs_rescued() {
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate_ed25519()).collect();
    let victim_id = NodeId(keys[N - 1].public().to_peer_id().to_string());

    // Survivors run `hold` jobs at once; the victim sits on them until it dies.
    let (victim_registry, mut held) = holding_registry(64);

    // The victim starts first and takes every job before the others exist.
    let victim = start(N - 1, &keys, &store, vec![], victim_registry).await;
    victim.submit(jobs("hold", json!({}), 4)).await.unwrap();
    let mut victim_jobs = Vec::new();
    for _ in 0..4 {
        victim_jobs.push(held.recv().await.unwrap());
    }
    assert!(
        victim_jobs
            .iter()
            .all(|j| j.lease_node.as_ref() == Some(&victim_id))
    );
    let addr = victim.mesh().unwrap().listen_addrs().await.unwrap()[0].clone();
    let mut nodes = Vec::new();
    for i in 0..N - 1 {
        nodes.push(start(i, &keys, &store, vec![addr.clone()], finishing_registry()).await);
    }
    nodes.push(victim);
    until_meshed(&nodes).await;
    let victim = nodes.pop().unwrap();

    let mut events = nodes[0].subscribe();
    let crashed = Instant::now();
    victim.abort();

    let evicted = next_event(&mut events, EventKind::NodeEvicted).await;
    let to_eviction = crashed.elapsed();
    assert_eq!(evicted.node.as_ref(), Some(&victim_id));
    let signers = evicted.detail["signers"].as_array().unwrap();
    assert!(signers.len() >= 3, "2f+1 = 3 signatures: {signers:?}");
    assert!(
        !signers
            .iter()
            .any(|s| s.as_str() == Some(victim_id.0.as_str()))
    );

    let c = until_finished(&store, &mut events, 4).await;
    let to_rescue = crashed.elapsed();
    assert_eq!(c.get(&JobState::Succeeded), Some(&4), "{c:?}");
    println!(
        "crash-to-eviction {to_eviction:?}, crash-to-rescue {to_rescue:?} (5 nodes, loopback)"
    );

    // The victim's late completion is refused: its lease was revoked.
    assert_eq!(
        store
            .complete(vec![late_success(&victim_jobs[0], &victim_id)])
            .await
            .unwrap(),
        [CompletionResult::StaleLease]
    );

    let log = store.events_after(0, 100_000).await.unwrap();
    let rescued: Vec<_> = log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobRescued)
        .collect();
    assert!(rescued.len() >= 4);
    assert!(
        rescued
            .iter()
            .all(|e| e.event.detail["why"]["signers"].is_array()),
        "rescued by the certificate, not by lease expiry"
    );
    let mut per_job = BTreeMap::new();
    for e in log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobSucceeded)
    {
        *per_job.entry(e.event.job.unwrap()).or_insert(0) += 1;
    }
    assert!(per_job.values().all(|&n| n == 1), "{per_job:?}");
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Starts nodes 0 to N-2 (all but the last key) joined through node 0, with the builtin
/// handlers and no faults; returns them and node 0's address for the last one to join.
async fn start_first_four(
    keys: &[Keypair],
    store: &jobmesh::store::SharedStore,
    membership: &MembershipConfig,
) -> (Vec<Node>, libp2p::Multiaddr) {
    let first = start_with(
        0,
        &keys[0],
        store,
        vec![],
        builtins(),
        membership.clone(),
        None,
        None,
    )
    .await;
    let addr = first.mesh().unwrap().listen_addrs().await.unwrap()[0].clone();
    let mut nodes = vec![first];
    for (i, key) in keys.iter().enumerate().take(N - 1).skip(1) {
        nodes.push(
            start_with(
                i,
                key,
                store,
                vec![addr.clone()],
                builtins(),
                membership.clone(),
                None,
                None,
            )
            .await,
        );
    }
    (nodes, addr)
}

/// Cuts `victim` off from everyone (both directions) or heals, through each node's
/// fault control.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_evicted_then_rejoins_with_a_higher_incarnation() {
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate_ed25519()).collect();
    let victim_peer = keys[N - 1].public().to_peer_id();
    let victim_id = NodeId(victim_peer.to_string());
    let (controls, receivers): (Vec<_>, Vec<_>) = (0..N)
        .map(|_| watch::channel(ActiveFaults::default()))
        .unzip();
    let membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);

    let (victim_registry, mut held) = holding_registry(8);
    let mut receivers = receivers.into_iter();
    let victim = start_with(
        N - 1,
        &keys[N - 1],
        &store,
        vec![],
        victim_registry,
        membership.clone(),
        None,
        receivers.next_back(),
    )
    .await;
    victim.submit(jobs("hold", json!({}), 2)).await.unwrap();
    let held_job = held.recv().await.unwrap();
    let _ = held.recv().await.unwrap();
    let addr = victim.mesh().unwrap().listen_addrs().await.unwrap()[0].clone();
    let mut nodes = Vec::new();
    for (i, rx) in receivers.enumerate() {
        nodes.push(
            start_with(
                i,
                &keys[i],
                &store,
                vec![addr.clone()],
                finishing_registry(),
                membership.clone(),
                None,
                Some(rx),
            )
            .await,
        );
    }
    nodes.push(victim);
    until_meshed(&nodes).await;
    let victim = nodes.pop().unwrap();
    let incarnation_before = victim.mesh_status().unwrap().incarnation;

    let mut events = nodes[0].subscribe();
    partition(&controls, &keys, N - 1, true);
    let evicted = next_event(&mut events, EventKind::NodeEvicted).await;
    assert_eq!(evicted.node.as_ref(), Some(&victim_id));
    assert_eq!(evicted.detail["incarnation"], json!(incarnation_before));
    let c = until_finished(&store, &mut events, 2).await;
    assert_eq!(
        c.get(&JobState::Succeeded),
        Some(&2),
        "rescued elsewhere: {c:?}"
    );

    // Alive but cut off, the victim finishes its attempt late: refused.
    assert_eq!(
        store
            .complete(vec![late_success(&held_job, &victim_id)])
            .await
            .unwrap(),
        [CompletionResult::StaleLease]
    );

    // Heal: the victim is shown its certificate, bumps its incarnation and is readmitted.
    partition(&controls, &keys, N - 1, false);
    let rejoined = loop {
        let e = next_event(&mut events, EventKind::NodeJoined).await;
        if e.node.as_ref() == Some(&victim_id) {
            break e;
        }
    };
    let incarnation_after = rejoined.detail["incarnation"].as_u64().unwrap();
    assert!(
        incarnation_after > incarnation_before,
        "rejoined with {incarnation_after}, evicted at {incarnation_before}"
    );
    // The victim runs at that incarnation or a later one: a stale Down vote or a second
    // copy of its certificate arriving after the rejoin makes it refute once more.
    let now_at = victim.mesh_status().unwrap().incarnation;
    assert!(
        now_at >= incarnation_after && now_at > incarnation_before,
        "victim at {now_at}, rejoined with {incarnation_after}, evicted at {incarnation_before}"
    );
    let log = store.events_after(0, 100_000).await.unwrap();
    let succeeded = log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobSucceeded && e.event.job == Some(held_job.id))
        .count();
    assert_eq!(succeeded, 1, "the held job's success is recorded once");
    nodes.push(victim);
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_join_certificate_is_admitted() {
    let (store, _dir) = store().await;
    let cluster = Keypair::generate_ed25519();
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate_ed25519()).collect();
    // The allowlist holds the first four; the fifth holds a certificate.
    let mut membership =
        MembershipConfig::new(keys[..N - 1].iter().map(|k| k.public().to_peer_id()), 1);
    membership.cluster_key = Some(cluster.public());
    let joiner = keys[N - 1].public().to_peer_id();
    let expires = SystemClock.now().plus(Duration::from_secs(3600));
    let cert = JoinCertificate::issue(&cluster, joiner, expires).unwrap();

    let (mut nodes, addr) = start_first_four(&keys, &store, &membership).await;
    let mut events = nodes[0].subscribe();
    // A stranger without a certificate is refused at start.
    let stranger = Keypair::generate_ed25519();
    let refused = Node::start_meshed(
        NodeOptions {
            node_id: NodeId("stranger".into()),
            workers: workers(1),
            retry: fast_retry(),
            store: store.clone(),
            registry: builtins(),
            clock: Arc::new(SystemClock),
            retention: None,
        },
        MeshOptions {
            keypair: stranger,
            mesh: MeshConfig::default(),
            membership: membership.clone(),
            seed: 9,
            join: None,
            faults: None,
        },
    )
    .await;
    assert!(refused.is_err(), "a stranger cannot start as a member");

    nodes.push(
        start_with(
            N - 1,
            &keys[N - 1],
            &store,
            vec![addr],
            builtins(),
            membership,
            Some(cert),
            None,
        )
        .await,
    );
    let joined = loop {
        let e = next_event(&mut events, EventKind::NodeJoined).await;
        if e.node.as_ref() == Some(&NodeId(joiner.to_string())) {
            break e;
        }
    };
    assert!(joined.detail["incarnation"].as_u64().unwrap() > 0);
    until_meshed(&nodes).await;
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_junk_flooding_member_loses_score_and_nobody_is_evicted() {
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate_ed25519()).collect();
    let membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
    let junker = keys[N - 1].public().to_peer_id();
    let (control, rx) = watch::channel(ActiveFaults::default());
    let (mut nodes, addr) = start_first_four(&keys, &store, &membership).await;
    nodes.push(
        start_with(
            N - 1,
            &keys[N - 1],
            &store,
            vec![addr],
            builtins(),
            membership,
            None,
            Some(rx),
        )
        .await,
    );
    until_meshed(&nodes).await;
    let mut events = nodes[0].subscribe();

    control
        .send(ActiveFaults {
            byzantine: Some(jobmesh_actors::faults::Byzantine::Junk),
            ..ActiveFaults::default()
        })
        .unwrap();
    // Scores change inside gossipsub without an event; poll, bounded by a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = nodes[0].mesh().unwrap();
    loop {
        let score = client.peer_score(junker).await.unwrap().unwrap_or(0.0);
        if score < -10.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "junk sender still scored {score}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for honest in &keys[1..N - 1] {
        let s = client
            .peer_score(honest.public().to_peer_id())
            .await
            .unwrap()
            .unwrap_or(0.0);
        assert!(s >= 0.0, "an honest member lost score: {s}");
    }

    // The cluster still runs jobs, and nobody was evicted.
    nodes[0].submit(jobs("noop", json!({}), 20)).await.unwrap();
    let c = until_finished(&store, &mut events, 20).await;
    assert_eq!(c.get(&JobState::Succeeded), Some(&20), "{c:?}");
    let log = store.events_after(0, 100_000).await.unwrap();
    assert!(
        !log.iter().any(|e| e.event.kind == EventKind::NodeEvicted),
        "junk must not evict anyone"
    );
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Seven nodes that each watch only a sample (4 observers per member, from rings): a
/// crashed node is evicted by a certificate signed by its assigned observers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_sampled_monitoring_a_crash_is_evicted_by_its_assigned_observers() {
    const M: usize = 7;
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..M).map(|_| Keypair::generate_ed25519()).collect();
    let mut membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
    membership.monitoring = Monitoring::Observers { k: 4 };
    let node = |i: usize, bootstrap: Vec<libp2p::Multiaddr>| {
        start_with(
            i,
            &keys[i],
            &store,
            bootstrap,
            builtins(),
            membership.clone(),
            None,
            None,
        )
    };
    let first = node(0, vec![]).await;
    let addr = first.mesh().unwrap().listen_addrs().await.unwrap()[0].clone();
    let mut nodes = vec![first];
    for i in 1..M {
        nodes.push(node(i, vec![addr.clone()]).await);
    }
    until_meshed(&nodes).await;

    let victim_peer = keys[M - 1].public().to_peer_id();
    let observers = View::new(membership.allowlist.iter().copied()).observers_of(
        &victim_peer,
        0,
        membership.monitoring,
    );
    assert_eq!(observers.len(), 4, "a sample of the other six");
    let victim = nodes.pop().unwrap();
    let mut events = nodes[0].subscribe();
    let crashed = Instant::now();
    victim.abort();

    let evicted = next_event(&mut events, EventKind::NodeEvicted).await;
    println!(
        "crash-to-eviction {:?} (7 nodes, 4 observers each)",
        crashed.elapsed()
    );
    assert_eq!(evicted.node, Some(NodeId(victim_peer.to_string())));
    let signers: Vec<&str> = evicted.detail["signers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(signers.len() >= 3, "2f+1 = 3 signatures: {signers:?}");
    assert!(
        signers
            .iter()
            .all(|s| observers.iter().any(|o| o.to_string() == *s)),
        "only assigned observers sign: {signers:?}, observers {observers:?}"
    );
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
