//! Configuration of the mesh network layer, and its translation into libp2p settings.

use std::time::Duration;

use libp2p::{Multiaddr, gossipsub, multiaddr::Protocol};
use sha2::{Digest, Sha256};

use super::error::MeshError;

/// Everything the mesh needs to start. [`MeshConfig::default`] listens on an ephemeral
/// loopback TCP port and subscribes to no topic.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`.
    pub listen: Vec<Multiaddr>,
    /// Members to dial at start; each must end with `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Gossipsub topics (plain names, hashed as identity so other libp2p implementations
    /// can subscribe by the same name) joined at start.
    pub topics: Vec<String>,
    /// Gossipsub tuning.
    pub gossip: GossipTuning,
    /// How long a probe may take before it fails with a timeout.
    pub probe_timeout: Duration,
    /// Largest gossip message accepted or published, in bytes (the whole RPC frame is
    /// capped at this plus a small envelope allowance).
    pub max_message_size: usize,
    /// Ask newly identified peers for their peers, and one peer per interval, so a node
    /// joining any member ends up connected to all. `None` disables peer exchange.
    pub peer_exchange_interval: Option<Duration>,
    /// Most established connections in total (incoming + outgoing).
    pub max_connections: u32,
    /// Most connections still in the handshake, per direction.
    pub max_pending_connections: u32,
    /// Most connections held at once with outsiders (peers that are not members, see
    /// [`Client::set_members`](super::Client::set_members)): joiners on their way in, and
    /// anyone else. Members are not counted.
    pub max_outsider_connections: u32,
    /// Capacity of the command channel (client -> event loop).
    pub command_buffer: usize,
    /// Capacity of the event channel (event loop -> application). When full, events are
    /// dropped and counted rather than blocking the swarm (see [`super::MeshEvent`]).
    pub event_buffer: usize,
    /// Connections with no open streams are closed after this long. Kept long because
    /// membership wants stable links; probes re-dial when needed.
    pub idle_connection_timeout: Duration,
    /// Upper bound on the transport handshake (TCP connect + noise + yamux).
    pub handshake_timeout: Duration,
    /// Where libp2p-metrics registers the mesh's bandwidth counters
    /// (`libp2p_bandwidth_bytes_total` by direction and protocol stack); `None` registers
    /// nothing. A node passes its own metrics.
    pub metrics: Option<std::sync::Arc<jobmesh::metrics::Metrics>>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            bootstrap: Vec::new(),
            topics: Vec::new(),
            gossip: GossipTuning::default(),
            probe_timeout: Duration::from_secs(2),
            max_message_size: 64 * 1024,
            peer_exchange_interval: Some(Duration::from_secs(30)),
            max_connections: 256,
            max_pending_connections: 32,
            max_outsider_connections: 16,
            command_buffer: 64,
            event_buffer: 1024,
            idle_connection_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            metrics: None,
        }
    }
}

/// Gossipsub knobs that matter for jobmesh. Defaults suit small clusters (a handful to a
/// few dozen members) with low steady traffic (membership votes, a few per second at most).
#[derive(Debug, Clone)]
pub struct GossipTuning {
    /// Mesh maintenance period. Idle heartbeats send nothing when the mesh is stable, so
    /// this mostly trades mesh repair speed (after a member dies) for CPU.
    pub heartbeat_interval: Duration,
    /// Target mesh degree (D). With D >= n-1 a small cluster is a full mesh: every vote
    /// reaches everyone in one hop.
    pub mesh_n: usize,
    /// Lower bound of the mesh degree (D_lo), below which the heartbeat grafts.
    pub mesh_n_low: usize,
    /// Upper bound of the mesh degree (D_hi), above which the heartbeat prunes.
    pub mesh_n_high: usize,
    /// Minimum outbound peers in the mesh (eclipse protection); must be <= mesh_n_low and
    /// <= mesh_n / 2.
    pub mesh_outbound_min: usize,
    /// Peers outside the mesh that receive IHAVE gossip per heartbeat.
    pub gossip_lazy: usize,
    /// Heartbeats of message ids kept for IWANT answers.
    pub history_length: usize,
    /// Heartbeats of message ids advertised in IHAVE.
    pub history_gossip: usize,
    /// How long message ids are remembered to drop duplicates.
    pub duplicate_cache_time: Duration,
    /// Messages at least this big trigger IDONTWANT to mesh peers, so large payloads are not
    /// received twice. Small votes are cheaper to duplicate than to announce.
    pub idontwant_threshold: usize,
}

impl Default for GossipTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            mesh_n: 6,
            mesh_n_low: 4,
            mesh_n_high: 12,
            mesh_outbound_min: 2,
            gossip_lazy: 6,
            history_length: 5,
            history_gossip: 3,
            duplicate_cache_time: Duration::from_secs(120),
            idontwant_threshold: 1000,
        }
    }
}

/// Room for the protobuf RPC envelope (signature, key, topic, seqno) around one payload.
const RPC_ENVELOPE_ALLOWANCE: usize = 1024;

impl MeshConfig {
    /// Checks bounds and addresses before anything starts.
    pub fn validate(&self) -> Result<(), MeshError> {
        let bad = |m: &str| Err(MeshError::InvalidConfig(m.to_string()));
        if self.command_buffer == 0 || self.event_buffer == 0 {
            return bad("channel buffers must be > 0");
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be > 0");
        }
        if self.probe_timeout.is_zero() {
            return bad("probe_timeout must be > 0");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be > 0");
        }
        for addr in &self.bootstrap {
            if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                return Err(MeshError::BootstrapWithoutPeerId(addr.clone()));
            }
        }
        Ok(())
    }

    /// The gossipsub configuration: strict signing, application validation, content ids.
    pub(crate) fn gossipsub_config(&self) -> Result<gossipsub::Config, MeshError> {
        let g = &self.gossip;
        gossipsub::ConfigBuilder::default()
            // Every message must carry the author's signature and sequence number; unsigned
            // or forged messages are dropped (and penalised) before the application sees them.
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Nothing is forwarded until the membership layer says Accept.
            .validate_messages()
            // Content addressing: an identical payload replayed later is a duplicate.
            .message_id_fn(message_id)
            .heartbeat_interval(g.heartbeat_interval)
            .mesh_n(g.mesh_n)
            .mesh_n_low(g.mesh_n_low)
            .mesh_n_high(g.mesh_n_high)
            .mesh_outbound_min(g.mesh_outbound_min)
            .gossip_lazy(g.gossip_lazy)
            .history_length(g.history_length)
            .history_gossip(g.history_gossip)
            .duplicate_cache_time(g.duplicate_cache_time)
            .idontwant_message_size_threshold(g.idontwant_threshold)
            .max_transmit_size(self.max_message_size + RPC_ENVELOPE_ALLOWANCE)
            .build()
            .map_err(|e| MeshError::Gossipsub(e.to_string()))
    }
}

/// The gossipsub message id: SHA-256 of the payload. Stable across processes and
/// implementations, which IHAVE/IWANT gossip relies on.
pub fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&Sha256::digest(&message.data))
}

/// Scoring parameters. Only objectively invalid messages are penalised (the membership
/// layer reports Reject for bad signatures or non-members, Ignore for stale ones), and
/// the membership layer adds its own verdicts through the application score.
pub(crate) fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        // Application score is added as-is: the membership layer speaks in score units.
        app_specific_weight: 1.0,
        // Every member may run on one host in tests and small deployments.
        ip_colocation_factor_weight: 0.0,
        topic_score_cap: 10.0,
        // Forget counters of a departed peer after 10 minutes, long enough that leaving and
        // rejoining does not wash away a penalty.
        retain_score: Duration::from_secs(600),
        ..Default::default()
    }
}

/// Per-topic parameters. Votes are rare, so the delivery-rate terms (P3, P3b) that punish
/// quiet mesh peers are off: silence on a quiet topic is not misbehaviour.
pub(crate) fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // P1: small bonus for staying in the mesh, capped at +1.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        // P2: small bonus for being first to deliver, capped at +1.
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(600)),
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: -20 per invalid message, squared: one invalid message stops gossip to the peer
        // (threshold -10), two exceed the graylist (-80). Decays to zero over ~1 hour.
        invalid_message_deliveries_weight: -20.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            3600,
        )),
        ..Default::default()
    }
}

/// Thresholds: the libp2p defaults, with opportunistic grafting at a level reachable by the
/// small positive scores above.
pub(crate) fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 5.0,
        opportunistic_graft_threshold: 1.0,
    }
}
