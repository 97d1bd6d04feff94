//! Meshed nodes for the mesh tests: starting them (with injected faults or without),
//! registries that finish or hold their jobs, and waiting for the mesh to form.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::{Completion, Job, Lease, NodeId, Outcome, WorkerId};
use jobmesh::membership::{JoinCertificate, MembershipConfig};
use jobmesh::payload::PayloadRules;
use jobmesh_actors::chaos::{self, ActiveFaults};
use jobmesh_actors::mesh::MeshConfig;
use jobmesh_actors::{MeshOptions, Node, NodeOptions};
use libp2p::identity::Keypair;
use tokio::sync::{mpsc, watch};

use super::{builtins, fast_retry, workers};

/// Members of the five-node meshes.
pub const N: usize = 5;

/// Node `i` of a mesh whose members are `keys` (f = 1), with `registry`, joined through
/// `bootstrap`.
pub async fn start(
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

/// A node with its own membership settings, join certificate and, when `faults` is
/// given, faults injected into its voter's traffic (`jobmesh_actors::chaos`).
#[allow(clippy::too_many_arguments)]
pub async fn start_with(
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
    let opts = NodeOptions {
        node_id: NodeId(format!("n{i}")),
        workers: w,
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
        join,
    };
    match faults {
        Some(faults) => chaos::start_meshed(opts, mesh, faults).await,
        None => Node::start_meshed(opts, mesh).await,
    }
    .unwrap()
}

/// Builtins plus a `hold` kind that finishes at once.
pub fn finishing_registry() -> jobmesh::handler::Registry {
    let mut r = builtins();
    r.register_fn("hold", PayloadRules::default(), |_ctx| async { Ok(None) });
    r
}

/// Builtins plus a `hold` kind that reports each first attempt it starts on the returned channel
/// (of `capacity`) and then never finishes: the node sits on its lease.
pub fn holding_registry(capacity: usize) -> (jobmesh::handler::Registry, mpsc::Receiver<Job>) {
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
pub fn late_success(job: &Job, node: &NodeId) -> Completion {
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
pub async fn until_meshed(nodes: &[Node]) {
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

/// Starts nodes 0 to N-2 (all but the last key) joined through node 0, with the builtin
/// handlers and no faults; returns them and node 0's address for the last one to join.
pub async fn start_first_four(
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
