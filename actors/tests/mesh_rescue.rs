//! Five nodes on a real libp2p mesh over loopback TCP, sharing one store: one node
//! crashes while holding leases; the survivors evict it by a certificate of 2f+1 signed
//! votes, its leases are revoked (its late completion is refused) and its jobs finish
//! elsewhere, long before its leases would have lapsed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use jobmesh::clock::SystemClock;
use jobmesh::event::EventKind;
use jobmesh::job::{Completion, CompletionResult, Job, JobState, Lease, NodeId, Outcome, WorkerId};
use jobmesh::membership::MembershipConfig;
use jobmesh::payload::PayloadRules;
use jobmesh_actors::mesh::MeshConfig;
use jobmesh_actors::{MeshOptions, Node, NodeOptions};
use libp2p::identity::Keypair;
use serde_json::json;
use tokio::sync::mpsc;

const N: usize = 5;

async fn start(
    i: usize,
    keys: &[Keypair],
    store: &jobmesh::store::SharedStore,
    bootstrap: Vec<libp2p::Multiaddr>,
    registry: jobmesh::handler::Registry,
) -> Node {
    let mut w = workers(4);
    // Long leases: a rescue within the test can only come from the eviction.
    w.lease = Duration::from_secs(120);
    let membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
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
            keypair: keys[i].clone(),
            mesh,
            membership,
            seed: i as u64,
        },
    )
    .await
    .unwrap()
}

/// Waits until every node has heard heartbeats from every other (phi known for all).
async fn until_meshed(nodes: &[Node]) {
    // The mesh exposes no "everyone heard everyone" event; poll the status snapshots,
    // bounded by a deadline that only limits a failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = nodes.iter().all(|n| {
            let s = n.mesh_status().unwrap();
            s.members.len() == N
                && s.members
                    .iter()
                    .filter(|m| m.state == "alive")
                    .all(|m| m.heard)
                && s.members.iter().filter(|m| m.state == "alive").count() == N - 1
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
    let survivor_registry = || {
        let mut r = builtins();
        r.register_fn("hold", PayloadRules::default(), |_ctx| async { Ok(None) });
        r
    };
    let (held_tx, mut held) = mpsc::channel::<Job>(64);
    let mut victim_registry = builtins();
    victim_registry.register_fn("hold", PayloadRules::default(), move |ctx| {
        let held = held_tx.clone();
        async move {
            let _ = held.send(ctx.job.clone()).await;
            std::future::pending::<()>().await;
            Ok(None)
        }
    });

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
        nodes.push(start(i, &keys, &store, vec![addr.clone()], survivor_registry()).await);
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
    let j = &victim_jobs[0];
    let late = Completion {
        lease: Lease {
            job: j.id,
            token: j.lease_token,
            worker: WorkerId(format!("{victim_id}/pool")),
            node: victim_id.clone(),
            attempt: j.attempt,
            expires_at: j.lease_expires_at.unwrap(),
        },
        outcome: Outcome::Succeeded { output: None },
        started_at: j.run_at,
        finished_at: j.run_at,
    };
    assert_eq!(
        store.complete(vec![late]).await.unwrap(),
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
