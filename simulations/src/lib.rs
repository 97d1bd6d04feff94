//! sim.

pub mod sim;
