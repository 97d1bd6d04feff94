//! The ractor layer of jobmesh: a node's supervision tree and its mesh.
//!
//! ```text
//! NodeSupervisor
//! ├── Dispatcher          claims jobs for idle workers
//! ├── WorkerSupervisor    restarts crashed workers (OTP-style budget and backoff)
//! │   └── Worker × concurrency
//! └── Maintenance         promotes due jobs, rescues lapsed leases, extends leases
//! Membership (mesh mode)  drives the voting protocol over the libp2p mesh
//! completer, event sink   batched writers (tasks) behind bounded channels
//! ```
//!
//! [`Node`] is the handle an application or the binary holds.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod completer;
mod context;
mod dispatcher;
mod error;
mod event_sink;
pub mod faults;
mod from_config;
mod inflight;
mod maintenance;
mod membership;
pub mod mesh;
mod node;
mod node_supervisor;
mod prefetch;
pub mod restart;
mod wakeups;
mod worker;
mod worker_supervisor;

pub use context::NodeStats;
pub use error::NodeError;
pub use membership::{MeshStatus, PeerStatus};
pub use node::{MeshOptions, Node, NodeOptions};
