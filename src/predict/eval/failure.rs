//! Failure replay: a node "fails" where the trace shows it losing attempts (a `lost`
//! record; losses within a minute are one failure) and is back at its next start.
//! Every second each live node's heartbeat is fed to the predictors, then each node's
//! drain decision is read; finished attempts are fed as they finish.
//!
//! Scored after the split: the lead time (how long before a failure the node was
//! continuously draining; negative when it was caught only after, e.g. a heartbeat
//! timeout), false drains (a drain starting on a live node with no failure of that node
//! within ten minutes) per node-hour, and precision and recall at 5 s and 30 s lead (a
//! failure is caught at lead L when the node was draining L before it; a drain is a
//! true alarm at lead L when the node fails between L and ten minutes after it starts).

use std::collections::{BTreeMap, BTreeSet};

use super::plot::{Panel, Series};
use super::{Better, EvalOptions, Metric, Row, Table};
use crate::predict::failure::{
    FailurePredictor, HeartbeatTimeout, NodeScore, NodeSignal, ScoreSettings,
};
use crate::predict::trace::{TraceOutcome, TraceRecord};

/// A drain is a true alarm only if the failure comes within this.
const HORIZON_MS: i64 = 600_000;
/// Lost attempts this close together are one failure.
const SAME_FAILURE_MS: i64 = 60_000;
const TICK_MS: i64 = 1_000;
const LEADS_MS: [i64; 2] = [5_000, 30_000];

/// The model and the baseline.
pub fn lineup(opts: EvalOptions) -> Vec<(Box<dyn FailurePredictor>, &'static str)> {
    vec![
        (
            Box::new(NodeScore::new(ScoreSettings {
                heartbeat_timeout_ms: opts.heartbeat_timeout_ms,
                ..ScoreSettings::default()
            })),
            "model",
        ),
        (
            Box::new(HeartbeatTimeout::new(opts.heartbeat_timeout_ms)),
            "baseline",
        ),
    ]
}

/// Failures per node, and when each node is down (failure, back).
struct Ground {
    failures: BTreeMap<String, Vec<i64>>,
    down: BTreeMap<String, Vec<(i64, i64)>>,
    first_seen: BTreeMap<String, i64>,
}

fn ground(records: &[TraceRecord]) -> Ground {
    let mut lost: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut starts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        if r.outcome == TraceOutcome::Lost {
            lost.entry(r.node.clone()).or_default().push(r.finished_at);
        }
        starts.entry(r.node.clone()).or_default().push(r.started_at);
    }
    let mut failures: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut down: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (node, mut times) in lost {
        times.sort_unstable();
        let s = starts.get_mut(&node).expect("a lost attempt started");
        s.sort_unstable();
        let mut last: Option<i64> = None;
        for t in times {
            if last.is_none_or(|l| t - l > SAME_FAILURE_MS) {
                failures.entry(node.clone()).or_default().push(t);
                let i = s.partition_point(|x| *x <= t);
                let back = s.get(i).copied().unwrap_or(i64::MAX);
                down.entry(node.clone()).or_default().push((t, back));
            }
            last = Some(t);
        }
    }
    let first_seen = starts
        .iter()
        .map(|(n, s)| (n.clone(), s.iter().copied().min().unwrap_or(0)))
        .collect();
    Ground {
        failures,
        down,
        first_seen,
    }
}

impl Ground {
    fn alive(&self, node: &str, t: i64) -> bool {
        self.first_seen.get(node).is_some_and(|f| t >= *f)
            && !self
                .down
                .get(node)
                .is_some_and(|d| d.iter().any(|(a, b)| t >= *a && t < *b))
    }
}

/// Replays the trace through `lineup` and scores it after `split_at`.
pub fn run(
    records: &[TraceRecord],
    split_at: i64,
    _opts: EvalOptions,
    mut lineup: Vec<(Box<dyn FailurePredictor>, &'static str)>,
) -> (Table, Panel) {
    let g = ground(records);
    let nodes: BTreeSet<&str> = records.iter().map(|r| r.node.as_str()).collect();
    let mut finished: Vec<&TraceRecord> = records
        .iter()
        .filter(|r| r.outcome != TraceOutcome::Lost)
        .collect();
    finished.sort_by_key(|r| r.finished_at);
    let (t0, t1) = super::span(records).unwrap_or((0, 0));
    let n = lineup.len();
    // Per predictor per node: drain intervals (start, end).
    let mut drains: Vec<BTreeMap<&str, Vec<(i64, i64)>>> = vec![BTreeMap::new(); n];
    let mut on: Vec<BTreeMap<&str, i64>> = vec![BTreeMap::new(); n];
    let mut panel = Panel::new(
        "failure score per node (model), failures marked",
        "time (min)",
    );
    let mut scores: BTreeMap<&str, Series> = nodes.iter().map(|n| (*n, Series::line(n))).collect();
    let mut next = 0;
    let mut t = t0 - t0.rem_euclid(TICK_MS);
    while t <= t1 {
        while next < finished.len() && finished[next].finished_at <= t {
            let r = finished[next];
            next += 1;
            let signal = NodeSignal::Attempt {
                kind: &r.kind,
                failed: r.outcome.is_failure(),
                timed_out: r.error_class.as_deref() == Some("timeout"),
                duration_ms: r.run_ms(),
                renew_ms: r.renew_ms,
            };
            for (p, _) in &mut lineup {
                p.observe(&r.node, r.finished_at, signal);
            }
        }
        for &node in &nodes {
            let alive = g.alive(node, t);
            for (i, (p, _)) in lineup.iter_mut().enumerate() {
                if alive {
                    p.observe(node, t, NodeSignal::Heartbeat);
                }
                let d = p.should_drain(node, t);
                match (d, on[i].get(node).copied()) {
                    (true, None) => {
                        on[i].insert(node, t);
                    }
                    (false, Some(s)) => {
                        on[i].remove(node);
                        drains[i].entry(node).or_default().push((s, t));
                    }
                    _ => {}
                }
            }
            if t % 10_000 == 0 && t >= split_at {
                let s = lineup[0].0.score(node, t);
                if let Some(series) = scores.get_mut(node) {
                    series.points.push(((t - t0) as f64 / 60_000.0, s));
                }
            }
        }
        t += TICK_MS;
    }
    for (i, open) in on.iter().enumerate() {
        for (node, s) in open {
            drains[i].entry(node).or_default().push((*s, i64::MAX));
        }
    }
    panel.series = scores.into_values().collect();
    let failures: Vec<(&str, i64)> = g
        .failures
        .iter()
        .flat_map(|(n, ts)| ts.iter().map(move |t| (n.as_str(), *t)))
        .filter(|(_, t)| *t >= split_at)
        .collect();
    for (node, t) in &failures {
        panel
            .marks
            .push(((t - t0) as f64 / 60_000.0, format!("{node} fails")));
    }
    let node_hours: f64 = nodes
        .iter()
        .map(|node| {
            (split_at.max(t0)..t1)
                .step_by(TICK_MS as usize)
                .filter(|t| g.alive(node, *t))
                .count() as f64
                * TICK_MS as f64
                / 3_600_000.0
        })
        .sum();
    let mut rows = Vec::new();
    for (i, (p, role)) in lineup.iter().enumerate() {
        let intervals = &drains[i];
        let draining_at = |node: &str, t: i64| {
            intervals
                .get(node)
                .and_then(|v| v.iter().find(|(a, b)| t >= *a && t < *b))
                .copied()
        };
        // Lead time per failure.
        let mut leads = Vec::new();
        let mut caught = [0usize; 2];
        for (node, f) in &failures {
            let lead = match draining_at(node, f - 1) {
                Some((a, _)) => (f - a) as f64,
                None => {
                    let after = intervals
                        .get(node)
                        .and_then(|v| v.iter().filter(|(a, _)| a >= f).map(|(a, _)| *a).min());
                    -(after.map_or(HORIZON_MS, |a| (a - f).min(HORIZON_MS)) as f64)
                }
            };
            leads.push(lead / 1000.0);
            for (k, l) in LEADS_MS.iter().enumerate() {
                if draining_at(node, f - l).is_some_and(|(a, _)| f - a >= *l) {
                    caught[k] += 1;
                }
            }
        }
        // Drains that started on a live node after the split.
        let mut starts = 0usize;
        let mut false_drains = 0usize;
        let mut true_at = [0usize; 2];
        for (node, v) in intervals {
            for (a, _) in v {
                if *a < split_at || !g.alive(node, *a) {
                    continue;
                }
                starts += 1;
                let next_failure = g
                    .failures
                    .get(*node)
                    .and_then(|fs| fs.iter().find(|f| **f >= *a).copied());
                match next_failure {
                    Some(f) if f - a <= HORIZON_MS => {
                        for (k, l) in LEADS_MS.iter().enumerate() {
                            if f - a >= *l {
                                true_at[k] += 1;
                            }
                        }
                    }
                    _ => false_drains += 1,
                }
            }
        }
        let nf = failures.len();
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        rows.push(Row {
            name: p.name().to_string(),
            role,
            values: vec![
                (!leads.is_empty()).then(|| leads.iter().sum::<f64>() / leads.len() as f64),
                (node_hours > 0.0).then(|| false_drains as f64 / node_hours),
                ratio(true_at[0], starts),
                ratio(caught[0], nf),
                ratio(true_at[1], starts),
                ratio(caught[1], nf),
            ],
        });
    }
    (
        Table {
            title: "node failure",
            samples: (failures.len() as u64, "failures"),
            metrics: vec![
                Metric {
                    name: "lead time (s)",
                    better: Better::Higher,
                },
                Metric {
                    name: "false drains/node-h",
                    better: Better::Lower,
                },
                Metric {
                    name: "precision@5s",
                    better: Better::Higher,
                },
                Metric {
                    name: "recall@5s",
                    better: Better::Higher,
                },
                Metric {
                    name: "precision@30s",
                    better: Better::Higher,
                },
                Metric {
                    name: "recall@30s",
                    better: Better::Higher,
                },
            ],
            rows,
            main: 5,
            guard: Some((1, 0.5)),
        },
        panel,
    )
}
