//! actors.

pub mod mesh;
