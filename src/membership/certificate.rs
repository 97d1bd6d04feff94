//! Certificates: the eviction certificate (2f+1 distinct signed Down votes) that lets
//! any node evict without having voted, and the join certificate that admits a peer
//! not on the allowlist.

use std::collections::BTreeSet;

use libp2p::identity::{Keypair, PeerId, PublicKey};
use serde::{Deserialize, Serialize};

use super::crypto::{DOMAIN_JOIN, sign, verify_with_key};
use super::error::CertificateError;
use super::vote::{SignedVote, Verdict};
use crate::clock::Millis;

/// Proof that `2f + 1` distinct members saw `subject` at `incarnation` down at `epoch`.
/// With at most `f` liars, at least `f + 1` honest members saw it fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The evicted member.
    pub subject: PeerId,
    /// The incarnation evicted; the subject may rejoin with a higher one.
    pub incarnation: u64,
    /// The epoch all the votes were cast at.
    pub epoch: u64,
    /// Down votes, one per observer.
    #[serde(deserialize_with = "super::bounded::decoded_seq")]
    pub votes: Vec<SignedVote>,
}

impl Certificate {
    /// Checks the certificate on its own: every vote a Down vote about this subject,
    /// incarnation and epoch, signed by a distinct member of `members` other than the
    /// subject, and at least `2f + 1` of them. Cheap checks run before any signature.
    pub fn verify(&self, members: &BTreeSet<PeerId>, f: usize) -> Result<(), CertificateError> {
        self.verify_cached(|p| members.contains(p), f, |_| false)
    }

    /// As [`verify`](Self::verify), with membership as a predicate and skipping the
    /// signature of votes for which `known` says they were verified before.
    pub(crate) fn verify_cached(
        &self,
        is_member: impl Fn(&PeerId) -> bool,
        f: usize,
        known: impl Fn(&SignedVote) -> bool,
    ) -> Result<(), CertificateError> {
        let need = 2 * f + 1;
        if self.votes.len() < need {
            return Err(CertificateError::TooFewVotes {
                have: self.votes.len(),
                need,
            });
        }
        let mut signers = BTreeSet::new();
        for sv in &self.votes {
            let v = &sv.vote;
            if v.subject != self.subject
                || v.incarnation != self.incarnation
                || v.epoch != self.epoch
                || v.verdict != Verdict::Down
            {
                return Err(CertificateError::MismatchedVote);
            }
            if v.observer == self.subject {
                return Err(CertificateError::SelfVote);
            }
            if !is_member(&v.observer) {
                return Err(CertificateError::NonMember(v.observer.to_string()));
            }
            if !signers.insert(v.observer) {
                return Err(CertificateError::DuplicateSigner(v.observer.to_string()));
            }
        }
        for sv in &self.votes {
            if !known(sv) && sv.verify().is_err() {
                return Err(CertificateError::BadSignature(sv.vote.observer.to_string()));
            }
        }
        Ok(())
    }
}

/// The statement a cluster key signs to admit `peer` until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct JoinStatement {
    peer: PeerId,
    expires: Millis,
}

/// Admission of a peer not on the allowlist, signed by the cluster key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCertificate {
    /// The admitted peer.
    pub peer: PeerId,
    /// The certificate admits only before this time.
    pub expires: Millis,
    /// Cluster key's signature over the join domain tag and `{peer, expires}`.
    #[serde(deserialize_with = "super::bounded::decoded_seq")]
    pub signature: Vec<u8>,
}

impl JoinCertificate {
    /// Issues a certificate with the cluster keypair; `None` if signing fails.
    pub fn issue(cluster: &Keypair, peer: PeerId, expires: Millis) -> Option<Self> {
        let signature = sign(cluster, DOMAIN_JOIN, &JoinStatement { peer, expires })?;
        Some(Self {
            peer,
            expires,
            signature,
        })
    }

    /// Whether the certificate was signed by `cluster_key` and is unexpired at `now`.
    pub fn verify(&self, cluster_key: &PublicKey, now: Millis) -> bool {
        now < self.expires
            && verify_with_key(
                cluster_key,
                DOMAIN_JOIN,
                &JoinStatement {
                    peer: self.peer,
                    expires: self.expires,
                },
                &self.signature,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::vote::Vote;

    fn setup(n: usize) -> (Vec<Keypair>, BTreeSet<PeerId>) {
        let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate_ed25519()).collect();
        let members = keys.iter().map(|k| k.public().to_peer_id()).collect();
        (keys, members)
    }

    fn down(key: &Keypair, subject: PeerId) -> SignedVote {
        SignedVote::sign(
            Vote {
                subject,
                epoch: 3,
                view: 0,
                observer: key.public().to_peer_id(),
                incarnation: 9,
                verdict: Verdict::Down,
                seq: 1,
            },
            key,
        )
        .unwrap()
    }

    fn cert(keys: &[Keypair], subject: PeerId) -> Certificate {
        Certificate {
            subject,
            incarnation: 9,
            epoch: 3,
            votes: keys.iter().map(|k| down(k, subject)).collect(),
        }
    }

    #[test]
    fn verifies_2f_plus_1_distinct() {
        let (keys, members) = setup(4);
        let subject = keys[0].public().to_peer_id();
        let c = cert(&keys[1..4], subject);
        assert_eq!(c.verify(&members, 1), Ok(()));
    }

    #[test]
    fn too_few_or_duplicate_signers_fail() {
        let (keys, members) = setup(4);
        let subject = keys[0].public().to_peer_id();
        let c = cert(&keys[1..3], subject);
        assert!(matches!(
            c.verify(&members, 1),
            Err(CertificateError::TooFewVotes { have: 2, need: 3 })
        ));
        let mut dup = cert(&keys[1..3], subject);
        dup.votes.push(dup.votes[0].clone());
        assert!(matches!(
            dup.verify(&members, 1),
            Err(CertificateError::DuplicateSigner(_))
        ));
    }

    #[test]
    fn non_member_self_vote_tampered_fail() {
        let (keys, members) = setup(4);
        let subject = keys[0].public().to_peer_id();
        let outsider = Keypair::generate_ed25519();
        let mut c = cert(&keys[1..3], subject);
        c.votes.push(down(&outsider, subject));
        assert!(matches!(
            c.verify(&members, 1),
            Err(CertificateError::NonMember(_))
        ));
        let mut c = cert(&keys[1..3], subject);
        c.votes.push(down(&keys[0], subject));
        assert_eq!(c.verify(&members, 1), Err(CertificateError::SelfVote));
        let mut c = cert(&keys[1..4], subject);
        c.votes[2].signature[5] ^= 1;
        assert!(matches!(
            c.verify(&members, 1),
            Err(CertificateError::BadSignature(_))
        ));
        let mut c = cert(&keys[1..4], subject);
        c.votes[1].vote.verdict = Verdict::Up;
        assert_eq!(c.verify(&members, 1), Err(CertificateError::MismatchedVote));
    }

    #[test]
    fn join_certificate() {
        let cluster = Keypair::generate_ed25519();
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let jc = JoinCertificate::issue(&cluster, peer, Millis(1000)).unwrap();
        assert!(jc.verify(&cluster.public(), Millis(999)));
        assert!(!jc.verify(&cluster.public(), Millis(1000)));
        assert!(!jc.verify(&Keypair::generate_ed25519().public(), Millis(0)));
        let mut forged = jc.clone();
        forged.peer = Keypair::generate_ed25519().public().to_peer_id();
        assert!(!forged.verify(&cluster.public(), Millis(0)));
    }
}
