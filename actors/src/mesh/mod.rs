//! The libp2p network layer of the MeshActor: transport, behaviours, identity, and a
//! `Client`/`EventLoop` pair in the shape of rust-libp2p's file-sharing example.
//!
//! This layer moves bytes and reports facts; it knows nothing about membership or votes.
//! The Membership actor glues it to the sans-IO protocol core: it feeds [`MeshEvent`]s into
//! the core, and turns the core's outputs into [`Client`] calls (publish, probe,
//! report_validation, set_app_score).
//!
//! Stack: TCP (+ QUIC with the `quic` feature) / noise / yamux, with
//! - identify (`/jobmesh/1.0.0`), to learn listen addresses,
//! - gossipsub with strict signing, application validation and peer scoring,
//! - `/jobmesh/probe/1`, a request-response probe carrying nonce and incarnation,
//! - `/jobmesh/peers/1`, a bounded peer exchange so joining one member reaches all,
//! - `/jobmesh/direct/1`, one persistent stream per peer for liveness frames,
//! - `/ipfs/ping/1.0.0`, so ordinary libp2p tooling can ping a node,
//! - connection limits, and a gate that caps and budgets connections of outsiders.
//!
//! Outsiders: once the application names the members ([`Client::set_members`]), every
//! inbound input (subscription changes, gossip, probes, peer exchange, identify, direct
//! streams, connections) is charged to its sender's token bucket before it causes any
//! work; an outsider over budget is disconnected and banned for a minute, a member over
//! budget only has the excess dropped. Direct streams and peer exchange are for members
//! only, and peer exchange hands out members only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jobmesh_actors::mesh::{MeshConfig, load_or_create_keypair, spawn_mesh};
//! let key = load_or_create_keypair("/var/lib/jobmesh/node.key")?;
//! let config = MeshConfig { topics: vec!["jobmesh/membership/1".into()], ..Default::default() };
//! let (client, mut events, _task) = spawn_mesh(key, config)?;
//! println!("join me at {:?}", client.listen_addrs().await?);
//! while let Some(event) = events.recv().await { println!("{event:?}"); }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod behaviour;
mod budget;
mod client;
mod command;
mod config;
pub mod direct;
mod error;
mod event;
mod event_loop;
mod gate;
mod identity;
mod ledger;
pub mod peer_exchange;
pub mod probe;
mod redial;
mod transport;

use std::sync::Arc;

use libp2p::{SwarmBuilder, identity::Keypair};
use tokio::{sync::mpsc, task::JoinHandle};

pub use behaviour::IDENTIFY_PROTOCOL;
pub use client::Client;
pub use command::{ProbeReply, Validation};
pub use config::{GossipTuning, MeshConfig, message_id};
pub use error::{ClientError, IdentityError, MeshError, ProbeError};
pub use event::MeshEvent;
pub use event_loop::EventLoop;
pub use identity::load_or_create_keypair;
pub use ledger::{MeshStats, RefusedInputs, Traffic, TrafficByPeer, TrafficCounters};
pub use libp2p::{Multiaddr, PeerId, gossipsub::MessageId};

use behaviour::MeshBehaviour;
use ledger::MeshLedger;

/// Builds the swarm, binds the listen addresses, joins the topics, dials the bootstrap
/// peers, and returns the client, the event receiver, and the [`EventLoop`] to run.
///
/// Listen failures are errors; an unreachable bootstrap peer is not (it may be down while
/// this node restarts, or not started yet): the event loop dials it again, with a
/// backoff from 0.5 s to 30 s, while it is not connected. Watch for
/// [`MeshEvent::PeerConnected`], or call [`Client::dial`] to learn the outcome of a join.
pub fn build_mesh(
    keypair: Keypair,
    config: MeshConfig,
) -> Result<(Client, mpsc::Receiver<MeshEvent>, EventLoop), MeshError> {
    config.validate()?;
    let ledger = Arc::new(MeshLedger::default());
    let transport = transport::build(&keypair, ledger.clone(), config.handshake_timeout)?;
    let behaviour = MeshBehaviour::new(&keypair, &config, ledger.clone())?;
    let mut control = behaviour.stream.new_control();
    let incoming = control
        .accept(direct::PROTOCOL)
        .map_err(|e| MeshError::Gossipsub(format!("direct protocol: {e}")))?;
    let links = Arc::new(direct::DirectLinks::new(
        control,
        config.max_connections as usize,
        config.probe_timeout,
    ));
    let local_peer_id = keypair.public().to_peer_id();

    let transport_phase = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .unwrap_or_else(|never| match never {});
    let idle = config.idle_connection_timeout;
    // The two arms differ in the transport's type only; the swarm is the same.
    let mut swarm = match &config.metrics {
        Some(metrics) => metrics.with_registry(|registry| {
            transport_phase
                .with_bandwidth_metrics(registry)
                .with_behaviour(|_| behaviour)
                .unwrap_or_else(|never| match never {})
                .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
                .build()
        }),
        None => transport_phase
            .with_behaviour(|_| behaviour)
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };

    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| MeshError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    for topic in &config.topics {
        event_loop::subscribe(&mut swarm.behaviour_mut().gossipsub, topic).map_err(|e| {
            MeshError::Subscribe {
                topic: topic.clone(),
                reason: e.to_string(),
            }
        })?;
    }
    for addr in &config.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, %e, "cannot dial bootstrap peer");
        }
    }

    let (command_tx, command_rx) = mpsc::channel(config.command_buffer);
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer);
    let client = Client {
        sender: command_tx,
        local_peer_id,
        probe_timeout: config.probe_timeout,
        ledger: ledger.clone(),
        links,
    };
    let event_loop = EventLoop::new(swarm, command_rx, event_tx, ledger, incoming, &config);
    Ok((client, event_rx, event_loop))
}

/// [`build_mesh`], then runs the event loop on the current tokio runtime.
/// Must be called from within a tokio runtime.
pub fn spawn_mesh(
    keypair: Keypair,
    config: MeshConfig,
) -> Result<(Client, mpsc::Receiver<MeshEvent>, JoinHandle<()>), MeshError> {
    let (client, events, event_loop) = build_mesh(keypair, config)?;
    Ok((client, events, tokio::spawn(event_loop.run())))
}
