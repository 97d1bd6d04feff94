//! A Byzantine member: what it forges, lies about and withholds.
//!
//! One model serves every driver: the simulator's liars (`jobmesh-sim`) and the chaos
//! transport of real nodes (`jobmesh-actors`, cargo feature `chaos`) both ask an
//! [`Adversary`] what to send, so the simulator and the real-cluster chaos runs test the
//! protocol against the same lies. A liar is a real member (allowlisted key, honest
//! protocol core running) that also lies; the safety argument of this module's parent
//! must hold with at most `f` of them.
//!
//! IO-free like the rest of the protocol: the adversary reads its own node's core,
//! signs with its own key, draws from the driver's RNG (so the simulator stays
//! deterministic) and returns [`Lie`]s; the driver delivers them as best its network
//! allows (see each variant).

use std::collections::VecDeque;
use std::time::Duration;

use libp2p::identity::{Keypair, PeerId};
use rand::Rng;
use rand::seq::IteratorRandom;
use serde::{Deserialize, Serialize};

use super::certificate::Certificate;
use super::vote::{SignedVote, Verdict, Vote};
use super::wire::{Message, WIRE_VERSION, decode, encode};
use super::{Membership, Output};
use crate::clock::Millis;

/// What a liar does besides running the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Signs Down votes about healthy members (its target, or every other member) each
    /// round; fellow accusers may pool them into a forged certificate
    /// ([`forge_certificate`]).
    FalseDown,
    /// Never publishes its own votes (Down or Up): does not help evict.
    Withhold,
    /// Signs a Down and an Up vote about one subject (its target, or a member drawn each
    /// round) under one sequence number, and tells half of the members one verdict and
    /// the other half the other.
    Equivocate,
    /// Re-publishes gossip it received at least [`REPLAY_AGE`] earlier (votes,
    /// certificates, heartbeats).
    Replay,
    /// Publishes random bytes (half of them behind a valid version byte) and sends junk
    /// frames on direct links.
    Junk,
}

impl Behaviour {
    /// Every behaviour.
    pub const ALL: [Behaviour; 5] = [
        Behaviour::FalseDown,
        Behaviour::Withhold,
        Behaviour::Equivocate,
        Behaviour::Replay,
        Behaviour::Junk,
    ];

    /// Its name in configs and reports (`false-down`, `withhold`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::FalseDown => "false-down",
            Behaviour::Withhold => "withhold",
            Behaviour::Equivocate => "equivocate",
            Behaviour::Replay => "replay",
            Behaviour::Junk => "junk",
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a liar sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lie {
    /// A signed Down vote about a member that is not down: publish it on the membership
    /// topic. Accusers of the same subject may pool theirs ([`forge_certificate`]).
    Accuse(SignedVote),
    /// Gossip meant for one member only (an equivocator's verdict for its half). A
    /// gossipsub driver cannot address one member: it publishes, and everyone hears
    /// both verdicts.
    GossipTo {
        /// The member meant to hear it.
        to: PeerId,
        /// An encoded [`Message`].
        bytes: Vec<u8>,
    },
    /// Old gossip to publish again. A driver that can keep the original author does (the
    /// simulator: as after gossipsub's duplicate cache forgot the message); gossipsub
    /// signs what it publishes, so a real liar publishes it as its own.
    Replay {
        /// Who first published it.
        author: PeerId,
        /// The message as received.
        bytes: Vec<u8>,
    },
    /// Bytes to publish on the membership topic.
    Broadcast(Vec<u8>),
    /// A frame on the direct stream to `to`.
    Direct {
        /// The receiver.
        to: PeerId,
        /// The frame.
        bytes: Vec<u8>,
    },
}

/// Gossip a replaying liar remembers.
pub const REPLAY_CAPTURE: usize = 256;
/// A replayed message is at least this old.
pub const REPLAY_AGE: Duration = Duration::from_secs(2);
/// Junk frames sent on direct links per round (to members drawn at random).
pub const JUNK_DIRECT: usize = 3;
/// Largest junk message.
pub const JUNK_MAX_BYTES: usize = 300;

/// One liar: its behaviour, its target and what it remembers.
#[derive(Debug, Clone)]
pub struct Adversary {
    behaviour: Behaviour,
    target: Option<PeerId>,
    /// Gossip received (when, author, bytes), for a replayer.
    captured: VecDeque<(Millis, PeerId, Vec<u8>)>,
    /// Vote counter of the lies, far above any honest one (those start at the clock in
    /// ms), so a lie supersedes the liar's own honest votes.
    seq: u64,
}

impl Adversary {
    /// A liar with `behaviour`, lying about every other member (false-down) or a member
    /// drawn each round (equivocate) until [`against`](Self::against) names a target.
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            target: None,
            captured: VecDeque::new(),
            seq: u64::MAX / 2,
        }
    }

    /// Aims false-down and equivocate at one member (an observer of the target places
    /// its lies where they count).
    pub fn against(mut self, target: PeerId) -> Self {
        self.target = Some(target);
        self
    }

    /// The behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// The member lied about, if one was named.
    pub fn target(&self) -> Option<PeerId> {
        self.target
    }

    /// Gossip this liar received from `author`: a replayer remembers it (the last
    /// [`REPLAY_CAPTURE`] messages).
    pub fn observe(&mut self, author: PeerId, bytes: &[u8], now: Millis) {
        if self.behaviour != Behaviour::Replay {
            return;
        }
        if self.captured.len() == REPLAY_CAPTURE {
            self.captured.pop_front();
        }
        self.captured.push_back((now, author, bytes.to_vec()));
    }

    /// Whether the liar keeps this output of its own core to itself: a withholder's
    /// votes.
    pub fn withholds(&self, output: &Output) -> bool {
        self.behaviour == Behaviour::Withhold
            && matches!(output, Output::Broadcast(b) if matches!(decode(b), Ok(Message::Vote(_))))
    }

    /// One round of lies, from the liar's core (`core`, whose key is `key`) at `now`.
    pub fn act(
        &mut self,
        core: &Membership,
        key: &Keypair,
        now: Millis,
        rng: &mut impl Rng,
    ) -> Vec<Lie> {
        let me = core.me();
        match self.behaviour {
            Behaviour::FalseDown => {
                let subjects: Vec<PeerId> = match self.target {
                    Some(t) => vec![t],
                    None => others(core).collect(),
                };
                let mut lies = Vec::new();
                for subject in subjects {
                    let seq = self.next_seq();
                    if let Some(sv) = vote(core, key, subject, Verdict::Down, seq) {
                        lies.push(Lie::Accuse(sv));
                    }
                }
                lies
            }
            Behaviour::Withhold => Vec::new(),
            Behaviour::Equivocate => {
                let Some(subject) = self.target.or_else(|| others(core).choose(rng)) else {
                    return Vec::new();
                };
                let seq = self.next_seq();
                let down = vote(core, key, subject, Verdict::Down, seq);
                let up = vote(core, key, subject, Verdict::Up, seq);
                let (Some(down), Some(up)) = (down, up) else {
                    return Vec::new();
                };
                let (down, up) = (encode(&Message::Vote(down)), encode(&Message::Vote(up)));
                others(core)
                    .enumerate()
                    .map(|(k, to)| Lie::GossipTo {
                        to,
                        bytes: if k % 2 == 0 { down.clone() } else { up.clone() },
                    })
                    .collect()
            }
            Behaviour::Replay => self
                .captured
                .iter()
                .filter(|(at, _, _)| now.since(*at) >= REPLAY_AGE)
                .choose(rng)
                .map(|(_, author, bytes)| Lie::Replay {
                    author: *author,
                    bytes: bytes.clone(),
                })
                .into_iter()
                .collect(),
            Behaviour::Junk => {
                let len = rng.random_range(1..=JUNK_MAX_BYTES);
                let mut junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                if rng.random::<bool>() {
                    junk[0] = WIRE_VERSION;
                }
                let mut lies = vec![Lie::Broadcast(junk.clone())];
                let members: Vec<PeerId> = core
                    .view()
                    .members()
                    .map(|(p, _)| *p)
                    .filter(|p| *p != me)
                    .collect();
                for _ in 0..JUNK_DIRECT {
                    if let Some(to) = members.iter().choose(rng) {
                        lies.push(Lie::Direct {
                            to: *to,
                            bytes: junk.clone(),
                        });
                    }
                }
                lies
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// The members other than the liar, in view order.
fn others(core: &Membership) -> impl Iterator<Item = PeerId> + '_ {
    let me = core.me();
    core.view()
        .members()
        .map(|(p, _)| *p)
        .filter(move |p| *p != me)
}

/// A vote by the liar about `subject`'s incarnation as the liar knows it (none if the
/// subject is not in its view).
fn vote(
    core: &Membership,
    key: &Keypair,
    subject: PeerId,
    verdict: Verdict,
    seq: u64,
) -> Option<SignedVote> {
    let incarnation = core.view().get(&subject)?.incarnation;
    let vote = Vote {
        subject,
        epoch: core.epoch(),
        view: core.view().digest(),
        observer: core.me(),
        incarnation,
        verdict,
        seq,
    };
    SignedVote::sign(vote, key)
}

/// The certificate colluding accusers forge from their Down votes about one subject
/// (those matching the first vote's incarnation and epoch), padded with copies of the
/// first up to `threshold`. Honest members refuse it unless `threshold` distinct members
/// lied, which is more than `f`. `None` without votes.
pub fn forge_certificate(votes: &[SignedVote], threshold: usize) -> Option<Certificate> {
    let first = votes.first()?;
    let (subject, incarnation, epoch) =
        (first.vote.subject, first.vote.incarnation, first.vote.epoch);
    let mut forged: Vec<SignedVote> = votes
        .iter()
        .filter(|v| {
            v.vote.subject == subject && v.vote.incarnation == incarnation && v.vote.epoch == epoch
        })
        .cloned()
        .collect();
    while forged.len() < threshold {
        forged.push(first.clone());
    }
    Some(Certificate {
        subject,
        incarnation,
        epoch,
        votes: forged,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::membership::{CertificateError, MembershipConfig};

    const NOW: Millis = Millis(1_000_000);

    fn key(i: u8) -> Keypair {
        Keypair::ed25519_from_bytes([i.wrapping_add(1); 32]).unwrap()
    }

    fn id(i: u8) -> PeerId {
        key(i).public().to_peer_id()
    }

    /// The core of liar 0 in a mesh of `n` with f = 1.
    fn liar_core(n: u8) -> Membership {
        Membership::new(
            MembershipConfig::new((0..n).map(id), 1),
            key(0),
            None,
            7,
            NOW,
        )
        .unwrap()
    }

    fn votes(lies: &[Lie]) -> Vec<SignedVote> {
        lies.iter()
            .filter_map(|l| match l {
                Lie::Accuse(v) => Some(v.clone()),
                Lie::GossipTo { bytes, .. } => match decode(bytes) {
                    Ok(Message::Vote(v)) => Some(v),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_false_accuser_signs_valid_down_votes_that_supersede_its_honest_ones() {
        let core = liar_core(4);
        let mut rng = StdRng::seed_from_u64(1);
        let mut all = Adversary::new(Behaviour::FalseDown);
        let v = votes(&all.act(&core, &key(0), NOW, &mut rng));
        assert_eq!(v.len(), 3, "every other member");
        assert!(v.iter().all(|v| v.verify().is_ok()
            && v.vote.verdict == Verdict::Down
            && v.vote.observer == id(0)
            && v.vote.seq > u64::MAX / 2));
        let mut one = Adversary::new(Behaviour::FalseDown).against(id(2));
        let v = votes(&one.act(&core, &key(0), NOW, &mut rng));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].vote.subject, id(2));
        let later = votes(&one.act(&core, &key(0), NOW, &mut rng));
        assert!(
            later[0].vote.seq > v[0].vote.seq,
            "each round supersedes the last"
        );
    }

    #[test]
    fn an_equivocator_tells_each_half_another_verdict_under_one_sequence_number() {
        let core = liar_core(5);
        let mut rng = StdRng::seed_from_u64(2);
        let mut a = Adversary::new(Behaviour::Equivocate).against(id(3));
        let lies = a.act(&core, &key(0), NOW, &mut rng);
        assert_eq!(lies.len(), 4, "one message per other member");
        let v = votes(&lies);
        assert!(
            v.iter()
                .all(|x| x.vote.subject == id(3) && x.vote.seq == v[0].vote.seq)
        );
        let downs = v.iter().filter(|v| v.vote.verdict == Verdict::Down).count();
        assert_eq!(downs, 2, "half Down, half Up");
        let mut drawn = Adversary::new(Behaviour::Equivocate);
        let v = votes(&drawn.act(&core, &key(0), NOW, &mut rng));
        assert_ne!(v[0].vote.subject, id(0), "never about itself");
    }

    #[test]
    fn a_withholder_keeps_its_votes_and_nothing_else() {
        let a = Adversary::new(Behaviour::Withhold);
        let mut core = liar_core(4);
        let mut rng = StdRng::seed_from_u64(3);
        let vote = votes(&Adversary::new(Behaviour::FalseDown).act(&core, &key(0), NOW, &mut rng))
            .remove(0);
        assert!(a.withholds(&Output::Broadcast(encode(&Message::Vote(vote.clone())))));
        core.announce(NOW);
        let heartbeat = core
            .drain_outputs()
            .into_iter()
            .find(|o| matches!(o, Output::Broadcast(_)))
            .expect("an announcement is a broadcast");
        assert!(!a.withholds(&heartbeat));
        assert!(
            !Adversary::new(Behaviour::Junk)
                .withholds(&Output::Broadcast(encode(&Message::Vote(vote))))
        );
    }

    #[test]
    fn a_replayer_replays_only_what_it_heard_long_enough_ago() {
        let core = liar_core(4);
        let mut rng = StdRng::seed_from_u64(4);
        let mut a = Adversary::new(Behaviour::Replay);
        a.observe(id(1), b"old", NOW);
        assert!(
            a.act(&core, &key(0), NOW.plus(Duration::from_secs(1)), &mut rng)
                .is_empty()
        );
        let lies = a.act(&core, &key(0), NOW.plus(REPLAY_AGE), &mut rng);
        assert_eq!(
            lies,
            vec![Lie::Replay {
                author: id(1),
                bytes: b"old".to_vec()
            }]
        );
        let mut quiet = Adversary::new(Behaviour::Junk);
        quiet.observe(id(1), b"old", NOW);
        assert!(quiet.captured.is_empty(), "only a replayer remembers");
        for k in 0..REPLAY_CAPTURE + 5 {
            a.observe(id(1), &[k as u8], NOW);
        }
        assert_eq!(a.captured.len(), REPLAY_CAPTURE, "bounded");
    }

    #[test]
    fn junk_is_bounded_and_goes_to_the_topic_and_direct_links() {
        let core = liar_core(4);
        let mut rng = StdRng::seed_from_u64(5);
        let mut a = Adversary::new(Behaviour::Junk);
        let mut versioned = 0;
        for _ in 0..40 {
            let lies = a.act(&core, &key(0), NOW, &mut rng);
            assert_eq!(lies.len(), 1 + JUNK_DIRECT);
            let Lie::Broadcast(junk) = &lies[0] else {
                panic!("published first: {lies:?}");
            };
            assert!((1..=JUNK_MAX_BYTES).contains(&junk.len()));
            versioned += usize::from(junk[0] == WIRE_VERSION);
            assert!(
                lies[1..].iter().all(
                    |l| matches!(l, Lie::Direct { to, bytes } if *to != id(0) && bytes == junk)
                )
            );
        }
        assert!((5..=35).contains(&versioned), "about half: {versioned}");
    }

    #[test]
    fn forged_certificates_hold_only_with_enough_distinct_liars() {
        let mut rng = StdRng::seed_from_u64(6);
        let members = (0..7).map(id).collect();
        let mut accusations = |liars: u8| -> Vec<SignedVote> {
            (0..liars)
                .flat_map(|i| {
                    let core = Membership::new(
                        MembershipConfig::new((0..7).map(id), 2),
                        key(i),
                        None,
                        7,
                        NOW,
                    )
                    .unwrap();
                    votes(&Adversary::new(Behaviour::FalseDown).against(id(6)).act(
                        &core,
                        &key(i),
                        NOW,
                        &mut rng,
                    ))
                })
                .collect()
        };
        let two = forge_certificate(&accusations(2), 5).unwrap();
        assert_eq!(two.votes.len(), 5, "padded to the threshold");
        assert!(matches!(
            two.verify(&members, 2),
            Err(CertificateError::DuplicateSigner(_))
        ));
        let five = forge_certificate(&accusations(5), 5).unwrap();
        assert_eq!(five.verify(&members, 2), Ok(()), "more than f liars can");
        assert!(forge_certificate(&[], 5).is_none());
    }

    #[test]
    fn behaviours_have_the_names_of_the_chaos_control_file() {
        for b in Behaviour::ALL {
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json, format!("\"{b}\""));
            assert_eq!(serde_json::from_str::<Behaviour>(&json).unwrap(), b);
        }
    }
}
