//! The mesh network layer on real libp2p over loopback TCP.
//!
//! Synchronisation is always on events or observable state, with generous timeouts that only
//! bound a failing test. The one fixed wait is the traffic measurement window.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    time::{Duration, Instant},
};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use jobmesh_actors::mesh::{
    Client, IdentityError, MeshConfig, MeshEvent, Multiaddr, PeerId, ProbeError, Validation,
    load_or_create_keypair, spawn_mesh,
};
use libp2p::{
    StreamProtocol, identity::Keypair, noise, request_response, swarm::SwarmEvent, tcp, yamux,
};
use tokio::{sync::mpsc, task::JoinHandle};

const TOPIC: &str = "jobmesh/test/1";
/// Bounds a failing test; passing tests finish far sooner.
const TIMEOUT: Duration = Duration::from_secs(30);

struct Node {
    client: Client,
    events: mpsc::Receiver<MeshEvent>,
    /// Events received while waiting for another one, kept for later `expect`s.
    backlog: VecDeque<MeshEvent>,
    task: JoinHandle<()>,
    id: PeerId,
    addr: Multiaddr,
}

impl Node {
    async fn start(config: MeshConfig) -> Node {
        let (client, events, task) =
            spawn_mesh(Keypair::generate_ed25519(), config).expect("mesh starts");
        let addr = client.listen_addrs().await.expect("listen addrs")[0].clone();
        Node {
            id: client.local_peer_id(),
            client,
            events,
            backlog: VecDeque::new(),
            task,
            addr,
        }
    }

    async fn joining(nodes: &[&Node], tweak: impl FnOnce(&mut MeshConfig)) -> Node {
        let mut config = MeshConfig {
            topics: vec![TOPIC.into()],
            bootstrap: nodes.iter().map(|n| n.addr.clone()).collect(),
            ..Default::default()
        };
        tweak(&mut config);
        Node::start(config).await
    }

    /// Waits for the first event matching `pred`, keeping the others.
    async fn expect(&mut self, what: &str, pred: impl Fn(&MeshEvent) -> bool) -> MeshEvent {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        let wait = async {
            loop {
                let event = self.events.recv().await.expect("event loop alive");
                if pred(&event) {
                    return event;
                }
                self.backlog.push_back(event);
            }
        };
        tokio::time::timeout(TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; backlog {:?}", self.backlog))
    }

    async fn expect_connected(&mut self, peer: PeerId) {
        self.expect(
            "peer connected",
            |e| matches!(e, MeshEvent::PeerConnected { peer: p, .. } if *p == peer),
        )
        .await;
    }

    async fn expect_identified(&mut self, peer: PeerId) {
        self.expect(
            "peer identified",
            |e| matches!(e, MeshEvent::PeerIdentified { peer: p, .. } if *p == peer),
        )
        .await;
    }

    async fn expect_subscribed(&mut self, peer: PeerId) {
        self.expect("peer subscribed", |e| {
            matches!(e, MeshEvent::Subscribed { peer: p, topic } if *p == peer && topic == TOPIC)
        })
        .await;
    }

    /// Next gossip message, with its propagation source and id.
    async fn expect_message(&mut self) -> MeshEvent {
        self.expect("gossip message", |e| matches!(e, MeshEvent::Message { .. }))
            .await
    }

    async fn accept(&self, message: &MeshEvent) {
        report(&self.client, message, Validation::Accept).await;
    }
}

async fn report(client: &Client, message: &MeshEvent, verdict: Validation) -> bool {
    let MeshEvent::Message {
        propagation_source,
        message_id,
        ..
    } = message
    else {
        panic!("not a message: {message:?}")
    };
    client
        .report_validation(message_id.clone(), *propagation_source, verdict)
        .await
        .unwrap()
}

fn data_of(message: &MeshEvent) -> &[u8] {
    match message {
        MeshEvent::Message { data, .. } => data,
        other => panic!("not a message: {other:?}"),
    }
}

/// Polls observable state until `cond` holds (for gossipsub mesh membership, which emits
/// no event). Bounded by [`TIMEOUT`].
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + TIMEOUT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn in_mesh(node: &Node, peer: PeerId) -> bool {
    node.client.mesh_peers(TOPIC).await.unwrap().contains(&peer)
}

fn topic_config() -> MeshConfig {
    MeshConfig {
        topics: vec![TOPIC.into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_by_multiaddr_and_gossip() {
    let mut a = Node::start(topic_config()).await;
    let mut b = Node::joining(&[&a], |_| {}).await;
    b.expect_connected(a.id).await;
    a.expect_connected(b.id).await;
    // A must know B's listen address before it can introduce B.
    a.expect_identified(b.id).await;
    // C knows only A; peer exchange introduces it to B.
    let mut c = Node::joining(&[&a], |_| {}).await;
    c.expect_connected(a.id).await;
    c.expect_connected(b.id).await;
    b.expect_connected(c.id).await;
    for node in [&a, &b, &c] {
        let mut peers = node.client.connected_peers().await.unwrap();
        peers.sort();
        let mut expected: Vec<_> = [a.id, b.id, c.id]
            .into_iter()
            .filter(|p| *p != node.id)
            .collect();
        expected.sort();
        assert_eq!(peers, expected);
    }

    a.expect_subscribed(b.id).await;
    a.expect_subscribed(c.id).await;
    let sent_id = a
        .client
        .publish(TOPIC, b"hello mesh".to_vec())
        .await
        .unwrap();
    for node in [&mut b, &mut c] {
        let message = node.expect_message().await;
        match &message {
            MeshEvent::Message {
                author,
                message_id,
                topic,
                data,
                ..
            } => {
                assert_eq!(*author, Some(a.id));
                assert_eq!(*message_id, sent_id);
                assert_eq!(topic, TOPIC);
                assert_eq!(data, b"hello mesh");
            }
            _ => unreachable!(),
        }
        node.accept(&message).await;
    }
    // Each peer's streams are counted apart (a bare mesh counts everyone as a member).
    let by_peer = a.client.traffic_by_peer();
    for peer in [b.id, c.id] {
        let t = by_peer.members.get(&peer).copied().unwrap_or_default();
        assert!(t.bytes_in > 0 && t.bytes_out > 0, "{peer}: {t:?}");
    }
    let total = a.client.stats().traffic;
    let streams: u64 = by_peer.members.values().map(|t| t.bytes_out).sum();
    assert!(
        streams <= total.bytes_out,
        "stream bytes {streams} are within the wire's {}",
        total.bytes_out
    );
    for node in [a, b, c] {
        node.client.shutdown().await.unwrap();
        node.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_not_forwarded_and_penalises_its_source() {
    // A line, A - B - C: without peer exchange, C hears A only through B.
    let no_px = |c: &mut MeshConfig| c.peer_exchange_interval = None;
    let mut b = Node::start(MeshConfig {
        peer_exchange_interval: None,
        ..topic_config()
    })
    .await;
    let mut a = Node::joining(&[&b], no_px).await;
    let mut c = Node::joining(&[&b], no_px).await;
    b.expect_connected(a.id).await;
    b.expect_connected(c.id).await;
    a.expect_subscribed(b.id).await;
    eventually("C in B's mesh", || in_mesh(&b, c.id)).await;
    assert!(!c.client.connected_peers().await.unwrap().contains(&a.id));

    let score_before = b
        .client
        .peer_score(a.id)
        .await
        .unwrap()
        .expect("A is scored");
    a.client
        .publish(TOPIC, b"forged vote".to_vec())
        .await
        .unwrap();
    a.client
        .publish(TOPIC, b"valid vote".to_vec())
        .await
        .unwrap();

    let bad = b.expect_message().await;
    assert_eq!(data_of(&bad), b"forged vote");
    assert!(report(&b.client, &bad, Validation::Reject).await);
    let good = b.expect_message().await;
    assert_eq!(data_of(&good), b"valid vote");
    b.accept(&good).await;

    // Per-connection order is preserved, so had B forwarded the rejected message,
    // C would have received it first.
    let first_at_c = c.expect_message().await;
    assert_eq!(data_of(&first_at_c), b"valid vote");
    c.accept(&first_at_c).await;

    let score_after = b.client.peer_score(a.id).await.unwrap().unwrap();
    assert!(
        score_after < score_before && score_after < 0.0,
        "score of A at B: before {score_before}, after {score_after}"
    );

    // The application score is the membership layer's lever.
    assert!(b.client.set_app_score(c.id, -30.0).await.unwrap());
    let c_score = b.client.peer_score(c.id).await.unwrap().unwrap();
    assert!(c_score < -25.0, "app score applied: {c_score}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_round_trip_and_failure_after_peer_leaves() {
    let probe_timeout = Duration::from_secs(2);
    let mut a = Node::start(MeshConfig {
        probe_timeout,
        ..Default::default()
    })
    .await;
    let mut b = Node::joining(&[&a], |c| c.probe_timeout = probe_timeout).await;
    a.expect_connected(b.id).await;
    a.client.set_incarnation(3).await.unwrap();
    b.client.set_incarnation(7).await.unwrap();

    let reply = a.client.probe(b.id).await.expect("probe answered");
    assert_eq!(reply.incarnation, 7);
    assert!(reply.rtt > Duration::ZERO && reply.rtt < probe_timeout);
    let seen = b
        .expect("probe request", |e| {
            matches!(e, MeshEvent::ProbeRequest { .. })
        })
        .await;
    assert_eq!(
        seen,
        MeshEvent::ProbeRequest {
            peer: a.id,
            incarnation: 3
        }
    );
    assert_eq!(a.client.probe(a.id).await, Err(ProbeError::SelfProbe));

    b.client.shutdown().await.unwrap();
    b.task.await.unwrap();
    a.expect(
        "B disconnected",
        |e| matches!(e, MeshEvent::PeerDisconnected { peer } if *peer == b.id),
    )
    .await;
    let started = Instant::now();
    let err = a.client.probe(b.id).await.expect_err("B is gone");
    let took = started.elapsed();
    assert!(
        took <= probe_timeout + Duration::from_millis(500),
        "failed after {took:?}: {err}"
    );
    println!("probe to departed peer failed after {took:?} with: {err}");
}

#[test]
fn key_file_is_private_stable_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let first = load_or_create_keypair(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = load_or_create_keypair(&path).unwrap();
    assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let corrupt = dir.path().join("corrupt.key");
    std::fs::write(&corrupt, b"definitely not a key").unwrap();
    std::fs::set_permissions(&corrupt, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = load_or_create_keypair(&corrupt).unwrap_err();
    assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.key"), "{err}");
    assert_eq!(std::fs::read(&corrupt).unwrap(), b"definitely not a key");

    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, b"").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        load_or_create_keypair(&empty),
        Err(IdentityError::Corrupt { .. })
    ));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_or_create_keypair(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::InsecurePermissions { mode: 0o644, .. }),
        "{err}"
    );
}

/// A request-response codec that writes whatever bytes it is given: the attacker's side.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(1 << 16).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        self.read_request(p, io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.write_request(p, io, res).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_one_peer_does_not_hurt_the_others() {
    let mut victim = Node::start(topic_config()).await;

    // 1. Malformed probe frames from a hand-built attacker swarm.
    let mut attacker = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new("/jobmesh/probe/1"),
                    request_response::ProtocolSupport::Outbound,
                )],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .build();
    let attacker_id = *attacker.local_peer_id();
    attacker.dial(victim.addr.clone()).unwrap();
    // Requests sent before the connection exists would trigger a dial without addresses.
    tokio::time::timeout(TIMEOUT, async {
        while !matches!(
            attacker.select_next_some().await,
            SwarmEvent::ConnectionEstablished { .. }
        ) {}
    })
    .await
    .expect("attacker connects");
    let junk: [Vec<u8>; 4] = [
        vec![],
        vec![0xde, 0xad, 0xbe, 0xef],
        vec![9; 18],     // unknown version
        vec![1; 10_000], // oversized
    ];
    for frame in junk.iter() {
        attacker
            .behaviour_mut()
            .send_request(&victim.id, frame.clone());
    }
    let mut finished = 0;
    tokio::time::timeout(TIMEOUT, async {
        while finished < junk.len() {
            match attacker.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. })
                | SwarmEvent::Behaviour(request_response::Event::Message { .. }) => finished += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("attacker requests complete");
    for _ in 0..junk.len() {
        victim
            .expect("malformed input reported", |e| {
                matches!(e, MeshEvent::MalformedInput { peer, protocol, .. }
                    if *peer == attacker_id && *protocol == "/jobmesh/probe/1")
            })
            .await;
    }
    drop(attacker);

    // 2. An oversized gossip message from a peer configured with a larger limit.
    let mut big = Node::joining(&[&victim], |c| c.max_message_size = 512 * 1024).await;
    let mut honest = Node::joining(&[&victim], |c| c.peer_exchange_interval = None).await;
    big.expect_subscribed(victim.id).await;
    honest.expect_subscribed(victim.id).await;
    big.client
        .publish(TOPIC, vec![7u8; 200 * 1024])
        .await
        .expect("the sender's own limit allows it");
    honest
        .client
        .publish(TOPIC, b"still here".to_vec())
        .await
        .unwrap();

    // The victim keeps serving: the honest message arrives, the oversized one never does.
    let message = victim
        .expect(
            "honest message",
            |e| matches!(e, MeshEvent::Message { data, .. } if data == b"still here"),
        )
        .await;
    victim.accept(&message).await;
    assert!(
        !victim
            .backlog
            .iter()
            .any(|e| matches!(e, MeshEvent::Message { data, .. } if data.len() > 64 * 1024)),
        "oversized message delivered"
    );
    let reply = honest
        .client
        .probe(victim.id)
        .await
        .expect("victim answers probes");
    assert!(reply.rtt < Duration::from_secs(2));
    assert!(!victim.task.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_steady_traffic_and_gossip_latency() {
    let mut a = Node::start(topic_config()).await;
    let mut b = Node::joining(&[&a], |_| {}).await;
    a.expect_identified(b.id).await;
    let mut c = Node::joining(&[&a], |_| {}).await;
    c.expect_connected(b.id).await;
    a.expect_subscribed(b.id).await;
    a.expect_subscribed(c.id).await;
    for (node, others) in [(&a, [b.id, c.id]), (&b, [a.id, c.id]), (&c, [a.id, b.id])] {
        for peer in others {
            eventually("full mesh", || in_mesh(node, peer)).await;
        }
    }

    let window = Duration::from_secs(10);
    let rate = |before: u64, after: u64| (after - before) as f64 / window.as_secs_f64();

    // Idle: heartbeats only.
    let before: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| n.client.stats().traffic)
        .collect();
    tokio::time::sleep(window).await; // measurement window, not synchronisation
    for (node, before) in ["A", "B", "C"].iter().zip(&before) {
        let n = match *node {
            "A" => &a,
            "B" => &b,
            _ => &c,
        };
        let after = n.client.stats().traffic;
        println!(
            "MEASURE idle node {node}: {:.1} B/s in, {:.1} B/s out",
            rate(before.bytes_in, after.bytes_in),
            rate(before.bytes_out, after.bytes_out)
        );
    }

    // Membership-like load: every node probes every other node once per second.
    let before: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| n.client.stats().traffic)
        .collect();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut probes = 0;
    while started.elapsed() < window {
        tick.tick().await;
        for (node, others) in [(&a, [b.id, c.id]), (&b, [a.id, c.id]), (&c, [a.id, b.id])] {
            for peer in others {
                node.client.probe(peer).await.expect("probe");
                probes += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (name, (n, before)) in ["A", "B", "C"].iter().zip([&a, &b, &c].iter().zip(&before)) {
        let after = n.client.stats().traffic;
        println!(
            "MEASURE probing 2 peers/s node {name}: {:.1} B/s in, {:.1} B/s out ({probes} probes in {elapsed:.1}s)",
            (after.bytes_in - before.bytes_in) as f64 / elapsed,
            (after.bytes_out - before.bytes_out) as f64 / elapsed,
        );
    }

    // Publish -> receive latency, one small message at a time, on loopback.
    let mut latencies = Vec::new();
    let before = a.client.stats().traffic;
    for i in 0..50u32 {
        let payload = format!("vote {i}").into_bytes();
        let sent = Instant::now();
        a.client.publish(TOPIC, payload.clone()).await.unwrap();
        let at_b = b.expect_message().await;
        latencies.push(sent.elapsed());
        assert_eq!(data_of(&at_b), payload.as_slice());
        b.accept(&at_b).await;
        let at_c = c.expect_message().await;
        c.accept(&at_c).await;
    }
    let after = a.client.stats().traffic;
    latencies.sort();
    println!(
        "MEASURE publish->receive latency over 50 messages: p50 {:?}, p99 {:?}, max {:?}; publisher sent {} B ({} B/message incl. duplicates and overhead)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1],
        after.bytes_out - before.bytes_out,
        (after.bytes_out - before.bytes_out) / 50,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_to_a_silent_peer_times_out_within_the_probe_timeout() {
    let probe_timeout = Duration::from_millis(800);
    let mut a = Node::start(MeshConfig {
        probe_timeout,
        ..Default::default()
    })
    .await;
    // A peer that accepts probe streams and never answers (like a paused process whose
    // kernel still holds the socket open).
    let mut silent = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new("/jobmesh/probe/1"),
                    request_response::ProtocolSupport::Inbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
            )
        })
        .unwrap()
        // Nothing keeps an idle connection open on this bare swarm otherwise.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let silent_id = *silent.local_peer_id();
    silent.dial(a.addr.clone()).unwrap();
    let driver = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = silent.select_next_some().await
            {
                held.push(channel); // never answered, never dropped
            }
        }
    });
    a.expect_connected(silent_id).await;

    let started = Instant::now();
    let err = a.client.probe(silent_id).await.expect_err("no answer");
    let took = started.elapsed();
    assert_eq!(err, ProbeError::Timeout(silent_id));
    assert!(
        took >= probe_timeout && took <= probe_timeout + Duration::from_millis(500),
        "timed out after {took:?}"
    );
    driver.abort();
}
