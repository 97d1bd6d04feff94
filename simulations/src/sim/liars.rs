//! Byzantine members in the simulator: each liar is an [`Adversary`] from the protocol
//! core (the model the real-cluster chaos runs use too), and this module delivers what
//! it says on the simulated network. The simulator can do two things a gossipsub node
//! cannot: address gossip to one member (an equivocator's halves) and keep a replayed
//! message's original author. Liars accusing the same subject also collude, pooling
//! their votes into a forged certificate.

use std::collections::BTreeMap;
use std::rc::Rc;

use jobmesh::membership::adversary::{Lie, forge_certificate};
use jobmesh::membership::{Message, SignedVote, encode};
use libp2p::identity::PeerId;

use super::metrics::Kind;
use super::world::World;

impl World {
    /// Every live liar acts once.
    pub(crate) fn liars_act(&mut self) {
        let now = self.now;
        let liars: Vec<usize> = self.liars.keys().copied().collect();
        // Accusers of the same subject pool their votes into a forged certificate.
        let mut coalitions: BTreeMap<PeerId, (usize, Vec<SignedVote>)> = BTreeMap::new();
        for i in liars {
            let Some(core) = self.nodes[i].core.as_ref() else {
                continue;
            };
            let Some(adversary) = self.liars.get_mut(&i) else {
                continue;
            };
            let lies = adversary.act(core, &self.keys[i], now, &mut self.rng);
            for lie in lies {
                match lie {
                    Lie::Accuse(vote) => {
                        let bytes: Rc<[u8]> = encode(&Message::Vote(vote.clone())).into();
                        coalitions
                            .entry(vote.vote.subject)
                            .or_insert_with(|| (i, Vec::new()))
                            .1
                            .push(vote);
                        self.broadcast(i, i, bytes, false);
                    }
                    Lie::GossipTo { to, bytes } => {
                        if let Some(j) = self.index_of(&to) {
                            self.gossip_to(i, j, i, bytes.into(), false);
                        }
                    }
                    Lie::Replay { author, bytes } => {
                        if let Some(a) = self.index_of(&author) {
                            self.broadcast(i, a, bytes.into(), false);
                        }
                    }
                    Lie::Broadcast(bytes) => self.broadcast(i, i, bytes.into(), false),
                    Lie::Direct { to, bytes } => {
                        if let Some(j) = self.index_of(&to) {
                            self.send(i, j, i, bytes.into(), Kind::Direct, false);
                        }
                    }
                }
            }
        }
        let threshold = self.membership.certificate_threshold();
        for (liar, votes) in coalitions.into_values() {
            if let Some(cert) = forge_certificate(&votes, threshold) {
                let bytes = encode(&Message::Certificate(cert)).into();
                self.broadcast(liar, liar, bytes, false);
            }
        }
    }
}
