//! The connection gate: who may hold a connection to this node, and how often they may
//! make a new one.
//!
//! Members (and, until the application names its members, everyone) pass. Outsiders
//! (peers that are not members: would-be joiners, and anyone else) are let in within
//! bounds, because a joiner with a certificate must reach a member before it is one:
//! - inbound handshakes (noise + yamux, the costly part of a connection, done before the
//!   peer is known) are budgeted per remote IP;
//! - at most `max_outsider_connections` outsider connections are held at once;
//! - each outsider may connect only so often;
//! - an outsider that the event loop caught over any input budget is banned for a while.
//!
//! So connection churn by an outsider costs at most its handshake budget, whatever its
//! rate. `connection_limits` (total and per-peer caps) stays in front of this gate.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Instant,
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, multiaddr::Protocol, transport::PortUse},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
        behaviour::{ConnectionClosed, ConnectionEstablished},
        dummy,
    },
};

use super::{
    budget::{PeerBudget, Rate},
    ledger::{Input, MeshLedger},
};

/// Inbound handshakes per remote IP: members reconnect rarely, so this only bites churn.
const HANDSHAKES_PER_IP: Rate = Rate::new(20.0, 40.0);
/// New connections per outsider identity.
const OUTSIDER_CONNECTS: Rate = Rate::new(0.5, 3.0);
/// Remote IPs and outsiders remembered (each map is bounded).
const REMEMBERED: usize = 1024;

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("too many handshakes from {0}")]
    Handshakes(IpAddr),
    #[error("peer {0} is banned")]
    Banned(PeerId),
    #[error("{0} outsider connections held already")]
    OutsiderCap(usize),
    #[error("outsider {0} reconnects too often")]
    OutsiderChurn(PeerId),
}

/// The gate behaviour; see the module docs.
pub(crate) struct Gate {
    ledger: Arc<MeshLedger>,
    max_outsiders: usize,
    handshakes: PeerBudget<IpAddr>,
    connects: PeerBudget<PeerId>,
    /// Established outsider connections.
    outsiders: HashMap<ConnectionId, PeerId>,
}

impl Gate {
    pub(crate) fn new(ledger: Arc<MeshLedger>, max_outsiders: usize) -> Self {
        Self {
            ledger,
            max_outsiders,
            handshakes: PeerBudget::new(HANDSHAKES_PER_IP, REMEMBERED),
            connects: PeerBudget::new(OUTSIDER_CONNECTS, REMEMBERED),
            outsiders: HashMap::new(),
        }
    }

    fn refuse(&self, why: Refused) -> ConnectionDenied {
        self.ledger.refused(Input::Connection);
        tracing::debug!(%why, "connection refused");
        ConnectionDenied::new(why)
    }

    /// The checks for an established connection of `peer`; `inbound` ones are also held
    /// to the reconnect budget.
    fn admit(&mut self, peer: PeerId, inbound: bool) -> Result<(), ConnectionDenied> {
        if self.ledger.is_member(&peer) {
            return Ok(());
        }
        let now = Instant::now();
        if self.ledger.is_banned(&peer, now) {
            return Err(self.refuse(Refused::Banned(peer)));
        }
        if self.outsiders.len() >= self.max_outsiders {
            return Err(self.refuse(Refused::OutsiderCap(self.outsiders.len())));
        }
        if inbound && !self.connects.try_take(&peer, now) {
            return Err(self.refuse(Refused::OutsiderChurn(peer)));
        }
        Ok(())
    }
}

/// The IP of a remote address, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if let Some(ip) = ip_of(remote)
            && !self.handshakes.try_take(&ip, Instant::now())
        {
            return Err(self.refuse(Refused::Handshakes(ip)));
        }
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, true)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer, false)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) if !self.ledger.is_member(&peer_id) => {
                self.outsiders.insert(connection_id, peer_id);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.outsiders.remove(&connection_id);
            }
            _ => return,
        }
        self.ledger
            .outsider_connections
            .store(self.outsiders.len() as u64, Ordering::Relaxed);
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::mesh::ledger::BAN;

    fn gate(members: &[PeerId], max: usize) -> Gate {
        let ledger = Arc::new(MeshLedger::default());
        ledger.set_members(members.iter().copied());
        Gate::new(ledger, max)
    }

    #[test]
    fn members_always_pass_and_outsiders_are_capped() {
        let member = PeerId::random();
        let mut g = gate(&[member], 2);
        for i in 0..2 {
            let outsider = PeerId::random();
            assert!(g.admit(outsider, true).is_ok());
            g.outsiders.insert(ConnectionId::new_unchecked(i), outsider);
        }
        assert!(g.admit(PeerId::random(), true).is_err(), "cap reached");
        assert!(g.admit(member, true).is_ok(), "members pass the cap");
        assert_eq!(g.ledger.stats().refused.connections, 1);
    }

    #[test]
    fn an_outsider_cannot_churn_connections_and_a_ban_holds() {
        let mut g = gate(&[], 16);
        let churner = PeerId::random();
        let admitted = (0..100).filter(|_| g.admit(churner, true).is_ok()).count();
        assert_eq!(admitted, 3, "burst only");
        let other = PeerId::random();
        assert!(g.ledger.ban(other, Instant::now()));
        assert!(!g.ledger.ban(other, Instant::now()), "counted once");
        assert!(g.admit(other, false).is_err(), "banned both ways");
        let later = Instant::now() + BAN + Duration::from_secs(1);
        assert!(!g.ledger.is_banned(&other, later));
    }

    #[test]
    fn bans_stay_bounded_and_members_are_not_banned() {
        let member = PeerId::random();
        let g = gate(&[member], 16);
        assert!(!g.ledger.ban(member, Instant::now()));
        assert!(!g.ledger.is_banned(&member, Instant::now()));
        for _ in 0..2000 {
            g.ledger.ban(PeerId::random(), Instant::now());
        }
        assert!(g.ledger.ban_count() <= 1024);
    }

    #[test]
    fn handshakes_are_budgeted_per_ip() {
        let mut g = gate(&[], 16);
        let a: Multiaddr = "/ip4/127.0.0.2/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip4/127.0.0.3/tcp/1".parse().unwrap();
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/2".parse().unwrap();
        let id = ConnectionId::new_unchecked(0);
        let passed = (0..1000)
            .filter(|_| g.handle_pending_inbound_connection(id, &local, &a).is_ok())
            .count();
        assert!((40..=41).contains(&passed), "{passed}");
        assert!(g.handle_pending_inbound_connection(id, &local, &b).is_ok());
    }

    #[test]
    fn without_a_member_list_everyone_is_a_member() {
        let mut g = Gate::new(Arc::new(MeshLedger::default()), 0);
        assert!(g.admit(PeerId::random(), true).is_ok());
    }
}
