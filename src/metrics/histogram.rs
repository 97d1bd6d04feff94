//! A histogram fed in batches: a batch is folded into a local [`Tally`] (no shared state
//! touched per value) and added to the shared atomics once. prometheus-client's own
//! histogram takes a lock per observation, which the claim and completion paths would
//! pay per job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Most finite bucket bounds a histogram may have.
pub const MAX_BOUNDS: usize = 15;

/// Bounds for job durations and queue waits, in seconds (1 ms to an hour).
pub const JOB_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Bounds for store batch latencies, in seconds (0.5 ms to 10 s).
pub const BATCH_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Observations folded locally, to be added to a [`BatchHistogram`] in one go.
#[derive(Debug, Clone)]
pub struct Tally {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: [u64; MAX_BOUNDS + 1],
    count: u64,
    sum: f64,
}

impl Tally {
    /// An empty tally over `bounds` (ascending, at most [`MAX_BOUNDS`]).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BOUNDS, "at most {MAX_BOUNDS} bounds");
        Self {
            bounds,
            counts: [0; MAX_BOUNDS + 1],
            count: 0,
            sum: 0.0,
        }
    }

    /// Adds one value (negative values count as 0: clocks of different machines).
    pub fn observe(&mut self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.count += 1;
        self.sum += v;
    }

    /// How many values it holds.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A histogram of atomics with fixed bounds; clones share the same series.
#[derive(Debug, Clone)]
pub struct BatchHistogram {
    inner: Arc<Atomics>,
}

#[derive(Debug)]
struct Atomics {
    bounds: &'static [f64],
    counts: [AtomicU64; MAX_BOUNDS + 1],
    count: AtomicU64,
    /// The sum's f64 bits (updated with compare-and-swap, once per batch).
    sum: AtomicU64,
}

impl BatchHistogram {
    /// An empty histogram over `bounds` (ascending, at most [`MAX_BOUNDS`]).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BOUNDS, "at most {MAX_BOUNDS} bounds");
        Self {
            inner: Arc::new(Atomics {
                bounds,
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// A tally to fold a batch into.
    pub fn tally(&self) -> Tally {
        Tally::new(self.inner.bounds)
    }

    /// Adds a tally made by [`BatchHistogram::tally`] (or over the same bounds).
    pub fn add(&self, t: &Tally) {
        if t.count == 0 {
            return;
        }
        let a = &*self.inner;
        debug_assert_eq!(t.bounds, a.bounds);
        for (shared, n) in a.counts.iter().zip(t.counts.iter()) {
            if *n > 0 {
                shared.fetch_add(*n, Ordering::Relaxed);
            }
        }
        let mut old = a.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + t.sum).to_bits();
            match a
                .sum
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(seen) => old = seen,
            }
        }
        // Last, so a scrape never sees a count ahead of its buckets.
        a.count.fetch_add(t.count, Ordering::Relaxed);
    }

    /// Adds one value (for paths that see one at a time, e.g. a batch's own latency).
    pub fn observe(&self, v: f64) {
        let mut t = self.tally();
        t.observe(v);
        self.add(&t);
    }

    /// How many values it holds.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The sum of the values it holds.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }
}

impl TypedMetric for BatchHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let a = &*self.inner;
        let buckets: Vec<(f64, u64)> = a
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(a.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total as read, so `_count` equals the `+Inf` bucket
        // even while a batch is being added.
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_lands_in_the_bucket_of_its_upper_bound() {
        let h = BatchHistogram::new(&[1.0, 2.0]);
        let mut t = h.tally();
        for v in [0.5, 1.0, 1.5, 3.0, -1.0] {
            t.observe(v);
        }
        h.add(&t);
        let c: Vec<u64> = h.inner.counts[..3]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(c, vec![3, 1, 1]);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum(), 6.0);
    }
}
