//! The composed [`NetworkBehaviour`] of a jobmesh node.

use std::iter;

use libp2p::{
    connection_limits::{self, ConnectionLimits},
    gossipsub, identify,
    identity::Keypair,
    request_response::{self, ProtocolSupport},
    swarm::NetworkBehaviour,
};

use super::{
    config::{self, MeshConfig},
    error::MeshError,
    peer_exchange::{self, PeerExchangeCodec},
    probe::{self, ProbeCodec},
};

/// The identify protocol version; peers announcing another one are still served, the
/// membership layer decides who is a member.
pub const IDENTIFY_PROTOCOL: &str = "/jobmesh/1.0.0";

/// Most probe (and peer-exchange) streams open at once per connection.
const MAX_CONCURRENT_STREAMS: usize = 32;

/// The protocols a jobmesh node speaks. Ping is left out: probes measure liveness and RTT
/// already, and every extra periodic protocol costs steady bandwidth.
#[derive(NetworkBehaviour)]
pub(crate) struct MeshBehaviour {
    /// Rejects connections over the configured bounds before any handler is created.
    pub(crate) limits: connection_limits::Behaviour,
    /// Learns peers' listen addresses (for re-dialling and peer exchange) and protocols.
    pub(crate) identify: identify::Behaviour,
    /// Signed, application-validated, scored pub/sub.
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Direct probes.
    pub(crate) probe: request_response::Behaviour<ProbeCodec>,
    /// Peer exchange, present even when the local node never asks, so others can.
    pub(crate) peers: request_response::Behaviour<PeerExchangeCodec>,
    /// Persistent direct streams (`/jobmesh/direct/1`) for liveness frames.
    pub(crate) stream: libp2p_stream::Behaviour,
}

impl MeshBehaviour {
    pub(crate) fn new(keypair: &Keypair, cfg: &MeshConfig) -> Result<Self, MeshError> {
        let limits = connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_established(Some(cfg.max_connections))
                .with_max_pending_incoming(Some(cfg.max_pending_connections))
                .with_max_pending_outgoing(Some(cfg.max_pending_connections))
                // One per direction covers simultaneous dials; more is waste or abuse.
                .with_max_established_per_peer(Some(2)),
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
                .with_agent_version(format!("jobmesh/{}", env!("CARGO_PKG_VERSION")))
                // Push on listen address changes instead of polling often.
                .with_push_listen_addr_updates(true)
                .with_interval(std::time::Duration::from_secs(600))
                .with_cache_size(cfg.max_connections as usize),
        );

        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            cfg.gossipsub_config()?,
        )
        .map_err(|e| MeshError::Gossipsub(e.to_string()))?;
        gossipsub
            .with_peer_score(config::peer_score_params(), config::peer_score_thresholds())
            .map_err(MeshError::Gossipsub)?;

        let rr_config = request_response::Config::default()
            .with_request_timeout(cfg.probe_timeout)
            .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        let probe = request_response::Behaviour::with_codec(
            ProbeCodec,
            iter::once((probe::PROTOCOL, ProtocolSupport::Full)),
            rr_config.clone(),
        );
        let peers = request_response::Behaviour::with_codec(
            PeerExchangeCodec,
            iter::once((peer_exchange::PROTOCOL, ProtocolSupport::Full)),
            rr_config,
        );

        Ok(Self {
            limits,
            identify,
            gossipsub,
            probe,
            peers,
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}
