//! Where the node's decisions ask the predictors (see
//! [`jobmesh::predict::policy`]): the outcome of a failed attempt, the timeout of an
//! attempt, the wait-SLO warnings of the maintenance rounds and admission control of
//! submits. Each is a call into the core's policy with the node's models and settings;
//! nothing is decided here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{Job, NewJob, Outcome};
use jobmesh::metrics::{Metrics, SloMetrics};
use jobmesh::predict::duration::DurationKey;
use jobmesh::predict::policy::congestion::{Admit, BreachWatch, QueuePolicy, admit};
use jobmesh::predict::policy::retry::{self, Failure};
use serde_json::json;

use crate::context::Ctx;

/// The queues' SLO policies of a node and the state of their warnings.
pub(crate) struct QueueSlo {
    policies: RwLock<Arc<BTreeMap<String, QueuePolicy>>>,
    watch: Mutex<BreachWatch>,
    metrics: SloMetrics,
}

impl QueueSlo {
    /// No policies yet; the metrics registered into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            policies: RwLock::new(Arc::new(BTreeMap::new())),
            watch: Mutex::new(BreachWatch::default()),
            metrics: SloMetrics::register(metrics),
        }
    }

    /// Replaces the policies.
    pub fn set(&self, policies: BTreeMap<String, QueuePolicy>) {
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policies);
    }

    /// The queues that have a wait SLO.
    pub fn queues(&self) -> Vec<String> {
        self.get()
            .iter()
            .filter(|(_, p)| p.wait_slo.is_some())
            .map(|(q, _)| q.clone())
            .collect()
    }

    fn get(&self) -> Arc<BTreeMap<String, QueuePolicy>> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Ctx {
    /// What a failed attempt of `job` becomes (see [`retry::decide`]).
    pub(crate) fn failure_outcome(
        &self,
        job: &Job,
        attempt: u32,
        error: String,
        retryable: bool,
        now: Millis,
    ) -> Outcome {
        // Where the feed saw the job's first failure, the decision asks the model about
        // the time it learned from.
        let first_failure = self
            .retry
            .learned
            .then(|| self.feed.state().first_failure(job.id.0).map(Millis))
            .flatten();
        self.decide_failure(
            &job.kind,
            attempt,
            job.max_attempts,
            (job.created_at, first_failure),
            error,
            retryable,
            now,
        )
    }

    /// [`Ctx::failure_outcome`] from the parts a crashed worker's slot keeps.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn failure_outcome_of(
        &self,
        kind: &str,
        attempt: u32,
        max_attempts: u32,
        created_at: Millis,
        error: String,
        retryable: bool,
        now: Millis,
    ) -> Outcome {
        self.decide_failure(
            kind,
            attempt,
            max_attempts,
            (created_at, None),
            error,
            retryable,
            now,
        )
    }

    /// The decision of a failed attempt; `(created_at, first_failure)` as in
    /// [`Failure`].
    #[allow(clippy::too_many_arguments)]
    fn decide_failure(
        &self,
        kind: &str,
        attempt: u32,
        max_attempts: u32,
        (created_at, first_failure): (Millis, Option<Millis>),
        error: String,
        retryable: bool,
        now: Millis,
    ) -> Outcome {
        let failure = Failure {
            kind,
            attempt,
            max_attempts,
            created_at,
            first_failure,
            error,
            retryable,
        };
        if !self.retry.learned {
            // The model is not asked (nor locked) unless the operator turned it on.
            return jobmesh::job::decide_failure(
                failure.attempt,
                failure.max_attempts,
                failure.error,
                failure.retryable,
                &self.retry,
                now,
                &mut rand::rng(),
            );
        }
        retry::decide(
            &mut self.models.lock(),
            &self.retry,
            failure,
            now,
            &mut rand::rng(),
        )
    }

    /// The timeout of an attempt of `job`: its own, else the learned one of its kind
    /// (when `[workers.learned] timeout`), else `workers.default_timeout`.
    pub(crate) fn attempt_timeout(&self, job: &Job) -> Duration {
        let policy = &self.workers.learned;
        if job.timeout.is_some() || !policy.timeout {
            return job.timeout.unwrap_or(self.workers.default_timeout);
        }
        let payload_bytes = serde_json::to_vec(&job.payload).map_or(0, |b| b.len() as u64);
        let key = DurationKey {
            kind: &job.kind,
            queue: &job.queue,
            payload_bytes,
        };
        policy.attempt_timeout(
            &self.models.lock().duration,
            key,
            None,
            self.workers.default_timeout,
        )
    }

    /// The lease length claims and renewals use now.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current()
    }

    /// How often held leases must be renewed at `now`.
    pub(crate) fn renew_every(&self, now: Millis) -> Duration {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .renew_every(now)
    }

    /// Moves the lease length to the learned one (`[workers.learned] lease`), never
    /// below three maintenance rounds (`round`), so a renewal is never late; called
    /// every maintenance round.
    pub(crate) fn learn_lease(&self, round: Duration, now: Millis) {
        let policy = &self.workers.learned;
        if !policy.lease {
            return;
        }
        let learned = {
            let models = self.models.lock();
            policy.lease_for(&models.duration, &self.workers.queues, self.workers.lease)
        };
        let learned = learned.max(round * 3);
        let mut lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if lease.adopt(learned, now) {
            tracing::info!(
                lease_ms = learned.as_millis() as u64,
                "lease length learned"
            );
        }
    }

    /// Emits the due wait-SLO warnings (a `queue.breach_predicted` event each, counted
    /// in the metrics); called every maintenance round.
    pub(crate) async fn warn_breaches(&self) {
        let policies = self.slo.get();
        if policies.is_empty() {
            return;
        }
        let now = self.now();
        let due = {
            let models = self.models.lock();
            let mut watch = self.slo.watch.lock().unwrap_or_else(|p| p.into_inner());
            watch.check(&models.congestion, &policies, now)
        };
        for w in due {
            let label = SloMetrics::label(&self.metrics, &w.queue);
            self.slo.metrics.breaches.get_or_create(&label).inc();
            self.slo
                .metrics
                .workers_advised
                .get_or_create(&label)
                .set(i64::from(w.more_workers));
            let advice = w.advice();
            tracing::warn!(queue = %w.queue, "{advice}");
            let event = LifecycleEvent::new(EventKind::QueueBreachPredicted, now)
                .node(self.node.clone())
                .detail(json!({
                    "queue": w.queue,
                    "wait_slo_ms": w.slo_ms,
                    "horizon_ms": w.horizon_ms,
                    "predicted_wait_ms": w.predicted_wait_ms.round(),
                    "workers": w.workers,
                    "more_workers": w.more_workers,
                    "advice": advice,
                }));
            self.events.emit(event).await;
        }
    }

    /// Admission control of a submit: defers (a later `run_at`) or refuses the
    /// low-priority jobs of queues whose breach is certain; `Err((index, reason))`
    /// names the first refused job.
    pub(crate) fn admit(&self, jobs: &mut [NewJob]) -> Result<(), (usize, String)> {
        let policies = self.slo.get();
        if policies.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let decisions: Vec<Admit> = {
            let models = self.models.lock();
            jobs.iter()
                .map(|job| match policies.get(&job.queue) {
                    Some(policy) => admit(
                        &models.congestion,
                        &job.queue,
                        policy,
                        job.priority,
                        job.run_at,
                        now,
                    ),
                    None => Admit::Accept,
                })
                .collect()
        };
        // One refused job refuses the batch: nothing is deferred then.
        let refused = decisions.iter().enumerate().find_map(|(i, d)| match d {
            Admit::Reject { reason } => Some((i, reason.clone())),
            _ => None,
        });
        if let Some((index, reason)) = refused {
            let label = SloMetrics::label(&self.metrics, &jobs[index].queue);
            self.slo.metrics.rejected.get_or_create(&label).inc();
            return Err((index, reason));
        }
        for (job, decision) in jobs.iter_mut().zip(decisions) {
            if let Admit::Defer { run_at } = decision {
                let label = SloMetrics::label(&self.metrics, &job.queue);
                self.slo.metrics.deferred.get_or_create(&label).inc();
                job.run_at = Some(run_at);
            }
        }
        Ok(())
    }
}
