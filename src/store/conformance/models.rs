//! Saved models: one row per node, replaced at each save, listed newest first, refused
//! when unusable, and purged after the `models` retention.

use super::*;
use crate::store::StoreError;
use crate::store::models::{MAX_MODEL_NODE, MAX_SAVED_MODELS_BYTES};
use crate::store::retention::Retention;

/// A save replaces the node's row (bytes kept exactly, zeros and all), rows of other
/// nodes stay, and the newest save comes first.
pub async fn models_are_saved_per_node(s: &dyn Store) {
    assert!(
        s.load_models().await.unwrap().is_empty(),
        "a fresh store has no models"
    );
    s.save_models("node-a", &[1, 0, 2], T0).await.unwrap();
    s.save_models("node-b", &[9; 5000], T0.plus(Duration::from_secs(1)))
        .await
        .unwrap();
    let later = T0.plus(Duration::from_secs(2));
    s.save_models("node-a", &[3, 0, 0, 4], later).await.unwrap();
    let rows = s.load_models().await.unwrap();
    assert_eq!(rows.len(), 2, "one row per node: {rows:?}");
    assert_eq!(rows[0].node, "node-a", "newest save first");
    assert_eq!(
        rows[0].body,
        vec![3, 0, 0, 4],
        "the last save wins, bytes as given"
    );
    assert_eq!(rows[0].saved_at, later);
    assert_eq!(rows[1].node, "node-b");
    assert_eq!(rows[1].body, vec![9; 5000]);
}

/// Unusable saves are refused and write nothing: an empty or too long node name, an
/// empty or too large blob.
pub async fn models_hostile_input_stores_nothing(s: &dyn Store) {
    let long = "n".repeat(MAX_MODEL_NODE + 1);
    for (node, body) in [
        ("", vec![1u8]),
        (long.as_str(), vec![1u8]),
        ("bad\nname", vec![1u8]),
        ("node", Vec::new()),
        ("node", vec![0u8; MAX_SAVED_MODELS_BYTES + 1]),
    ] {
        match s.save_models(node, &body, T0).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!(
                "save of node {:?} ({} bytes): {other:?}",
                node.get(..20),
                body.len()
            ),
        }
    }
    assert!(s.load_models().await.unwrap().is_empty());
}

/// The purge drops rows last saved before the `models` retention and keeps the rest.
pub async fn saved_models_are_purged_after_their_retention(s: &dyn Store) {
    let day = Duration::from_secs(24 * 3600);
    s.save_models("gone", &[1], T0).await.unwrap();
    s.save_models("alive", &[2], T0.plus(day * 9))
        .await
        .unwrap();
    let r = Retention {
        models: day * 5,
        ..Retention::default()
    };
    let p = s.purge(&r, T0.plus(day * 10)).await.unwrap();
    assert_eq!(p.models, 1, "{p:?}");
    let rows = s.load_models().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].node, "alive");
}
