//! The mesh's phi in the failure score of a running cluster. Five nodes on a real
//! libp2p mesh over loopback TCP; each voter feeds the phi it computes for every member
//! it monitors to its node's failure model. One observer stops hearing one member (an
//! injected fault on that observer's incoming traffic only, `jobmesh_actors::chaos`):
//! the score that observer shows for the member rises past the drain threshold while the
//! other members' stay below it, and the other observers, who hear the member as usual,
//! show it below the threshold too. (Below, not at zero: on a loaded machine a heartbeat
//! may be late for anyone, and the test must not hang on the scheduler.)
//! One observer is a single Down vote, far from a certificate: nothing is evicted.

mod common;

use std::time::{Duration, Instant};

use common::mesh::*;
use common::*;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::membership::MembershipConfig;
use jobmesh::predict::FailurePredictor;
use jobmesh::predict::failure::ScoreSettings;
use jobmesh_actors::Node;
use jobmesh_actors::chaos::ActiveFaults;
use libp2p::identity::Keypair;
use tokio::sync::watch;

/// The score `node` shows for `subject` now.
fn score(node: &Node, subject: &str) -> f64 {
    let models = node.models();
    let m = models.lock();
    m.failure.score(subject, SystemClock.now().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_one_observer_hears_late_scores_there_and_nowhere_else() {
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..N).map(|_| Keypair::generate_ed25519()).collect();
    let ids: Vec<String> = keys
        .iter()
        .map(|k| k.public().to_peer_id().to_string())
        .collect();
    let membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
    let (control, faults) = watch::channel(ActiveFaults::default());
    let observer = start_with(
        0,
        &keys[0],
        &store,
        vec![],
        builtins(),
        membership.clone(),
        None,
        Some(faults),
    )
    .await;
    let addr = observer.mesh().unwrap().listen_addrs().await.unwrap()[0].clone();
    let mut nodes = vec![observer];
    for i in 1..N {
        nodes.push(start(i, &keys, &store, vec![addr.clone()], builtins()).await);
    }
    until_meshed(&nodes).await;

    // Every voter feeds the phi of every member it monitors. The feed has no event;
    // poll, bounded by a deadline that only limits a failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fed = nodes.iter().all(|n| {
            let models = n.models();
            let m = models.lock();
            m.failure.vitals().observed().count() == N - 1
        });
        if fed {
            break;
        }
        assert!(Instant::now() < deadline, "phi not fed for every member");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let victim = &ids[N - 1];
    let enter = ScoreSettings::default().enter;
    for n in &nodes {
        for id in &ids {
            let s = score(n, id);
            assert!(s < enter, "{id} at {s} as {:?} shows it, before", n.id());
        }
    }

    // Node 0 stops hearing the last member.
    control
        .send(ActiveFaults {
            drop_from: [keys[N - 1].public().to_peer_id()].into_iter().collect(),
            ..ActiveFaults::default()
        })
        .unwrap();
    // Smoothed over half a minute: past the drain threshold within about twenty seconds
    // of silence.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    while score(&nodes[0], victim) <= enter {
        assert!(
            Instant::now() < deadline,
            "the score stayed at {}",
            score(&nodes[0], victim)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("past the drain threshold after {:?}", started.elapsed());
    for id in &ids[1..N - 1] {
        let s = score(&nodes[0], id);
        assert!(s < enter, "{id} at {s}: heard as usual");
    }
    for n in &nodes[1..] {
        let s = score(n, victim);
        assert!(
            s < enter,
            "{:?} shows it at {s}, hearing it as usual",
            n.id()
        );
    }

    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
