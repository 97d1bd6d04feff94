//! The local view: which peers are members at which incarnation, which were evicted at
//! which incarnation, the view epoch, and who observes whom.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::identity::PeerId;

use super::assign::{Assignment, stable_hash};
use super::certificate::Certificate;
use super::config::Monitoring;

/// What the local node knows about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Highest incarnation seen (0 until the member's first heartbeat).
    pub incarnation: u64,
    /// Highest heartbeat counter seen within that incarnation (replay guard).
    pub heartbeat_seq: Option<u64>,
    /// Epoch the member last reported.
    pub epoch: u64,
}

/// Members, evictions and the epoch (incremented by each applied eviction).
#[derive(Debug, Clone, Default)]
pub struct View {
    epoch: u64,
    members: BTreeMap<PeerId, MemberInfo>,
    evicted: BTreeMap<PeerId, (u64, Certificate)>,
    /// [`View::digest`], kept up to date by every change of the member set.
    digest: u64,
}

impl View {
    /// A view at epoch 0 of the given members, all at incarnation 0.
    pub fn new(members: impl IntoIterator<Item = PeerId>) -> Self {
        let mut view = Self {
            epoch: 0,
            members: members
                .into_iter()
                .map(|p| {
                    (
                        p,
                        MemberInfo {
                            incarnation: 0,
                            heartbeat_seq: None,
                            epoch: 0,
                        },
                    )
                })
                .collect(),
            evicted: BTreeMap::new(),
            digest: 0,
        };
        view.rehash();
        view
    }

    /// A 64-bit digest of the member set (not of incarnations or the epoch). Two views
    /// with the same digest and epoch compute the same observer assignment, so a vote
    /// that names both can be checked objectively.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    fn rehash(&mut self) {
        let ids: Vec<Vec<u8>> = self.members.keys().map(|p| p.to_bytes()).collect();
        self.digest = stable_hash(ids.iter().map(Vec::as_slice));
    }

    /// The view epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Moves the epoch forward (never back).
    pub fn advance_epoch_to(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Number of members (including the local node).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the view has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `peer` is a current member.
    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members.contains_key(peer)
    }

    /// A member's info.
    pub fn get(&self, peer: &PeerId) -> Option<&MemberInfo> {
        self.members.get(peer)
    }

    /// A member's info, mutable.
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut MemberInfo> {
        self.members.get_mut(peer)
    }

    /// Current members in a stable order.
    pub fn members(&self) -> impl Iterator<Item = (&PeerId, &MemberInfo)> {
        self.members.iter()
    }

    /// Current member ids.
    pub fn member_set(&self) -> BTreeSet<PeerId> {
        self.members.keys().copied().collect()
    }

    /// The incarnation at which `peer` was evicted, and the certificate.
    pub fn eviction(&self, peer: &PeerId) -> Option<&(u64, Certificate)> {
        self.evicted.get(peer)
    }

    /// Admits (or readmits) `peer` at `incarnation`, forgetting an earlier eviction.
    pub fn admit(&mut self, peer: PeerId, incarnation: u64) {
        self.evicted.remove(&peer);
        self.members.insert(
            peer,
            MemberInfo {
                incarnation,
                heartbeat_seq: None,
                epoch: 0,
            },
        );
        self.rehash();
    }

    /// Applies an eviction: removes the subject, remembers the certificate (to show to
    /// the subject if it comes back unaware) and increments the epoch.
    pub fn evict(&mut self, cert: Certificate) {
        self.members.remove(&cert.subject);
        self.rehash();
        self.evicted
            .insert(cert.subject, (cert.incarnation, cert.clone()));
        self.epoch = self.epoch.saturating_add(1);
    }

    /// The `rank`-th highest epoch (1-based) reported by members, counting `own` for the
    /// local node: with `rank = f + 1`, an epoch at least one honest member reached.
    pub fn reported_epoch(&self, own: &PeerId, rank: usize) -> u64 {
        let mut epochs: Vec<u64> = self
            .members
            .iter()
            .map(|(p, m)| if p == own { self.epoch } else { m.epoch })
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        epochs
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or(self.epoch)
    }

    /// The observers of `subject` at `epoch` under `monitoring`: every other member, or
    /// its `k` observers on the epoch's rings (see [`Assignment`]). Every node with the
    /// same member set computes the same observers.
    pub fn observers_of(
        &self,
        subject: &PeerId,
        epoch: u64,
        monitoring: Monitoring,
    ) -> Vec<PeerId> {
        match monitoring {
            Monitoring::AllToAll => self
                .members
                .keys()
                .filter(|p| *p != subject)
                .copied()
                .collect(),
            Monitoring::Observers { k } => self.assignment(epoch, k).observers_of(subject),
        }
    }

    /// The ring assignment of the current members at `epoch`, `k` observers each.
    pub fn assignment(&self, epoch: u64, k: usize) -> Assignment {
        Assignment::rings(self.members.keys().copied(), epoch, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|i| {
                Keypair::ed25519_from_bytes([i as u8 + 1; 32])
                    .unwrap()
                    .public()
                    .to_peer_id()
            })
            .collect()
    }

    #[test]
    fn observers_are_deterministic_and_exclude_subject() {
        let ps = peers(50);
        let v = View::new(ps.clone());
        let m = Monitoring::Observers { k: 7 };
        let a = v.observers_of(&ps[3], 1, m);
        let b = View::new(ps.iter().rev().copied()).observers_of(&ps[3], 1, m);
        assert_eq!(a, b);
        assert_eq!(a.len(), 7);
        assert!(!a.contains(&ps[3]));
        assert_ne!(
            a,
            v.observers_of(&ps[3], 2, m),
            "epoch reshuffles observers"
        );
        assert_eq!(v.observers_of(&ps[3], 1, Monitoring::AllToAll).len(), 49);
    }

    #[test]
    fn digest_follows_the_member_set_only() {
        let ps = peers(6);
        let v = View::new(ps.clone());
        let mut w = View::new(ps.iter().rev().copied());
        assert_eq!(v.digest(), w.digest(), "order does not matter");
        w.get_mut(&ps[0]).unwrap().incarnation = 9;
        w.advance_epoch_to(3);
        assert_eq!(v.digest(), w.digest(), "nor incarnations nor the epoch");
        let mut x = View::new(ps[..5].iter().copied());
        assert_ne!(v.digest(), x.digest());
        x.admit(ps[5], 1);
        assert_eq!(v.digest(), x.digest(), "admit rehashes");
    }

    #[test]
    fn reported_epoch_needs_f_plus_1() {
        let ps = peers(4);
        let mut v = View::new(ps.clone());
        v.get_mut(&ps[1]).unwrap().epoch = 100;
        assert_eq!(
            v.reported_epoch(&ps[0], 2),
            0,
            "one liar cannot move the epoch"
        );
        v.get_mut(&ps[2]).unwrap().epoch = 5;
        assert_eq!(v.reported_epoch(&ps[0], 2), 5);
    }
}
