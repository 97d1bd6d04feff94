//! Errors of the mesh network layer.
//!
//! Each variant says whether any state changed, so a caller knows whether a retry is safe.

use std::path::PathBuf;

use libp2p::{Multiaddr, PeerId};

/// Starting the mesh failed. Nothing is running when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The configuration is inconsistent (for example a zero-sized bound).
    #[error("invalid mesh configuration: {0}")]
    InvalidConfig(String),
    /// The noise handshake could not be configured from the keypair.
    #[error("cannot configure the noise handshake: {0}")]
    Noise(#[from] libp2p::noise::Error),
    /// Gossipsub rejected its configuration or scoring parameters.
    #[error("cannot configure gossipsub: {0}")]
    Gossipsub(String),
    /// Subscribing to a configured topic failed.
    #[error("cannot subscribe to topic {topic}: {reason}")]
    Subscribe {
        /// The topic name.
        topic: String,
        /// Why gossipsub refused.
        reason: String,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address from the configuration.
        addr: Multiaddr,
        /// The transport error.
        reason: String,
    },
    /// A bootstrap address lacks the `/p2p/<peer id>` suffix; we refuse to dial unknown
    /// identities because noise would accept whoever answers.
    #[error("bootstrap address {0} must end with /p2p/<peer id>")]
    BootstrapWithoutPeerId(Multiaddr),
}

/// A [`Client`](super::Client) command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The event loop has stopped (shut down or panicked); no state changed.
    #[error("the mesh event loop is not running")]
    EventLoopGone,
    /// Dialling could not even start (bad address, own peer id, limits); no connection was made.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address given by the caller.
        addr: Multiaddr,
        /// Why the swarm refused.
        reason: String,
    },
    /// Gossipsub refused to publish (no peers on the topic, duplicate, too large); nothing sent.
    #[error("cannot publish on {topic}: {reason}")]
    Publish {
        /// The topic name.
        topic: String,
        /// Why gossipsub refused.
        reason: String,
    },
    /// Subscribing failed; the subscription set is unchanged.
    #[error("cannot subscribe to {topic}: {reason}")]
    Subscribe {
        /// The topic name.
        topic: String,
        /// Why gossipsub refused.
        reason: String,
    },
    /// The message is bigger than `max_message_size`; nothing was sent.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
}

/// A direct probe failed. A failed probe changes no state except freeing its request slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No answer within the probe timeout.
    #[error("probe to {0} timed out")]
    Timeout(PeerId),
    /// The peer could not be dialled (no known address or connection refused).
    #[error("cannot reach {0}")]
    Unreachable(PeerId),
    /// The connection closed before the answer arrived.
    #[error("connection to {0} closed during the probe")]
    ConnectionClosed(PeerId),
    /// The peer does not speak the probe protocol.
    #[error("{0} does not support the probe protocol")]
    Unsupported(PeerId),
    /// The stream failed or the answer could not be decoded.
    #[error("probe to {peer} failed: {reason}")]
    Io {
        /// The probed peer.
        peer: PeerId,
        /// The IO or decoding error.
        reason: String,
    },
    /// The answer echoed a different nonce: a confused or lying peer.
    #[error("{0} answered with a wrong nonce")]
    NonceMismatch(PeerId),
    /// Probing ourselves is meaningless and refused.
    #[error("cannot probe the local peer")]
    SelfProbe,
    /// The event loop has stopped.
    #[error("the mesh event loop is not running")]
    EventLoopGone,
}

/// Loading or creating the persistent node identity failed. The key file is never modified
/// when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading, creating or renaming the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a protobuf-encoded ed25519 keypair. We refuse to overwrite
    /// it: replacing a node's identity silently would make it a different member.
    #[error("key file {path} is corrupt ({reason}); move it away to create a new identity")]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Group or others can read the file, so the key may have leaked.
    #[error("key file {path} has mode {mode:o}; run `chmod 600` on it")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
}
