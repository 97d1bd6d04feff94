//! Prometheus metrics of a jobmesh process: one registry (prometheus-client, OpenMetrics
//! text) for jobs, the store, the HTTP API and the mesh, into which libp2p-metrics
//! registers the mesh's bandwidth counters.
//!
//! Recording is cheap on the hot path: counters and histograms are atomics, label sets
//! are interned once ([`LabelCap`]), and the batched paths (enqueue, claim, completion)
//! fold a batch locally and touch each series once per batch. Labels never carry a job
//! id, a payload or an error text: queue and kind (each capped at [`MAX_LABEL_VALUES`]
//! distinct values, then `other`), outcome, state, store error kind, route template,
//! node and peer ids (bounded by the mesh).
//!
//! Stores are metered by wrapping them ([`MeteredStore`]): the store traits carry no
//! metrics. Counts per queue and state are read by the maintenance leader only and
//! cached ([`QueueStats`]): a scrape runs no store query. The leader also posts them in the
//! store for the HTTP API ([`posted_counts`]).

pub mod finished_window;
mod histogram;
mod labels;
pub mod posted_counts;
mod queue_stats;
mod slo;
mod store;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use histogram::{BATCH_SECONDS, BatchHistogram, JOB_SECONDS, MAX_BOUNDS, Tally};
pub use labels::{JobTag, Label, LabelCap, MAX_LABEL_LEN, MAX_LABEL_VALUES, OTHER};
pub use queue_stats::{QueueSnapshot, QueueStats};
pub use slo::{QueueLabel, SloMetrics};
pub use store::MeteredStore;

use crate::job::{ClaimedJob, Outcome};
use crate::store::{EnqueueOutcome, StoreError};

/// The registry type collectors and libp2p-metrics register into.
pub use prometheus_client::registry::Registry as MetricsRegistry;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type HistFamily<S> = Family<S, BatchHistogram, fn() -> BatchHistogram>;

fn job_histogram() -> BatchHistogram {
    BatchHistogram::new(JOB_SECONDS)
}

/// How an attempt ended, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishOutcome {
    /// The handler succeeded.
    Succeeded,
    /// It failed and runs again later.
    Retried,
    /// It failed for good (dead-lettered).
    Discarded,
    /// It was cancelled while running.
    Cancelled,
    /// Its handler snoozed the job (runs again later, no attempt spent).
    Snoozed,
}

impl FinishOutcome {
    /// The label of an outcome.
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Succeeded { .. } => FinishOutcome::Succeeded,
            Outcome::Retry { .. } => FinishOutcome::Retried,
            Outcome::Discard { .. } => FinishOutcome::Discarded,
            Outcome::Cancelled { .. } => FinishOutcome::Cancelled,
            Outcome::Snoozed { .. } => FinishOutcome::Snoozed,
        }
    }

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishOutcome::Succeeded => "succeeded",
            FinishOutcome::Retried => "retried",
            FinishOutcome::Discarded => "discarded",
            FinishOutcome::Cancelled => "cancelled",
            FinishOutcome::Snoozed => "snoozed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    const ALL: [FinishOutcome; 5] = [
        FinishOutcome::Succeeded,
        FinishOutcome::Retried,
        FinishOutcome::Discarded,
        FinishOutcome::Cancelled,
        FinishOutcome::Snoozed,
    ];
}

impl EncodeLabelValue for FinishOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Labels of a finished attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FinishedLabels {
    /// Queue (capped).
    pub queue: Label,
    /// Kind (capped).
    pub kind: Label,
    /// How it ended.
    pub outcome: FinishOutcome,
}

/// Labels of a store error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorKind {
    /// The [`StoreError`] variant, in snake case.
    pub kind: &'static str,
}

/// Labels of an API request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's path template (`/api/v1/jobs/{id}`), `unmatched` for no route.
    pub route: Label,
    /// The method (capped).
    pub method: Label,
    /// The response status.
    pub status: u16,
}

/// Job counters and histograms.
#[derive(Debug)]
pub struct JobMetrics {
    /// Jobs stored by an enqueue.
    pub enqueued: Family<JobTag, Counter>,
    /// Enqueues answered with an existing job (its unique key was taken).
    pub deduplicated: Family<JobTag, Counter>,
    /// Attempts claimed.
    pub claimed: Family<JobTag, Counter>,
    /// Claimed attempts given back unstarted (the store takes the attempt back).
    pub released: Counter,
    /// Attempts whose outcome the store applied.
    pub finished: Family<FinishedLabels, Counter>,
    /// Attempt run time.
    pub duration: HistFamily<JobTag>,
    /// Time from runnable (`run_at`) to claimed.
    pub queue_wait: HistFamily<JobTag>,
    /// Leases taken back after they lapsed.
    pub leases_rescued: Counter,
    /// Leases revoked (an evicted or restarted node's).
    pub leases_revoked: Counter,
}

/// Store latencies and errors.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Errors by kind.
    pub errors: Family<ErrorKind, Counter>,
    /// Latency of one claim (one batch).
    pub claim_batch: BatchHistogram,
    /// Latency of one completion batch.
    pub completion_batch: BatchHistogram,
}

/// HTTP API counters.
#[derive(Debug)]
pub struct ApiMetrics {
    /// Requests by route template, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests refused by a token's rate (429).
    pub rate_limited: Counter,
}

/// Mesh counters (the views by member are collected from the voter's status).
#[derive(Debug)]
pub struct MeshMetrics {
    /// Votes this node cast.
    pub votes_cast: Counter,
    /// Valid votes received from other members.
    pub votes_received: Counter,
    /// Members evicted by a certificate this node applied.
    pub evictions: Counter,
}

/// The metrics of one process (a node, or `jobmesh api`), shared by its parts.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    queues: Arc<LabelCap>,
    kinds: LabelCap,
    routes: LabelCap,
    methods: LabelCap,
    /// Jobs.
    pub jobs: JobMetrics,
    /// The store.
    pub store: StoreMetrics,
    /// The HTTP API.
    pub api: ApiMetrics,
    /// The mesh.
    pub mesh: MeshMetrics,
    /// Counts per queue and state, cached.
    pub queue_stats: Arc<QueueStats>,
}

impl Metrics {
    /// Every metric registered, at zero.
    pub fn new() -> Arc<Self> {
        let jobs = JobMetrics {
            enqueued: Family::default(),
            deduplicated: Family::default(),
            claimed: Family::default(),
            released: Counter::default(),
            finished: Family::default(),
            duration: Family::new_with_constructor(job_histogram as fn() -> BatchHistogram),
            queue_wait: Family::new_with_constructor(job_histogram as fn() -> BatchHistogram),
            leases_rescued: Counter::default(),
            leases_revoked: Counter::default(),
        };
        let store = StoreMetrics {
            errors: Family::default(),
            claim_batch: BatchHistogram::new(BATCH_SECONDS),
            completion_batch: BatchHistogram::new(BATCH_SECONDS),
        };
        let api = ApiMetrics {
            requests: Family::default(),
            rate_limited: Counter::default(),
        };
        let mesh = MeshMetrics {
            votes_cast: Counter::default(),
            votes_received: Counter::default(),
            evictions: Counter::default(),
        };
        let queues = Arc::new(LabelCap::new(MAX_LABEL_VALUES));
        let queue_stats = Arc::new(QueueStats::default());
        let mut r = Registry::default();
        r.register(
            "jobmesh_build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "jobmesh_jobs_enqueued",
            "Jobs stored by enqueues",
            jobs.enqueued.clone(),
        );
        r.register(
            "jobmesh_jobs_deduplicated",
            "Enqueues answered with an existing job of the same unique key",
            jobs.deduplicated.clone(),
        );
        r.register(
            "jobmesh_jobs_claimed",
            "Attempts claimed",
            jobs.claimed.clone(),
        );
        r.register(
            "jobmesh_jobs_released",
            "Claimed attempts given back unstarted (no worker took them in time, or the node stopped)",
            jobs.released.clone(),
        );
        r.register(
            "jobmesh_jobs_finished",
            "Attempts whose outcome the store recorded",
            jobs.finished.clone(),
        );
        r.register_with_unit(
            "jobmesh_job_duration",
            "Run time of finished attempts",
            Unit::Seconds,
            jobs.duration.clone(),
        );
        r.register_with_unit(
            "jobmesh_job_queue_wait",
            "Time from a job being runnable to its claim",
            Unit::Seconds,
            jobs.queue_wait.clone(),
        );
        r.register(
            "jobmesh_leases_rescued",
            "Leases taken back after they lapsed",
            jobs.leases_rescued.clone(),
        );
        r.register(
            "jobmesh_leases_revoked",
            "Leases revoked from an evicted or restarted node",
            jobs.leases_revoked.clone(),
        );
        r.register(
            "jobmesh_store_errors",
            "Store calls that failed, by error kind",
            store.errors.clone(),
        );
        r.register_with_unit(
            "jobmesh_claim_batch_duration",
            "Latency of one claim from the store (one batch of jobs)",
            Unit::Seconds,
            store.claim_batch.clone(),
        );
        r.register_with_unit(
            "jobmesh_completion_batch_duration",
            "Latency of one completion batch written to the store",
            Unit::Seconds,
            store.completion_batch.clone(),
        );
        r.register(
            "jobmesh_api_requests",
            "HTTP API requests by route template, method and status",
            api.requests.clone(),
        );
        r.register(
            "jobmesh_api_rate_limited",
            "HTTP API requests refused by a token's rate",
            api.rate_limited.clone(),
        );
        r.register(
            "jobmesh_mesh_votes_cast",
            "Health votes this node cast",
            mesh.votes_cast.clone(),
        );
        r.register(
            "jobmesh_mesh_votes_received",
            "Valid health votes received from other members",
            mesh.votes_received.clone(),
        );
        r.register(
            "jobmesh_mesh_evictions",
            "Members evicted by a certificate this node applied",
            mesh.evictions.clone(),
        );
        r.register_collector(Box::new(queue_stats::QueueStatsCollector {
            stats: queue_stats.clone(),
            queues: queues.clone(),
        }));
        Arc::new(Self {
            registry: Mutex::new(r),
            queues,
            kinds: LabelCap::new(MAX_LABEL_VALUES),
            routes: LabelCap::new(MAX_LABEL_VALUES),
            methods: LabelCap::new(16),
            jobs,
            store,
            api,
            mesh,
            queue_stats,
        })
    }

    /// Registers more metrics (a node's collectors, libp2p-metrics).
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail; an encoder error would be a bug in a collector.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }

    /// The label of `queue` (capped as every queue label).
    pub fn queue_label(&self, queue: &str) -> Label {
        self.queues.get(queue)
    }

    /// The labels of jobs of `queue` and `kind`.
    pub fn tag(&self, queue: &str, kind: &str) -> JobTag {
        JobTag {
            queue: self.queues.get(queue),
            kind: self.kinds.get(kind),
        }
    }

    /// Counts an enqueue's outcomes: `tags[i]` indexes the labels of job `i` in
    /// `distinct`.
    pub fn enqueued(&self, distinct: &[JobTag], tags: &[usize], out: &[EnqueueOutcome]) {
        let mut counts = vec![(0u64, 0u64); distinct.len()];
        for (i, o) in tags.iter().zip(out) {
            match o {
                EnqueueOutcome::Inserted(_) => counts[*i].0 += 1,
                EnqueueOutcome::Duplicate(_) => counts[*i].1 += 1,
            }
        }
        for (tag, (inserted, duplicate)) in distinct.iter().zip(counts) {
            if inserted > 0 {
                self.jobs.enqueued.get_or_create(tag).inc_by(inserted);
            }
            if duplicate > 0 {
                self.jobs.deduplicated.get_or_create(tag).inc_by(duplicate);
            }
        }
    }

    /// Counts a claim's jobs and their queue waits (from `run_at` to `now`).
    pub fn claimed(&self, jobs: &[ClaimedJob], now: crate::clock::Millis) {
        let mut groups: Vec<(&str, &str, u64, Tally)> = Vec::new();
        for c in jobs {
            let j = &c.job;
            let wait = now.0.saturating_sub(j.run_at.0) as f64 / 1000.0;
            match groups
                .iter_mut()
                .find(|(q, k, ..)| *q == j.queue && *k == j.kind)
            {
                Some(g) => {
                    g.2 += 1;
                    g.3.observe(wait);
                }
                None => {
                    let mut t = Tally::new(JOB_SECONDS);
                    t.observe(wait);
                    groups.push((&j.queue, &j.kind, 1, t));
                }
            }
        }
        for (queue, kind, n, wait) in groups {
            let tag = self.tag(queue, kind);
            self.jobs.claimed.get_or_create(&tag).inc_by(n);
            self.jobs.queue_wait.get_or_create(&tag).add(&wait);
        }
    }

    /// Counts applied outcomes with their run times in seconds.
    pub fn finished<'a>(&self, items: impl IntoIterator<Item = (&'a JobTag, FinishOutcome, f64)>) {
        let mut groups: Vec<(&JobTag, [u64; FinishOutcome::ALL.len()], Tally)> = Vec::new();
        for (tag, outcome, secs) in items {
            let g = match groups.iter_mut().position(|g| g.0 == tag) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push((tag, [0; FinishOutcome::ALL.len()], Tally::new(JOB_SECONDS)));
                    groups.last_mut().expect("just pushed")
                }
            };
            g.1[outcome.index()] += 1;
            g.2.observe(secs);
        }
        for (tag, by_outcome, durations) in groups {
            for outcome in FinishOutcome::ALL {
                let n = by_outcome[outcome.index()];
                if n > 0 {
                    self.jobs
                        .finished
                        .get_or_create(&FinishedLabels {
                            queue: tag.queue.clone(),
                            kind: tag.kind.clone(),
                            outcome,
                        })
                        .inc_by(n);
                }
            }
            self.jobs.duration.get_or_create(tag).add(&durations);
        }
    }

    /// Counts a store error by its kind.
    pub fn store_error(&self, e: &StoreError) {
        let kind = match e {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Conflict(_) => "conflict",
            StoreError::Invalid(_) => "invalid",
            StoreError::NotFound(_) => "not_found",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Backend(_) => "backend",
        };
        self.store.errors.get_or_create(&ErrorKind { kind }).inc();
    }

    /// Counts an API request; `route` is the matched path template, `None` for none.
    pub fn api_request(&self, route: Option<&str>, method: &str, status: u16) {
        let labels = RequestLabels {
            route: self.routes.get(route.unwrap_or("unmatched")),
            method: self.methods.get(method),
            status,
        };
        self.api.requests.get_or_create(&labels).inc();
        if status == 429 {
            self.api.rate_limited.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_family_in_base_units() {
        let m = Metrics::new();
        let tag = m.tag("default", "noop");
        m.finished([(&tag, FinishOutcome::Succeeded, 0.002)]);
        m.store_error(&StoreError::Invalid("x".into()));
        let text = m.encode();
        for line in [
            "jobmesh_build_info{version=\"",
            "jobmesh_jobs_finished_total{queue=\"default\",kind=\"noop\",outcome=\"succeeded\"} 1",
            "jobmesh_job_duration_seconds_count{queue=\"default\",kind=\"noop\"} 1",
            "jobmesh_job_duration_seconds_bucket{le=\"0.005\",queue=\"default\",kind=\"noop\"} 1",
            "jobmesh_store_errors_total{kind=\"invalid\"} 1",
            "# TYPE jobmesh_claim_batch_duration_seconds histogram",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }
}
