//! jobmesh core: the job model and its state machine, retry policy, workflows,
//! payload validation, handlers, lifecycle events, the predictors and the stores.
//!
//! Nothing here spawns actors or owns sockets except the store backends' connection
//! pools; the ractor layer lives in `jobmesh-actors`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod claim_gate;
pub mod clock;
pub mod config;
pub mod dag;
pub mod event;
pub mod handler;
pub mod job;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod payload;
pub mod periodic;
pub mod plot;
pub mod predict;
pub mod redact;
pub mod store;
