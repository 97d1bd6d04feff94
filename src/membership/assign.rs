//! Who observes whom under sampled monitoring: `k` pseudo-random rings over the
//! members, as in Rapid and Fireflies.
//!
//! Ring `r` orders the members by `hash(epoch, r, member)`. On each ring a subject is
//! observed by its first successor that is neither the subject nor already one of its
//! observers, so every subject gets `k` distinct observers and every member observes
//! about `k` subjects. Building the rings costs `k` sorts of the member list, instead of
//! scoring every (subject, observer) pair, which is what lets one node work out the
//! whole assignment of a 1000-member view on every view change.

use std::collections::BTreeSet;

use libp2p::identity::PeerId;

/// The observers of every member at one epoch of one member set.
///
/// Members are held once, sorted; observers are indices into that list, so a
/// 1000-member assignment with `k = 10` costs about 40 KB besides the ids.
#[derive(Debug, Clone)]
pub struct Assignment {
    members: Vec<PeerId>,
    /// `observers[i * k .. (i + 1) * k]` are member `i`'s observers, ring by ring.
    observers: Vec<u32>,
    k: usize,
}

impl Assignment {
    /// The rings over `members` (duplicates ignored) at `epoch`, `k` observers per
    /// subject. With `k` at or above the number of other members, everyone observes
    /// everyone else. Every node with the same member set and epoch computes the same
    /// assignment, whatever order it lists the members in.
    pub fn rings(members: impl IntoIterator<Item = PeerId>, epoch: u64, k: usize) -> Self {
        let members: Vec<PeerId> = members
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let n = members.len();
        let k = k.min(n.saturating_sub(1));
        let mut observers = vec![u32::MAX; n * k];
        if k == n.saturating_sub(1) {
            // All to all: the others, in member order.
            for s in 0..n {
                let others = (0..n).filter(|&o| o != s).map(|o| o as u32);
                for (slot, o) in observers[s * k..(s + 1) * k].iter_mut().zip(others) {
                    *slot = o;
                }
            }
            return Self {
                members,
                observers,
                k,
            };
        }
        let bytes: Vec<Vec<u8>> = members.iter().map(|p| p.to_bytes()).collect();
        let mut ring: Vec<(u64, u32)> = Vec::with_capacity(n);
        for r in 0..k {
            ring.clear();
            ring.extend(
                bytes
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (ring_hash(epoch, r as u64, b), i as u32)),
            );
            ring.sort_unstable();
            for pos in 0..n {
                let subject = ring[pos].1 as usize;
                let chosen = &mut observers[subject * k..(subject + 1) * k];
                // k < n - 1 rings guarantee a free successor within n - 1 steps.
                let next = (1..n)
                    .map(|step| ring[(pos + step) % n].1)
                    .find(|o| !chosen[..r].contains(o))
                    .expect("fewer observers than other members");
                chosen[r] = next;
            }
        }
        Self {
            members,
            observers,
            k,
        }
    }

    /// Observers per subject (`k`, or fewer when the view is small).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The observers of `subject`, ring by ring; empty if it is not a member.
    pub fn observers_of(&self, subject: &PeerId) -> Vec<PeerId> {
        match self.members.binary_search(subject) {
            Ok(i) => self.observers[i * self.k..(i + 1) * self.k]
                .iter()
                .map(|&o| self.members[o as usize])
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether `observer` is one of `subject`'s observers.
    pub fn observes(&self, observer: &PeerId, subject: &PeerId) -> bool {
        let (Ok(s), Ok(o)) = (
            self.members.binary_search(subject),
            self.members.binary_search(observer),
        ) else {
            return false;
        };
        self.observers[s * self.k..(s + 1) * self.k].contains(&(o as u32))
    }

    /// The subjects `observer` observes, in member order; empty if it is not a member.
    pub fn observed_by(&self, observer: &PeerId) -> Vec<PeerId> {
        let Ok(o) = self.members.binary_search(observer) else {
            return Vec::new();
        };
        let o = o as u32;
        self.members
            .iter()
            .enumerate()
            .filter(|(s, _)| self.observers[s * self.k..(s + 1) * self.k].contains(&o))
            .map(|(_, p)| *p)
            .collect()
    }
}

/// Position of `member` on ring `ring` at `epoch`.
fn ring_hash(epoch: u64, ring: u64, member: &[u8]) -> u64 {
    stable_hash([&epoch.to_le_bytes()[..], &ring.to_le_bytes()[..], member])
}

/// Stable 64-bit hash of a sequence of byte strings: FNV-1a with a length separator
/// after each part, then a splitmix64 finish. Deliberately not `std`'s hasher, whose
/// output may change between Rust releases and so between nodes.
pub(super) fn stable_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for bytes in parts {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Length separator so concatenations cannot collide.
        h ^= bytes.len() as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                Keypair::ed25519_from_bytes(seed)
                    .unwrap()
                    .public()
                    .to_peer_id()
            })
            .collect()
    }

    #[test]
    fn every_subject_gets_k_distinct_observers_other_than_itself() {
        let ps = peers(60);
        let a = Assignment::rings(ps.clone(), 3, 10);
        for p in &ps {
            let obs = a.observers_of(p);
            assert_eq!(obs.len(), 10);
            assert!(!obs.contains(p));
            assert_eq!(obs.iter().collect::<BTreeSet<_>>().len(), 10, "distinct");
        }
        assert!(a.observers_of(&peers(61)[60]).is_empty(), "non-member");
    }

    #[test]
    fn small_views_are_all_to_all() {
        let ps = peers(5);
        let a = Assignment::rings(ps.clone(), 0, 10);
        assert_eq!(a.k(), 4);
        for p in &ps {
            let mut obs = a.observers_of(p);
            obs.sort();
            let mut others: Vec<PeerId> = ps.iter().filter(|q| *q != p).copied().collect();
            others.sort();
            assert_eq!(obs, others);
        }
    }

    #[test]
    fn order_independent_and_the_epoch_reshuffles() {
        let ps = peers(40);
        let a = Assignment::rings(ps.clone(), 1, 5);
        let b = Assignment::rings(ps.iter().rev().copied(), 1, 5);
        let c = Assignment::rings(ps.clone(), 2, 5);
        let mut moved = 0;
        for p in &ps {
            assert_eq!(a.observers_of(p), b.observers_of(p));
            if a.observers_of(p) != c.observers_of(p) {
                moved += 1;
            }
        }
        assert!(
            moved > 30,
            "a new epoch gives most subjects new observers: {moved}"
        );
    }

    #[test]
    fn load_is_balanced() {
        let ps = peers(200);
        let a = Assignment::rings(ps.clone(), 9, 10);
        let loads: Vec<usize> = ps.iter().map(|p| a.observed_by(p).len()).collect();
        assert_eq!(loads.iter().sum::<usize>(), 200 * 10);
        let max = *loads.iter().max().unwrap();
        let min = *loads.iter().min().unwrap();
        assert!(max <= 15 && min >= 5, "loads between {min} and {max}");
    }

    #[test]
    fn observed_by_is_the_inverse_of_observers_of() {
        let ps = peers(30);
        let a = Assignment::rings(ps.clone(), 4, 4);
        for o in &ps {
            for s in &ps {
                let listed = a.observed_by(o).contains(s);
                assert_eq!(listed, a.observers_of(s).contains(o));
                assert_eq!(listed, a.observes(o, s));
            }
        }
    }
}
