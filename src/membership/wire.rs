//! Versioned binary encoding of membership messages.
//!
//! A message is one version byte followed by the bincode (standard config) encoding of
//! [`Message`]. Decoding dispatches on the version byte so that a later format can keep
//! a chain of readers for previous versions (as garage does); this build speaks only
//! [`WIRE_VERSION`]. Decoding is bounded ([`MAX_MESSAGE_BYTES`]) and rejects trailing
//! bytes, so any byte string either decodes to exactly one message or is rejected.
//!
//! The signing rules live in `crypto.rs` (shared with votes and certificates, which
//! this module encodes), the allocation-bounded decoding of sequences in `bounded.rs`.

use bincode::config::Config;
use libp2p::identity::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

use super::certificate::{Certificate, JoinCertificate};
use super::crypto::{DOMAIN_HEARTBEAT, sign, verify};
use super::error::RejectReason;
use super::vote::SignedVote;

/// Version byte of the current wire format.
pub const WIRE_VERSION: u8 = 1;

/// Gossipsub topic on which membership messages are published.
pub const MEMBERSHIP_TOPIC: &str = "jobmesh/membership/1";

/// Largest accepted message (a certificate of a few hundred votes fits).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn config() -> impl Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// A member's liveness announcement; with a higher incarnation it is also the
/// refutation ("Alive") of suspicion and the re-announcement after an eviction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The announcing member (the signer).
    pub member: PeerId,
    /// Its incarnation: bumped to refute suspicion and to rejoin after eviction.
    pub incarnation: u64,
    /// Counter within the incarnation, so replayed heartbeats are recognised.
    pub seq: u64,
    /// The sender's view epoch (peers adopt an epoch reported by at least f+1 members).
    pub epoch: u64,
    /// Join certificate for members admitted by the cluster key rather than the
    /// allowlist.
    pub join: Option<JoinCertificate>,
}

/// A heartbeat with the member's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeartbeat {
    /// The statement.
    pub heartbeat: Heartbeat,
    /// Signature by `heartbeat.member` over the heartbeat domain tag and the statement.
    #[serde(deserialize_with = "super::bounded::decoded_seq")]
    pub signature: Vec<u8>,
}

impl SignedHeartbeat {
    /// Signs a heartbeat; `None` if the statement cannot be encoded or signed.
    pub fn sign(heartbeat: Heartbeat, key: &Keypair) -> Option<Self> {
        let signature = sign(key, DOMAIN_HEARTBEAT, &heartbeat)?;
        Some(Self {
            heartbeat,
            signature,
        })
    }

    /// Checks the signature against the member's peer id.
    pub fn verify(&self) -> Result<(), RejectReason> {
        verify(
            &self.heartbeat.member,
            DOMAIN_HEARTBEAT,
            &self.heartbeat,
            &self.signature,
        )
    }
}

/// Everything published on [`MEMBERSHIP_TOPIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Liveness, refutation and (re)join announcement.
    Heartbeat(SignedHeartbeat),
    /// An observer's verdict about a subject.
    Vote(SignedVote),
    /// Proof that a subject is to be evicted.
    Certificate(Certificate),
}

/// A liveness frame, sent every heartbeat interval straight to each observer of the
/// sender over a persistent direct stream (not gossiped). It carries no signature: the
/// stream's connection is authenticated (noise), so the sender is known first-hand, and
/// nothing relays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// The sender's incarnation; a higher one than known refutes suspicion.
    pub incarnation: u64,
    /// Counter across the sender's lifetime, so stale or replayed frames are ignored.
    pub seq: u64,
    /// The sender's view epoch (as in [`Heartbeat::epoch`]).
    pub epoch: u64,
}

/// What travels on a direct stream between two nodes (never relayed, so unsigned
/// frames are as trustworthy as the authenticated connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direct {
    /// "I am alive", to each of the sender's observers every heartbeat interval.
    Liveness(Liveness),
    /// The certificate that evicted the receiver, shown to it point to point when it
    /// still speaks with its evicted incarnation. (Not gossiped: every node already
    /// saw that message id, and gossipsub drops a republished duplicate.)
    Certificate(Certificate),
}

/// Largest accepted direct frame (a certificate of about a hundred votes fits); the
/// mesh frames these with a two-byte length.
pub const MAX_DIRECT_BYTES: usize = 60_000;

/// Encodes a direct frame: version byte then bincode. A liveness frame is 13 to 21
/// bytes.
pub fn encode_direct(frame: &Direct) -> Vec<u8> {
    encode_versioned(frame)
}

/// Decodes a direct frame with the same rules as [`decode`]. Never panics.
pub fn decode_direct(bytes: &[u8]) -> Result<Direct, RejectReason> {
    decode_versioned(bytes, MAX_DIRECT_BYTES)
}

/// Encodes a message: version byte then bincode.
pub fn encode(msg: &Message) -> Vec<u8> {
    encode_versioned(msg)
}

/// Decodes a message, rejecting unknown versions, oversized or malformed input and
/// trailing bytes. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Message, RejectReason> {
    decode_versioned(bytes, MAX_MESSAGE_BYTES)
}

/// [`WIRE_VERSION`] then the bincode of `value`.
fn encode_versioned<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Encoding our own in-memory types into a Vec cannot fail; an empty body would be
    // rejected by every receiver rather than misread.
    if let Ok(body) = bincode::serde::encode_to_vec(value, config()) {
        out.extend_from_slice(&body);
    }
    out
}

/// Dispatches on the version byte (a later format keeps readers for earlier ones
/// here), bounds the body to `max` bytes and rejects trailing bytes.
fn decode_versioned<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<T, RejectReason> {
    let (&version, body) = bytes.split_first().ok_or(RejectReason::Empty)?;
    match version {
        WIRE_VERSION => {
            if body.len() > max {
                return Err(RejectReason::Undecodable("message too large".into()));
            }
            let (value, used): (T, usize) = bincode::serde::decode_from_slice(body, config())
                .map_err(|e| RejectReason::Undecodable(e.to_string()))?;
            if used != body.len() {
                return Err(RejectReason::Undecodable("trailing bytes".into()));
            }
            Ok(value)
        }
        other => Err(RejectReason::WrongVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(key: &Keypair) -> SignedHeartbeat {
        SignedHeartbeat::sign(
            Heartbeat {
                member: key.public().to_peer_id(),
                incarnation: 7,
                seq: 3,
                epoch: 2,
                join: None,
            },
            key,
        )
        .unwrap()
    }

    #[test]
    fn roundtrip_and_signature() {
        let key = Keypair::generate_ed25519();
        let msg = Message::Heartbeat(hb(&key));
        let bytes = encode(&msg);
        assert_eq!(bytes[0], WIRE_VERSION);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, msg);
        let Message::Heartbeat(h) = back else {
            panic!("wrong variant")
        };
        assert!(h.verify().is_ok());
        assert!(bytes.len() < 160, "heartbeat is {} bytes", bytes.len());
    }

    #[test]
    fn rejects_bad_versions_and_trailing_bytes() {
        let key = Keypair::generate_ed25519();
        let mut bytes = encode(&Message::Heartbeat(hb(&key)));
        assert_eq!(decode(&[]), Err(RejectReason::Empty));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(decode(&v2), Err(RejectReason::WrongVersion(2)));
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(RejectReason::Undecodable(_))));
    }

    #[test]
    fn liveness_roundtrip_is_tiny_and_strict() {
        let frame = Liveness {
            incarnation: 1_764_000_000_000,
            seq: u64::MAX,
            epoch: 3,
        };
        let bytes = encode_direct(&Direct::Liveness(frame));
        assert!(bytes.len() <= 21, "liveness frame is {} bytes", bytes.len());
        assert_eq!(decode_direct(&bytes), Ok(Direct::Liveness(frame)));
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_direct(&long).is_err());
        assert!(decode_direct(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(decode_direct(&[]), Err(RejectReason::Empty));
        assert!(decode_direct(&[9, 1, 1, 1]).is_err());
        assert!(decode_direct(&[1, 7, 1, 1]).is_err());
    }

    #[test]
    fn tampering_breaks_signature() {
        let key = Keypair::generate_ed25519();
        let mut h = hb(&key);
        h.heartbeat.incarnation += 1;
        assert_eq!(h.verify(), Err(RejectReason::BadSignature));
    }
}
