//! A deterministic simulator of the membership protocol core.
//!
//! Many nodes, each running the real sans-IO [`Membership`](jobmesh::membership::Membership),
//! exchange bytes over a simulated network ([`network`]) driven by one event loop
//! ([`world`]) with a virtual clock and one seeded RNG: the same seed gives the same
//! trace ([`trace`]). Scenarios ([`script`], and the named ones in [`builtin`])
//! crash, restart, partition and cut links, change loss and latency, and turn members
//! Byzantine: liars follow the protocol core's adversary model
//! ([`jobmesh::membership::adversary`], which the real-cluster chaos runs use too);
//! [`metrics`] turns what happened into detection latency, convergence, false
//! evictions and traffic per node.
//!
//! ```
//! use std::time::Duration;
//! use jobmesh_sim::sim::{Op, Scenario, SimConfig, World};
//!
//! let mut world = World::new(SimConfig::new(5, 7)).unwrap();
//! let scenario = Scenario::new("crash", Duration::from_secs(12))
//!     .at(Duration::from_secs(3), Op::Crash(4));
//! let report = world.run(&scenario).unwrap();
//! assert_eq!(report.metrics.detection.count, 1);
//! assert_eq!(report.metrics.false_evictions, 0);
//! ```
#![deny(missing_docs)]

pub mod builtin;
pub mod config;
mod delivery;
mod liars;
pub mod metrics;
pub mod network;
mod ops;
pub mod script;
pub mod table;
pub mod trace;
pub mod world;

pub use builtin::{BUILTINS, Timing};
pub use config::{SimConfig, describe_monitoring, keypair};
pub use jobmesh::membership::adversary::Behaviour;
pub use metrics::{Measurements, Summary, Traffic};
pub use network::{Latency, Network, NetworkConfig};
pub use script::{Op, Scenario, Step};
pub use trace::{Trace, TraceRecord};
pub use world::{Report, World};

use jobmesh::membership::ConfigError;

/// Why a simulation could not run. Nothing ran when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The cluster has no nodes.
    #[error("a simulation needs at least one node")]
    NoNodes,
    /// The protocol refused the configuration (e.g. fewer than 3f+1 nodes or observers).
    #[error("protocol configuration: {0}")]
    Config(#[from] ConfigError),
    /// A scenario names a node that does not exist.
    #[error("node {index} does not exist (the cluster has {n})")]
    NoSuchNode {
        /// The index named.
        index: usize,
        /// Nodes in the cluster.
        n: usize,
    },
    /// No built-in scenario has this name.
    #[error("unknown scenario {0:?}")]
    UnknownScenario(String),
}
