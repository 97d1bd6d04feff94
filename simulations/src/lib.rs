//! Chaos scenarios over real local clusters (`jobmesh chaos`) and a deterministic
//! simulator of the protocol core.

#[deny(missing_docs)]
#[forbid(unsafe_code)]
pub mod chaos;
