//! Five nodes on a real libp2p mesh over loopback TCP, sharing one store: one node
//! crashes while holding leases; the survivors evict it by a certificate of 2f+1 signed
//! votes, its leases are revoked (its late completion is refused) and its jobs finish
//! elsewhere, long before its leases would have lapsed. A node admitted by a join
//! certificate signed by the cluster key becomes a member. Seven nodes under sampled
//! monitoring evict by their assigned observers. (Injected faults: `mesh_chaos.rs`.)

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mesh::*;
use common::*;
use jobmesh::clock::Clock;
use jobmesh::clock::SystemClock;
use jobmesh::event::EventKind;
use jobmesh::job::{CompletionResult, JobState, NodeId};
use jobmesh::membership::{JoinCertificate, MembershipConfig, Monitoring, View};
use jobmesh_actors::mesh::MeshConfig;
use jobmesh_actors::{MeshOptions, Node, NodeOptions};
use libp2p::identity::Keypair;
use serde_json::json;

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
    evicted_events_name_the_requeued_jobs(&store, &victim_id, &victim_jobs).await;
    metrics_saw_the_eviction(&nodes).await;
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Across the survivors' `node.evicted` events about `victim`, the jobs re-queued are
/// the victim's, each named once (fencing: only the first revocation took them).
async fn evicted_events_name_the_requeued_jobs(
    store: &jobmesh::store::SharedStore,
    victim: &NodeId,
    jobs: &[jobmesh::job::Job],
) {
    let mut expected: Vec<i64> = jobs.iter().map(|j| j.id.0).collect();
    expected.sort_unstable();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = store.events_after(0, 100_000).await.unwrap();
        let evictions: Vec<_> = log
            .iter()
            .filter(|e| {
                e.event.kind == EventKind::NodeEvicted && e.event.node.as_ref() == Some(victim)
            })
            .map(|e| &e.event.detail)
            .collect();
        let mut named: Vec<i64> = evictions
            .iter()
            .flat_map(|d| d["requeued"].as_array().cloned().unwrap_or_default())
            .filter_map(|id| id.as_i64())
            .collect();
        named.sort_unstable();
        let counted: u64 = evictions
            .iter()
            .filter_map(|d| d["requeued_count"].as_u64())
            .sum();
        // The rescuer's event is written after its revocation: wait for it.
        if named == expected {
            assert_eq!(counted, expected.len() as u64, "{evictions:?}");
            assert!(evictions.iter().all(|d| d["discarded_count"] == 0));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node.evicted events name {named:?}, not the victim's jobs {expected:?}: {evictions:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of the samples of `name` (exactly) whose labels contain `with`.
fn metric(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(with))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the survivors' metrics say about the eviction they carried out.
async fn metrics_saw_the_eviction(survivors: &[Node]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = survivors[0].metrics().encode();
        // The voter's status snapshot follows the eviction event.
        if metric(&text, "jobmesh_mesh_members", "state=\"evicted\"") == 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no evicted member in\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        metric(&text, "jobmesh_mesh_evictions_total", ""),
        1.0,
        "{text}"
    );
    assert_eq!(metric(&text, "jobmesh_mesh_members", "state=\"self\""), 1.0);
    // The other survivors (one may look suspected for a moment on a loaded machine).
    let others = metric(&text, "jobmesh_mesh_members", "state=\"alive\"")
        + metric(&text, "jobmesh_mesh_members", "state=\"suspected\"");
    assert_eq!(others, 3.0, "{text}");
    assert_eq!(metric(&text, "jobmesh_mesh_quorum", ""), 1.0);
    assert!(text.contains("jobmesh_mesh_phi{peer=\""), "{text}");
    assert!(
        metric(&text, "libp2p_bandwidth_bytes_total", "Inbound") > 0.0,
        "{text}"
    );
    assert!(metric(&text, "libp2p_bandwidth_bytes_total", "Outbound") > 0.0);
    // Three signatures: three survivors cast a vote, and whoever assembled the
    // certificate received at least two of them.
    let all: Vec<String> = survivors.iter().map(|n| n.metrics().encode()).collect();
    let total = |name| all.iter().map(|t| metric(t, name, "")).sum::<f64>();
    assert!(total("jobmesh_mesh_votes_cast_total") >= 3.0);
    assert!(total("jobmesh_mesh_votes_received_total") >= 2.0);
    assert!(
        total("jobmesh_leases_revoked_total") >= 4.0,
        "the victim's four jobs"
    );
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
            predict: Default::default(),
        },
        MeshOptions {
            keypair: stranger,
            mesh: MeshConfig::default(),
            membership: membership.clone(),
            seed: 9,
            join: None,
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
