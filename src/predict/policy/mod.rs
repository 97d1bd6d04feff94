//! The decisions the runtime takes with the predictors: each a plain function of the
//! node's [`LiveModels`](super::LiveModels), the job and the configuration, applied
//! thinly by the actors (the worker, the node's periodic checks, the submit path).
//!
//! | module | decision | config |
//! |---|---|---|
//! | [`retry`] | delay of the next attempt, early dead-lettering, the retry budget | `[retry] learned`, `give_up_early` |
//! | [`duration`] | per-kind default timeout, lease length, ETA of a running job | `[workers.learned]` |
//! | [`congestion`] | wait-SLO breach warnings with advice, admission control | `[queues.NAME]` |
//!
//! Every decision falls back to the configured behaviour while the model knows too
//! little, so a fresh node behaves as one without predictors.

pub mod congestion;
pub mod duration;
pub mod retry;
