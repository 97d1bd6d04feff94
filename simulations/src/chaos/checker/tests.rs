//! Hand-made histories, good and bad.

use super::*;
use crate::chaos::history::{Attempt, EventRecord, JobRecord, NodeInfo};
use crate::chaos::windows::FaultWindow;

const T0: i64 = 1_000_000;
const HEAL: i64 = T0 + 10_000;

fn ev(seq: i64, at: i64, kind: EventKind, job: Option<i64>, node: &str) -> EventRecord {
    EventRecord {
        seq,
        at_ms: at,
        kind,
        job,
        node: Some(node.to_string()),
        incarnation: None,
    }
}

/// Three nodes (f = 0 liars), jobs 1..=n each claimed and succeeded once, every node
/// working after the heal.
fn good(n: i64) -> History {
    let nodes = ["n1", "n2", "n3"];
    let mut h = History {
        nodes: nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.to_string(),
                peer_id: format!("peer-{n}"),
            })
            .collect(),
        f: 1,
        start_ms: T0,
        heal_ms: HEAL,
        end_ms: T0 + 20_000,
        survivors: vec![0, 1, 2],
        ..History::default()
    };
    for id in 1..=n {
        h.attempts.push(Attempt {
            key: format!("chaos-{id}"),
            kind: "sleep".into(),
            submitted_ms: T0 + id,
            acked: Some(id),
            error: None,
        });
        h.jobs.push(JobRecord {
            id,
            unique_key: Some(format!("chaos-{id}")),
            state: JobState::Succeeded,
        });
        // Node ids in mesh mode are peer ids: the checker maps them back to names.
        let node = format!("peer-{}", nodes[(id % 3) as usize]);
        let at = HEAL + id * 10;
        h.events
            .push(ev(id * 2, at, EventKind::JobClaimed, Some(id), &node));
        h.events.push(ev(
            id * 2 + 1,
            at + 5,
            EventKind::JobSucceeded,
            Some(id),
            &node,
        ));
    }
    h
}

fn eviction(h: &mut History, at: i64, node: &str) {
    let seq = h.events.len() as i64 + 1000;
    let mut e = ev(seq, at, EventKind::NodeEvicted, None, node);
    e.incarnation = Some(1);
    h.events.push(e);
}

#[test]
fn a_clean_history_passes_with_the_total_queue_counts() {
    let v = check(&good(9), &CheckConfig::default());
    assert!(v.passed(), "{:?}", v.violations);
    let c = &v.counts;
    assert_eq!((c.attempted, c.acknowledged, c.completed), (9, 9, 9));
    assert_eq!((c.lost, c.unexpected, c.duplicated_completions), (0, 0, 0));
    assert_eq!(
        v.liveness.iter().map(|l| l.claims_after_heal).sum::<u64>(),
        9
    );
    assert_eq!(v.throughput.iter().sum::<u64>(), 9);
}

#[test]
fn an_acknowledged_job_missing_from_the_store_is_lost() {
    let mut h = good(6);
    h.jobs.retain(|j| j.id != 4);
    h.events.retain(|e| e.job != Some(4));
    let v = check(&h, &CheckConfig::default());
    assert_eq!((v.counts.lost, v.counts.missing), (1, 1));
    assert!(
        v.violations[0].contains("missing from the store (ids 4)"),
        "{:?}",
        v.violations
    );
}

#[test]
fn an_acknowledged_job_left_running_is_lost() {
    let mut h = good(6);
    h.jobs[2].state = JobState::Running;
    h.events
        .retain(|e| !(e.job == Some(3) && e.kind == EventKind::JobSucceeded));
    let v = check(&h, &CheckConfig::default());
    assert_eq!((v.counts.lost, v.counts.unfinished), (1, 1));
    assert!(!v.passed());
}

#[test]
fn a_second_recorded_completion_is_a_violation() {
    let mut h = good(3);
    h.events.push(ev(
        99,
        HEAL + 500,
        EventKind::JobSucceeded,
        Some(2),
        "peer-n3",
    ));
    let v = check(&h, &CheckConfig::default());
    assert_eq!(v.counts.duplicated_completions, 1);
    assert!(
        v.violations
            .iter()
            .any(|m| m.starts_with("duplicated completions"))
    );
}

#[test]
fn a_repeated_execution_is_reported_but_passes() {
    // Job 2's first attempt died with its node (claimed, rescued, no outcome): the
    // second attempt succeeded. At-least-once execution, exactly-once recording.
    let mut h = good(3);
    h.events
        .push(ev(90, T0 + 100, EventKind::JobClaimed, Some(2), "peer-n1"));
    h.events
        .push(ev(91, T0 + 4000, EventKind::JobRescued, Some(2), "peer-n1"));
    let v = check(&h, &CheckConfig::default());
    assert!(v.passed(), "{:?}", v.violations);
    assert_eq!(v.counts.duplicated_executions, 1);
    assert_eq!(v.counts.unrecorded_attempts, 1);
    assert_eq!(v.counts.rescued, 1);
}

#[test]
fn a_job_nobody_submitted_is_unexpected_and_a_lost_ack_is_recovered() {
    let mut h = good(3);
    h.jobs.push(JobRecord {
        id: 50,
        unique_key: Some("intruder".into()),
        state: JobState::Succeeded,
    });
    h.events.push(ev(
        95,
        HEAL + 1,
        EventKind::JobSucceeded,
        Some(50),
        "peer-n1",
    ));
    h.attempts[0].acked = None; // the ack was lost, the job was stored: recovered
    let v = check(&h, &CheckConfig::default());
    assert_eq!(v.counts.unexpected, 1);
    assert_eq!(v.counts.recovered, 1);
    assert_eq!(v.counts.acknowledged, 2);
    assert!(v.violations.iter().any(|m| m.starts_with("unexpected")));
}

#[test]
fn evicting_a_killed_node_is_fine_and_evicting_a_healthy_one_is_not() {
    let mut h = good(3);
    h.windows.push(FaultWindow {
        node: 1,
        why: "killed".into(),
        from_ms: T0 + 1000,
        to_ms: Some(T0 + 3000),
    });
    eviction(&mut h, T0 + 2200, "peer-n2");
    eviction(&mut h, T0 + 2250, "peer-n2"); // a second member applying the same certificate
    let v = check(&h, &CheckConfig::default());
    assert!(v.passed(), "{:?}", v.violations);
    assert_eq!(v.counts.evictions, 1);
    assert_eq!(v.detection_ms, vec![1200]);

    eviction(&mut h, T0 + 2300, "peer-n3"); // n3 was never faulty
    let v = check(&h, &CheckConfig::default());
    assert_eq!(v.counts.false_evictions, 1);
    assert!(
        v.violations[0].contains("n3 at +2300 ms"),
        "{:?}",
        v.violations
    );
}

#[test]
fn an_eviction_just_after_a_restart_is_within_the_grace() {
    let mut h = good(3);
    h.windows.push(FaultWindow {
        node: 0,
        why: "paused".into(),
        from_ms: T0 + 1000,
        to_ms: Some(T0 + 3000),
    });
    eviction(&mut h, T0 + 3000 + 4_999, "peer-n1");
    assert!(check(&h, &CheckConfig::default()).passed());
    let strict = CheckConfig { grace_ms: 0 };
    assert_eq!(check(&h, &strict).counts.false_evictions, 1);
}

#[test]
fn with_more_liars_than_f_false_evictions_are_reported_not_enforced() {
    let mut h = good(3);
    h.liars = vec![0, 1];
    eviction(&mut h, T0 + 500, "peer-n3");
    let v = check(&h, &CheckConfig::default());
    assert_eq!(v.counts.false_evictions, 1);
    assert!(!v.false_evictions_enforced);
    assert!(v.passed(), "{:?}", v.violations);
}

#[test]
fn a_surviving_node_that_never_works_again_fails_liveness() {
    let mut h = good(6);
    // n2 (peer-n2) claimed jobs 1 and 4: move them to n1.
    for e in &mut h.events {
        if e.node.as_deref() == Some("peer-n2") {
            e.node = Some("peer-n1".into());
        }
    }
    let v = check(&h, &CheckConfig::default());
    assert_eq!(
        v.violations,
        vec!["liveness: surviving node(s) n2 processed no job after the faults healed"]
    );
}

#[test]
fn quantiles_use_the_nearest_rank() {
    assert_eq!(quantile(&[], 0.5), None);
    assert_eq!(quantile(&[30, 10, 20], 0.5), Some(20));
    assert_eq!(quantile(&[30, 10, 20], 0.99), Some(30));
}

#[test]
fn a_sample_over_a_limit_fails_the_run() {
    use crate::chaos::limits::{LimitBound, LimitSample};
    let mut h = good(3);
    h.limits = vec![LimitBound {
        limit: "kind:sleep".into(),
        max_running: 2,
    }];
    let sample = |at, running| LimitSample {
        at_ms: at,
        limit: "kind:sleep".into(),
        key: String::new(),
        running,
    };
    h.limit_samples = vec![sample(T0 + 10, 1), sample(T0 + 20, 2)];
    let v = check(&h, &CheckConfig::default());
    assert!(v.passed(), "{:?}", v.violations);
    assert_eq!((v.counts.limit_samples, v.counts.limit_exceeded), (2, 0));
    h.limit_samples.push(sample(T0 + 30, 3));
    let v = check(&h, &CheckConfig::default());
    assert!(!v.passed());
    assert_eq!(v.counts.limit_exceeded, 1);
    assert!(
        v.violations.iter().any(|m| m.contains("limit exceeded")),
        "{:?}",
        v.violations
    );
}
