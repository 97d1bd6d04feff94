//! Errors of the node API.

use jobmesh::handler::SubmitError;
use jobmesh::store::StoreError;

/// What went wrong in a node operation.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A submitted job was refused; nothing of the batch was stored.
    #[error("job {index} of the batch refused: {error}")]
    Refused {
        /// Position of the refused job in the batch.
        index: usize,
        /// Why.
        error: SubmitError,
    },
    /// Admission control refused a low-priority job of a queue whose wait SLO is
    /// certain to be breached; nothing of the batch was stored.
    #[error("job {index} of the batch refused: {reason}")]
    Overloaded {
        /// Position of the refused job in the batch.
        index: usize,
        /// Why (the queue, its SLO and the predicted wait).
        reason: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The options cannot run a node.
    #[error("invalid node options: {0}")]
    Options(String),
    /// An actor could not be started or reached.
    #[error("actor system: {0}")]
    Actor(String),
}
