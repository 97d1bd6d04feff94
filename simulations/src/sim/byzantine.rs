//! Byzantine members. A liar is a real member (allowlisted key, honest protocol core
//! running) that additionally lies: the behaviours below are what the design's
//! safety argument must withstand with at most `f` of them.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::membership::{
    Certificate, Message, Output, SignedVote, Verdict, Vote, WIRE_VERSION, decode, encode,
};
use rand::Rng;
use serde::Serialize;

use super::metrics::Kind;
use super::world::World;

/// What a liar does besides running the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Behaviour {
    /// Broadcasts signed Down votes about a healthy `target` every lie interval, and
    /// (with the other accusers of the same target) forged certificates padded with
    /// duplicate votes.
    FalseAccuse {
        /// The node accused.
        target: usize,
    },
    /// Never publishes its own votes (Down or Up): does not help evict.
    Withhold,
    /// Signs a Down and an Up vote about `target` with the same sequence number and
    /// sends the Down to half of the nodes and the Up to the other half.
    Equivocate {
        /// The node voted about.
        target: usize,
    },
    /// Re-publishes old gossip it received (votes, certificates, heartbeats) under the
    /// original author, as after gossipsub's duplicate cache forgot them.
    Replay,
    /// Publishes random bytes (half of them with a valid version byte) and sends junk
    /// liveness frames.
    Junk,
}

/// Gossip a replaying liar remembers.
const CAPTURE: usize = 256;
/// A replayed message is at least this old.
const REPLAY_AGE: Duration = Duration::from_secs(2);

/// A gossip message a replaying liar received: (when, author, bytes).
type Captured = (Millis, usize, Rc<[u8]>);

/// The liars of a world and their memory.
#[derive(Debug, Default)]
pub(crate) struct Liars {
    by_node: BTreeMap<usize, Behaviour>,
    /// Per replaying liar: (received at, author, bytes).
    captured: BTreeMap<usize, VecDeque<Captured>>,
    seq: u64,
}

impl Liars {
    /// Makes node `i` a liar (replacing an earlier behaviour).
    pub(crate) fn add(&mut self, i: usize, behaviour: Behaviour) {
        self.by_node.insert(i, behaviour);
    }

    /// Whether the world should drop this output of node `i` (withheld votes).
    pub(crate) fn suppresses(&self, i: usize, output: &Output) -> bool {
        if self.by_node.get(&i) != Some(&Behaviour::Withhold) {
            return false;
        }
        matches!(output, Output::Broadcast(b) if matches!(decode(b), Ok(Message::Vote(_))))
    }

    /// Gossip received by node `to`: a replaying liar remembers it.
    pub(crate) fn observe(&mut self, to: usize, from: usize, bytes: &Rc<[u8]>, now: Millis) {
        if self.by_node.get(&to) != Some(&Behaviour::Replay) {
            return;
        }
        let ring = self.captured.entry(to).or_default();
        if ring.len() == CAPTURE {
            ring.pop_front();
        }
        ring.push_back((now, from, bytes.clone()));
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        // Far above any honest counter (honest ones start at the clock in ms).
        u64::MAX / 2 + self.seq
    }
}

/// Every live liar acts once.
pub(crate) fn act(world: &mut World) {
    let liars: Vec<(usize, Behaviour)> =
        world.liars.by_node.iter().map(|(i, b)| (*i, *b)).collect();
    // Accusers of the same target pool their votes into a forged certificate.
    let mut coalitions: BTreeMap<usize, Vec<(usize, SignedVote)>> = BTreeMap::new();
    for (i, behaviour) in liars {
        if world.core(i).is_none() {
            continue;
        }
        match behaviour {
            Behaviour::FalseAccuse { target } => {
                if let Some(sv) = liar_vote(world, i, target, Verdict::Down, None) {
                    coalitions.entry(target).or_default().push((i, sv.clone()));
                    world.broadcast(i, i, encode(&Message::Vote(sv)).into(), false);
                }
            }
            Behaviour::Withhold => {}
            Behaviour::Equivocate { target } => {
                let seq = world.liars.next_seq();
                let down = liar_vote(world, i, target, Verdict::Down, Some(seq));
                let up = liar_vote(world, i, target, Verdict::Up, Some(seq));
                if let (Some(down), Some(up)) = (down, up) {
                    let down: Rc<[u8]> = encode(&Message::Vote(down)).into();
                    let up: Rc<[u8]> = encode(&Message::Vote(up)).into();
                    for j in 0..world.len() {
                        if j != i {
                            let bytes = if j % 2 == 0 { &down } else { &up };
                            world.gossip_to(i, j, i, bytes.clone(), false);
                        }
                    }
                }
            }
            Behaviour::Replay => {
                let now = world.now();
                let picked = world.liars.captured.get(&i).and_then(|ring| {
                    let old: Vec<&Captured> = ring
                        .iter()
                        .filter(|(at, _, _)| now.since(*at) >= REPLAY_AGE)
                        .collect();
                    if old.is_empty() {
                        None
                    } else {
                        let k = world.rng.random_range(0..old.len());
                        Some((old[k].1, old[k].2.clone()))
                    }
                });
                if let Some((author, bytes)) = picked {
                    world.broadcast(i, author, bytes, false);
                }
            }
            Behaviour::Junk => {
                let len = world.rng.random_range(1..=300);
                let mut junk: Vec<u8> = (0..len).map(|_| world.rng.random()).collect();
                if world.rng.random::<bool>() {
                    junk[0] = WIRE_VERSION;
                }
                let junk: Rc<[u8]> = junk.into();
                world.broadcast(i, i, junk.clone(), false);
                for _ in 0..3 {
                    let j = world.rng.random_range(0..world.len());
                    if j != i {
                        world.send(i, j, i, junk.clone(), Kind::Direct, false);
                    }
                }
            }
        }
    }
    let threshold = world.membership.certificate_threshold();
    for (target, votes) in coalitions {
        let Some((liar, first)) = votes.first().cloned() else {
            continue;
        };
        let (incarnation, epoch) = (first.vote.incarnation, first.vote.epoch);
        let mut forged: Vec<SignedVote> = votes
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| v.vote.incarnation == incarnation && v.vote.epoch == epoch)
            .collect();
        while forged.len() < threshold {
            forged.push(first.clone());
        }
        let cert = Certificate {
            subject: world.id(target),
            incarnation,
            epoch,
            votes: forged,
        };
        world.broadcast(
            liar,
            liar,
            encode(&Message::Certificate(cert)).into(),
            false,
        );
    }
}

/// A vote by liar `i` about `target`'s incarnation as `i` currently knows it.
fn liar_vote(
    world: &mut World,
    i: usize,
    target: usize,
    verdict: Verdict,
    seq: Option<u64>,
) -> Option<SignedVote> {
    let subject = world.id(target);
    let core = world.core(i)?;
    let incarnation = core.view().get(&subject).map(|m| m.incarnation)?;
    let epoch = core.epoch();
    let view = core.view().digest();
    let seq = seq.unwrap_or_else(|| world.liars.next_seq());
    let vote = Vote {
        subject,
        epoch,
        view,
        observer: world.id(i),
        incarnation,
        verdict,
        seq,
    };
    SignedVote::sign(vote, &world.keys[i])
}
