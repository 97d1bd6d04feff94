//! `jobmesh chaos`: real local clusters under a workload and injected faults, checked
//! afterwards like Jepsen's total-queue.
//!
//! - [`plan`]: the named scenarios and their plans, seeded schedules of `(at, Fault)`
//!   steps;
//! - [`cluster`]: node processes of the `jobmesh` binary on loopback sharing one
//!   SQLite file (or the run's own Postgres + Redis), with kill -9, restart, SIGSTOP and SIGCONT;
//! - [`stores`] and [`proxy`]: the production-mode runs' own Postgres and Redis (from
//!   [`crate::servers`]), their faults (outage, kill, flush) and slow links;
//! - [`control`]: the chaos control document each node polls (partitions, one-way
//!   links, delay and loss, Byzantine behaviour), per node; [`windows`]: when a node
//!   was rightly unreachable;
//! - [`workload`]: steady submissions, every attempt and acknowledgement recorded;
//! - [`history`] and [`checker`]: what happened, and the pure invariant check;
//! - [`report`]: table, JSON, SVG timeline and progress line;
//! - [`runner`]: one run from options to report.

pub mod checker;
pub mod cluster;
pub mod control;
pub mod history;
pub mod limits;
pub mod plan;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod stores;
pub mod windows;
pub mod workload;

pub use runner::{Options, run};

/// What can go wrong running a scenario (a violated invariant is not an error: it is
/// in the report).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// Bad options; the message says which and why.
    #[error("{message}")]
    Options {
        /// What is wrong.
        message: String,
    },
    /// The scenario needs something this build does not have.
    #[error("{0}")]
    Unsupported(String),
    /// A node could not be set up or started.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A store server of the run could not be started or driven (the message names the
    /// server, and the package to install when it is missing).
    #[error(transparent)]
    Server(#[from] crate::servers::ServerError),
    /// The shared store failed.
    #[error("store: {0}")]
    Store(#[from] jobmesh::store::StoreError),
    /// The run's store could not be opened (the message names the setting, the cause
    /// follows in the error's source chain).
    #[error(transparent)]
    Open(#[from] jobmesh::store::OpenError),
}

impl ChaosError {
    /// An IO error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ChaosError::Io {
            what: what.into(),
            source,
        }
    }
}
