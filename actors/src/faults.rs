//! Fault injection for chaos runs: what a node does to its own membership traffic, and
//! how it misbehaves when told to play a Byzantine member.
//!
//! A node started with `jobmesh node --chaos-control <file>` watches a JSON [`Faults`]
//! document and applies it at once. Faults act where the protocol sees the network, in
//! the membership actor and the probe responder, so partitions, one-way links, delay
//! and loss are exact per peer without touching the host's network stack:
//! - `drop_from`: membership traffic whose immediate sender is one of these peers is
//!   ignored (gossip they forward, their liveness frames, their probes and our probes'
//!   answers). A partition is both sides dropping the other; a one-way link is one side.
//! - `delay_ms`, `loss`: incoming membership traffic is delayed, or dropped at random.
//! - `byzantine`: this node lies (see [`Byzantine`]). Its jobs still run honestly: the
//!   point is to show that at most `f` such members cannot evict or hide anyone.

use std::collections::HashSet;
use std::str::FromStr;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Byzantine behaviours a chaos run can give a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Byzantine {
    /// Votes Down on every other member, about once a second.
    FalseDown,
    /// Never votes and never answers probes.
    Withhold,
    /// Casts both verdicts (Up and Down, same sequence number) about the same subject.
    Equivocate,
    /// Re-publishes old messages it received, as its own.
    Replay,
    /// Floods the membership topic and direct links with malformed bytes.
    Junk,
}

/// The faults in force on one node. The default is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Peer ids whose membership traffic this node ignores.
    #[serde(default)]
    pub drop_from: Vec<String>,
    /// Delay added to incoming membership traffic, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Probability (0 to 1) of dropping an incoming membership message.
    #[serde(default)]
    pub loss: f64,
    /// Byzantine behaviour, if any.
    #[serde(default)]
    pub byzantine: Option<Byzantine>,
}

/// Why a faults document was refused (the previous faults stay in force).
#[derive(Debug, Error)]
pub enum FaultsError {
    /// Not JSON of the documented shape.
    #[error("chaos control is not a valid faults document: {0}")]
    Json(#[from] serde_json::Error),
    /// `drop_from` holds something that is not a peer id.
    #[error("chaos control drop_from: `{0}` is not a peer id")]
    BadPeer(String),
    /// `loss` outside 0..=1.
    #[error("chaos control loss must be between 0 and 1, got {0}")]
    BadLoss(f64),
    /// `delay_ms` above a minute.
    #[error("chaos control delay_ms must be at most 60000, got {0}")]
    BadDelay(u64),
}

/// [`Faults`] checked and ready to apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActiveFaults {
    /// Peers whose traffic is ignored.
    pub drop_from: HashSet<PeerId>,
    /// Delay of incoming traffic.
    pub delay: std::time::Duration,
    /// Loss probability of incoming traffic.
    pub loss: f64,
    /// Byzantine behaviour.
    pub byzantine: Option<Byzantine>,
}

impl ActiveFaults {
    /// Parses and checks a JSON faults document.
    pub fn parse(json: &str) -> Result<Self, FaultsError> {
        let f: Faults = serde_json::from_str(json)?;
        let drop_from = f
            .drop_from
            .iter()
            .map(|p| PeerId::from_str(p.trim()).map_err(|_| FaultsError::BadPeer(p.clone())))
            .collect::<Result<_, _>>()?;
        if !(0.0..=1.0).contains(&f.loss) {
            return Err(FaultsError::BadLoss(f.loss));
        }
        if f.delay_ms > 60_000 {
            return Err(FaultsError::BadDelay(f.delay_ms));
        }
        Ok(Self {
            drop_from,
            delay: std::time::Duration::from_millis(f.delay_ms),
            loss: f.loss,
            byzantine: f.byzantine,
        })
    }

    /// Whether nothing is injected.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_reasons() {
        let p = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let f = ActiveFaults::parse(&format!(
            r#"{{"drop_from":["{p}"],"delay_ms":20,"loss":0.1,"byzantine":"false-down"}}"#
        ))
        .unwrap();
        assert!(f.drop_from.contains(&p));
        assert_eq!(f.byzantine, Some(Byzantine::FalseDown));
        assert!(ActiveFaults::parse("{}").unwrap().is_none());
        let e = ActiveFaults::parse(r#"{"drop_from":["nope"]}"#).unwrap_err();
        assert!(e.to_string().contains("`nope` is not a peer id"), "{e}");
        assert!(matches!(
            ActiveFaults::parse(r#"{"loss":2}"#),
            Err(FaultsError::BadLoss(_))
        ));
        assert!(matches!(
            ActiveFaults::parse(r#"{"lossy":1}"#),
            Err(FaultsError::Json(_))
        ));
        assert!(matches!(
            ActiveFaults::parse(r#"{"byzantine":"sneaky"}"#),
            Err(FaultsError::Json(_))
        ));
    }
}
