//! Saved models: each node's live predictors as one opaque, versioned blob per node
//! (the encoding belongs to [`crate::predict::live::persist`]; the store only keeps it).
//!
//! One row per node, replaced at every save, so the table holds as many rows as nodes
//! ever ran; rows of nodes that stopped saving are purged by the `models` retention
//! namespace.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::clock::Millis;

/// Largest blob a node may save (a node with thousands of kinds saves a few MiB).
pub const MAX_SAVED_MODELS_BYTES: usize = 32 * 1024 * 1024;

/// Longest node name a save accepts.
pub const MAX_MODEL_NODE: usize = 200;

/// Most rows [`ModelStore::load_models`] returns (the most recently saved first).
pub const MAX_MODEL_ROWS: u32 = 1_000;

/// One node's saved models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedModels {
    /// The node that saved them.
    pub node: String,
    /// When.
    pub saved_at: Millis,
    /// The versioned blob.
    pub body: Vec<u8>,
}

/// Where nodes keep their models. Every backend has it, so [`super::Store`] requires it.
#[async_trait]
pub trait ModelStore: Send + Sync + 'static {
    /// Replaces the models saved by `node` with `body`. Refuses an empty or too long
    /// node name or a blob over [`MAX_SAVED_MODELS_BYTES`] (nothing is written).
    async fn save_models(&self, node: &str, body: &[u8], now: Millis) -> Result<(), StoreError>;

    /// Every node's saved models, most recently saved first, at most [`MAX_MODEL_ROWS`].
    async fn load_models(&self) -> Result<Vec<SavedModels>, StoreError>;
}

/// Refuses a save no reader could use, naming what is wrong.
/// Every node's saved models, newest first (`$1`: [`MAX_MODEL_ROWS`]); the same text
/// serves SQLite and Postgres.
pub(crate) const LOAD_MODELS: &str =
    "SELECT node, saved_at, body FROM node_models ORDER BY saved_at DESC, node LIMIT $1";

/// The rows [`LOAD_MODELS`] reads, as [`SavedModels`].
pub(crate) fn saved_models(rows: Vec<(String, i64, Vec<u8>)>) -> Vec<SavedModels> {
    rows.into_iter()
        .map(|(node, saved_at, body)| SavedModels {
            node,
            saved_at: Millis(saved_at),
            body,
        })
        .collect()
}

pub(crate) fn check_save(node: &str, body: &[u8]) -> Result<(), StoreError> {
    if node.is_empty() || node.len() > MAX_MODEL_NODE {
        return Err(StoreError::Invalid(format!(
            "a node name must have 1..={MAX_MODEL_NODE} bytes"
        )));
    }
    if node.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "a node name must not contain control characters".into(),
        ));
    }
    if body.is_empty() || body.len() > MAX_SAVED_MODELS_BYTES {
        return Err(StoreError::Invalid(format!(
            "saved models must have 1..={MAX_SAVED_MODELS_BYTES} bytes, got {}",
            body.len()
        )));
    }
    Ok(())
}
