//! Errors and verdicts on inputs. Every variant says whether state changed: none of the
//! rejection or ignore reasons change protocol state, they only describe why an input
//! was dropped.

use thiserror::Error;

/// A configuration that cannot provide the protocol's guarantees. Returned by
/// [`MembershipConfig::validate`](super::MembershipConfig::validate) and
/// [`Membership::new`](super::Membership::new); nothing is constructed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// Byzantine tolerance needs `n >= 3f + 1` members (or assigned observers).
    #[error("{n} members cannot tolerate f = {f} Byzantine members: need n >= 3f+1 = {need}")]
    TooFewMembers {
        /// Members (or observers per subject) configured.
        n: usize,
        /// Tolerated Byzantine members.
        f: usize,
        /// Minimum required.
        need: usize,
    },
    /// K observers per subject must be at least `3f + 1` so a certificate of `2f + 1`
    /// Down votes exists for a crashed subject even with `f` silent liars.
    #[error("{k} observers per subject cannot tolerate f = {f}: need K >= 3f+1 = {need}")]
    TooFewObservers {
        /// Observers per subject configured.
        k: usize,
        /// Tolerated Byzantine members.
        f: usize,
        /// Minimum required.
        need: usize,
    },
    /// The local key is not an ed25519 key (votes must be verifiable from peer ids).
    #[error("the local keypair must be ed25519")]
    NotEd25519,
    /// The local peer is neither on the allowlist nor holds a join certificate.
    #[error("the local peer is not admitted: not on the allowlist and no join certificate")]
    NotAdmitted,
    /// A duration or threshold is zero, not finite, or inconsistent with another.
    #[error("invalid setting {0}: out of range (see MembershipConfig)")]
    InvalidSetting(&'static str),
}

/// Why an input was rejected as objectively invalid. The driver should penalise the
/// sender (gossipsub `Reject`). State did not change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RejectReason {
    /// Bytes do not decode as a message of the supported version.
    #[error("undecodable message: {0}")]
    Undecodable(String),
    /// The version byte names a format this build does not speak.
    #[error("unsupported wire version {0}")]
    WrongVersion(u8),
    /// The message was empty.
    #[error("empty message")]
    Empty,
    /// A signature does not verify against the signer's peer id.
    #[error("bad signature")]
    BadSignature,
    /// The signer's peer id does not embed an ed25519 public key.
    #[error("signer peer id does not embed an ed25519 public key")]
    UnverifiableSigner,
    /// The transport-level sender is not the peer that signed the message.
    #[error("sender {from} is not the signer {signer}")]
    SignerMismatch {
        /// Transport-level source.
        from: String,
        /// Claimed signer.
        signer: String,
    },
    /// A vote by a peer that is not a member.
    #[error("voter {0} is not a member")]
    NonMemberVoter(String),
    /// A vote by a member that is not an assigned observer of the subject.
    #[error("voter {0} is not an assigned observer of the subject")]
    NotAssignedObserver(String),
    /// A member voted about itself.
    #[error("a member cannot vote about itself")]
    SelfVote,
    /// A certificate that does not verify.
    #[error("invalid certificate: {0}")]
    BadCertificate(#[from] CertificateError),
    /// A join certificate that does not verify against the cluster key.
    #[error("invalid join certificate")]
    BadJoinCertificate,
}

/// Why a valid input was ignored: stale, duplicate or irrelevant. The sender is not at
/// fault (views differ during propagation). State did not change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IgnoreReason {
    /// A vote already seen (same signer, subject, incarnation, epoch, sequence or older).
    #[error("duplicate or replayed vote")]
    Replay,
    /// The message concerns an older incarnation than the one known.
    #[error("stale incarnation")]
    StaleIncarnation,
    /// The message concerns an epoch too far behind the local view.
    #[error("stale epoch")]
    StaleEpoch,
    /// The subject is not a member of the local view.
    #[error("unknown subject")]
    UnknownSubject,
    /// A heartbeat from a peer that is neither allowlisted nor holds a join certificate.
    #[error("sender is not a member")]
    NotMember,
    /// The message is our own, echoed back.
    #[error("own message")]
    Own,
    /// The certificate's eviction was already applied.
    #[error("already applied")]
    AlreadyApplied,
    /// A certificate valid under the sender's view but not ours (a signer was evicted
    /// since, or observers differ): not the sender's fault, not applied.
    #[error("certificate not valid in the local view")]
    ViewMismatch,
    /// A certificate containing a Down vote its observer has since withdrawn with an Up
    /// vote we saw: stale evidence, not applied.
    #[error("certificate contains a withdrawn vote")]
    Withdrawn,
}

/// Why a [`Certificate`](super::Certificate) does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificateError {
    /// Fewer than `2f + 1` distinct valid Down votes.
    #[error("only {have} distinct valid Down votes, need {need}")]
    TooFewVotes {
        /// Distinct valid Down votes found.
        have: usize,
        /// Required: `2f + 1`.
        need: usize,
    },
    /// The same observer signed twice.
    #[error("duplicate signer {0}")]
    DuplicateSigner(String),
    /// A vote is not a Down vote for the certificate's subject, incarnation and epoch.
    #[error("vote does not match the certificate's subject, incarnation, epoch or verdict")]
    MismatchedVote,
    /// A vote's signer is not a member.
    #[error("signer {0} is not a member")]
    NonMember(String),
    /// A vote's signer is the subject itself.
    #[error("the subject signed a vote about itself")]
    SelfVote,
    /// A vote's signature does not verify.
    #[error("bad signature by {0}")]
    BadSignature(String),
}
