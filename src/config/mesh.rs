//! `[mesh]`: the libp2p mesh and its health voting.
//!
//! Addresses, peer ids and the cluster key are parsed while the file is read, so a bad
//! one is refused at load with its key (`mesh.listen[0]: ...`), and what a node starts
//! from is already typed. [`MeshSection::membership`] turns the section into the
//! membership settings of one node, once its identity (and join certificate, if any)
//! is known.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use libp2p::identity::PublicKey;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::membership::{JoinCertificate, MembershipConfig, Monitoring, public_key_of};

/// `[mesh]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshSection {
    /// Join a mesh (also turned on by `jobmesh node --listen/--join`).
    pub enabled: bool,
    /// The node's ed25519 identity; created on first start. Default `<data_dir>/node.key`.
    pub key_file: Option<PathBuf>,
    /// Multiaddrs to listen on.
    #[serde(with = "parsed_list")]
    pub listen: Vec<Multiaddr>,
    /// Multiaddrs of members to join (ending in `/p2p/<peer id>`).
    #[serde(with = "parsed_list")]
    pub join: Vec<Multiaddr>,
    /// Peer ids admitted as members and voters (this node's included); `jobmesh mesh id`
    /// prints a node's id.
    #[serde(with = "parsed_list")]
    pub members: Vec<PeerId>,
    /// Byzantine members tolerated; needs at least `3f + 1` members.
    pub f: usize,
    /// The cluster key (`jobmesh mesh cluster-key` prints its id): peers holding a join
    /// certificate it signed are admitted besides `members`.
    pub cluster_key: Option<ClusterKey>,
    /// This node's join certificate (`jobmesh mesh issue-join` writes one), if it is
    /// admitted by the cluster key rather than listed in `members`.
    pub join_certificate: Option<PathBuf>,
    /// Observers per member: each member is watched (liveness frames, probes, votes) by
    /// this many others, its successors on as many pseudo-random rings; at least
    /// `3f + 1`. Unset: every member watches every other below
    /// [`SAMPLED_MONITORING_FROM`] members, and `max(10, 3f + 1)` observe each from
    /// there on.
    pub observers: Option<usize>,
}

/// From this many members on, an unset `mesh.observers` means sampled monitoring.
pub const SAMPLED_MONITORING_FROM: usize = 32;

impl Default for MeshSection {
    fn default() -> Self {
        Self {
            enabled: false,
            key_file: None,
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .expect("the default listen address is a multiaddr"),
            ],
            join: Vec::new(),
            members: Vec::new(),
            f: 1,
            cluster_key: None,
            join_certificate: None,
            observers: None,
        }
    }
}

impl MeshSection {
    /// How many observers watch each member in a view of `members`, or `None` when
    /// every member watches every other (also when `observers` covers everyone).
    pub fn observers_for(&self, members: usize) -> Option<usize> {
        let k = match self.observers {
            Some(k) => k,
            None if members < SAMPLED_MONITORING_FROM => return None,
            None => 10.max(3 * self.f + 1),
        };
        (k + 1 < members).then_some(k)
    }

    /// Checks what no single value says: `n >= 3f + 1` members (unless a cluster key
    /// admits more), `observers >= 3f + 1`, and a join certificate has a cluster key.
    /// Addresses and peer ids were checked when they were read.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(k) = self.observers
            && k < 3 * self.f + 1
        {
            return Err(format!(
                "mesh.observers = {k}: tolerating f = {} Byzantine members needs at least {} \
                 observers per member (3f + 1)",
                self.f,
                3 * self.f + 1
            ));
        }
        if self.join_certificate.is_some() && self.cluster_key.is_none() {
            return Err(
                "mesh.join_certificate needs mesh.cluster_key (the key that signed it)".into(),
            );
        }
        if !self.enabled {
            return Ok(());
        }
        let need = 3 * self.f + 1;
        // With a cluster key, further members join by certificate.
        if self.cluster_key.is_none() && self.members.len() < need {
            return Err(format!(
                "mesh.members lists {} peer ids; tolerating f = {} Byzantine members needs at least {need} \
                 (`jobmesh mesh id` prints a node's peer id)",
                self.members.len(),
                self.f
            ));
        }
        Ok(())
    }

    /// Reads what the `mesh.join_certificate` file holds (the caller reads the file):
    /// it must be a certificate, and for this node (`me`). Whether the cluster key
    /// signed it, and whether it is still valid, the membership protocol checks on
    /// every admission.
    pub fn join_certificate_of(
        &self,
        text: &str,
        me: PeerId,
    ) -> Result<JoinCertificate, AdmissionError> {
        let path = self
            .join_certificate
            .clone()
            .unwrap_or_else(|| PathBuf::from("(mesh.join_certificate)"));
        let cert: JoinCertificate =
            serde_json::from_str(text).map_err(|source| AdmissionError::Malformed {
                path: path.clone(),
                source,
            })?;
        if cert.peer != me {
            return Err(AdmissionError::ForAnotherPeer {
                path,
                peer: Box::new(cert.peer),
                me: Box::new(me),
            });
        }
        Ok(cert)
    }

    /// The membership settings of the node `me`: the allowlist, `f`, the cluster key and
    /// how observers are chosen. The node must be on `members` or hold a join
    /// certificate (`join`, from [`join_certificate_of`](Self::join_certificate_of)).
    pub fn membership(
        &self,
        me: PeerId,
        join: Option<&JoinCertificate>,
    ) -> Result<MembershipConfig, AdmissionError> {
        if !self.members.contains(&me) && join.is_none() {
            return Err(AdmissionError::NotAMember { me });
        }
        let mut membership = MembershipConfig::new(self.members.iter().copied(), self.f);
        membership.cluster_key = self.cluster_key.as_ref().map(|k| k.public_key().clone());
        if let Some(k) = self.observers_for(membership.allowlist.len()) {
            membership.monitoring = Monitoring::Observers { k };
        }
        Ok(membership)
    }
}

/// Why a node cannot take part in the mesh its config describes.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The join certificate file does not hold a certificate.
    #[error("join certificate {} is malformed: {source}", path.display())]
    Malformed {
        /// The file (`mesh.join_certificate`).
        path: PathBuf,
        /// What the parser refused.
        #[source]
        source: serde_json::Error,
    },
    /// The join certificate admits another peer.
    #[error("join certificate {} admits {peer}, not this node ({me})", path.display())]
    ForAnotherPeer {
        /// The file (`mesh.join_certificate`).
        path: PathBuf,
        /// The peer it admits (boxed, as `me`: a peer id is large for an error).
        peer: Box<PeerId>,
        /// This node.
        me: Box<PeerId>,
    },
    /// The node is neither on the allowlist nor holds a certificate.
    #[error(
        "mesh.members does not list this node's peer id {me}: add it (every member lists all \
         members), or give it a mesh.join_certificate"
    )]
    NotAMember {
        /// This node.
        me: PeerId,
    },
}

/// `mesh.cluster_key`: the id of the key that signs join certificates, and the public
/// key it embeds (a cluster key id is an ed25519 peer id, which carries its key).
#[derive(Debug, Clone)]
pub struct ClusterKey {
    id: PeerId,
    key: PublicKey,
}

impl ClusterKey {
    /// The id, as `jobmesh mesh cluster-key` prints it.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The key that verifies join certificates.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

impl PartialEq for ClusterKey {
    fn eq(&self, other: &Self) -> bool {
        // The id embeds the key.
        self.id == other.id
    }
}

impl Eq for ClusterKey {}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.id.fmt(f)
    }
}

impl FromStr for ClusterKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let id: PeerId = s
            .parse()
            .map_err(|e| format!("`{s}` is not a cluster key id: {e}"))?;
        let key = public_key_of(&id).ok_or_else(|| {
            format!(
                "`{s}` does not embed an ed25519 key (`jobmesh mesh cluster-key` prints a \
                 cluster key's id)"
            )
        })?;
        Ok(Self { id, key })
    }
}

impl Serialize for ClusterKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for ClusterKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a multiaddr as the config reads one; the error quotes it. The command line's
/// `--listen` and `--join` use it too.
pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, String> {
    s.parse()
        .map_err(|e| format!("`{s}` is not a multiaddr: {e}"))
}

/// Parses a peer id as the config reads one; the error quotes it.
pub fn parse_peer_id(s: &str) -> Result<PeerId, String> {
    s.parse()
        .map_err(|e| format!("`{s}` is not a peer id: {e}"))
}

/// A foreign type the config holds parsed but writes as a string.
trait ConfigString: Sized + fmt::Display {
    fn parse_config(s: &str) -> Result<Self, String>;
}

impl ConfigString for Multiaddr {
    fn parse_config(s: &str) -> Result<Self, String> {
        parse_multiaddr(s)
    }
}

impl ConfigString for PeerId {
    fn parse_config(s: &str) -> Result<Self, String> {
        parse_peer_id(s)
    }
}

/// One list entry, parsed as it is read: the deserializer's path then names its index
/// (`mesh.members[2]`).
struct Parsed<T>(T);

impl<'de, T: ConfigString> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        T::parse_config(&s)
            .map(Parsed)
            .map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with)]` for a list of [`ConfigString`]s: strings in the file, values in
/// the config.
mod parsed_list {
    use super::*;

    pub fn serialize<T: ConfigString, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, T: ConfigString, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(Vec::<Parsed<T>>::deserialize(d)?
            .into_iter()
            .map(|p| p.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use libp2p::identity::Keypair;

    fn peer() -> PeerId {
        Keypair::generate_ed25519().public().to_peer_id()
    }

    fn section(members: &[PeerId]) -> MeshSection {
        MeshSection {
            enabled: true,
            members: members.to_vec(),
            f: 0,
            ..MeshSection::default()
        }
    }

    #[test]
    fn a_listed_node_gets_the_allowlist_f_and_monitoring() {
        let members: Vec<PeerId> = (0..40).map(|_| peer()).collect();
        let mut s = section(&members);
        s.f = 3;
        let m = s.membership(members[0], None).unwrap();
        assert_eq!(m.f, 3);
        assert_eq!(m.allowlist.len(), 40);
        assert!(m.cluster_key.is_none());
        assert_eq!(
            m.monitoring,
            Monitoring::Observers { k: 10 },
            "40 members sample"
        );
        s.observers = Some(39);
        let m = s.membership(members[0], None).unwrap();
        assert_eq!(m.monitoring, Monitoring::AllToAll, "39 of 40 is everyone");
    }

    #[test]
    fn a_node_neither_listed_nor_certified_is_refused() {
        let s = section(&[peer()]);
        let me = peer();
        let err = s.membership(me, None).unwrap_err().to_string();
        assert!(
            err.contains(&format!("does not list this node's peer id {me}")),
            "{err}"
        );
    }

    #[test]
    fn a_join_certificate_is_read_for_this_node_only() {
        let cluster = Keypair::generate_ed25519();
        let me = peer();
        let mut s = section(&[peer()]);
        s.cluster_key = Some(cluster.public().to_peer_id().to_string().parse().unwrap());
        s.join_certificate = Some(PathBuf::from("me.cert"));
        let cert = JoinCertificate::issue(&cluster, me, Millis(i64::MAX)).unwrap();
        let text = serde_json::to_string(&cert).unwrap();

        let read = s.join_certificate_of(&text, me).unwrap();
        assert_eq!(read, cert);
        let m = s.membership(me, Some(&read)).unwrap();
        assert_eq!(m.cluster_key.as_ref(), Some(&cluster.public()));
        assert!(
            !m.allowlist.contains(&me),
            "admitted by certificate, not listed"
        );

        let other = peer();
        let err = s.join_certificate_of(&text, other).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("join certificate me.cert admits {me}, not this node ({other})")
        );
        let err = s.join_certificate_of("{", me).unwrap_err().to_string();
        assert!(
            err.starts_with("join certificate me.cert is malformed: "),
            "{err}"
        );
    }

    #[test]
    fn cli_parsers_quote_what_they_refuse() {
        assert_eq!(
            parse_multiaddr("/ip4/127.0.0.1/tcp/1").unwrap().to_string(),
            "/ip4/127.0.0.1/tcp/1"
        );
        let err = parse_multiaddr("not-an-address").unwrap_err();
        assert!(
            err.starts_with("`not-an-address` is not a multiaddr"),
            "{err}"
        );
        let err = parse_peer_id("nope").unwrap_err();
        assert!(err.starts_with("`nope` is not a peer id"), "{err}");
    }
}
