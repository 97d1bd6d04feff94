//! Saving and resuming a node's models: one versioned blob per node in the store
//! ([`crate::store::ModelStore`]), written every minute and at graceful shutdown, read
//! back by the node when it starts again and by anyone who shows predictions.
//!
//! The blob is one version byte ([`MODELS_VERSION`]) followed by the bincode of a
//! [`Snapshot`], as the mesh's wire messages are: a later format bumps the byte and
//! keeps a reader for this one in [`decode`]. Format 2 is format 1 followed by the
//! failure model's vitals ([`Vitals`]: host samples, phi of the observed members),
//! which format 1 lacks: its models load with none. A node saves only what it learned itself;
//! its view merges the other nodes' saved durations into its own (sketches add up,
//! [`crate::predict::duration::SketchDuration::merge`]), and its failure model adopts
//! each other node's own state from that node's row while the row is fresh
//! ([`NodeScore::adopt_peers`]) and its retry model adds the fresh rows' retry counts and
//! budget windows to its own ([`PosteriorRetry::adopt_peers`]) and its congestion model
//! takes the fresh rows' workers per queue, to share a backlog read from the store
//! with them ([`FluidQueue::adopt_peers`]); the rest of the congestion model is each
//! node's own.

use serde::{Deserialize, Serialize};

use crate::predict::congestion::FluidQueue;
use crate::predict::duration::SketchDuration;
use crate::predict::failure::{NodeScore, PeerModel, Vitals};
use crate::predict::retry::PosteriorRetry;
use crate::store::SavedModels;

use super::{FeedState, LiveModels};

/// Version byte of the saved models' encoding.
pub const MODELS_VERSION: u8 = 2;

/// Version byte of the format before the failure model's vitals (still read).
pub const MODELS_VERSION_1: u8 = 1;

/// Largest blob decoded (the store refuses larger ones when they are saved).
pub const MAX_MODELS_BYTES: usize = crate::store::MAX_SAVED_MODELS_BYTES;

/// What a node saves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken (ms since the epoch).
    pub saved_at_ms: i64,
    /// The node's own durations (not merged with the others').
    pub duration: SketchDuration,
    /// The node's failure model (with its vitals, in format 2).
    pub failure: NodeScore,
    /// The node's retry model and budgets.
    pub retry: PosteriorRetry,
    /// The node's congestion model.
    pub congestion: FluidQueue,
}

/// The borrowed form [`encode`] writes (nothing is cloned to save).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    saved_at_ms: i64,
    duration: &'a SketchDuration,
    failure: &'a NodeScore,
    retry: &'a PosteriorRetry,
    congestion: &'a FluidQueue,
    vitals: &'a Vitals,
}

/// What format 2 holds: format 1's [`Snapshot`], then the failure model's vitals
/// (bincode writes a struct as its fields in order, so a nested snapshot reads the
/// same bytes as [`SnapshotRef`]'s flat fields).
#[derive(Deserialize)]
struct SnapshotV2 {
    snapshot: Snapshot,
    vitals: Vitals,
}

impl From<SnapshotV2> for Snapshot {
    fn from(s: SnapshotV2) -> Self {
        let mut snapshot = s.snapshot;
        snapshot.failure.set_vitals(s.vitals);
        snapshot
    }
}

/// Why saved models could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelsError {
    /// No bytes at all.
    #[error("saved models are empty")]
    Empty,
    /// Written by a version of jobmesh that used another format.
    #[error("saved models have format {0}, this version reads formats 1 to {MODELS_VERSION}")]
    WrongVersion(u8),
    /// Larger than [`MAX_MODELS_BYTES`].
    #[error("saved models are larger than {MAX_MODELS_BYTES} bytes")]
    TooLarge,
    /// Not a snapshot.
    #[error("saved models cannot be decoded: {0}")]
    Undecodable(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MODELS_BYTES>()
}

/// The blob of the node's own models at `now_ms`: its own durations from the feed's
/// memory, its other models from `models`.
pub fn encode(models: &LiveModels, feed: &FeedState, now_ms: i64) -> Vec<u8> {
    let snap = SnapshotRef {
        saved_at_ms: now_ms,
        duration: &feed.own_duration,
        failure: &models.failure,
        retry: &models.retry,
        congestion: &models.congestion,
        vitals: models.failure.vitals(),
    };
    let mut out = vec![MODELS_VERSION];
    // Encoding our own in-memory values into a Vec cannot fail; an empty body would be
    // refused by `decode` rather than misread.
    if let Ok(body) = bincode::serde::encode_to_vec(&snap, config()) {
        out.extend_from_slice(&body);
    }
    out
}

/// Reads a blob written by [`encode`]. Never panics on bad input.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, ModelsError> {
    let (&version, body) = bytes.split_first().ok_or(ModelsError::Empty)?;
    match version {
        MODELS_VERSION => decode_body::<SnapshotV2>(body).map(Snapshot::from),
        MODELS_VERSION_1 => decode_body::<Snapshot>(body),
        other => Err(ModelsError::WrongVersion(other)),
    }
}

/// The whole of `body` as a `T`.
fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ModelsError> {
    if body.len() > MAX_MODELS_BYTES {
        return Err(ModelsError::TooLarge);
    }
    let (snap, used): (T, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| ModelsError::Undecodable(e.to_string()))?;
    if used != body.len() {
        return Err(ModelsError::Undecodable("trailing bytes".into()));
    }
    Ok(snap)
}

/// The other nodes' rows (those of `node` itself skipped), decoded; a row that does not
/// decode is left out with a warning: one bad row must not cost the node its view.
fn peer_snapshots<'a>(node: &str, saved: &'a [SavedModels]) -> Vec<(&'a SavedModels, Snapshot)> {
    saved
        .iter()
        .filter(|r| r.node != node)
        .filter_map(|row| match decode(&row.body) {
            Ok(snap) => Some((row, snap)),
            Err(e) => {
                tracing::warn!(node = %row.node, error = %e, "saved models left out of the view");
                None
            }
        })
        .collect()
}

fn merge_into(view: &mut SketchDuration, peers: &[(&SavedModels, Snapshot)]) {
    for (row, snap) in peers {
        if let Err(e) = view.merge(&snap.duration) {
            tracing::warn!(node = %row.node, error = %e, "saved durations left out of the view");
        }
    }
}

/// `own` merged with the durations the other nodes saved (rows of `node` itself are
/// skipped; a row that does not decode or whose sketches have other settings is left out
/// with a warning).
pub fn merged_durations(own: &SketchDuration, node: &str, saved: &[SavedModels]) -> SketchDuration {
    let mut view = own.clone();
    merge_into(&mut view, &peer_snapshots(node, saved));
    view
}

/// The rows of `peers` saved within `max_age_ms` before `now_ms` (an older row is a
/// node that stopped saving).
fn fresh<'a, 'b>(
    peers: &'b [(&'a SavedModels, Snapshot)],
    now_ms: i64,
    max_age_ms: i64,
) -> impl Iterator<Item = &'b (&'a SavedModels, Snapshot)> {
    peers
        .iter()
        .filter(move |(row, _)| now_ms.saturating_sub(row.saved_at.0) <= max_age_ms)
}

/// Into `failure`, the own state of every node other than `node` whose row was saved
/// within `max_age_ms` before `now_ms` (an older row is a node that stopped saving: it
/// is not adopted, and a peer adopted before is forgotten), in place of the peers
/// adopted before. Returns how many peers the model knows now.
pub(super) fn adopt_fresh(
    failure: &mut NodeScore,
    node: &str,
    peers: &[(&SavedModels, Snapshot)],
    now_ms: i64,
    max_age_ms: i64,
) -> usize {
    let fresh = fresh(peers, now_ms, max_age_ms).map(|(row, snap)| PeerModel {
        node: &row.node,
        saved_at_ms: row.saved_at.0,
        model: &snap.failure,
    });
    failure.adopt_peers(node, fresh)
}

/// What node `node` takes from the saved rows at each save round, into `models`: its
/// view of the durations (`own` merged with the other nodes'), and, from the rows saved
/// within `max_age_ms` before `now_ms`, the other nodes' own failure states (see
/// `adopt_fresh`), retry counts and workers per queue (in place of those taken
/// before). Each row is decoded once. Returns how many peers the failure model knows.
pub fn from_peers(
    models: &mut LiveModels,
    own: &SketchDuration,
    node: &str,
    saved: &[SavedModels],
    now_ms: i64,
    max_age_ms: i64,
) -> usize {
    let peers = peer_snapshots(node, saved);
    let mut view = own.clone();
    merge_into(&mut view, &peers);
    models.duration = view;
    models.retry.adopt_peers(
        fresh(&peers, now_ms, max_age_ms).map(|(row, snap)| (row.saved_at.0, &snap.retry)),
    );
    models.congestion.adopt_peers(
        fresh(&peers, now_ms, max_age_ms).map(|(row, snap)| (row.saved_at.0, &snap.congestion)),
    );
    adopt_fresh(&mut models.failure, node, &peers, now_ms, max_age_ms)
}

/// What a node starting under the name `node` at `now_ms` resumes from the saved rows:
/// its own models as it saved them (fresh ones when it saved none, or its row does not
/// decode), the durations merged with the other nodes', and the failure states of the
/// nodes whose rows are at most `max_age_ms` old.
pub fn resume(
    node: &str,
    saved: &[SavedModels],
    now_ms: i64,
    max_age_ms: i64,
) -> (LiveModels, FeedState) {
    let own = saved
        .iter()
        .find(|r| r.node == node)
        .and_then(|r| match decode(&r.body) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "this node's saved models are unreadable; starting fresh");
                None
            }
        });
    let mut models = LiveModels::default();
    let own_duration = match own {
        Some(s) => {
            models.failure = s.failure;
            // Levels dated after now (this node's clock was ahead when it saved, or
            // stepped back since) would not move until the clock caught up.
            models.failure.drop_unusable_vitals(now_ms);
            models.retry = s.retry;
            models.congestion = s.congestion;
            s.duration
        }
        None => models.duration.clone(),
    };
    from_peers(&mut models, &own_duration, node, saved, now_ms, max_age_ms);
    (models, FeedState::new(node, own_duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::predict::duration::{DurationKey, DurationPredictor};
    use crate::predict::failure::{FailurePredictor, NodeSignal};

    fn key(kind: &str) -> DurationKey<'_> {
        DurationKey {
            kind,
            queue: "q",
            payload_bytes: 10,
        }
    }

    fn row(node: &str, body: Vec<u8>) -> SavedModels {
        row_at(node, 0, body)
    }

    fn row_at(node: &str, saved_at: i64, body: Vec<u8>) -> SavedModels {
        SavedModels {
            node: node.into(),
            saved_at: Millis(saved_at),
            body,
        }
    }

    /// The blob of a node that ran 50 attempts of kind `k`, failing or not.
    fn ran(node: &str, bad: bool) -> Vec<u8> {
        let mut models = LiveModels::default();
        for _ in 0..50 {
            let signal = NodeSignal::Attempt {
                kind: "k",
                failed: bad,
                timed_out: bad,
                duration_ms: 10.0,
                renew_ms: None,
            };
            models.failure.observe(node, 0, signal);
        }
        let feed = FeedState::new(node, models.duration.clone());
        encode(&models, &feed, 0)
    }

    fn learned(node: &str, kind: &str, ms: f64) -> Vec<u8> {
        let models = LiveModels::default();
        let mut feed = FeedState::new(node, models.duration.clone());
        for i in 0..100 {
            feed.own_duration.observe(key(kind), i, ms);
        }
        encode(&models, &feed, 1_000)
    }

    #[test]
    fn a_snapshot_round_trips_and_bad_blobs_are_named() {
        let bytes = learned("a", "k", 100.0);
        assert_eq!(bytes[0], MODELS_VERSION);
        let snap = decode(&bytes).unwrap();
        assert_eq!(snap.saved_at_ms, 1_000);
        assert!(snap.duration.predict(key("k"), 0).is_some());
        assert_eq!(decode(&[]).unwrap_err(), ModelsError::Empty);
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(decode(&v).unwrap_err(), ModelsError::WrongVersion(9));
        let mut v = bytes.clone();
        v.push(0);
        assert!(matches!(decode(&v), Err(ModelsError::Undecodable(_))));
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(ModelsError::Undecodable(_))
        ));
    }

    /// What format 1 wrote: the snapshot without the failure model's vitals.
    fn encode_v1(models: &LiveModels, feed: &FeedState, now_ms: i64) -> Vec<u8> {
        #[derive(Serialize)]
        struct V1<'a> {
            saved_at_ms: i64,
            duration: &'a SketchDuration,
            failure: &'a NodeScore,
            retry: &'a PosteriorRetry,
            congestion: &'a FluidQueue,
        }
        let v1 = V1 {
            saved_at_ms: now_ms,
            duration: &feed.own_duration,
            failure: &models.failure,
            retry: &models.retry,
            congestion: &models.congestion,
        };
        let mut out = vec![MODELS_VERSION_1];
        out.extend(bincode::serde::encode_to_vec(&v1, config()).unwrap());
        out
    }

    #[test]
    fn models_saved_before_vitals_load_and_vitals_are_saved_now() {
        let mut models = LiveModels::default();
        models.failure.observe("a", 0, NodeSignal::Restart);
        let feed = FeedState::new("a", models.duration.clone());
        let old = decode(&encode_v1(&models, &feed, 0)).expect("format 1 still reads");
        assert_eq!(old.failure.nodes().collect::<Vec<_>>(), ["a"]);
        assert_eq!(old.failure.score("a", 0), models.failure.score("a", 0));
        assert!(old.failure.score("a", 0) > 0.0);
        assert!(old.failure.vitals().is_empty());
        // Format 2 keeps what the node observed of the mesh and of its host.
        let mut t = 0;
        while t <= 120_000 {
            for (n, phi) in [("b", 5.0), ("c", 0.1), ("d", 0.1)] {
                models.failure.observe(n, t, NodeSignal::Phi { phi });
            }
            t += 5_000;
        }
        let signal = NodeSignal::Host {
            load_per_core: Some(0.5),
            memory_used: None,
        };
        models.failure.observe("a", t, signal);
        let snap = decode(&encode(&models, &feed, t)).unwrap();
        assert_eq!(snap.failure.vitals().observed().count(), 3);
        assert!(snap.failure.score("b", t) > 1.6);
        assert_eq!(snap.failure.score("b", t), models.failure.score("b", t));
    }

    #[test]
    fn a_resumed_node_drops_its_vitals_dated_after_now() {
        let mut models = LiveModels::default();
        let now = 1_000_000;
        // b and c sampled by a clock an hour ahead, d as now.
        for (n, at) in [("b", now + 3_600_000), ("c", now + 3_600_000), ("d", now)] {
            models.failure.observe(n, at, NodeSignal::Phi { phi: 1.0 });
        }
        let feed = FeedState::new("a", models.duration.clone());
        let saved = vec![row_at("a", now, encode(&models, &feed, now))];
        let (resumed, _) = resume("a", &saved, now, 1_000);
        let kept: Vec<&str> = resumed
            .failure
            .vitals()
            .observed()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(kept, ["d"]);
        // Resumed once the clock has caught up, all are kept.
        let (resumed, _) = resume("a", &saved, now + 3_600_000, 1_000);
        assert_eq!(resumed.failure.vitals().observed().count(), 3);
    }

    #[test]
    fn a_node_resumes_its_own_and_merges_the_others_durations() {
        let saved = vec![
            row("a", learned("a", "mine", 100.0)),
            row("b", learned("b", "theirs", 5_000.0)),
            row("c", vec![MODELS_VERSION, 1, 2, 3]),
        ];
        let (models, feed) = resume("a", &saved, 0, 1_000);
        // Its own durations, and the view with b's.
        assert!(feed.own_duration.predict(key("mine"), 0).is_some());
        assert!(feed.own_duration.predict(key("theirs"), 0).is_none());
        let theirs = models.duration.predict(key("theirs"), 0).unwrap();
        assert!((theirs.p50 - 5_000.0).abs() < 150.0, "{theirs:?}");
        assert!(models.duration.predict(key("mine"), 0).is_some());
        // A node with no row of its own starts fresh but still sees the others'.
        let (models, feed) = resume("new", &saved, 0, 1_000);
        assert!(feed.own_duration.keys().next().is_none());
        assert!(models.duration.predict(key("mine"), 0).is_some());
    }

    #[test]
    fn shown_scores_are_against_the_fresh_peers_as_the_node_acts_on_them() {
        use crate::predict::live::Predictions;
        let score = |p: &Predictions, node: &str| {
            p.nodes
                .iter()
                .find(|n| n.node == node)
                .unwrap()
                .failure_score
        };
        let saved = vec![
            row_at("a", 10_000, ran("a", true)),
            row_at("b", 9_000, ran("b", false)),
            row_at("d", 9_500, ran("d", false)),
        ];
        let alone = Predictions::from_saved(&saved[..1], 10_000, 30_000.0, 3_000);
        let with_peers = Predictions::from_saved(&saved, 10_000, 30_000.0, 3_000);
        let stale_peers = Predictions::from_saved(&saved, 10_000, 30_000.0, 100);
        // What the node itself computes at a save round with the same rows.
        let (mut me, feed) = resume("a", &saved[..1], 10_000, 3_000);
        from_peers(&mut me, &feed.own_duration, "a", &saved, 10_000, 3_000);
        assert_eq!(score(&with_peers, "a"), me.failure.score("a", 10_000));
        assert!(
            score(&with_peers, "a") > score(&alone, "a"),
            "against its peers the failing node stands out: {} vs {}",
            score(&with_peers, "a"),
            score(&alone, "a")
        );
        assert_eq!(score(&stale_peers, "a"), score(&alone, "a"));
        assert!(score(&with_peers, "b") < score(&with_peers, "a"));
    }

    #[test]
    fn fresh_peers_are_adopted_stale_ones_dropped_and_only_the_own_state_saved() {
        let (mut me, feed) = resume("a", &[row_at("a", 0, ran("a", false))], 0, 3_000);
        let before = me.failure.score("a", 0);
        let saved = vec![
            row_at("a", 10_000, ran("a", true)),
            row_at("b", 9_000, ran("b", false)),
            row_at("c", 5_000, ran("c", false)),
            row_at("d", 7_000, ran("d", false)),
        ];
        let known = from_peers(&mut me, &feed.own_duration, "a", &saved, 10_000, 3_000);
        // b and d saved within 3 s; c is a stopped node's row; a's own row is skipped.
        assert_eq!(known, 2);
        let mut nodes: Vec<&str> = me.failure.nodes().collect();
        nodes.sort_unstable();
        assert_eq!(nodes, ["a", "b", "d"]);
        assert_eq!(me.failure.score("a", 0), before, "own state kept");
        // Next round, d has stopped saving: forgotten.
        let known = from_peers(&mut me, &feed.own_duration, "a", &saved, 10_001, 3_000);
        assert_eq!(known, 1);
        // What a saves holds only its own state.
        let snap = decode(&encode(&me, &feed, 10_001)).unwrap();
        assert_eq!(snap.failure.nodes().collect::<Vec<_>>(), ["a"]);
        assert_eq!(snap.failure.peers_of("a"), 0);
    }
}
