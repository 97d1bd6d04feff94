//! Scenarios as scripts: a small list of timed operations (as chitchat's scenario
//! tests). The named built-in ones are in `builtin.rs`.

use std::time::Duration;

use jobmesh::membership::adversary::Behaviour;
use serde::Serialize;

use super::network::Latency;

/// One change to the world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Op {
    /// Kill node i (kill -9: state lost, in-flight messages to it lost).
    Crash(usize),
    /// Start node i again with fresh state (a higher incarnation).
    Restart(usize),
    /// Split the network: each group becomes a side, unlisted nodes form side 0.
    Partition(Vec<Vec<usize>>),
    /// Remove every partition.
    Heal,
    /// Cut the direct link from -> to (one way).
    CutLink {
        /// Sender side of the link.
        from: usize,
        /// Receiver side.
        to: usize,
    },
    /// Restore a cut link.
    RestoreLink {
        /// Sender side of the link.
        from: usize,
        /// Receiver side.
        to: usize,
    },
    /// Set the delivery loss probability.
    SetLoss(f64),
    /// Set the hop latency.
    SetLatency(Latency),
    /// Set node i's local health score (Lifeguard): high scores abstain from voting.
    SetHealth(usize, u32),
    /// Make `node` a liar with `behaviour` (the protocol core's adversary model), lying
    /// about `target` when given (false-down and equivocate; without one, false-down
    /// accuses every other member and equivocate draws a member each round).
    Byzantine {
        /// The liar.
        node: usize,
        /// What it does.
        behaviour: Behaviour,
        /// The member its lies are about.
        target: Option<usize>,
    },
}

impl Op {
    /// `node` turns liar with `behaviour`.
    pub fn liar(node: usize, behaviour: Behaviour) -> Self {
        Op::Byzantine {
            node,
            behaviour,
            target: None,
        }
    }

    /// `node` turns liar with `behaviour`, lying about `target`.
    pub fn liar_against(node: usize, behaviour: Behaviour, target: usize) -> Self {
        Op::Byzantine {
            node,
            behaviour,
            target: Some(target),
        }
    }
}

/// An operation at an offset from the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// When.
    pub at: Duration,
    /// What.
    pub op: Op,
}

/// A named list of steps, how long to run, and the steady traffic window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Name (printed and in the replay command).
    pub name: String,
    /// The steps, in any order (they are scheduled by time).
    pub steps: Vec<Step>,
    /// Total simulated time.
    pub duration: Duration,
    /// Traffic is measured over [start, end) of this window.
    pub window: (Duration, Duration),
}

impl Scenario {
    /// An empty scenario running for `duration`, measuring traffic over all of it.
    pub fn new(name: &str, duration: Duration) -> Self {
        Self {
            name: name.to_string(),
            steps: Vec::new(),
            duration,
            window: (Duration::ZERO, duration),
        }
    }

    /// Adds a step at `at`.
    pub fn at(mut self, at: Duration, op: Op) -> Self {
        self.steps.push(Step { at, op });
        self
    }

    /// Sets the traffic window.
    pub fn window(mut self, from: Duration, to: Duration) -> Self {
        self.window = (from, to);
        self
    }
}
