//! Signing rules shared by every signed statement (heartbeats, votes, join
//! certificates): a signature covers a domain tag plus the canonical bincode encoding of
//! the statement, so a signature over a vote can never be replayed as a heartbeat.
//! Signers are identified by their ed25519 peer id, which embeds the public key
//! (identity multihash): messages need not carry keys and verification needs no key
//! exchange.

use libp2p::identity::{Keypair, PeerId, PublicKey};
use serde::Serialize;

use super::error::RejectReason;

/// Domain tags separating the kinds of signed statements.
pub(crate) const DOMAIN_HEARTBEAT: &[u8] = b"jobmesh/membership/heartbeat/1";
pub(crate) const DOMAIN_VOTE: &[u8] = b"jobmesh/membership/vote/1";
pub(crate) const DOMAIN_JOIN: &[u8] = b"jobmesh/membership/join/1";

/// The public key embedded in a peer id (identity multihash of a protobuf-encoded key,
/// as libp2p uses for ed25519). `None` for hashed (e.g. RSA) peer ids.
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

/// The bytes a signature covers: domain tag then canonical encoding.
pub(crate) fn signing_bytes<T: Serialize>(domain: &[u8], value: &T) -> Option<Vec<u8>> {
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard()).ok()?;
    let mut out = Vec::with_capacity(domain.len() + body.len());
    out.extend_from_slice(domain);
    out.extend_from_slice(&body);
    Some(out)
}

/// Signs `value` under `domain`.
pub(crate) fn sign<T: Serialize>(key: &Keypair, domain: &[u8], value: &T) -> Option<Vec<u8>> {
    key.sign(&signing_bytes(domain, value)?).ok()
}

/// Verifies that `signer` signed `value` under `domain`.
pub(crate) fn verify<T: Serialize>(
    signer: &PeerId,
    domain: &[u8],
    value: &T,
    signature: &[u8],
) -> Result<(), RejectReason> {
    let key = public_key_of(signer).ok_or(RejectReason::UnverifiableSigner)?;
    verify_with_key(&key, domain, value, signature)
}

/// Verifies a signature against a known key.
pub(crate) fn verify_with_key<T: Serialize>(
    key: &PublicKey,
    domain: &[u8],
    value: &T,
    signature: &[u8],
) -> Result<(), RejectReason> {
    let bytes =
        signing_bytes(domain, value).ok_or(RejectReason::Undecodable("unencodable".into()))?;
    if key.verify(&bytes, signature) {
        Ok(())
    } else {
        Err(RejectReason::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_embeds_key() {
        let key = Keypair::generate_ed25519();
        assert_eq!(
            public_key_of(&key.public().to_peer_id()),
            Some(key.public())
        );
    }

    #[test]
    fn a_signature_holds_only_under_its_domain() {
        let key = Keypair::generate_ed25519();
        let signer = key.public().to_peer_id();
        let sig = sign(&key, DOMAIN_VOTE, &7u64).unwrap();
        assert_eq!(verify(&signer, DOMAIN_VOTE, &7u64, &sig), Ok(()));
        assert_eq!(
            verify(&signer, DOMAIN_HEARTBEAT, &7u64, &sig),
            Err(RejectReason::BadSignature)
        );
        assert_eq!(
            verify(&signer, DOMAIN_VOTE, &8u64, &sig),
            Err(RejectReason::BadSignature)
        );
    }
}
