//! The claim gate: whether this node may claim jobs now.
//!
//! A node stops claiming, for as long as one of these reasons holds:
//! - [`GateReason::NoQuorum`]: in a mesh, it cannot hear a quorum of the members (the
//!   quorum the certificates use: a majority of the view and at least `2f + 1`,
//!   counting members whose heartbeats arrive within the suspicion window). A node cut
//!   off on the minority side of a partition would otherwise take jobs that the
//!   majority rescues when it evicts the node: work done twice, and attempts the store
//!   refuses. A node alone, with no mesh, never closes for this reason, and neither does
//!   a view of fewer than [`QUORUM_GATE_MIN_MEMBERS`] members (see there).
//! - [`GateReason::FailureScore`]: the node's own failure score (the `NodeScore`
//!   predictor) crossed its drain threshold; it opens again when the score falls below
//!   the lower exit threshold (the predictor's hysteresis). Only while the model knows
//!   other nodes: a node that knows of no other would, by draining, stop all work
//!   with nobody to take it over (a node alone whose workers keep crashing goes on;
//!   its supervisor's restart budget is the limit there). And only while fewer than
//!   half of the nodes it knows (itself included) would drain too
//!   ([`DrainVotes::cluster_wide`]): a cause that hits the whole cluster (a bad deploy,
//!   a dead dependency) must not stop every node.
//!
//! While the gate is closed the node claims nothing, gives jobs it claimed but did not
//! start back to the store at once, and lets its running attempts finish. This module
//! is the decision alone, a plain state machine fed with what the membership core and
//! the predictor say; the node's driver (in `jobmesh-actors`) feeds it and applies its
//! changes (the dispatcher's release, an event, a metric).

use serde::Serialize;

/// Views smaller than this never close the gate for want of a quorum.
///
/// In a two-member mesh a quorum is both members, so whenever one of them stops
/// hearing the other it has no quorum, and it cannot tell a partition from the other's
/// crash. Gating there would stop all work whenever either node dies, and would buy
/// nothing: no side of a two-member mesh can evict the other either (a Down vote needs
/// a quorum too), so there is no majority that rescues the jobs; the lease expiry in
/// the store is the rescue whichever side claims, as for a node without a mesh. So two
/// members (and one) behave like a node alone, and the gate applies from three.
pub const QUORUM_GATE_MIN_MEMBERS: usize = 3;

/// Why the gate is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "&'static str")]
pub enum GateReason {
    /// This node cannot hear a quorum of the mesh's members.
    NoQuorum,
    /// This node's own failure score says it should drain.
    FailureScore,
}

impl GateReason {
    /// Every reason.
    pub const ALL: [GateReason; 2] = [GateReason::NoQuorum, GateReason::FailureScore];

    /// How events and logs name it: `no quorum`, `failure score`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::NoQuorum => "no quorum",
            GateReason::FailureScore => "failure score",
        }
    }

    /// Its metric label value: `no_quorum`, `failure_score`.
    pub fn label(self) -> &'static str {
        match self {
            GateReason::NoQuorum => "no_quorum",
            GateReason::FailureScore => "failure_score",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<GateReason> for &'static str {
    fn from(r: GateReason) -> Self {
        r.as_str()
    }
}

impl std::fmt::Display for GateReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the membership core says about the quorum, as the gate needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumSeen {
    /// Whether the node hears a quorum (the core's judgement at its last tick).
    pub quorum: bool,
    /// Members it hears (itself included), for the record.
    pub live: usize,
    /// Members of its view.
    pub members: usize,
}

impl QuorumSeen {
    /// Whether this closes the gate: no quorum, in a view of at least
    /// [`QUORUM_GATE_MIN_MEMBERS`].
    pub fn gates(&self) -> bool {
        !self.quorum && self.members >= QUORUM_GATE_MIN_MEMBERS
    }
}

/// What the failure predictor says about this node and the nodes it knows, as the gate
/// needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainVotes {
    /// Whether this node should drain (the predictor's decision, with its hysteresis).
    pub drain: bool,
    /// Other nodes the predictor knows (that could take the work over).
    pub peers: usize,
    /// Of those, how many would drain too, as the predictor sees them.
    pub peers_draining: usize,
}

impl DrainVotes {
    /// Whether half or more of the known nodes, this one included, would drain: then
    /// the cause is the cluster's rather than this node's, and draining would move the
    /// work to nodes no better off (or stop it all).
    pub fn cluster_wide(&self) -> bool {
        // (draining + 1) of (peers + 1) known is at least half.
        2 * (self.peers_draining.min(self.peers) + 1) > self.peers
    }

    /// Whether this closes the gate: the node should drain, it knows another node,
    /// and the cause is not cluster-wide.
    pub fn gates(&self) -> bool {
        self.drain && self.peers > 0 && !self.cluster_wide()
    }

    /// Whether the node should drain and knows other nodes, but holds off because the
    /// cause is cluster-wide (what the driver says in its log and events).
    pub fn held_off(&self) -> bool {
        self.drain && self.peers > 0 && self.cluster_wide()
    }
}

/// A change of one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateChange {
    /// The reason that began or stopped to hold.
    pub reason: GateReason,
    /// Whether it now holds (it closed the gate) or not (it no longer does).
    pub holds: bool,
    /// Whether the gate was open before the change.
    pub was_open: bool,
    /// Whether the gate is open after it (no reason holds).
    pub is_open: bool,
}

impl GateChange {
    /// Whether this change closed an open gate.
    pub fn closed_it(&self) -> bool {
        self.was_open && !self.is_open
    }

    /// Whether this change opened a closed gate.
    pub fn opened_it(&self) -> bool {
        !self.was_open && self.is_open
    }
}

/// The gate: open while no reason holds. Starts open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimGate {
    holding: [bool; GateReason::ALL.len()],
}

impl ClaimGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the membership's latest judgement; `None` means no mesh (or none running):
    /// the quorum reason never holds then.
    pub fn quorum(&mut self, seen: Option<QuorumSeen>) -> Option<GateChange> {
        self.set(GateReason::NoQuorum, seen.is_some_and(|s| s.gates()))
    }

    /// Takes the failure predictor's drain decision for this node (with its own
    /// hysteresis: it says `true` from when the score rises above the entry threshold
    /// until it falls below the exit threshold), how many other nodes it knows and how
    /// many of them would drain too: see [`DrainVotes::gates`].
    pub fn failure(&mut self, votes: DrainVotes) -> Option<GateChange> {
        self.set(GateReason::FailureScore, votes.gates())
    }

    /// Sets whether `reason` holds; the change, if it is one.
    pub fn set(&mut self, reason: GateReason, holds: bool) -> Option<GateChange> {
        let slot = &mut self.holding[reason.index()];
        if *slot == holds {
            return None;
        }
        let was_open = self.is_open();
        self.holding[reason.index()] = holds;
        Some(GateChange {
            reason,
            holds,
            was_open,
            is_open: self.is_open(),
        })
    }

    /// Whether the node may claim.
    pub fn is_open(&self) -> bool {
        !self.holding.iter().any(|h| *h)
    }

    /// Whether `reason` holds now.
    pub fn holds(&self, reason: GateReason) -> bool {
        self.holding[reason.index()]
    }

    /// The reasons that hold now, in a fixed order.
    pub fn reasons(&self) -> Vec<GateReason> {
        GateReason::ALL
            .into_iter()
            .filter(|r| self.holds(*r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(quorum: bool, live: usize, members: usize) -> Option<QuorumSeen> {
        Some(QuorumSeen {
            quorum,
            live,
            members,
        })
    }

    #[test]
    fn a_node_without_a_mesh_is_never_gated_for_quorum() {
        let mut g = ClaimGate::new();
        assert!(g.is_open());
        assert_eq!(g.quorum(None), None);
        assert!(g.is_open());
        // A mesh that stops (its voter gone) opens a gate its quorum had closed.
        g.quorum(seen(false, 1, 5)).unwrap();
        let c = g.quorum(None).unwrap();
        assert!(c.opened_it() && !c.holds);
    }

    #[test]
    fn losing_the_quorum_closes_and_hearing_it_again_opens() {
        let mut g = ClaimGate::new();
        assert_eq!(g.quorum(seen(true, 5, 5)), None);
        let c = g.quorum(seen(false, 2, 5)).unwrap();
        assert_eq!(c.reason, GateReason::NoQuorum);
        assert!(c.holds && c.closed_it() && !g.is_open());
        // Still no quorum (other counts): no new change.
        assert_eq!(g.quorum(seen(false, 1, 5)), None);
        let c = g.quorum(seen(true, 3, 5)).unwrap();
        assert!(!c.holds && c.opened_it() && g.is_open());
        assert_eq!(g.reasons(), []);
    }

    #[test]
    fn two_members_never_gate_for_quorum_three_do() {
        let mut g = ClaimGate::new();
        assert_eq!(g.quorum(seen(false, 1, 2)), None);
        assert_eq!(g.quorum(seen(false, 1, 1)), None);
        assert!(g.is_open());
        assert!(g.quorum(seen(false, 1, 3)).unwrap().closed_it());
        // Evictions shrink the view to two: the rule of two applies again.
        assert!(g.quorum(seen(false, 1, 2)).unwrap().opened_it());
    }

    fn votes(drain: bool, peers: usize, peers_draining: usize) -> DrainVotes {
        DrainVotes {
            drain,
            peers,
            peers_draining,
        }
    }

    #[test]
    fn the_failure_score_closes_and_opens_the_same_gate() {
        let mut g = ClaimGate::new();
        assert_eq!(g.failure(votes(false, 2, 0)), None);
        let c = g.failure(votes(true, 2, 0)).unwrap();
        assert_eq!(c.reason, GateReason::FailureScore);
        assert!(c.closed_it());
        assert_eq!(g.failure(votes(true, 2, 0)), None);
        assert!(g.failure(votes(false, 2, 0)).unwrap().opened_it());
    }

    #[test]
    fn a_node_that_knows_no_other_never_drains() {
        let mut g = ClaimGate::new();
        assert_eq!(g.failure(votes(true, 0, 0)), None);
        assert!(g.is_open());
        assert!(
            !votes(true, 0, 0).held_off(),
            "alone is not a cluster-wide cause"
        );
        assert!(g.failure(votes(true, 2, 0)).unwrap().closed_it());
        // Its peers forgotten: nobody to take the work, open again.
        assert!(g.failure(votes(true, 0, 0)).unwrap().opened_it());
    }

    #[test]
    fn half_or_more_of_the_known_nodes_draining_holds_every_one_off() {
        // Three nodes: one draining alone drains; a second one makes it two of three.
        assert!(votes(true, 2, 0).gates());
        assert!(votes(true, 2, 1).held_off() && !votes(true, 2, 1).gates());
        // Two nodes: one is half.
        assert!(votes(true, 1, 0).held_off());
        // Four nodes: two draining are half; five: two are not, three are.
        assert!(votes(true, 3, 0).gates());
        assert!(votes(true, 3, 1).held_off());
        assert!(votes(true, 4, 1).gates());
        assert!(votes(true, 4, 2).held_off());
        // More draining peers than peers (a stale count) is still held off.
        assert!(votes(true, 2, 5).held_off());
        // A node that should not drain is never held off.
        assert!(!votes(false, 2, 2).held_off() && !votes(false, 2, 2).gates());
        // A closed gate opens when the others start to drain too.
        let mut g = ClaimGate::new();
        assert!(g.failure(votes(true, 4, 1)).unwrap().closed_it());
        assert!(g.failure(votes(true, 4, 2)).unwrap().opened_it());
    }

    #[test]
    fn the_gate_opens_only_when_no_reason_holds() {
        let mut g = ClaimGate::new();
        assert!(g.failure(votes(true, 2, 0)).unwrap().closed_it());
        // A second reason while closed: a change, but the gate was already closed.
        let c = g.quorum(seen(false, 2, 5)).unwrap();
        assert!(c.holds && !c.was_open && !c.closed_it());
        assert_eq!(
            g.reasons(),
            [GateReason::NoQuorum, GateReason::FailureScore]
        );
        let c = g.failure(votes(false, 2, 0)).unwrap();
        assert!(!c.holds && !c.opened_it() && !c.is_open);
        assert!(g.holds(GateReason::NoQuorum) && !g.holds(GateReason::FailureScore));
        assert!(g.quorum(seen(true, 5, 5)).unwrap().opened_it());
    }

    #[test]
    fn reasons_are_named_for_events_and_labels() {
        assert_eq!(GateReason::NoQuorum.as_str(), "no quorum");
        assert_eq!(GateReason::FailureScore.label(), "failure_score");
        assert_eq!(
            serde_json::to_value(GateReason::FailureScore).unwrap(),
            serde_json::json!("failure score")
        );
    }
}
