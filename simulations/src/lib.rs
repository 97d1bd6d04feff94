//! Chaos scenarios over real local clusters (`jobmesh chaos`) and a deterministic
//! simulator of the membership protocol core (`jobmesh-sim`).

#[deny(missing_docs)]
#[forbid(unsafe_code)]
pub mod chaos;
#[deny(missing_docs)]
#[forbid(unsafe_code)]
pub mod servers;
pub mod sim;
