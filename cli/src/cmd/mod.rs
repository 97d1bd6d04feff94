//! One module per verb.

pub mod api;
pub mod audit;
pub mod bench;
pub mod bench_api;
pub mod bench_fill;
pub mod bench_load;
pub mod chaos;
pub mod dlq;
pub mod events;
pub mod jobs;
pub mod limits;
pub mod mesh;
pub mod node;
pub mod periodic;
pub mod plot;
pub mod predict;
pub mod queue;
pub mod submit;
pub mod token;
pub mod trace;
