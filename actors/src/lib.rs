//! The ractor layer of jobmesh: a node's supervision tree and its mesh.
//!
//! ```text
//! NodeSupervisor
//! ├── Dispatcher          claims jobs for idle workers
//! ├── WorkerSupervisor    restarts crashed workers (OTP-style budget and backoff)
//! │   └── Worker × concurrency
//! ├── Maintenance         promotes due jobs, rescues lapsed leases, extends leases
//! └── Voter (mesh mode)   drives the health-voting protocol over the libp2p mesh;
//!                         restarted with a fresh core after a crash
//! completer, event sink   batched writers (tasks) behind bounded channels
//! progress                a task: records handlers' progress once per interval
//! claim gate              a task: closes the dispatcher's claims without a quorum or
//!                         on a high failure score of this node
//! periodic                a task: the `periodic` lease holder enqueues due ticks
//! models                  a task: feeds store errors to the live models, saves them
//! ```
//!
//! [`Node`] is the handle an application or the binary holds. With the cargo feature
//! `chaos`, the module `chaos` injects faults into the voter's traffic (chaos runs
//! only); without it no fault code is compiled in.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
#[cfg(feature = "chaos")]
pub mod chaos;
mod claim_gate;
mod completer;
mod context;
mod counts_rounds;
mod decide;
mod dispatcher;
mod error;
mod event_sink;
mod from_config;
mod inflight;
mod maintenance;
pub mod mesh;
mod metrics;
mod models;
mod node;
mod node_supervisor;
mod periodic;
mod prefetch;
mod presence;
mod progress;
pub mod restart;
mod voter;
mod wakeups;
mod worker;
mod worker_supervisor;

pub use claim_gate::ClaimGateStatus;
pub use context::NodeStats;
pub use error::NodeError;
pub use node::{MeshOptions, Node, NodeOptions};
pub use voter::{MeshStatus, PeerStatus};
