//! The event loop's handling of what peers send: gossip and subscriptions, probes,
//! identify reports and peer exchange. Each input is charged to its sender's budget
//! before it causes any work.

use std::time::Instant;

use libp2p::{
    Multiaddr, PeerId, gossipsub, identify,
    request_response::{self, OutboundFailure},
    swarm::dial_opts::DialOpts,
};
use rand::seq::IteratorRandom;

use super::{EventLoop, MAX_ADDRS_PER_PEER, PeerInfo};
use crate::mesh::{
    command::ProbeReply,
    error::ProbeError,
    event::MeshEvent,
    ledger::Input,
    peer_exchange::{self, PeerRecord},
    probe::{self, InboundProbe, ProbeResponse},
};

impl EventLoop {
    pub(super) fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let delivered = self.charge(|b| &mut b.messages, propagation_source)
                    && self.emit(MeshEvent::Message {
                        propagation_source,
                        author: message.source,
                        message_id: message_id.clone(),
                        topic: message.topic.into_string(),
                        data: message.data,
                    });
                if !delivered {
                    // Nobody will validate it: free the cache slot, forward nothing, blame no
                    // one (an over-budget sender is dealt with by `charge`).
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Ignore,
                        );
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                // Gossipsub raises this for every subscribe request, repeats included:
                // charged per peer, and only members' reach the application (which
                // announces itself to new subscribers).
                if self.charge(|b| &mut b.subscriptions, peer_id) && self.ledger.is_member(&peer_id)
                {
                    self.emit(MeshEvent::Subscribed {
                        peer: peer_id,
                        topic: topic.into_string(),
                    });
                } else if !self.ledger.is_member(&peer_id) {
                    self.ledger.refused(Input::Subscription);
                }
            }
            gossipsub::Event::Unsubscribed { peer_id, .. } => {
                // Not reported, but churn is churn.
                self.charge(|b| &mut b.subscriptions, peer_id);
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                if let Some(held_back) = self.logs.slow.allow(Instant::now()) {
                    tracing::warn!(%peer_id, ?failed_messages, held_back, "slow gossipsub peer");
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_probe(&mut self, event: request_response::Event<InboundProbe, ProbeResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request: Err(junk), ..
                } => {
                    // Dropping the channel resets the stream; the connection stays up.
                    if self.charge(|b| &mut b.malformed, peer) {
                        self.emit(MeshEvent::MalformedInput {
                            peer,
                            protocol: probe::PROTOCOL_NAME,
                            reason: junk.to_string(),
                        });
                    }
                }
                request_response::Message::Request {
                    request: Ok(request),
                    channel,
                    ..
                } => {
                    if !self.charge(|b| &mut b.probes, peer) {
                        // Unanswered: the stream resets; an honest prober retries later.
                        return;
                    }
                    let answer = ProbeResponse {
                        nonce: request.nonce,
                        incarnation: self.incarnation,
                    };
                    // Fails only if the stream is already gone; the prober will time out.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .probe
                        .send_response(channel, answer);
                    if self.ledger.is_member(&peer) {
                        self.emit(MeshEvent::ProbeRequest {
                            peer,
                            incarnation: request.incarnation,
                        });
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some(pending) = self.pending_probes.remove(&request_id) else {
                        return;
                    };
                    let result = if response.nonce == pending.nonce {
                        Ok(ProbeReply {
                            rtt: pending.sent.elapsed(),
                            incarnation: response.incarnation,
                        })
                    } else {
                        Err(ProbeError::NonceMismatch(pending.peer))
                    };
                    let _ = pending.reply.send(result);
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let OutboundFailure::Io(e) = &error {
                    self.report_malformed(peer, probe::PROTOCOL_NAME, e);
                }
                let Some(pending) = self.pending_probes.remove(&request_id) else {
                    return;
                };
                let error = match error {
                    OutboundFailure::DialFailure => ProbeError::Unreachable(peer),
                    OutboundFailure::Timeout => ProbeError::Timeout(peer),
                    OutboundFailure::ConnectionClosed => ProbeError::ConnectionClosed(peer),
                    OutboundFailure::UnsupportedProtocols => ProbeError::Unsupported(peer),
                    OutboundFailure::Io(e) => ProbeError::Io {
                        peer,
                        reason: e.to_string(),
                    },
                };
                let _ = pending.reply.send(Err(error));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.on_inbound_failure(peer, probe::PROTOCOL_NAME, error);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Inbound read errors are not reported by request-response (see `probe.rs`); what
    /// reaches us here are failures after the request was read, which are not the peer's
    /// fault in a way worth reporting.
    fn on_inbound_failure(
        &mut self,
        peer: PeerId,
        protocol: &'static str,
        error: request_response::InboundFailure,
    ) {
        tracing::debug!(%peer, protocol, %error, "inbound request failed");
    }

    /// An answer that does not decode is a fact about the peer.
    fn report_malformed(&mut self, peer: PeerId, protocol: &'static str, error: &std::io::Error) {
        if error.kind() == std::io::ErrorKind::InvalidData
            && self.charge(|b| &mut b.malformed, peer)
        {
            self.emit(MeshEvent::MalformedInput {
                peer,
                protocol,
                reason: error.to_string(),
            });
        }
    }

    pub(super) fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        // Identify pushes can come at any rate; each one stored would be work.
        if !self.charge(|b| &mut b.identify, peer_id) {
            return;
        }
        let member = self.ledger.is_member(&peer_id);
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .take(MAX_ADDRS_PER_PEER)
            .collect();
        // Only members' addresses are kept for re-dialling: behaviours keep addresses per
        // peer, and outsiders can make up any number of identities.
        if member {
            for addr in &addrs {
                self.swarm.add_peer_address(peer_id, addr.clone());
            }
        }
        let speaks_peer_exchange = info.protocols.contains(&peer_exchange::PROTOCOL);
        let first_time = self
            .identified
            .insert(
                peer_id,
                PeerInfo {
                    addrs: addrs.clone(),
                    speaks_peer_exchange,
                },
            )
            .is_none();
        if !member {
            return;
        }
        if first_time && speaks_peer_exchange && self.peer_exchange_interval.is_some() {
            self.swarm.behaviour_mut().peers.send_request(&peer_id, ());
        }
        self.emit(MeshEvent::PeerIdentified {
            peer: peer_id,
            protocol_version: info.protocol_version,
            agent_version: info.agent_version,
            listen_addrs: addrs,
        });
    }

    pub(super) fn exchange_with_random_peer(&mut self) {
        let peer = self
            .identified
            .iter()
            .filter(|(peer, info)| info.speaks_peer_exchange && self.ledger.is_member(peer))
            .map(|(peer, _)| *peer)
            .choose(&mut rand::rng());
        if let Some(peer) = peer {
            self.swarm.behaviour_mut().peers.send_request(&peer, ());
        }
    }

    pub(super) fn on_peer_exchange(&mut self, event: request_response::Event<(), Vec<PeerRecord>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { channel, .. } => {
                    if !self.charge(|b| &mut b.peer_exchange, peer) {
                        return;
                    }
                    // Members only: an outsider connected to this node must not be handed
                    // to every member (who would all dial it). A joiner asking gets the
                    // members, which it needs to reach them.
                    let records: Vec<PeerRecord> = self
                        .identified
                        .iter()
                        .filter(|(p, info)| {
                            **p != peer && !info.addrs.is_empty() && self.ledger.is_member(p)
                        })
                        .take(peer_exchange::MAX_PEERS)
                        .map(|(p, info)| PeerRecord {
                            peer: *p,
                            addrs: info.addrs.clone(),
                        })
                        .collect();
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .peers
                        .send_response(channel, records);
                }
                request_response::Message::Response { response, .. } => {
                    // Only a member's answer is used, and only the members in it: what
                    // we dial is what our own view admits.
                    if !self.ledger.is_member(&peer) {
                        self.ledger.refused(Input::PeerExchange);
                        return;
                    }
                    let before = response.len();
                    let members: Vec<PeerRecord> = response
                        .into_iter()
                        .filter(|r| self.ledger.is_member(&r.peer))
                        .collect();
                    if members.len() < before {
                        self.ledger.refused(Input::PeerExchange);
                    }
                    self.dial_unknown_peers(members);
                }
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.on_inbound_failure(peer, peer_exchange::PROTOCOL_NAME, error);
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "peer exchange failed");
                if let OutboundFailure::Io(e) = &error {
                    self.report_malformed(peer, peer_exchange::PROTOCOL_NAME, e);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn dial_unknown_peers(&mut self, records: Vec<PeerRecord>) {
        let local = *self.swarm.local_peer_id();
        for record in records {
            if self.swarm.network_info().num_peers() >= self.max_connections {
                return;
            }
            if record.peer == local
                || record.addrs.is_empty()
                || self.swarm.is_connected(&record.peer)
            {
                continue;
            }
            // Default condition: skipped if a dial to that peer is already in flight.
            let opts = DialOpts::peer_id(record.peer)
                .addresses(record.addrs)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer = %record.peer, %e, "peer exchange dial refused");
            }
        }
    }
}
