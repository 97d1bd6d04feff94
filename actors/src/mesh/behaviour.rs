//! The composed [`NetworkBehaviour`] of a jobmesh node.

use std::{iter, sync::Arc, time::Duration};

use libp2p::{
    connection_limits::{self, ConnectionLimits},
    gossipsub::{self, AllowAllSubscriptionFilter, IdentityTransform, MaxCountSubscriptionFilter},
    identify,
    identity::Keypair,
    ping,
    request_response::{self, ProtocolSupport},
    swarm::NetworkBehaviour,
};

use super::{
    config::{self, MeshConfig},
    error::MeshError,
    gate::Gate,
    ledger::MeshLedger,
    peer_exchange::{self, PeerExchangeCodec},
    probe::{self, ProbeCodec},
};

/// The identify protocol version; peers announcing another one are still served, the
/// membership layer decides who is a member.
pub const IDENTIFY_PROTOCOL: &str = "/jobmesh/1.0.0";

/// Most probe (and peer-exchange) streams open at once per connection.
const MAX_CONCURRENT_STREAMS: usize = 32;

/// Topics one peer may be subscribed to at once, as this node keeps track (gossipsub keeps
/// per-peer topic sets; a peer naming thousands of topics would grow them).
const MAX_TOPICS_PER_PEER: usize = 16;

/// Our own pings: one when a connection opens, then hourly. Ping is offered so libp2p
/// tooling can reach a node; liveness is measured by probes and direct frames, so our
/// own pings would only cost bandwidth.
const PING_INTERVAL: Duration = Duration::from_secs(3600);

/// The gossipsub of a jobmesh node: incoming subscriptions capped at
/// [`MAX_TOPICS_PER_PEER`] per peer. Gossipsub raises `Subscribed` for every subscribe
/// request, repeated ones too, and before its graylist check (a custom filter cannot drop
/// repeats: the subscription type is private to the crate), so the event loop budgets
/// those events per peer and passes members' only.
pub(crate) type Gossipsub = gossipsub::Behaviour<IdentityTransform, SubscriptionGuard>;

/// See [`Gossipsub`].
pub(crate) type SubscriptionGuard = MaxCountSubscriptionFilter<AllowAllSubscriptionFilter>;

fn subscription_guard() -> SubscriptionGuard {
    MaxCountSubscriptionFilter {
        filter: AllowAllSubscriptionFilter {},
        max_subscribed_topics: MAX_TOPICS_PER_PEER,
        max_subscriptions_per_request: MAX_TOPICS_PER_PEER,
    }
}

/// The protocols a jobmesh node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct MeshBehaviour {
    /// Caps and budgets outsiders' connections (first, so a refused connection costs
    /// nothing further).
    pub(crate) gate: Gate,
    /// Rejects connections over the configured bounds before any handler is created.
    pub(crate) limits: connection_limits::Behaviour,
    /// Learns peers' listen addresses (for re-dialling and peer exchange) and protocols.
    pub(crate) identify: identify::Behaviour,
    /// Signed, application-validated, scored pub/sub.
    pub(crate) gossipsub: Gossipsub,
    /// Direct probes.
    pub(crate) probe: request_response::Behaviour<ProbeCodec>,
    /// Peer exchange, present even when the local node never asks, so others can.
    pub(crate) peers: request_response::Behaviour<PeerExchangeCodec>,
    /// Persistent direct streams (`/jobmesh/direct/1`) for liveness frames.
    pub(crate) stream: libp2p_stream::Behaviour,
    /// Answers `/ipfs/ping/1.0.0` (one echo per ping: no amplification).
    pub(crate) ping: ping::Behaviour,
}

impl MeshBehaviour {
    pub(crate) fn new(
        keypair: &Keypair,
        cfg: &MeshConfig,
        ledger: Arc<MeshLedger>,
    ) -> Result<Self, MeshError> {
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

        let mut gossipsub = Gossipsub::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            cfg.gossipsub_config()?,
            subscription_guard(),
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
            gate: Gate::new(ledger, cfg.max_outsider_connections as usize),
            limits,
            identify,
            gossipsub,
            probe,
            peers,
            stream: libp2p_stream::Behaviour::new(),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
        })
    }
}
