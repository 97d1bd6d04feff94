//! The invariant checker: history in, verdict out, no IO. Modelled on Jepsen's
//! total-queue: every acknowledged job must complete exactly once in the record
//! (executions may repeat: delivery is at-least-once), nothing may appear that was
//! never submitted, honest nodes must not be evicted while no more than f members lie,
//! and every surviving node must work again once the faults heal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jobmesh::event::EventKind;
use jobmesh::job::JobState;
use serde::{Deserialize, Serialize};

use super::history::History;

/// Tunables of the checker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// How long after a fault window closes an eviction still counts as caused by it: a
    /// certificate formed during the window may be applied a little later.
    pub grace_ms: i64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self { grace_ms: 5_000 }
    }
}

/// The total-queue counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Submissions made.
    pub attempted: u64,
    /// Submissions the store acknowledged with an id.
    pub acknowledged: u64,
    /// Acknowledged jobs in a final state (succeeded, dead-lettered or cancelled).
    pub completed: u64,
    /// Of those, succeeded.
    pub succeeded: u64,
    /// Of those, dead-lettered.
    pub dead_lettered: u64,
    /// Acknowledged jobs not completed: `missing` + `unfinished`. Must be 0.
    pub lost: u64,
    /// Acknowledged jobs absent from the store.
    pub missing: u64,
    /// Acknowledged jobs still not final when the run ended.
    pub unfinished: u64,
    /// Jobs in the store that were never submitted. Must be 0.
    pub unexpected: u64,
    /// Submissions whose ack failed but which the store holds anyway (fine).
    pub recovered: u64,
    /// Jobs that ran more than once because an attempt ended with no recorded outcome
    /// (killed, paused past its lease, or evicted): at-least-once, reported.
    pub duplicated_executions: u64,
    /// Attempts that ended with no recorded outcome.
    pub unrecorded_attempts: u64,
    /// Jobs with more than one recorded final outcome. Must be 0.
    pub duplicated_completions: u64,
    /// Jobs whose row and events disagree about whether they finished. Must be 0.
    pub inconsistent: u64,
    /// Jobs taken back from lost leases (`job.rescued` events).
    pub rescued: u64,
    /// Worker panics (`worker.crashed` events).
    pub worker_crashes: u64,
    /// Distinct evictions (subject and incarnation).
    pub evictions: u64,
    /// Evictions of a node that was not faulty at the time. Must be 0 with <= f liars.
    pub false_evictions: u64,
    /// Samples of the running counts under the cluster's limits.
    #[serde(default)]
    pub limit_samples: u64,
    /// Samples in which a limit's key had more running than its `max_running`. Must be 0.
    #[serde(default)]
    pub limit_exceeded: u64,
}

/// One distinct eviction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eviction {
    /// When the first member applied it.
    pub at_ms: i64,
    /// The evicted node (name when known, else the id in the event).
    pub node: String,
    /// The evicted incarnation.
    pub incarnation: Option<u64>,
    /// Whether no fault window covers it.
    pub false_eviction: bool,
}

/// Whether a surviving node processed jobs after the heal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Liveness {
    /// The node.
    pub node: String,
    /// Jobs it claimed after the heal.
    pub claims_after_heal: u64,
}

/// The checker's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The counts.
    pub counts: Counts,
    /// Whether the false-eviction invariant applies (no more liars than f).
    pub false_evictions_enforced: bool,
    /// Every distinct eviction.
    pub evictions: Vec<Eviction>,
    /// Per surviving node.
    pub liveness: Vec<Liveness>,
    /// Crash (kill or pause) to eviction, ms, for each crash that led to one.
    pub detection_ms: Vec<i64>,
    /// Jobs succeeded per second since the start.
    pub throughput: Vec<u64>,
    /// Every violated invariant, in words. Empty means the run passed.
    pub violations: Vec<String>,
}

impl Verdict {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

fn is_final(s: JobState) -> bool {
    matches!(
        s,
        JobState::Succeeded | JobState::Discarded | JobState::Cancelled
    )
}

fn is_terminal_event(k: EventKind) -> bool {
    matches!(
        k,
        EventKind::JobSucceeded | EventKind::JobDiscarded | EventKind::JobCancelled
    )
}

/// Some ids of a list for a violation message.
fn sample(ids: &BTreeSet<i64>) -> String {
    let head: Vec<String> = ids.iter().take(10).map(|i| i.to_string()).collect();
    let more = if ids.len() > 10 { ", ..." } else { "" };
    format!("{}{more}", head.join(", "))
}

/// Checks a history.
pub fn check(h: &History, cfg: &CheckConfig) -> Verdict {
    let mut c = Counts::default();
    let mut violations = Vec::new();
    let rows: HashMap<i64, _> = h.jobs.iter().map(|j| (j.id, j)).collect();
    let attempted_keys: HashMap<&str, Option<i64>> = h
        .attempts
        .iter()
        .map(|a| (a.key.as_str(), a.acked))
        .collect();

    // Per job: claims, recorded outcomes (succeeded or failed), final outcomes.
    #[derive(Default)]
    struct PerJob {
        claims: u64,
        outcomes: u64,
        finals: u64,
    }
    let mut per_job: BTreeMap<i64, PerJob> = BTreeMap::new();
    for e in &h.events {
        match e.kind {
            EventKind::JobRescued => c.rescued += 1,
            EventKind::WorkerCrashed => c.worker_crashes += 1,
            _ => {}
        }
        let Some(job) = e.job else { continue };
        let p = per_job.entry(job).or_default();
        match e.kind {
            EventKind::JobClaimed => p.claims += 1,
            EventKind::JobSucceeded | EventKind::JobFailed => p.outcomes += 1,
            _ => {}
        }
        if is_terminal_event(e.kind) {
            p.finals += 1;
        }
        // A discard after a failure is one outcome recorded as two events; a discard
        // by rescue (out of attempts) has no failure before it.
        if e.kind == EventKind::JobDiscarded {
            p.outcomes = p.outcomes.max(1);
        }
    }

    c.attempted = h.attempts.len() as u64;
    let (mut missing, mut unfinished, mut mismatched) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for a in &h.attempts {
        let Some(id) = a.acked else { continue };
        c.acknowledged += 1;
        match rows.get(&id) {
            None => {
                missing.insert(id);
            }
            Some(row) if row.unique_key.as_deref() != Some(a.key.as_str()) => {
                mismatched.insert(id);
            }
            Some(row) if is_final(row.state) => {
                c.completed += 1;
                match row.state {
                    JobState::Succeeded => c.succeeded += 1,
                    JobState::Discarded => c.dead_lettered += 1,
                    _ => {}
                }
            }
            Some(_) => {
                unfinished.insert(id);
            }
        }
    }
    c.missing = missing.len() as u64;
    c.unfinished = unfinished.len() as u64;
    c.lost = c.missing + c.unfinished;
    if !missing.is_empty() {
        violations.push(format!(
            "lost: {} acknowledged job(s) missing from the store (ids {})",
            missing.len(),
            sample(&missing)
        ));
    }
    if !unfinished.is_empty() {
        violations.push(format!(
            "lost: {} acknowledged job(s) never completed (ids {})",
            unfinished.len(),
            sample(&unfinished)
        ));
    }

    let mut unexpected = mismatched;
    for j in &h.jobs {
        match j.unique_key.as_deref().map(|k| attempted_keys.get(k)) {
            Some(Some(Some(_))) => {}
            Some(Some(None)) => c.recovered += 1,
            _ => {
                unexpected.insert(j.id);
            }
        }
    }
    c.unexpected = unexpected.len() as u64;
    if !unexpected.is_empty() {
        violations.push(format!(
            "unexpected: {} job(s) in the store that the workload never submitted (ids {})",
            unexpected.len(),
            sample(&unexpected)
        ));
    }

    let (mut duplicated, mut inconsistent) = (BTreeSet::new(), BTreeSet::new());
    for j in &h.jobs {
        let p = per_job.get(&j.id);
        let finals = p.map_or(0, |p| p.finals);
        if finals > 1 {
            duplicated.insert(j.id);
        }
        if is_final(j.state) != (finals > 0) {
            inconsistent.insert(j.id);
        }
        if let Some(p) = p {
            let unrecorded = p.claims.saturating_sub(p.outcomes);
            c.unrecorded_attempts += unrecorded;
            if unrecorded > 0 && p.claims > 1 {
                c.duplicated_executions += 1;
            }
        }
    }
    c.duplicated_completions = duplicated.len() as u64;
    c.inconsistent = inconsistent.len() as u64;
    if !duplicated.is_empty() {
        violations.push(format!(
            "duplicated completions: {} job(s) recorded as finished more than once (ids {})",
            duplicated.len(),
            sample(&duplicated)
        ));
    }
    if !inconsistent.is_empty() {
        violations.push(format!(
            "inconsistent: {} job(s) whose state and events disagree (ids {})",
            inconsistent.len(),
            sample(&inconsistent)
        ));
    }

    // Limits: no sampled moment may hold more running under a limit than it allows.
    c.limit_samples = h.limit_samples.len() as u64;
    let over: Vec<_> = h
        .limit_samples
        .iter()
        .filter(|s| {
            h.limits
                .iter()
                .any(|l| l.limit == s.limit && s.running > l.max_running)
        })
        .collect();
    c.limit_exceeded = over.len() as u64;
    if let Some(worst) = over.iter().max_by_key(|s| s.running) {
        violations.push(format!(
            "limit exceeded: {} sample(s) over a max_running (worst: {} key `{}` had {} running at +{} ms)",
            over.len(),
            worst.limit,
            worst.key,
            worst.running,
            worst.at_ms - h.start_ms
        ));
    }

    // Evictions: each member that applies a certificate records it; count each
    // (subject, incarnation) once, at its first record.
    let mut first: BTreeMap<(String, Option<u64>), i64> = BTreeMap::new();
    for e in h.events.iter().filter(|e| e.kind == EventKind::NodeEvicted) {
        let subject = e.node.clone().unwrap_or_default();
        let at = first.entry((subject, e.incarnation)).or_insert(e.at_ms);
        *at = (*at).min(e.at_ms);
    }
    let covered = |ix: usize, at: i64| {
        h.windows.iter().any(|w| {
            w.node == ix
                && w.from_ms <= at
                && at <= w.to_ms.unwrap_or(h.end_ms).saturating_add(cfg.grace_ms)
        })
    };
    let mut evictions: Vec<Eviction> = first
        .into_iter()
        .map(|((subject, incarnation), at_ms)| {
            let ix = h.node_ix(&subject);
            Eviction {
                at_ms,
                node: ix.map_or(subject, |i| h.nodes[i].name.clone()),
                incarnation,
                false_eviction: !ix.is_some_and(|i| covered(i, at_ms)),
            }
        })
        .collect();
    evictions.sort_by_key(|e| e.at_ms);
    c.evictions = evictions.len() as u64;
    c.false_evictions = evictions.iter().filter(|e| e.false_eviction).count() as u64;
    let enforced = h.liars.len() <= h.f;
    if enforced && c.false_evictions > 0 {
        let who: Vec<String> = evictions
            .iter()
            .filter(|e| e.false_eviction)
            .map(|e| format!("{} at +{} ms", e.node, e.at_ms - h.start_ms))
            .collect();
        violations.push(format!(
            "false evictions: {} healthy node(s) evicted with {} liar(s) <= f = {} ({})",
            c.false_evictions,
            h.liars.len(),
            h.f,
            who.join(", ")
        ));
    }

    // Detection: from a kill or pause to the first eviction of that node inside it.
    let mut detection_ms = Vec::new();
    for w in h
        .windows
        .iter()
        .filter(|w| matches!(w.why.as_str(), "killed" | "paused" | "partitioned"))
    {
        let until = w.to_ms.unwrap_or(h.end_ms).saturating_add(cfg.grace_ms);
        if let Some(e) = evictions.iter().find(|e| {
            h.nodes.get(w.node).is_some_and(|n| n.name == e.node)
                && e.at_ms >= w.from_ms
                && e.at_ms <= until
        }) {
            detection_ms.push(e.at_ms - w.from_ms);
        }
    }

    // Liveness: every node running at the end claimed a job after the heal.
    let mut claims_after: BTreeMap<usize, u64> = BTreeMap::new();
    for e in h
        .events
        .iter()
        .filter(|e| e.kind == EventKind::JobClaimed && e.at_ms >= h.heal_ms)
    {
        if let Some(ix) = e.node.as_deref().and_then(|n| h.node_ix(n)) {
            *claims_after.entry(ix).or_insert(0) += 1;
        }
    }
    let liveness: Vec<Liveness> = h
        .survivors
        .iter()
        .map(|&ix| Liveness {
            node: h.nodes[ix].name.clone(),
            claims_after_heal: claims_after.get(&ix).copied().unwrap_or(0),
        })
        .collect();
    let idle: Vec<&str> = liveness
        .iter()
        .filter(|l| l.claims_after_heal == 0)
        .map(|l| l.node.as_str())
        .collect();
    if !idle.is_empty() {
        violations.push(format!(
            "liveness: surviving node(s) {} processed no job after the faults healed",
            idle.join(", ")
        ));
    }

    for exit in &h.exits {
        violations.push(format!("supervision: {exit}"));
    }

    let seconds = ((h.end_ms - h.start_ms).max(0) / 1000 + 1) as usize;
    let mut throughput = vec![0u64; seconds];
    for e in h
        .events
        .iter()
        .filter(|e| e.kind == EventKind::JobSucceeded && e.at_ms >= h.start_ms)
    {
        let b = ((e.at_ms - h.start_ms) / 1000) as usize;
        if let Some(slot) = throughput.get_mut(b) {
            *slot += 1;
        }
    }

    Verdict {
        counts: c,
        false_evictions_enforced: enforced,
        evictions,
        liveness,
        detection_ms,
        throughput,
        violations,
    }
}

/// The `q` quantile (0..=1) of some samples, nearest rank; `None` if there are none.
pub fn quantile(samples: &[i64], q: f64) -> Option<i64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

#[cfg(test)]
mod tests;
