//! What operators read of the saved models (`jobmesh predict show`, `GET
//! /api/v1/predictions`, the predicted wait beside queue counts, a job's ETA): plain
//! numbers computed from every node's saved [`Snapshot`] at one instant.
//!
//! Durations are the merge of every node's sketches. The failure score of a node is its
//! own model's. Retry posteriors, budgets and queue waits are shown per node, as each
//! node saved its own; a node's queue waits count the other nodes' workers as the node
//! does (see [`crate::predict::congestion`]); a queue's cluster-wide predicted wait is
//! the mean of the nodes' predictions (each node learned it from the jobs it took and
//! the backlog in the store, so each is an estimate of the same wait).
//!
//! The breach probability of a queue's wait SLO is `exp(-slo / predicted wait)`: the
//! wait of a job that has to wait is close to exponential in a busy multi-server queue
//! (exactly so in M/M/c), with the predicted wait as its mean. It says how sure the
//! alarm is; the model's own yes/no ([`CongestionPredictor::predict_breach`]) is shown
//! beside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::predict::congestion::{CongestionPredictor, FluidQueue};
use crate::predict::duration::{DurationKey, DurationPredictor, SketchDuration};
use crate::predict::failure::FailurePredictor;
use crate::store::SavedModels;

use super::persist::{Snapshot, adopt_fresh, decode};

/// Horizons of the predicted waits, in minutes from now.
pub const HORIZONS_MIN: [i64; 4] = [0, 1, 5, 15];

/// Times since a job's first failure at which retry success is shown (ms): the
/// lower bounds of the model's buckets under 10 s, 10-30 s, 1-2 min and 10-20 min.
pub const RETRY_AFTER_MS: [i64; 4] = [0, 10_000, 60_000, 600_000];

/// Payload size assumed when a prediction has none (durations split by size fall back
/// to the whole key for a size class with few runs).
const ANY_SIZE: u64 = 0;

/// One node's saved models, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// The node.
    pub node: String,
    /// When it last saved (ms since the epoch).
    pub saved_at_ms: i64,
    /// Its failure score now (0 = nothing unusual; the drain threshold is 1.6 by
    /// default).
    pub failure_score: f64,
    /// Why its models could not be read, when they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// Predicted run time of one (kind, queue), all nodes merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationView {
    /// Job kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Runs learned from (decay aside).
    pub runs: u64,
    /// Median (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
}

/// Retry outcomes of one (kind, error class) as one node learned them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryView {
    /// The node.
    pub node: String,
    /// Job kind.
    pub kind: String,
    /// Error class of the failure.
    pub error_class: String,
    /// Probability that the second attempt succeeds when it starts at each of
    /// [`RETRY_AFTER_MS`] after the first failure.
    pub p_success: Vec<f64>,
    /// Observations behind each of them.
    pub observations: Vec<f64>,
}

/// One kind's retry budget on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    /// The node.
    pub node: String,
    /// Job kind.
    pub kind: String,
    /// First attempts in the budget's window.
    pub first_attempts: f64,
    /// Retries in the window.
    pub retries: f64,
    /// Retries the budget allows in the window.
    pub allowed: f64,
}

/// One queue's predicted wait as one node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    /// The node.
    pub node: String,
    /// The queue.
    pub queue: String,
    /// Predicted wait (ms) of a job enqueued now and at each of [`HORIZONS_MIN`].
    pub wait_ms: Vec<f64>,
    /// Probability that such a job waits more than the SLO.
    pub breach_probability: Vec<f64>,
    /// The model's own verdict on a breach at each horizon.
    pub breach: Vec<bool>,
}

/// Every prediction the saved models give at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    /// The instant (ms since the epoch).
    pub at_ms: i64,
    /// The wait SLO the breach probabilities are about (ms).
    pub slo_ms: f64,
    /// Nodes that saved models, newest save first.
    pub nodes: Vec<NodeView>,
    /// Durations per (kind, queue), all nodes merged.
    pub durations: Vec<DurationView>,
    /// Retry success per node, kind and error class.
    pub retries: Vec<RetryView>,
    /// Retry budgets per node and kind.
    pub budgets: Vec<BudgetView>,
    /// Predicted waits per node and queue.
    pub queues: Vec<QueueView>,
}

/// When a job is predicted to start and finish.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eta {
    /// When it started (running) or is predicted to start (queued), ms since the epoch.
    pub start_at_ms: i64,
    /// When it is predicted to finish (the median run time after its start; never
    /// before now), ms since the epoch.
    pub finish_at_ms: i64,
    /// The predicted wait counted for a queued job (ms); absent for a running one.
    pub wait_ms: Option<f64>,
    /// Predicted run time, median (ms).
    pub run_p50_ms: f64,
    /// Predicted run time, 90th percentile (ms).
    pub run_p90_ms: f64,
}

/// `exp(-slo / wait)`: see the module's documentation.
pub fn breach_probability(wait_ms: f64, slo_ms: f64) -> f64 {
    if wait_ms.is_infinite() {
        return 1.0;
    }
    if wait_ms.is_nan() || wait_ms <= 0.0 {
        return 0.0;
    }
    (-slo_ms.max(0.0) / wait_ms).exp()
}

impl Predictions {
    /// The predictions of the saved `rows` at `now_ms`, breaches against `slo_ms`. Each
    /// node's failure score is the one it acts on: its own state against the other
    /// nodes' states saved within `peer_max_age_ms` (as it adopts them at each save
    /// round), not against itself alone.
    pub fn from_saved(
        rows: &[SavedModels],
        now_ms: i64,
        slo_ms: f64,
        peer_max_age_ms: i64,
    ) -> Self {
        let mut out = Predictions {
            at_ms: now_ms,
            slo_ms,
            nodes: Vec::new(),
            durations: Vec::new(),
            retries: Vec::new(),
            budgets: Vec::new(),
            queues: Vec::new(),
        };
        let mut durations: Option<SketchDuration> = None;
        let mut readable: Vec<(&SavedModels, Snapshot)> = Vec::with_capacity(rows.len());
        for row in rows {
            match decode(&row.body) {
                Ok(s) => readable.push((row, s)),
                Err(e) => out.nodes.push(NodeView {
                    node: row.node.clone(),
                    saved_at_ms: row.saved_at.0,
                    failure_score: 0.0,
                    unreadable: Some(e.to_string()),
                }),
            }
        }
        for (row, snap) in &readable {
            let mut failure = snap.failure.clone();
            adopt_fresh(&mut failure, &row.node, &readable, now_ms, peer_max_age_ms);
            let score = failure.score(&row.node, now_ms);
            // Each node's waits with the other nodes' workers, as the node itself has
            // them after a save round.
            let mut congestion = snap.congestion.clone();
            congestion.adopt_peers(
                readable
                    .iter()
                    .filter(|(r, _)| {
                        r.node != row.node && now_ms.saturating_sub(r.saved_at.0) <= peer_max_age_ms
                    })
                    .map(|(r, s)| (r.saved_at.0, &s.congestion)),
            );
            match &mut durations {
                None => durations = Some(snap.duration.clone()),
                Some(d) => {
                    if let Err(e) = d.merge(&snap.duration) {
                        tracing::warn!(node = %row.node, error = %e, "durations left out");
                    }
                }
            }
            out.add_node(&row.node, row.saved_at.0, snap, &congestion, score, now_ms);
        }
        out.nodes.sort_by(|a, b| a.node.cmp(&b.node));
        if let Some(d) = durations {
            out.durations = duration_views(&d, now_ms);
        }
        out.retries.sort_by(|a, b| {
            (&a.kind, &a.error_class, &a.node).cmp(&(&b.kind, &b.error_class, &b.node))
        });
        out.budgets
            .sort_by(|a, b| (&a.kind, &a.node).cmp(&(&b.kind, &b.node)));
        out.queues
            .sort_by(|a, b| (&a.queue, &a.node).cmp(&(&b.queue, &b.node)));
        out
    }

    fn add_node(
        &mut self,
        node: &str,
        saved_at_ms: i64,
        snap: &Snapshot,
        congestion: &FluidQueue,
        failure_score: f64,
        now_ms: i64,
    ) {
        self.nodes.push(NodeView {
            node: node.to_owned(),
            saved_at_ms,
            failure_score,
            unreadable: None,
        });
        for (kind, class) in snap.retry.keys() {
            let (p, n): (Vec<f64>, Vec<f64>) = RETRY_AFTER_MS
                .iter()
                .map(|after| {
                    snap.retry
                        .success_probability(kind, class, 2, *after)
                        .unwrap_or((0.5, 0.0))
                })
                .unzip();
            self.retries.push(RetryView {
                node: node.to_owned(),
                kind: kind.to_owned(),
                error_class: class.to_owned(),
                p_success: p,
                observations: n,
            });
        }
        for kind in snap.retry.budget_kinds() {
            if let Some(b) = snap.retry.budget_use(kind, now_ms) {
                self.budgets.push(BudgetView {
                    node: node.to_owned(),
                    kind: kind.to_owned(),
                    first_attempts: b.firsts,
                    retries: b.retries,
                    allowed: b.allowed,
                });
            }
        }
        for queue in congestion.queues() {
            let waits: Vec<Option<f64>> = HORIZONS_MIN
                .iter()
                .map(|m| congestion.predict_wait(queue, now_ms, m * 60_000))
                .collect();
            if waits.iter().any(Option::is_none) {
                // Nothing finished on it yet: no service time, no prediction.
                continue;
            }
            let wait_ms: Vec<f64> = waits.into_iter().flatten().collect();
            self.queues.push(QueueView {
                node: node.to_owned(),
                queue: queue.to_owned(),
                breach_probability: wait_ms
                    .iter()
                    .map(|w| breach_probability(*w, self.slo_ms))
                    .collect(),
                breach: HORIZONS_MIN
                    .iter()
                    .map(|m| congestion.predict_breach(queue, now_ms, m * 60_000, self.slo_ms))
                    .collect(),
                wait_ms,
            });
        }
    }

    /// A queue's predicted wait now (ms): the mean over the nodes that predict it.
    pub fn queue_wait_ms(&self, queue: &str) -> Option<f64> {
        let v: Vec<f64> = self
            .queues
            .iter()
            .filter(|q| q.queue == queue)
            .filter_map(|q| q.wait_ms.first().copied())
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// The predicted run time of (kind, queue), all nodes merged.
    pub fn duration(&self, kind: &str, queue: &str) -> Option<&DurationView> {
        self.durations
            .iter()
            .find(|d| d.kind == kind && d.queue == queue)
    }

    /// The breach probabilities and verdicts against another SLO (the model's verdict is
    /// "the predicted wait exceeds the SLO", so both follow from the waits).
    pub fn with_slo(mut self, slo_ms: f64) -> Self {
        self.slo_ms = slo_ms;
        for q in &mut self.queues {
            q.breach_probability = q
                .wait_ms
                .iter()
                .map(|w| breach_probability(*w, slo_ms))
                .collect();
            q.breach = q.wait_ms.iter().map(|w| *w > slo_ms).collect();
        }
        self
    }

    /// The ETA of `job` at `now_ms`: a running job (started at `running_since`)
    /// finishes a median run time after its start; a queued one (available, scheduled
    /// or retryable) starts after its queue's predicted wait once due, then runs.
    /// `None` when its kind and queue have no predicted run time, it is in another
    /// state, or it runs and its start is unknown.
    pub fn eta(
        &self,
        job: &crate::job::Job,
        running_since: Option<i64>,
        now_ms: i64,
    ) -> Option<Eta> {
        use crate::job::JobState;
        let d = self.duration(&job.kind, &job.queue)?;
        let (start, wait) = match job.state {
            JobState::Running => (running_since?, None),
            JobState::Available | JobState::Scheduled | JobState::Retryable => {
                let wait = self.queue_wait_ms(&job.queue).unwrap_or(0.0);
                let due = job.run_at.0.max(now_ms);
                (due + wait as i64, Some(wait))
            }
            _ => return None,
        };
        Some(Eta {
            start_at_ms: start,
            finish_at_ms: (start + d.p50_ms as i64).max(now_ms),
            wait_ms: wait,
            run_p50_ms: d.p50_ms,
            run_p90_ms: d.p90_ms,
        })
    }

    /// Keeps only what concerns the queues `allowed` lets through (a queue-limited
    /// token's view); node scores stay (they name no queue).
    pub fn retain_queues(&mut self, allowed: impl Fn(&str) -> bool) {
        self.durations.retain(|d| allowed(&d.queue));
        self.queues.retain(|q| allowed(&q.queue));
        // Retry posteriors and budgets are per kind, and kinds span queues: a
        // queue-limited caller sees the kinds of its queues only.
        let kinds: std::collections::HashSet<String> =
            self.durations.iter().map(|d| d.kind.clone()).collect();
        self.retries.retain(|r| kinds.contains(&r.kind));
        self.budgets.retain(|b| kinds.contains(&b.kind));
    }
}

fn duration_views(d: &SketchDuration, now_ms: i64) -> Vec<DurationView> {
    let mut keys: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (kind, queue, runs) in d.keys() {
        keys.insert((kind.to_owned(), queue.to_owned()), runs);
    }
    keys.into_iter()
        .filter_map(|((kind, queue), runs)| {
            let q = d.predict(
                DurationKey {
                    kind: &kind,
                    queue: &queue,
                    payload_bytes: ANY_SIZE,
                },
                now_ms,
            )?;
            Some(DurationView {
                kind,
                queue,
                runs,
                p50_ms: q.p50,
                p90_ms: q.p90,
                p99_ms: q.p99,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::job::{Completion, JobId, Lease, LeaseToken, NodeId, Outcome, WorkerId};
    use crate::predict::live::persist::encode;
    use crate::predict::live::{FeedState, LiveModels, feed};

    fn node_row(node: &str, run_ms: i64) -> SavedModels {
        let mut m = LiveModels::default();
        let mut f = FeedState::new(node, m.duration.clone());
        for i in 0..50 {
            let t = i * 10_000;
            feed::started(&mut m, &mut f, &feed::tests::job(i, 1, t, t, None), t + 100);
            let c = Completion {
                lease: Lease {
                    job: JobId(i),
                    token: LeaseToken(1),
                    worker: WorkerId(format!("{node}/w0")),
                    node: NodeId(node.into()),
                    attempt: 1,
                    expires_at: Millis(t + 60_000),
                },
                outcome: Outcome::Succeeded { output: None },
                started_at: Millis(t + 100),
                finished_at: Millis(t + 100 + run_ms),
            };
            feed::finished(&mut m, &mut f, &c, true);
        }
        SavedModels {
            node: node.into(),
            saved_at: Millis(500_000),
            body: encode(&m, &f, 500_000),
        }
    }

    #[test]
    fn predictions_merge_durations_and_keep_nodes_apart() {
        let rows = vec![
            node_row("a", 100),
            node_row("b", 100),
            SavedModels {
                node: "c".into(),
                saved_at: Millis(1),
                body: vec![7],
            },
        ];
        let p = Predictions::from_saved(&rows, 500_000, 30_000.0, i64::MAX);
        assert_eq!(p.nodes.len(), 3);
        assert!(
            p.nodes[2]
                .unreadable
                .as_deref()
                .unwrap()
                .contains("format 7")
        );
        let d = p.duration("email.send", "mail").expect("merged durations");
        assert_eq!(d.runs, 100, "both nodes' runs");
        assert!((d.p50_ms - 100.0).abs() < 5.0, "{d:?}");
        assert_eq!(p.queues.len(), 2, "one wait per node");
        assert_eq!(p.queues[0].wait_ms.len(), HORIZONS_MIN.len());
        assert!(p.queue_wait_ms("mail").unwrap() < 1_000.0);
        assert_eq!(p.budgets.len(), 2);
        let mut limited = p.clone();
        limited.retain_queues(|q| q == "other");
        assert!(limited.durations.is_empty() && limited.queues.is_empty());
        assert!(limited.budgets.is_empty());
        assert_eq!(limited.nodes.len(), 3);
    }

    #[test]
    fn etas_of_queued_and_running_jobs() {
        let p = Predictions::from_saved(&[node_row("a", 100)], 500_000, 30_000.0, i64::MAX);
        let mut j = feed::tests::job(1, 1, 0, 0, None);
        let running = p.eta(&j, Some(499_950), 500_000).unwrap();
        assert_eq!(running.start_at_ms, 499_950);
        assert!((running.finish_at_ms - 500_050).abs() <= 5, "{running:?}");
        assert_eq!(
            p.eta(&j, None, 500_000),
            None,
            "a running job's start is needed"
        );
        j.state = crate::job::JobState::Scheduled;
        j.run_at = Millis(600_000);
        let queued = p.eta(&j, None, 500_000).unwrap();
        assert!(queued.start_at_ms >= 600_000 && queued.wait_ms.is_some());
        assert!(queued.finish_at_ms > queued.start_at_ms);
        j.state = crate::job::JobState::Succeeded;
        assert_eq!(p.eta(&j, None, 500_000), None);
        j.state = crate::job::JobState::Available;
        j.kind = "unknown".into();
        assert_eq!(p.eta(&j, None, 500_000), None);
        // Another SLO: every wait here is short, nothing breaches a tiny one... unless
        // it is below the wait.
        let strict = p.clone().with_slo(0.0001);
        let w = strict.queues[0].wait_ms[0];
        assert_eq!(strict.queues[0].breach[0], w > 0.0001);
    }

    #[test]
    fn breach_probability_grows_with_the_wait() {
        assert_eq!(breach_probability(0.0, 30_000.0), 0.0);
        assert_eq!(breach_probability(f64::INFINITY, 30_000.0), 1.0);
        let low = breach_probability(3_000.0, 30_000.0);
        let high = breach_probability(60_000.0, 30_000.0);
        assert!(low < 0.001 && high > 0.5, "{low} {high}");
    }
}
