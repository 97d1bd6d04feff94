//! Faults injected into real nodes' voter traffic (`jobmesh_actors::chaos`, the crate's
//! `chaos` feature, which its tests turn on): a node cut off by a partition is evicted
//! and, once the partition heals, learns of its eviction and rejoins with a higher
//! incarnation; a junk-flooding member loses its gossip score and evicts nobody; a voter
//! that panics is restarted by its supervisor and votes again.

mod common;

use std::time::{Duration, Instant};

use common::mesh::*;
use common::*;
use jobmesh::event::EventKind;
use jobmesh::job::{CompletionResult, JobState, NodeId};
use jobmesh::membership::MembershipConfig;
use jobmesh::membership::adversary::Behaviour;
use jobmesh_actors::chaos::ActiveFaults;
use libp2p::identity::Keypair;
use serde_json::json;
use tokio::sync::watch;

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
            byzantine: Some(Behaviour::Junk),
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

/// A voter that panics (the fault injector's `voter_panics`) is restarted by the node
/// supervisor with a fresh core: it comes back under a higher incarnation, the others
/// hear it, and it votes: with four members (f = 1) and one crashed, the certificate
/// needs all three survivors' signatures, the restarted voter's among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_voter_is_restarted_and_votes_again() {
    const M: usize = 4;
    let (store, _dir) = store().await;
    let keys: Vec<Keypair> = (0..M).map(|_| Keypair::generate_ed25519()).collect();
    let membership = MembershipConfig::new(keys.iter().map(|k| k.public().to_peer_id()), 1);
    let (control, rx) = watch::channel(ActiveFaults::default());
    let node = |i: usize, bootstrap, faults| {
        start_with(
            i,
            &keys[i],
            &store,
            bootstrap,
            builtins(),
            membership.clone(),
            None,
            faults,
        )
    };
    let first = node(0, vec![], Some(rx)).await;
    let addr = first.mesh().unwrap().listen_addrs().await.unwrap()[0].clone();
    let mut nodes = vec![first];
    for i in 1..M {
        nodes.push(node(i, vec![addr.clone()], None).await);
    }
    until_meshed(&nodes).await;
    let restarted = keys[0].public().to_peer_id().to_string();
    let before = nodes[0].mesh_status().unwrap().incarnation;
    assert_eq!(nodes[0].stats().voter_restarts, 0);

    control
        .send(ActiveFaults {
            voter_panics: 1,
            ..ActiveFaults::default()
        })
        .unwrap();
    // A restart raises no lifecycle event: poll the node's counters and the others' view
    // of it, bounded by a deadline that only limits a failure.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let back = nodes[0].stats().voter_restarts == 1;
        let after = nodes[0].mesh_status().unwrap().incarnation;
        let seen = nodes[1..].iter().all(|n| {
            n.mesh_status()
                .unwrap()
                .members
                .iter()
                .any(|m| m.peer == restarted && m.state == "alive" && m.incarnation == after)
        });
        if back && after > before && seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voter not back: restarts {}, incarnation {after} (was {before})",
            nodes[0].stats().voter_restarts
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The fresh core hears every member before the crash it must vote on.
    until_meshed(&nodes).await;

    let mut events = nodes[1].subscribe();
    let victim = nodes.pop().unwrap();
    let victim_id = victim.id().clone();
    victim.abort();
    let evicted = next_event(&mut events, EventKind::NodeEvicted).await;
    assert_eq!(evicted.node.as_ref(), Some(&victim_id));
    let signers: Vec<&str> = evicted.detail["signers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        signers.contains(&restarted.as_str()),
        "the restarted voter signed: {signers:?}"
    );
    assert_eq!(nodes[0].stats().voter_restarts, 1, "restarted once");
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
