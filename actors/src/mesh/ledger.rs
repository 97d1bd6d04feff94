//! The mesh's ledger: counters, the member set and the bans, shared without messages by
//! the event loop, the transport, the connection gate and every client (reading it
//! needs no round trip through the event loop).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// How long a banned outsider is refused.
pub(crate) const BAN: Duration = Duration::from_secs(60);

/// The kinds of inbound input that are budgeted per peer, for the refusal counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// A gossipsub subscription change.
    Subscription,
    /// A gossip message awaiting validation.
    Message,
    /// A probe request.
    Probe,
    /// A peer-exchange request (or an answer from a non-member).
    PeerExchange,
    /// An identify report.
    Identify,
    /// An inbound direct stream.
    DirectStream,
    /// A malformed input report (only the first few per peer become events).
    Malformed,
    /// A connection (refused by the gate).
    Connection,
    /// An inbound stream (of any protocol) over the connection's budget.
    Stream,
}

const INPUTS: usize = 9;

/// Outsiders banned at once, at most (the map of bans is bounded like every map fed by
/// the network).
const MAX_BANS: usize = 1024;

/// Peers whose traffic is counted apart, at most; beyond them (and for outsiders) it is
/// counted together, so the map fed by connections stays bounded.
const MAX_PEER_TRAFFIC: usize = 1024;

/// Inputs dropped because their sender was over budget (or, for streams and peer
/// exchange, not a member), by kind. Work refused is work an outsider did not cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusedInputs {
    /// Subscription changes not reported to the application.
    pub subscriptions: u64,
    /// Gossip messages dropped (reported `Ignore`) before validation.
    pub messages: u64,
    /// Probe requests left unanswered.
    pub probes: u64,
    /// Peer-exchange requests unanswered, or answers from non-members not used.
    pub peer_exchange: u64,
    /// Identify reports ignored.
    pub identify: u64,
    /// Inbound direct streams closed.
    pub direct_streams: u64,
    /// Malformed-input reports not passed on (the input was dropped all the same).
    pub malformed: u64,
    /// Connections refused by the gate (handshake budget, outsider cap, churn, ban).
    pub connections: u64,
    /// Inbound streams over their connection's budget: a member's are reset, an
    /// outsider's connection is closed.
    pub streams: u64,
}

/// What the event loop, the transport, the connection gate and every
/// [`Client`](super::Client) share without messages: plain counters, who the members
/// are, and who is banned.
#[derive(Debug, Default)]
pub(crate) struct MeshLedger {
    pub(crate) traffic: Arc<TrafficCounters>,
    dropped_events: AtomicU64,
    delivered_events: AtomicU64,
    pub(crate) outsider_connections: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) rejected_messages: AtomicU64,
    bans: AtomicU64,
    /// Banned outsiders and when their ban ends.
    banned: std::sync::Mutex<HashMap<PeerId, Instant>>,
    refused: [AtomicU64; INPUTS],
    /// The peers the application counts as members; `None` until it says, and then
    /// everyone is treated as one (a bare mesh without membership has no outsiders).
    members: std::sync::RwLock<Option<HashSet<PeerId>>>,
    /// Stream bytes per member (see [`TrafficByPeer`]); entries go when their peer
    /// leaves the member set.
    peer_traffic: std::sync::Mutex<HashMap<PeerId, Arc<TrafficCounters>>>,
    /// Stream bytes of outsiders (and of members beyond [`MAX_PEER_TRAFFIC`]) together.
    outsider_traffic: Arc<TrafficCounters>,
}

impl MeshLedger {
    /// Replaces the member set (see [`Client::set_members`](super::Client::set_members)).
    pub(crate) fn set_members(&self, members: impl IntoIterator<Item = PeerId>) {
        let members: HashSet<PeerId> = members.into_iter().collect();
        self.peer_traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p, _| members.contains(p));
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Some(members);
    }

    /// The counters a new stream with `peer` adds its bytes to: the member's own, or the
    /// outsiders' shared ones. A stream keeps the counters it was given.
    pub(crate) fn traffic_of(&self, peer: &PeerId) -> Arc<TrafficCounters> {
        if !self.is_member(peer) {
            return self.outsider_traffic.clone();
        }
        let mut map = self.peer_traffic.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(peer) {
            return c.clone();
        }
        if map.len() >= MAX_PEER_TRAFFIC {
            return self.outsider_traffic.clone();
        }
        map.entry(*peer).or_default().clone()
    }

    /// Stream bytes per member and of outsiders together.
    pub(crate) fn traffic_by_peer(&self) -> TrafficByPeer {
        let members = self
            .peer_traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(p, c)| (*p, c.snapshot()))
            .collect();
        TrafficByPeer {
            members,
            outsiders: self.outsider_traffic.snapshot(),
        }
    }

    /// Whether `peer` counts as a member (everyone does until a member set is given).
    pub(crate) fn is_member(&self, peer: &PeerId) -> bool {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|m| m.contains(peer))
    }

    /// Counts an event dropped because the channel was full.
    pub(crate) fn dropped(&self) {
        self.dropped_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an event handed to the application.
    pub(crate) fn delivered(&self) {
        self.delivered_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Refuses `peer` until `now + BAN` unless it is a member; `true` if newly banned.
    pub(crate) fn ban(&self, peer: PeerId, now: Instant) -> bool {
        if self.is_member(&peer) {
            return false;
        }
        let mut bans = self.banned.lock().unwrap_or_else(|p| p.into_inner());
        if bans.get(&peer).is_some_and(|until| *until > now) {
            return false;
        }
        if bans.len() >= MAX_BANS {
            bans.retain(|_, until| *until > now);
        }
        if bans.len() >= MAX_BANS {
            // Still full of live bans: drop the one ending first.
            if let Some(first) = bans.iter().min_by_key(|(_, u)| **u).map(|(p, _)| *p) {
                bans.remove(&first);
            }
        }
        bans.insert(peer, now + BAN);
        self.bans.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether `peer` is banned at `now`.
    pub(crate) fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .is_some_and(|until| *until > now)
    }

    /// Bans held (expired ones included until pruned).
    #[cfg(test)]
    pub(crate) fn ban_count(&self) -> usize {
        self.banned.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Counts one input of `kind` refused.
    pub(crate) fn refused(&self, kind: Input) {
        self.refused[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> MeshStats {
        let r = |k: Input| self.refused[k as usize].load(Ordering::Relaxed);
        MeshStats {
            traffic: self.traffic.snapshot(),
            dropped_events: self.dropped_events.load(Ordering::Relaxed),
            delivered_events: self.delivered_events.load(Ordering::Relaxed),
            outsider_connections: self.outsider_connections.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            rejected_messages: self.rejected_messages.load(Ordering::Relaxed),
            bans: self.bans.load(Ordering::Relaxed),
            refused: RefusedInputs {
                subscriptions: r(Input::Subscription),
                messages: r(Input::Message),
                probes: r(Input::Probe),
                peer_exchange: r(Input::PeerExchange),
                identify: r(Input::Identify),
                direct_streams: r(Input::DirectStream),
                malformed: r(Input::Malformed),
                connections: r(Input::Connection),
                streams: r(Input::Stream),
            },
        }
    }
}

/// Counters shared with the event loop; reading them needs no round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeshStats {
    /// Bytes on the wire (TCP, under encryption).
    pub traffic: Traffic,
    /// Events dropped because the event channel was full.
    pub dropped_events: u64,
    /// Events handed to the application (the work the mesh asked of it).
    pub delivered_events: u64,
    /// Connections with outsiders held now (at most `max_outsider_connections`).
    pub outsider_connections: u64,
    /// Gossip messages this node published (authored) since start.
    pub published: u64,
    /// Gossip messages the application rejected (invalid: bad signature, non-member).
    pub rejected_messages: u64,
    /// Outsiders banned for going over an input budget.
    pub bans: u64,
    /// Inputs refused by the per-peer budgets and the connection gate, by kind.
    pub refused: RefusedInputs,
}

/// Bytes on the streams with each member, counted above encryption and multiplexing
/// (so they add up to a little less than [`MeshStats::traffic`], which counts the wire
/// under both), over TCP and QUIC alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficByPeer {
    /// Per member peer id, since its first stream.
    pub members: HashMap<PeerId, Traffic>,
    /// Outsiders' streams together (and members' beyond the first 1024 counted apart).
    pub outsiders: Traffic,
}

/// Bytes moved by all TCP connections of one node, counted below noise and yamux.
/// QUIC connections (feature `quic`) are not counted.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    pub(crate) inbound: AtomicU64,
    pub(crate) outbound: AtomicU64,
}

/// A snapshot of [`TrafficCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes received since start.
    pub bytes_in: u64,
    /// Bytes sent since start.
    pub bytes_out: u64,
}

impl TrafficCounters {
    /// Reads both counters.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            bytes_in: self.inbound.load(Ordering::Relaxed),
            bytes_out: self.outbound.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_counted_per_member_and_outsiders_together() {
        let ledger = MeshLedger::default();
        let (a, b, stranger) = (PeerId::random(), PeerId::random(), PeerId::random());
        ledger.set_members([a, b]);
        ledger
            .traffic_of(&a)
            .inbound
            .fetch_add(10, Ordering::Relaxed);
        ledger
            .traffic_of(&a)
            .outbound
            .fetch_add(3, Ordering::Relaxed);
        ledger
            .traffic_of(&stranger)
            .inbound
            .fetch_add(7, Ordering::Relaxed);
        let t = ledger.traffic_by_peer();
        assert_eq!(
            t.members.get(&a),
            Some(&Traffic {
                bytes_in: 10,
                bytes_out: 3
            })
        );
        assert_eq!(t.members.get(&b), None, "no stream with it yet");
        assert_eq!(
            t.members.get(&stranger),
            None,
            "outsiders are not kept apart"
        );
        assert_eq!(t.outsiders.bytes_in, 7);
        // A member that leaves the set leaves the map.
        ledger.set_members([b]);
        assert!(ledger.traffic_by_peer().members.is_empty());
    }
}
