//! Duration of a job's attempt per (kind, queue): a decaying quantile sketch per key,
//! optionally split by payload size, and the baselines it has to beat.
//!
//! The answers serve timeouts and lease lengths (a high quantile) and ETAs (the median);
//! they are learned from succeeded attempts only, since a failed attempt's duration says
//! how fast the failure came, not how long the work takes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::sketch::DecayingSketch;

/// What a duration prediction is about.
#[derive(Debug, Clone, Copy)]
pub struct DurationKey<'a> {
    /// Job kind.
    pub kind: &'a str,
    /// Queue.
    pub queue: &'a str,
    /// Size of the payload in bytes (a cheap feature of the work to do).
    pub payload_bytes: u64,
}

/// Predicted quantiles of an attempt's duration, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// A duration predictor: the model and its baselines alike, so evaluation runs each the
/// same way.
pub trait DurationPredictor {
    /// A short name for tables.
    fn name(&self) -> &'static str;
    /// Learns that an attempt of `key` that finished at `at_ms` took `duration_ms`.
    fn observe(&mut self, key: DurationKey<'_>, at_ms: i64, duration_ms: f64);
    /// Predicts the duration of an attempt of `key` starting at `at_ms`; `None` before
    /// anything about the key was learned.
    fn predict(&self, key: DurationKey<'_>, at_ms: i64) -> Option<Quantiles>;
}

/// Settings of [`SketchDuration`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SketchSettings {
    /// Relative accuracy of the quantiles.
    pub alpha: f64,
    /// Half-life of an observation, in milliseconds.
    pub half_life_ms: f64,
    /// Buckets per sketch.
    pub max_bins: usize,
    /// Split each key further by payload size (powers of 4 bytes), falling back to the
    /// whole key while a size class has fewer than `min_per_size` observations.
    pub by_payload_size: bool,
    /// See `by_payload_size`.
    pub min_per_size: u64,
}

impl Default for SketchSettings {
    fn default() -> Self {
        Self {
            alpha: 0.02,
            half_life_ms: 20.0 * 60_000.0,
            max_bins: 512,
            by_payload_size: true,
            min_per_size: 30,
        }
    }
}

/// Sketches of one (kind, queue).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeySketches {
    all: DecayingSketch,
    by_size: HashMap<u32, DecayingSketch>,
}

/// The model: a [`DecayingSketch`] per (kind, queue), and per payload size class when
/// enabled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SketchDuration {
    settings: SketchSettings,
    keys: HashMap<String, HashMap<String, KeySketches>>,
}

/// The payload size class: `floor(log4(bytes))`, so 1 KiB and 3 KiB share one, 16 KiB
/// is the next.
pub fn size_class(bytes: u64) -> u32 {
    (64 - bytes.max(1).leading_zeros() - 1) / 2
}

impl SketchDuration {
    /// A model with these settings.
    pub fn new(settings: SketchSettings) -> Self {
        Self {
            settings,
            keys: HashMap::new(),
        }
    }

    fn sketch(&self) -> DecayingSketch {
        DecayingSketch::new(
            self.settings.alpha,
            self.settings.half_life_ms,
            self.settings.max_bins,
        )
    }

    /// The (kind, queue) keys learned so far (a snapshot accessor for operators'
    /// views), with how many runs each has seen.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.keys.iter().flat_map(|(kind, queues)| {
            queues
                .iter()
                .map(move |(queue, k)| (kind.as_str(), queue.as_str(), k.all.count()))
        })
    }

    /// Adds `other`'s sketches to this model's (the same settings assumed): how nodes
    /// combine what each learned.
    pub fn merge(&mut self, other: &SketchDuration) -> Result<(), super::sketch::MergeError> {
        for (kind, queues) in &other.keys {
            for (queue, theirs) in queues {
                let fresh = self.sketch();
                let mine = self
                    .keys
                    .entry(kind.clone())
                    .or_default()
                    .entry(queue.clone())
                    .or_insert_with(|| KeySketches {
                        all: fresh,
                        by_size: HashMap::new(),
                    });
                mine.all.merge(&theirs.all)?;
                for (class, s) in &theirs.by_size {
                    let fresh = DecayingSketch::new(
                        self.settings.alpha,
                        self.settings.half_life_ms,
                        self.settings.max_bins,
                    );
                    mine.by_size.entry(*class).or_insert(fresh).merge(s)?;
                }
            }
        }
        Ok(())
    }
}

impl SketchDuration {
    /// The `q`-quantile (ms) of `key`'s durations and the runs behind it (the sketch
    /// `predict` would use: the payload size class once it has enough runs, else the
    /// whole key); `None` before anything about the key was learned. For the quantiles
    /// [`Quantiles`] does not carry, such as the p99.9 of a timeout.
    pub fn quantile(&self, key: DurationKey<'_>, q: f64) -> Option<(f64, u64)> {
        let k = self.keys.get(key.kind)?.get(key.queue)?;
        let s = self.sketch_of(k, key.payload_bytes);
        Some((s.quantile(q)?, s.count()))
    }

    /// The `q`-quantile (ms) over every run of each (kind, queue) learned on
    /// `queues`, whatever the payload size, with the runs behind it.
    pub fn quantiles_on<'a>(
        &'a self,
        queues: &'a [String],
        q: f64,
    ) -> impl Iterator<Item = (f64, u64)> + 'a {
        self.keys.values().flat_map(move |by_queue| {
            by_queue
                .iter()
                .filter(|(queue, _)| queues.contains(*queue))
                .filter_map(move |(_, k)| Some((k.all.quantile(q)?, k.all.count())))
        })
    }

    fn sketch_of<'a>(&self, k: &'a KeySketches, payload_bytes: u64) -> &'a DecayingSketch {
        if self.settings.by_payload_size {
            k.by_size
                .get(&size_class(payload_bytes))
                .filter(|s| s.count() >= self.settings.min_per_size)
                .unwrap_or(&k.all)
        } else {
            &k.all
        }
    }
}

impl DurationPredictor for SketchDuration {
    fn name(&self) -> &'static str {
        if self.settings.by_payload_size {
            "sketch+size"
        } else {
            "sketch"
        }
    }

    fn observe(&mut self, key: DurationKey<'_>, at_ms: i64, duration_ms: f64) {
        let fresh = self.sketch();
        let by_size = self.settings.by_payload_size;
        let entry = self
            .keys
            .entry(key.kind.to_owned())
            .or_default()
            .entry(key.queue.to_owned())
            .or_insert_with(|| KeySketches {
                all: fresh.clone(),
                by_size: HashMap::new(),
            });
        entry.all.add(duration_ms, at_ms);
        if by_size {
            entry
                .by_size
                .entry(size_class(key.payload_bytes))
                .or_insert(fresh)
                .add(duration_ms, at_ms);
        }
    }

    fn predict(&self, key: DurationKey<'_>, _at_ms: i64) -> Option<Quantiles> {
        let k = self.keys.get(key.kind)?.get(key.queue)?;
        let s = self.sketch_of(k, key.payload_bytes);
        Some(Quantiles {
            p50: s.quantile(0.5)?,
            p90: s.quantile(0.9)?,
            p99: s.quantile(0.99)?,
        })
    }
}

/// Baseline: the mean of every run of the kind so far, used for every quantile (what a
/// fixed "average duration" timeout does).
#[derive(Debug, Clone, Default)]
pub struct MeanPerKind {
    sums: HashMap<String, (f64, u64)>,
}

impl DurationPredictor for MeanPerKind {
    fn name(&self) -> &'static str {
        "mean per kind"
    }

    fn observe(&mut self, key: DurationKey<'_>, _at_ms: i64, duration_ms: f64) {
        if !duration_ms.is_finite() {
            return;
        }
        let e = self.sums.entry(key.kind.to_owned()).or_default();
        e.0 += duration_ms;
        e.1 += 1;
    }

    fn predict(&self, key: DurationKey<'_>, _at_ms: i64) -> Option<Quantiles> {
        let (sum, n) = self.sums.get(key.kind)?;
        let m = sum / *n as f64;
        Some(Quantiles {
            p50: m,
            p90: m,
            p99: m,
        })
    }
}

/// Baseline: the mean of the kind's last two runs, for every quantile.
#[derive(Debug, Clone, Default)]
pub struct LastTwo {
    last: HashMap<String, (f64, Option<f64>)>,
}

impl DurationPredictor for LastTwo {
    fn name(&self) -> &'static str {
        "mean of last two"
    }

    fn observe(&mut self, key: DurationKey<'_>, _at_ms: i64, duration_ms: f64) {
        if !duration_ms.is_finite() {
            return;
        }
        match self.last.get_mut(key.kind) {
            Some(e) => *e = (duration_ms, Some(e.0)),
            None => {
                self.last.insert(key.kind.to_owned(), (duration_ms, None));
            }
        }
    }

    fn predict(&self, key: DurationKey<'_>, _at_ms: i64) -> Option<Quantiles> {
        let (a, b) = self.last.get(key.kind)?;
        let m = b.map_or(*a, |b| (a + b) / 2.0);
        Some(Quantiles {
            p50: m,
            p90: m,
            p99: m,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, bytes: u64) -> DurationKey<'_> {
        DurationKey {
            kind,
            queue: "q",
            payload_bytes: bytes,
        }
    }

    #[test]
    fn size_classes_are_powers_of_four() {
        assert_eq!(size_class(0), 0);
        assert_eq!(size_class(3), 0);
        assert_eq!(size_class(4), 1);
        assert_eq!(size_class(1023), 4);
        assert_eq!(size_class(1024), 5);
    }

    #[test]
    fn the_sketch_learns_quantiles_per_key() {
        let mut m = SketchDuration::new(SketchSettings {
            by_payload_size: false,
            ..Default::default()
        });
        assert_eq!(m.predict(key("a", 1), 0), None);
        for i in 0..1000 {
            m.observe(key("a", 1), i, (i % 100 + 1) as f64);
            m.observe(key("b", 1), i, 5000.0);
        }
        let a = m.predict(key("a", 1), 1000).unwrap();
        assert!((a.p50 - 50.0).abs() < 2.0, "{a:?}");
        assert!((a.p90 - 90.0).abs() < 3.0, "{a:?}");
        assert!(a.p99 > a.p90);
        let b = m.predict(key("b", 1), 1000).unwrap();
        assert!((b.p50 - 5000.0).abs() < 100.0);
    }

    #[test]
    fn size_classes_answer_once_they_have_enough_runs() {
        let mut m = SketchDuration::new(SketchSettings::default());
        for i in 0..200 {
            m.observe(key("r", 1_000), i, 10.0);
            m.observe(key("r", 1_000_000), i, 1000.0);
        }
        let small = m.predict(key("r", 1_000), 0).unwrap();
        let big = m.predict(key("r", 1_000_000), 0).unwrap();
        assert!(small.p90 < 11.0 && big.p50 > 950.0, "{small:?} {big:?}");
        // An unseen size class falls back to the whole key.
        let unseen = m.predict(key("r", 50), 0).unwrap();
        assert!(unseen.p90 > 900.0, "{unseen:?}");
    }

    #[test]
    fn merged_models_know_both_sides() {
        let mut a = SketchDuration::new(SketchSettings::default());
        let mut b = SketchDuration::new(SketchSettings::default());
        a.observe(key("x", 1), 0, 10.0);
        b.observe(key("y", 1), 0, 20.0);
        a.merge(&b).unwrap();
        assert!(a.predict(key("y", 1), 0).is_some());
    }

    #[test]
    fn baselines_average() {
        let mut mean = MeanPerKind::default();
        let mut two = LastTwo::default();
        for d in [10.0, 20.0, 60.0] {
            mean.observe(key("k", 1), 0, d);
            two.observe(key("k", 1), 0, d);
        }
        assert_eq!(mean.predict(key("k", 1), 0).unwrap().p90, 30.0);
        assert_eq!(two.predict(key("k", 1), 0).unwrap().p50, 40.0);
        assert_eq!(two.predict(key("other", 1), 0), None);
    }
}
