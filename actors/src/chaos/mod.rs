//! Fault injection for chaos runs (cargo feature `chaos`; a build without it has none of
//! this): what a node does to its own membership traffic, and how it misbehaves when
//! told to play a Byzantine member.
//!
//! A node started with `jobmesh node --chaos-control <file>` watches a JSON [`Faults`]
//! document ([`watch_file`]) and applies it at once. Faults act where the voter meets
//! the mesh: a fault injector (`injector.rs`) wraps the voter's interceptor (the seam a
//! production node passes untouched), so partitions, one-way links, delay and loss are
//! exact per peer without touching the host's network stack:
//! - `drop_from`: membership traffic whose immediate sender is one of these peers is
//!   ignored (gossip they forward, their liveness frames), and this node's probes of
//!   them go unanswered. A partition is both sides dropping the other; a one-way link is
//!   one side.
//! - `delay_ms`, `loss`: incoming membership traffic is delayed, or dropped at random.
//! - `byzantine`: this node lies as the protocol core's adversary model says
//!   ([`jobmesh::membership::adversary`], the same model the simulator's liars follow).
//!   Its jobs still run honestly: the point is to show that at most `f` such members
//!   cannot evict or hide anyone.
//! - `voter_panics`: each increase makes this node's voter panic once, to show that its
//!   supervisor restarts it.

mod injector;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jobmesh::membership::adversary::Behaviour;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use crate::error::NodeError;
use crate::node::{MeshOptions, Node, NodeOptions};

pub use injector::LIE_EVERY;

/// The chaos control document: the faults in force on one node. The default is none.
/// The chaos runner writes it ([`Faults::write`]), the node polls it ([`watch_file`]).
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
    /// Byzantine behaviour, if any (`false-down`, `withhold`, `equivocate`, `replay`,
    /// `junk`).
    #[serde(default)]
    pub byzantine: Option<Behaviour>,
    /// A counter: each increase makes the voter panic once.
    #[serde(default)]
    pub voter_panics: u64,
}

impl Faults {
    /// Writes the document atomically (write, then rename), so a polling node never
    /// reads half of it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
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
    pub delay: Duration,
    /// Loss probability of incoming traffic.
    pub loss: f64,
    /// Byzantine behaviour.
    pub byzantine: Option<Behaviour>,
    /// Voter panics asked for so far.
    pub voter_panics: u64,
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
            delay: Duration::from_millis(f.delay_ms),
            loss: f.loss,
            byzantine: f.byzantine,
            voter_panics: f.voter_panics,
        })
    }

    /// Whether nothing is injected.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// How often [`watch_file`] re-reads the control file.
pub const CONTROL_POLL: Duration = Duration::from_millis(100);

/// Watches a chaos control file: each change (by modification time or length) is
/// parsed and, if valid, put in force; an invalid one is logged and ignored (the faults
/// in force stay). A missing file means no faults. Must be called within a tokio
/// runtime; the watching task ends when every receiver is gone.
pub fn watch_file(path: PathBuf) -> watch::Receiver<ActiveFaults> {
    let (tx, rx) = watch::channel(ActiveFaults::default());
    tokio::spawn(async move {
        let mut seen: Option<(std::time::SystemTime, u64)> = None;
        loop {
            let stamp = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len()));
            if stamp != seen {
                seen = stamp;
                let parsed = match std::fs::read_to_string(&path) {
                    Ok(text) => ActiveFaults::parse(&text),
                    Err(_) => Ok(ActiveFaults::default()),
                };
                match parsed {
                    Ok(faults) => {
                        if tx.send(faults).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "chaos control refused; keeping the faults in force"
                    ),
                }
            }
            tokio::time::sleep(CONTROL_POLL).await;
        }
    });
    rx
}

/// [`Node::start_meshed`] with the faults `faults` carries injected into the voter's
/// traffic (a [`watch_file`] receiver, or a test's own channel).
pub async fn start_meshed(
    opts: NodeOptions,
    mesh: MeshOptions,
    faults: watch::Receiver<ActiveFaults>,
) -> Result<Node, NodeError> {
    Node::start_meshed_with(opts, mesh, |client, keypair| {
        injector::FaultInjector::new(
            crate::voter::Untouched,
            client.clone(),
            keypair.clone(),
            faults,
        )
    })
    .await
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
            r#"{{"drop_from":["{p}"],"delay_ms":20,"loss":0.1,"byzantine":"false-down","voter_panics":2}}"#
        ))
        .unwrap();
        assert!(f.drop_from.contains(&p));
        assert_eq!(f.byzantine, Some(Behaviour::FalseDown));
        assert_eq!(f.voter_panics, 2);
        assert!(ActiveFaults::parse("{}").unwrap().is_none());
        let e = ActiveFaults::parse(r#"{"drop_from":["nope"]}"#).unwrap_err();
        assert!(e.to_string().contains("`nope` is not a peer id"), "{e}");
        assert!(matches!(
            ActiveFaults::parse(r#"{"loss":2}"#),
            Err(FaultsError::BadLoss(_))
        ));
        assert!(matches!(
            ActiveFaults::parse(r#"{"delay_ms":60001}"#),
            Err(FaultsError::BadDelay(_))
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

    #[test]
    fn what_the_runner_writes_the_node_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.control.json");
        let p = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let doc = Faults {
            drop_from: vec![p.to_string()],
            delay_ms: 5,
            loss: 0.5,
            byzantine: Some(Behaviour::Equivocate),
            voter_panics: 1,
        };
        doc.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["byzantine"], "equivocate");
        let f = ActiveFaults::parse(&text).unwrap();
        assert!(f.drop_from.contains(&p));
        assert_eq!((f.delay, f.loss), (Duration::from_millis(5), 0.5));
        Faults::default().write(&path).unwrap();
        assert!(
            ActiveFaults::parse(&std::fs::read_to_string(&path).unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_watched_file_puts_each_valid_document_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.json");
        let mut rx = watch_file(path.clone());
        let doc = Faults {
            loss: 0.25,
            ..Faults::default()
        };
        doc.write(&path).unwrap();
        rx.wait_for(|f| f.loss == 0.25).await.unwrap();
        // A refused document changes nothing (when the watcher reads it at all); a valid
        // one after it is taken up.
        std::fs::write(&path, "{not json").unwrap();
        let next = Faults {
            loss: 0.5,
            ..Faults::default()
        };
        next.write(&path).unwrap();
        let seen = rx.wait_for(|f| f.loss != 0.25).await.unwrap().loss;
        assert_eq!(seen, 0.5);
    }
}
