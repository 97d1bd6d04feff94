//! The feed: what a node's own lifecycle (an attempt handed to a worker, an attempt's
//! applied completion, a lease renewal, a worker restart, store errors) teaches its
//! live models, online,
//! as it happens (no second pass over the store).
//!
//! Each mapping is a plain function of the models, the feed's small memory of attempts
//! in flight ([`FeedState`]) and the event, so it is tested without a node; the actors
//! only call [`LiveFeed`]'s methods where the event happens.
//!
//! What the node cannot see it does not make up: the congestion model learns a job's
//! wait when this node takes it (from the time it became available, so it is exact),
//! and how many jobs wait from the store, which the node reads every second
//! ([`FluidQueue::set_backlog`](crate::predict::congestion::FluidQueue::set_backlog)),
//! not from enqueues other processes made; a retry's time since the job's
//! first failure is exact when the failure happened here and counted from the job's
//! creation otherwise (an upper bound); heartbeats are the mesh's business and are not
//! fed (a heartbeat fed once and then never again would read as a silent node), but
//! the phi the mesh's voter computes for each member it observes is ([`phi`]), as is
//! the node's own host, sampled every few seconds ([`host`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::job::{Completion, Job, Outcome};
use crate::predict::congestion::CongestionPredictor;
use crate::predict::duration::{DurationKey, DurationPredictor, SketchDuration};
use crate::predict::failure::{FailurePredictor, NodeSignal};
use crate::predict::retry::RetryPredictor;
use crate::predict::trace::error_class;

use super::host::HostSample;
use super::{LiveModels, SharedModels};

/// Most attempts remembered between start and finish, and most jobs remembered between
/// a failure and their next attempt: past it the oldest half is forgotten (an attempt
/// whose node died never finishes here, so the memory must not grow with them).
pub const MAX_REMEMBERED: usize = 65_536;

/// Store errors fed per call at most: a burst of errors is one incident, and the score
/// must not jump past every threshold because a pool retried in a tight loop.
pub const MAX_STORE_ERRORS_PER_TICK: u64 = 16;

/// Lease renewals faster than this (ms) count as this fast: the failure model compares
/// a node's renewal latency with its peers' as a ratio, and among fast renewals a ratio
/// says nothing of a node's health (1 ms against 5 ms is noise on a local store, not a
/// node five times slower). 15 ms is the healthy latency the model was tuned on (the
/// generated traces'); a node renewing in 200 ms while its peers take 15 scores above
/// the drain threshold on this signal alone.
pub const RENEW_FLOOR_MS: f64 = 15.0;

/// What the feed remembers of an attempt between its start and its finish.
#[derive(Debug, Clone)]
struct Started {
    kind: String,
    queue: String,
    payload_bytes: u64,
    /// Class of the error that ended the previous attempt (attempts after a failure).
    previous_class: Option<String>,
    /// When the job first failed, where known.
    first_failure_ms: Option<i64>,
    started_ms: i64,
    /// The node's lease renewals (count, total ms) when it started.
    renewals: (u64, f64),
}

/// The feed's memory: attempts running here, when each job failed first, and the node's
/// own duration sketches (the shared model's durations are these merged with the other
/// nodes' saved ones; only these are saved, so nothing is counted twice).
#[derive(Debug, Clone)]
pub struct FeedState {
    node: String,
    running: HashMap<i64, Started>,
    first_failures: HashMap<i64, i64>,
    /// The node's lease renewal calls so far: how many, and their total latency (ms).
    renewals: (u64, f64),
    /// This node's own duration model.
    pub own_duration: SketchDuration,
}

impl FeedState {
    /// An empty memory for node `node`, resuming `own_duration`.
    pub fn new(node: impl Into<String>, own_duration: SketchDuration) -> Self {
        Self {
            node: node.into(),
            running: HashMap::new(),
            first_failures: HashMap::new(),
            renewals: (0, 0.0),
            own_duration,
        }
    }

    /// The node the feed speaks for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Attempts remembered as running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// When job `job` first failed, if its failure was applied here and it has not
    /// finished since: the time its retries' "time since the first failure" is
    /// learned from.
    pub fn first_failure(&self, job: i64) -> Option<i64> {
        self.first_failures.get(&job).copied()
    }
}

/// Forgets the oldest half of `map` (by the time `at` gives) when it is full.
fn bound<V>(map: &mut HashMap<i64, V>, at: impl Fn(&V) -> i64) {
    if map.len() < MAX_REMEMBERED {
        return;
    }
    let mut times: Vec<i64> = map.values().map(&at).collect();
    let mid = times.len() / 2;
    let (_, cut, _) = times.select_nth_unstable(mid);
    let cut = *cut;
    map.retain(|_, v| at(v) > cut);
}

/// Bytes of a job's payload as JSON, counted without building the text.
pub fn payload_bytes(payload: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, payload);
    c.0
}

/// An attempt of `job` was handed to a worker at `now_ms`: the job arrived on its queue
/// when it became available and waited until now; a first attempt counts toward its
/// kind's retry budget.
pub fn started(m: &mut LiveModels, f: &mut FeedState, job: &Job, now_ms: i64) {
    let available = job.run_at.0.max(job.created_at.0).min(now_ms);
    m.congestion.on_taken(&job.queue, available, now_ms);
    if job.attempt <= 1 {
        m.retry.observe_first(&job.kind, now_ms);
    }
    let previous_class = (job.attempt > 1)
        .then(|| job.last_error.as_deref().map(error_class))
        .flatten();
    let first_failure_ms = previous_class.as_ref().map(|_| {
        f.first_failures
            .get(&job.id.0)
            .copied()
            .unwrap_or(job.created_at.0)
    });
    bound(&mut f.running, |s| s.started_ms);
    f.running.insert(
        job.id.0,
        Started {
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            payload_bytes: payload_bytes(&job.payload),
            previous_class,
            first_failure_ms,
            started_ms: now_ms,
            renewals: f.renewals,
        },
    );
}

/// The node renewed its leases in one store call that took `latency_ms`.
pub fn renewed(f: &mut FeedState, latency_ms: f64) {
    if latency_ms.is_finite() && latency_ms >= 0.0 {
        f.renewals.0 += 1;
        f.renewals.1 += latency_ms;
    }
}

/// The mean latency (ms) of the renewals made between `since` and `now` (the node's
/// renewal counts at two times), if there were any, at least [`RENEW_FLOOR_MS`].
fn renew_mean(since: (u64, f64), now: (u64, f64)) -> Option<f64> {
    let n = now.0.checked_sub(since.0).filter(|n| *n > 0)?;
    Some(((now.1 - since.1).max(0.0) / n as f64).max(RENEW_FLOOR_MS))
}

/// The store applied `c`: the attempt's run time, outcome and error teach every model.
/// A completion the store refused (stale lease) is passed with `applied = false`: it
/// only ends the attempt's memory (someone else's record holds what happened).
pub fn finished(m: &mut LiveModels, f: &mut FeedState, c: &Completion, applied: bool) {
    let job = c.lease.job.0;
    let Some(s) = f.running.remove(&job) else {
        return;
    };
    if !applied {
        return;
    }
    let (start, end) = (c.started_at.0, c.finished_at.0.max(c.started_at.0));
    let run_ms = (end - start) as f64;
    m.congestion.on_finish(&s.queue, end, run_ms);
    let (succeeded, error) = match &c.outcome {
        Outcome::Succeeded { .. } => (true, None),
        Outcome::Retry { error, .. } | Outcome::Discard { error } => (false, Some(error)),
        // Neither says how the work goes: a cancel cuts it short, a snooze gives the
        // attempt back.
        Outcome::Cancelled { .. } | Outcome::Snoozed { .. } => {
            f.first_failures.remove(&job);
            return;
        }
    };
    let class = error.map(|e| error_class(e));
    if succeeded {
        let key = DurationKey {
            kind: &s.kind,
            queue: &s.queue,
            payload_bytes: s.payload_bytes,
        };
        m.duration.observe(key, end, run_ms);
        f.own_duration.observe(key, end, run_ms);
    }
    m.failure.observe(
        &f.node,
        end,
        NodeSignal::Attempt {
            kind: &s.kind,
            failed: !succeeded,
            timed_out: class.as_deref() == Some("timeout"),
            duration_ms: run_ms,
            // The renewals made while it ran (each call renews every lease held here).
            renew_ms: renew_mean(s.renewals, f.renewals),
        },
    );
    if let (Some(prev), Some(first)) = (&s.previous_class, s.first_failure_ms) {
        m.retry.observe_retry(
            &s.kind,
            prev,
            c.lease.attempt,
            (start - first).max(0),
            succeeded,
            end,
        );
    }
    match &c.outcome {
        Outcome::Retry { .. } => {
            bound(&mut f.first_failures, |t| *t);
            f.first_failures.entry(job).or_insert(end);
        }
        _ => {
            f.first_failures.remove(&job);
        }
    }
}

/// A worker of this node crashed and was restarted at `now_ms`.
pub fn restarted(m: &mut LiveModels, f: &FeedState, now_ms: i64) {
    m.failure.observe(&f.node, now_ms, NodeSignal::Restart);
}

/// `n` store calls of this node failed (outages, conflicts, corrupt rows) since the last
/// call; at most [`MAX_STORE_ERRORS_PER_TICK`] count.
pub fn store_errors(m: &mut LiveModels, f: &FeedState, n: u64, now_ms: i64) {
    for _ in 0..n.min(MAX_STORE_ERRORS_PER_TICK) {
        m.failure.observe(&f.node, now_ms, NodeSignal::StoreError);
    }
}

/// The node's host was sampled at `now_ms` (see [`super::host::read_sample`]).
pub fn host(m: &mut LiveModels, f: &FeedState, sample: HostSample, now_ms: i64) {
    if sample.load_per_core.is_none() && sample.memory_used.is_none() {
        return;
    }
    let signal = NodeSignal::Host {
        load_per_core: sample.load_per_core,
        memory_used: sample.memory_used,
    };
    m.failure.observe(&f.node, now_ms, signal);
}

/// This node's voter computed `phi` for member `node` at `now_ms`. (The node's own name
/// is refused: no node observes itself.)
pub fn phi(m: &mut LiveModels, f: &FeedState, node: &str, phi: f64, now_ms: i64) {
    if node != f.node {
        m.failure.observe(node, now_ms, NodeSignal::Phi { phi });
    }
}

/// The feed of one node: its [`SharedModels`] and the feed's memory, cloned into every
/// actor that sees an event. Locks the memory, then the models (always in that order),
/// for one event at a time. A feed that is off (`[predict] feed = false`) takes no
/// lock and teaches nothing.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    models: SharedModels,
    state: Arc<Mutex<FeedState>>,
    on: bool,
}

impl LiveFeed {
    /// A feed for `node` into `models`, resuming the node's own durations.
    pub fn new(models: SharedModels, state: FeedState) -> Self {
        Self {
            models,
            state: Arc::new(Mutex::new(state)),
            on: true,
        }
    }

    /// A feed that is off: every event is ignored, the models stay as they are.
    pub fn off(models: SharedModels, state: FeedState) -> Self {
        Self {
            on: false,
            ..Self::new(models, state)
        }
    }

    /// Whether the feed teaches the models.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The models fed.
    pub fn models(&self) -> &SharedModels {
        &self.models
    }

    /// The feed's memory, locked (for saving the node's own durations).
    pub fn state(&self) -> MutexGuard<'_, FeedState> {
        // Plain numbers and maps: a panic while held leaves nothing worth stopping for.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`started`].
    pub fn started(&self, job: &Job, now_ms: i64) {
        if !self.on {
            return;
        }
        let mut f = self.state();
        started(&mut self.models.lock(), &mut f, job, now_ms);
    }

    /// See [`finished`].
    pub fn finished(&self, c: &Completion, applied: bool) {
        if !self.on {
            return;
        }
        let mut f = self.state();
        finished(&mut self.models.lock(), &mut f, c, applied);
    }

    /// The store read at `at_ms` that `waiting` jobs wait on `queue`, the oldest
    /// available since `oldest_ms` (see
    /// [`FluidQueue::set_backlog`](crate::predict::congestion::FluidQueue::set_backlog)).
    pub fn backlog(&self, queue: &str, waiting: u64, oldest_ms: Option<i64>, at_ms: i64) {
        if !self.on {
            return;
        }
        self.models
            .lock()
            .congestion
            .set_backlog(queue, waiting, oldest_ms, at_ms);
    }

    /// See [`renewed`].
    pub fn renewed(&self, latency_ms: f64) {
        if !self.on {
            return;
        }
        renewed(&mut self.state(), latency_ms);
    }

    /// See [`restarted`].
    pub fn restarted(&self, now_ms: i64) {
        if !self.on {
            return;
        }
        let f = self.state();
        restarted(&mut self.models.lock(), &f, now_ms);
    }

    /// See [`host`].
    pub fn host(&self, sample: HostSample, now_ms: i64) {
        if !self.on {
            return;
        }
        let f = self.state();
        host(&mut self.models.lock(), &f, sample, now_ms);
    }

    /// See [`phi`]: one sample per member observed, under one lock.
    pub fn phi<'a>(&self, samples: impl IntoIterator<Item = (&'a str, f64)>, now_ms: i64) {
        if !self.on {
            return;
        }
        let f = self.state();
        let mut m = self.models.lock();
        for (node, p) in samples {
            phi(&mut m, &f, node, p, now_ms);
        }
    }

    /// See [`store_errors`].
    pub fn store_errors(&self, n: u64, now_ms: i64) {
        if n == 0 || !self.on {
            return;
        }
        let f = self.state();
        store_errors(&mut self.models.lock(), &f, n, now_ms);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::job::{JobId, JobState, Lease, LeaseToken, NodeId, WorkerId};
    use crate::predict::duration::SketchSettings;

    /// A running job of kind `email.send` on queue `mail`.
    pub(crate) fn job(
        id: i64,
        attempt: u32,
        created: i64,
        run_at: i64,
        last_error: Option<&str>,
    ) -> Job {
        Job {
            id: JobId(id),
            queue: "mail".into(),
            kind: "email.send".into(),
            payload: serde_json::json!({"to": "x"}),
            priority: Default::default(),
            state: JobState::Running,
            attempt,
            max_attempts: 25,
            run_at: Millis(run_at),
            created_at: Millis(created),
            finished_at: None,
            timeout: None,
            unique_key: None,
            lease_token: LeaseToken(1),
            lease_owner: None,
            lease_node: None,
            lease_expires_at: None,
            last_error: last_error.map(str::to_owned),
            output: None,
            depends_on: Vec::new(),
            on_parent_failure: Default::default(),
            progress: None,
            snoozes: 0,
        }
    }

    fn done(id: i64, attempt: u32, start: i64, end: i64, outcome: Outcome) -> Completion {
        Completion {
            lease: Lease {
                job: JobId(id),
                token: LeaseToken(1),
                worker: WorkerId("n1/w0".into()),
                node: NodeId("n1".into()),
                attempt,
                expires_at: Millis(end + 30_000),
            },
            outcome,
            started_at: Millis(start),
            finished_at: Millis(end),
        }
    }

    fn ok() -> Outcome {
        Outcome::Succeeded { output: None }
    }

    fn fresh() -> (LiveModels, FeedState) {
        (
            LiveModels::default(),
            FeedState::new("n1", SketchDuration::new(SketchSettings::default())),
        )
    }

    #[test]
    fn succeeded_attempts_teach_durations_waits_and_the_budget() {
        let (mut m, mut f) = fresh();
        for i in 0..200 {
            let t = i * 1_000;
            started(&mut m, &mut f, &job(i, 1, t, t, None), t + 50);
            finished(&mut m, &mut f, &done(i, 1, t + 50, t + 250, ok()), true);
        }
        let key = DurationKey {
            kind: "email.send",
            queue: "mail",
            payload_bytes: 12,
        };
        let q = m.duration.predict(key, 200_000).expect("learned");
        assert!((q.p50 - 200.0).abs() < 10.0, "{q:?}");
        // The node's own copy learned the same.
        let own = f.own_duration.predict(key, 200_000).expect("own");
        assert_eq!(own, q);
        let wait = m.congestion.predict_wait("mail", 200_000, 0).expect("wait");
        assert!(wait < 100.0, "{wait}");
        let budget = m.retry.budget_use("email.send", 200_000).expect("budget");
        assert!(budget.firsts > 0.0);
        assert_eq!(f.running(), 0);
        assert_eq!(m.failure.score("n1", 200_000), 0.0);
    }

    #[test]
    fn failures_and_retries_teach_the_retry_posterior_from_the_first_failure() {
        let (mut m, mut f) = fresh();
        let fail = || Outcome::Retry {
            error: "smtp unavailable: 10.0.0.1:25".into(),
            run_at: Millis(0),
        };
        for i in 0..40 {
            let t = i * 100_000;
            started(&mut m, &mut f, &job(i, 1, t, t, None), t);
            finished(&mut m, &mut f, &done(i, 1, t, t + 10, fail()), true);
            // The retry 60 s after the first failure succeeds.
            let retry = job(i, 2, t, t + 60_010, Some("smtp unavailable: 10.0.0.1:25"));
            started(&mut m, &mut f, &retry, t + 60_010);
            finished(
                &mut m,
                &mut f,
                &done(i, 2, t + 60_010, t + 60_020, ok()),
                true,
            );
        }
        let (p, n) = m
            .retry
            .success_probability("email.send", "smtp_unavailable", 2, 60_000)
            .expect("learned");
        assert!(n > 30.0 && p > 0.9, "{p} {n}");
        // Nothing learned about retries soon after the failure.
        let (_, n_soon) = m
            .retry
            .success_probability("email.send", "smtp_unavailable", 2, 1_000)
            .expect("key known");
        assert_eq!(n_soon, 0.0);
        assert!(f.first_failures.is_empty(), "succeeded jobs are forgotten");
    }

    #[test]
    fn a_retry_that_failed_elsewhere_counts_from_the_job_creation() {
        let (mut m, mut f) = fresh();
        // Attempt 2 of a job whose first failure this node never saw.
        let j = job(7, 2, 1_000, 400_000, Some("HTTP 503 from upstream"));
        started(&mut m, &mut f, &j, 401_000);
        finished(&mut m, &mut f, &done(7, 2, 401_000, 401_100, ok()), true);
        let (_, n) = m
            .retry
            .success_probability("email.send", "http_503_from_upstream", 2, 400_000)
            .expect("learned");
        assert_eq!(n, 1.0);
    }

    #[test]
    fn timeouts_restarts_and_store_errors_raise_the_node_score() {
        let (mut m, mut f) = fresh();
        restarted(&mut m, &f, 0);
        let after_restart = m.failure.score("n1", 0);
        assert!(after_restart > 0.0);
        store_errors(&mut m, &f, 1_000, 0);
        let after_errors = m.failure.score("n1", 0);
        let cap = MAX_STORE_ERRORS_PER_TICK as f64;
        assert!(after_errors > after_restart && after_errors < after_restart + cap);
        started(&mut m, &mut f, &job(1, 1, 0, 0, None), 0);
        let timeout = Outcome::Retry {
            error: "handler timed out after 30s".into(),
            run_at: Millis(0),
        };
        finished(&mut m, &mut f, &done(1, 1, 0, 30_000, timeout), true);
        assert_eq!(f.first_failure(1), Some(30_000));
        // A failed attempt teaches no duration.
        let key = DurationKey {
            kind: "email.send",
            queue: "mail",
            payload_bytes: 12,
        };
        assert_eq!(m.duration.predict(key, 0), None);
    }

    #[test]
    fn slow_lease_renewals_while_attempts_run_raise_the_node_score_against_its_peers() {
        // Three nodes run the same attempts; n1's renewals take 500 ms, the others' 5 ms.
        let run = |node: &str, renew_ms: f64| {
            let mut m = LiveModels::default();
            let mut f = FeedState::new(node, SketchDuration::new(SketchSettings::default()));
            for i in 0..50 {
                let t = i * 1_000;
                started(&mut m, &mut f, &job(i, 1, t, t, None), t);
                renewed(&mut f, renew_ms);
                finished(&mut m, &mut f, &done(i, 1, t, t + 200, ok()), true);
            }
            (m, f)
        };
        let (mut a, fa) = run("n1", 500.0);
        let saved: Vec<_> = ["n2", "n3"]
            .into_iter()
            .map(|node| {
                let (b, fb) = run(node, 5.0);
                crate::store::SavedModels {
                    node: node.into(),
                    saved_at: Millis(50_000),
                    body: crate::predict::live::persist::encode(&b, &fb, 50_000),
                }
            })
            .collect();
        crate::predict::live::persist::from_peers(
            &mut a,
            &fa.own_duration,
            "n1",
            &saved,
            50_000,
            60_000,
        );
        assert!(
            a.failure.score("n1", 50_000) > 1.0,
            "{}",
            a.failure.score("n1", 50_000)
        );
        // An attempt during which no renewal was made says nothing of them.
        assert_eq!(renew_mean((3, 30.0), (3, 30.0)), None);
        assert_eq!(renew_mean((3, 30.0), (5, 130.0)), Some(50.0));
        assert_eq!(renew_mean((3, 30.0), (5, 32.0)), Some(RENEW_FLOOR_MS));
    }

    #[test]
    fn host_samples_and_phi_reach_the_failure_model() {
        let (mut m, f) = fresh();
        // A sample with nothing in it (no /proc) teaches nothing.
        host(&mut m, &f, HostSample::default(), 0);
        assert_eq!(m.failure.nodes().count(), 0);
        let sample = HostSample {
            load_per_core: Some(0.3),
            memory_used: Some(0.4),
        };
        host(&mut m, &f, sample, 0);
        assert_eq!(m.failure.nodes().collect::<Vec<_>>(), ["n1"]);
        for t in 0..60 {
            for (n, p) in [("n2", 5.0), ("n3", 0.1), ("n4", 0.1), ("n1", 9.0)] {
                phi(&mut m, &f, n, p, t * 1_000);
            }
        }
        assert!(m.failure.score("n2", 60_000) > 1.6);
        assert_eq!(m.failure.score("n3", 60_000), 0.0);
        assert_eq!(
            m.failure.score("n1", 60_000),
            0.0,
            "its own name is refused"
        );
        assert_eq!(m.failure.vitals().observed().count(), 3);
    }

    #[test]
    fn refused_and_unknown_completions_teach_nothing() {
        let (mut m, mut f) = fresh();
        started(&mut m, &mut f, &job(1, 1, 0, 0, None), 0);
        finished(&mut m, &mut f, &done(1, 1, 0, 100, ok()), false);
        finished(&mut m, &mut f, &done(2, 1, 0, 100, ok()), true);
        assert_eq!(f.running(), 0);
        assert!(m.duration.keys().next().is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let (mut m, mut f) = fresh();
        for i in 0..(MAX_REMEMBERED as i64 + 10) {
            started(&mut m, &mut f, &job(i, 1, i, i, None), i);
        }
        assert!(f.running() <= MAX_REMEMBERED);
        assert!(f.running() > MAX_REMEMBERED / 4);
    }

    #[test]
    fn payload_bytes_counts_the_json_text() {
        let v = serde_json::json!({"to": "x"});
        assert_eq!(
            payload_bytes(&v),
            serde_json::to_string(&v).unwrap().len() as u64
        );
    }
}
