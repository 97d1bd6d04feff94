//! Bootstrap peers dialled again until they answer: a node started before the peer it
//! joins through (or cut off from it later) keeps trying, with a backoff, instead of
//! staying alone after one failed dial.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

/// The first wait between two rounds of dials.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two rounds of dials.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When to dial which bootstrap peers again.
#[derive(Debug)]
pub(crate) struct Redial {
    peers: Vec<(PeerId, Multiaddr)>,
    backoff: Duration,
    next_at: Instant,
}

impl Redial {
    /// The bootstrap addresses (each ending in `/p2p/<id>`, as the config requires;
    /// one without an id is never dialled again), first round due after the first
    /// backoff (the dials at start are round zero).
    pub(crate) fn new(bootstrap: &[Multiaddr], now: Instant) -> Self {
        let peers = bootstrap
            .iter()
            .filter_map(|addr| match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(peer)) => Some((peer, addr.clone())),
                _ => None,
            })
            .collect();
        Redial {
            peers,
            backoff: FIRST_BACKOFF,
            next_at: now + FIRST_BACKOFF,
        }
    }

    /// The addresses to dial now: those of the bootstrap peers `connected` says are not
    /// connected, once a backoff has passed since the last round. The backoff doubles
    /// with every round that had something to dial, up to [`MAX_BACKOFF`], and starts
    /// over once every bootstrap peer is connected (so a peer lost later is retried
    /// soon).
    pub(crate) fn due(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<Multiaddr> {
        let missing: Vec<Multiaddr> = self
            .peers
            .iter()
            .filter(|(peer, _)| !connected(peer))
            .map(|(_, addr)| addr.clone())
            .collect();
        if missing.is_empty() {
            self.backoff = FIRST_BACKOFF;
            self.next_at = now + FIRST_BACKOFF;
            return missing;
        }
        if now < self.next_at {
            return Vec::new();
        }
        self.next_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: &PeerId, port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
            .parse()
            .unwrap()
    }

    #[test]
    fn unreachable_peers_are_dialled_again_with_a_growing_backoff() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let start = Instant::now();
        let mut r = Redial::new(&[addr(&a, 1), addr(&b, 2)], start);
        let none = |_: &PeerId| false;
        assert!(r.due(start, none).is_empty(), "round zero was the start's");
        let mut rounds = Vec::new();
        let mut t = start;
        while t < start + Duration::from_secs(120) {
            t += Duration::from_millis(100);
            if !r.due(t, none).is_empty() {
                rounds.push(t - start);
            }
        }
        let gaps: Vec<Duration> = rounds.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(rounds[0], FIRST_BACKOFF);
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert!(
            gaps.iter()
                .all(|g| *g <= MAX_BACKOFF + Duration::from_millis(100))
        );
        assert_eq!(*gaps.last().unwrap(), MAX_BACKOFF, "{gaps:?}");
    }

    #[test]
    fn only_unconnected_peers_are_dialled_and_a_full_set_resets_the_backoff() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let start = Instant::now();
        let mut r = Redial::new(&[addr(&a, 1), addr(&b, 2)], start);
        let only_a = |p: &PeerId| *p == a;
        let due = r.due(start + FIRST_BACKOFF, only_a);
        assert_eq!(due, vec![addr(&b, 2)]);
        // Everyone connected: nothing to dial, and the backoff starts over.
        let all = |_: &PeerId| true;
        assert!(r.due(start + Duration::from_secs(5), all).is_empty());
        let later = start + Duration::from_secs(5) + FIRST_BACKOFF;
        assert_eq!(r.due(later, only_a), vec![addr(&b, 2)]);
    }

    #[test]
    fn an_address_without_a_peer_id_is_not_dialled_again() {
        let start = Instant::now();
        let bare: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let mut r = Redial::new(&[bare], start);
        assert!(r.due(start + MAX_BACKOFF, |_| false).is_empty());
    }
}
