//! Job counts per queue and state, and the age of each queue's oldest available job.
//!
//! A scrape never computes them: a COUNT over the jobs table per scrape on every node is
//! what makes other job dashboards time out on big tables. The node holding the
//! `maintenance` leader lease reads them every few seconds and caches them here; other
//! nodes serve none (and say so with `jobmesh_queue_stats_leader 0`). `jobmesh api`,
//! which runs no maintenance, reads them when scraped, at most once per refresh period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::{Label, LabelCap, MAX_LABEL_VALUES};
use crate::clock::{Clock, Millis, SystemClock};
use crate::job::JobState;
use crate::store::{Counts, Store, StoreError};

/// Counts and oldest available jobs as read from the store at one time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    /// When it was read.
    pub taken_at: Millis,
    /// Jobs by queue and state.
    pub counts: Counts,
    /// Per queue with available jobs: the `run_at` of its available job with the lowest
    /// id (the first enqueued of those waiting), whose age a scrape reports.
    pub oldest_available: BTreeMap<String, Millis>,
}

impl QueueSnapshot {
    /// Reads it: one counts query, then one indexed single-row read per queue with
    /// available jobs (at most [`MAX_LABEL_VALUES`] queues: the rest would be `other`).
    pub async fn read(store: &dyn Store, now: Millis) -> Result<Self, StoreError> {
        let counts = store.counts().await?;
        let mut oldest_available = BTreeMap::new();
        let waiting = counts
            .iter()
            .filter(|(_, by_state)| by_state.get(&JobState::Available).is_some_and(|n| *n > 0))
            .map(|(q, _)| q)
            .take(MAX_LABEL_VALUES);
        for queue in waiting {
            // The claim index, a priority at a time (see `Activity::oldest_available`).
            if let Some(run_at) = store.oldest_available(queue).await? {
                oldest_available.insert(queue.clone(), run_at);
            }
        }
        Ok(Self {
            taken_at: now,
            counts,
            oldest_available,
        })
    }
}

#[derive(Debug, Default)]
struct Cached {
    snapshot: Option<QueueSnapshot>,
    /// `Some` in a node: whether it held the leader lease at its last round.
    leader: Option<bool>,
}

/// The cache of [`QueueSnapshot`]s a scrape reads.
#[derive(Debug, Default)]
pub struct QueueStats {
    cached: Mutex<Cached>,
    /// One refresh at a time where scrapes refresh (`jobmesh api`).
    refreshing: tokio::sync::Mutex<()>,
}

impl QueueStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A node that holds the leader lease read this.
    pub fn lead(&self, snapshot: QueueSnapshot) {
        *self.lock() = Cached {
            snapshot: Some(snapshot),
            leader: Some(true),
        };
    }

    /// A node that does not hold the leader lease: it serves no counts.
    pub fn follow(&self) {
        *self.lock() = Cached {
            snapshot: None,
            leader: Some(false),
        };
    }

    /// Whether the last round of this node held the leader lease (`None` outside a node,
    /// or before its first round).
    pub fn leader(&self) -> Option<bool> {
        self.lock().leader
    }

    /// The cached snapshot.
    pub fn snapshot(&self) -> Option<QueueSnapshot> {
        self.lock().snapshot.clone()
    }

    /// Outside a node: re-reads the snapshot from `store` when it is older than `every`
    /// (or missing), one refresh at a time; a failed read keeps the old one.
    pub async fn refresh_if_older(
        &self,
        store: &dyn Store,
        every: std::time::Duration,
    ) -> Result<(), StoreError> {
        let fresh = |c: &Cached, now: Millis| {
            c.snapshot
                .as_ref()
                .is_some_and(|s| now.since(s.taken_at) < every)
        };
        if fresh(&self.lock(), SystemClock.now()) {
            return Ok(());
        }
        let _one = self.refreshing.lock().await;
        let now = SystemClock.now();
        if fresh(&self.lock(), now) {
            return Ok(());
        }
        let snapshot = QueueSnapshot::read(store, now).await?;
        self.lock().snapshot = Some(snapshot);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
struct QueueState {
    queue: Label,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
struct QueueOnly {
    queue: Label,
}

/// Encodes the cache on each scrape.
#[derive(Debug)]
pub(super) struct QueueStatsCollector {
    pub stats: Arc<QueueStats>,
    pub queues: Arc<LabelCap>,
}

impl Collector for QueueStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (snapshot, leader) = {
            let c = self.stats.lock();
            (c.snapshot.clone(), c.leader)
        };
        if let Some(leader) = leader {
            let g = ConstGauge::new(i64::from(leader));
            g.encode(encoder.encode_descriptor(
                "jobmesh_queue_stats_leader",
                "1 if this node holds the maintenance leader lease and so serves the queue counts",
                None,
                MetricType::Gauge,
            )?)?;
        }
        let Some(s) = snapshot else { return Ok(()) };
        let now = SystemClock.now();
        let secs = |since: Millis| now.0.saturating_sub(since.0).max(0) as f64 / 1000.0;
        ConstGauge::new(secs(s.taken_at)).encode(encoder.encode_descriptor(
            "jobmesh_queue_stats_age",
            "Age of the cached queue counts",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Gauge,
        )?)?;
        // Queues past the label cap are summed under `other`.
        let mut jobs: BTreeMap<QueueState, i64> = BTreeMap::new();
        for (queue, by_state) in &s.counts {
            let queue = self.queues.get(queue);
            for (state, n) in by_state {
                *jobs
                    .entry(QueueState {
                        queue: queue.clone(),
                        state: state.as_str(),
                    })
                    .or_default() += *n as i64;
            }
        }
        let mut family = encoder.encode_descriptor(
            "jobmesh_queue_jobs",
            "Jobs per queue and state (read by the maintenance leader, cached)",
            None,
            MetricType::Gauge,
        )?;
        for (labels, n) in &jobs {
            ConstGauge::new(*n).encode(family.encode_family(labels)?)?;
        }
        let mut oldest: BTreeMap<QueueOnly, Millis> = BTreeMap::new();
        for (queue, run_at) in &s.oldest_available {
            let e = oldest
                .entry(QueueOnly {
                    queue: self.queues.get(queue),
                })
                .or_insert(*run_at);
            *e = (*e).min(*run_at);
        }
        let mut family = encoder.encode_descriptor(
            "jobmesh_queue_oldest_available_age",
            "Per queue, how long its first-enqueued available job has been runnable",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (labels, run_at) in &oldest {
            ConstGauge::new(secs(*run_at)).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}
