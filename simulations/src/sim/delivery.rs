//! Carrying bytes between simulated nodes: gossip (one delivery per node on the
//! sender's side of any partition), direct frames and probes over one-way links, each
//! with the network's delay and loss.

use std::rc::Rc;

use super::metrics::Kind;
use super::world::{Event, World};

impl World {
    /// Publishes `bytes` from node `via` (whose side of a partition decides who is
    /// reached) with authenticated source `source`: one delivery per other live node
    /// on the same side.
    pub(crate) fn broadcast(&mut self, via: usize, source: usize, bytes: Rc<[u8]>, honest: bool) {
        for to in 0..self.nodes.len() {
            if to == via || to == source || !self.network.same_side(via, to) {
                continue;
            }
            self.gossip_to(via, to, source, bytes.clone(), honest);
        }
    }

    /// One gossip delivery of a message published at `via` to `to`.
    pub(crate) fn gossip_to(
        &mut self,
        via: usize,
        to: usize,
        source: usize,
        bytes: Rc<[u8]>,
        honest: bool,
    ) {
        if self.nodes[to].core.is_none() || !self.network.same_side(via, to) {
            return;
        }
        let now = self.now;
        self.recorder.sent(now, Kind::Gossip, bytes.len());
        if let Some(d) = self.network.gossip_delay(&mut self.rng) {
            let life = self.nodes[to].life;
            self.push(
                now.plus(d),
                Event::Deliver {
                    to,
                    life,
                    from: source,
                    bytes,
                    kind: Kind::Gossip,
                    honest,
                },
            );
        }
    }

    /// A direct delivery over the link `via -> to`.
    pub(crate) fn send(
        &mut self,
        via: usize,
        to: usize,
        source: usize,
        bytes: Rc<[u8]>,
        kind: Kind,
        honest: bool,
    ) {
        if self.nodes[to].core.is_none() || !self.network.link_up(via, to) {
            return;
        }
        let now = self.now;
        self.recorder.sent(now, kind, bytes.len());
        if let Some(d) = self.network.direct_delay(&mut self.rng) {
            let life = self.nodes[to].life;
            self.push(
                now.plus(d),
                Event::Deliver {
                    to,
                    life,
                    from: source,
                    bytes,
                    kind,
                    honest,
                },
            );
        }
    }

    /// A probe from `prober` to `target`; the answer needs the reverse link.
    pub(crate) fn probe(&mut self, prober: usize, target: usize) {
        let now = self.now;
        if !self.network.link_up(prober, target) {
            return;
        }
        self.recorder.sent(now, Kind::Probe, 0);
        if let Some(d) = self.network.direct_delay(&mut self.rng) {
            let life = self.nodes[prober].life;
            self.push(
                now.plus(d),
                Event::ProbeArrive {
                    prober,
                    life,
                    target,
                    sent: now,
                },
            );
        }
    }
}
