//! Votes: an observer's signed verdict about a subject, and the tally of the latest
//! vote per (subject, observer) that certificates are assembled from.

use std::collections::BTreeMap;

use libp2p::identity::{Keypair, PeerId};
use serde::{Deserialize, Serialize};

use super::crypto::{DOMAIN_VOTE, sign, verify};
use super::error::{IgnoreReason, RejectReason};

/// An observer's opinion of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The subject failed detection and a direct probe: evict it.
    Down,
    /// The observer's own fresh probe succeeded: withdraws an earlier Down.
    Up,
}

/// The signed statement of a vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The member voted about.
    pub subject: PeerId,
    /// View epoch of the observer when voting.
    pub epoch: u64,
    /// [`View::digest`](super::View::digest) of the observer's member set when voting:
    /// a receiver whose view has the same digest and epoch knows the observer
    /// assignment the voter used, so a vote from a non-assigned observer is then
    /// objectively invalid rather than a difference of views.
    pub view: u64,
    /// The voting member (the signer).
    pub observer: PeerId,
    /// The subject's incarnation the verdict is about; newer incarnations refute it.
    pub incarnation: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// The observer's vote counter (monotone across restarts), so a withdrawn Down cannot
    /// be replayed over the later Up.
    pub seq: u64,
}

impl Vote {
    /// The order in which one observer's votes about one subject supersede each other.
    fn order(&self) -> (u64, u64, u64) {
        (self.incarnation, self.epoch, self.seq)
    }
}

/// A vote with the observer's signature; verifiable by anyone who knows the members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    /// The statement.
    pub vote: Vote,
    /// Signature by `vote.observer` over the vote domain tag and the statement.
    #[serde(deserialize_with = "super::bounded::decoded_seq")]
    pub signature: Vec<u8>,
}

impl SignedVote {
    /// Signs a vote with the observer's key; `None` if signing fails.
    pub fn sign(vote: Vote, key: &Keypair) -> Option<Self> {
        let signature = sign(key, DOMAIN_VOTE, &vote)?;
        Some(Self { vote, signature })
    }

    /// Checks the signature against the observer's peer id.
    pub fn verify(&self) -> Result<(), RejectReason> {
        verify(
            &self.vote.observer,
            DOMAIN_VOTE,
            &self.vote,
            &self.signature,
        )
    }
}

/// Latest verified vote per (subject, observer). Bounded by members squared; entries
/// go when the subject or the observer leaves the view.
#[derive(Debug, Clone, Default)]
pub struct VoteTally {
    latest: BTreeMap<PeerId, BTreeMap<PeerId, SignedVote>>,
}

impl VoteTally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a verified vote if it supersedes the observer's previous vote about the
    /// subject. Replays and older votes are ignored and change nothing.
    pub fn record(&mut self, vote: SignedVote) -> Result<(), IgnoreReason> {
        let by_observer = self.latest.entry(vote.vote.subject).or_default();
        if let Some(prev) = by_observer.get(&vote.vote.observer)
            && prev.vote.order() >= vote.vote.order()
        {
            return Err(IgnoreReason::Replay);
        }
        by_observer.insert(vote.vote.observer, vote);
        Ok(())
    }

    /// Whether exactly this signed vote is already recorded (and so was verified): lets
    /// certificate checks skip signatures verified before.
    pub fn contains(&self, vote: &SignedVote) -> bool {
        self.latest
            .get(&vote.vote.subject)
            .and_then(|m| m.get(&vote.vote.observer))
            .is_some_and(|v| v == vote)
    }

    /// Whether the observer of `vote` has since withdrawn it: its latest recorded vote
    /// about the subject is a newer Up. Certificates built from withdrawn votes (by a
    /// collector that hoarded old Downs) are not applied.
    pub fn withdrawn(&self, vote: &SignedVote) -> bool {
        self.latest
            .get(&vote.vote.subject)
            .and_then(|m| m.get(&vote.vote.observer))
            .is_some_and(|v| v.vote.verdict == Verdict::Up && v.vote.order() > vote.vote.order())
    }

    /// Current Down votes about `subject` for `incarnation` at `epoch`, one per observer.
    pub fn downs(&self, subject: &PeerId, incarnation: u64, epoch: u64) -> Vec<SignedVote> {
        self.latest
            .get(subject)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|v| {
                v.vote.verdict == Verdict::Down
                    && v.vote.incarnation == incarnation
                    && v.vote.epoch == epoch
            })
            .cloned()
            .collect()
    }

    /// Forgets all votes about `subject` (evicted) and by it (no longer a member).
    pub fn forget(&mut self, peer: &PeerId) {
        self.latest.remove(peer);
        for m in self.latest.values_mut() {
            m.remove(peer);
        }
    }

    /// Number of recorded votes.
    pub fn len(&self) -> usize {
        self.latest.values().map(|m| m.len()).sum()
    }

    /// Whether no votes are recorded.
    pub fn is_empty(&self) -> bool {
        self.latest.values().all(|m| m.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(key: &Keypair, subject: PeerId, verdict: Verdict, seq: u64) -> SignedVote {
        SignedVote::sign(
            Vote {
                subject,
                epoch: 0,
                view: 0,
                observer: key.public().to_peer_id(),
                incarnation: 1,
                verdict,
                seq,
            },
            key,
        )
        .unwrap()
    }

    #[test]
    fn replay_and_supersede() {
        let obs = Keypair::generate_ed25519();
        let subject = Keypair::generate_ed25519().public().to_peer_id();
        let mut t = VoteTally::new();
        let down = vote(&obs, subject, Verdict::Down, 1);
        assert!(down.verify().is_ok());
        t.record(down.clone()).unwrap();
        assert_eq!(t.record(down.clone()), Err(IgnoreReason::Replay));
        assert_eq!(t.downs(&subject, 1, 0).len(), 1);
        t.record(vote(&obs, subject, Verdict::Up, 2)).unwrap();
        assert!(t.downs(&subject, 1, 0).is_empty());
        // The withdrawn Down cannot be replayed over the Up.
        assert_eq!(t.record(down), Err(IgnoreReason::Replay));
    }

    #[test]
    fn downs_are_per_subject() {
        let obs = Keypair::generate_ed25519();
        let a = Keypair::generate_ed25519().public().to_peer_id();
        let b = Keypair::generate_ed25519().public().to_peer_id();
        let mut t = VoteTally::new();
        t.record(vote(&obs, a, Verdict::Down, 1)).unwrap();
        t.record(vote(&obs, b, Verdict::Down, 2)).unwrap();
        assert_eq!(t.downs(&a, 1, 0).len(), 1);
        assert_eq!(t.downs(&b, 1, 0).len(), 1);
        t.forget(&a);
        assert!(t.downs(&a, 1, 0).is_empty());
        assert_eq!(t.len(), 1);
    }
}
