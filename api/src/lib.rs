//! The jobmesh HTTP API: JSON under `/api/v1`, described by the OpenAPI 3.1 document
//! at `/api/v1/openapi.json` (generated from the handlers), errors as RFC 9457
//! problem documents, bearer tokens with scopes and queues ([`jobmesh::store::tokens`]),
//! a rate per token, and limits on bodies, batches, nesting and time.
//!
//! It uses the store only through the [`jobmesh::store`] traits, so it serves on every
//! backend; a node starts it beside its workers (`jobmesh node --api ADDR`), and
//! `jobmesh api` serves it alone.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod auth;
pub mod body;
pub mod coalesce;
pub mod counts;
pub mod csrf;
pub mod dashboard;
pub mod idempotency;
pub mod latency;
pub mod mesh_view;
pub mod model;
pub mod predictions;
pub mod problem;
pub mod routes;
mod server;
pub mod session;
pub mod shared_read;
pub mod state;
pub mod throughput;
pub mod views;

pub use auth::Caller;
pub use problem::{Problem, ProblemKind};
pub use server::{ApiServer, Extras, StartError};
