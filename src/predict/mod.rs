//! The predictors: small online models of job duration, node failure, retry outcome and
//! queue congestion, each beside the baseline it has to beat, and the traces and
//! evaluation that show whether it does.
//!
//! Every model is a plain state machine: it learns from observations handed to it with
//! their time, and answers from its state; no clock, no IO, no randomness of its own.
//! Each predictor family has one small trait ([`DurationPredictor`],
//! [`FailurePredictor`], [`RetryPredictor`], [`CongestionPredictor`]) implemented by
//! the model and by its baselines alike, so [`eval`] runs them the same way.
//!
//! [`policy`] holds the decisions the runtime takes with them (retry delays, timeouts,
//! leases, SLO warnings, admission).

pub mod congestion;
pub mod duration;
pub mod eval;
pub mod failure;
pub mod live;
pub mod policy;
pub mod retry;
pub mod sketch;
pub mod trace;

pub use congestion::{CongestionPredictor, FluidQueue, LastWait, QueueLengthThreshold};
pub use duration::{
    DurationKey, DurationPredictor, LastTwo, MeanPerKind, Quantiles, SketchDuration,
};
pub use failure::{FailurePredictor, HeartbeatTimeout, NodeScore, NodeSignal};
pub use live::{LiveModels, SharedModels};
pub use retry::{FixedBackoff, PosteriorRetry, RetryDecision, RetryPredictor};
pub use sketch::DecayingSketch;
