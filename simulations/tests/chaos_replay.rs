//! Replayability through the public API: a seed gives the same schedule every time, in
//! the documented JSON shape, and a saved `history.json` re-checks to the same verdict.

use std::time::Duration;

use jobmesh::event::EventKind;
use jobmesh::job::JobState;
use jobmesh_sim::chaos::checker::{CheckConfig, check};
use jobmesh_sim::chaos::history::{Attempt, EventRecord, History, JobRecord, NodeInfo};
use jobmesh_sim::chaos::plan::{Availability, SCENARIOS, find, plan};

#[test]
fn a_seed_replays_the_same_schedule_for_every_scenario() {
    for s in SCENARIOS
        .iter()
        .filter(|s| s.availability != Availability::NotYet)
    {
        let liars = if s.byzantine { 2 } else { 0 };
        for seed in [0, 1, 42, u64::MAX] {
            let a = plan(s, 7, liars, Duration::from_secs(20), seed).unwrap();
            let b = plan(s, 7, liars, Duration::from_secs(20), seed).unwrap();
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap(),
                "{} seed {seed}",
                s.name
            );
        }
    }
    let p = plan(
        find("kill-restart").unwrap(),
        4,
        0,
        Duration::from_secs(10),
        3,
    )
    .unwrap();
    let first = serde_json::to_value(&p.steps[0]).unwrap();
    assert_eq!(first["fault"], "kill", "{first}");
    assert!(first["at"].is_u64() && first["node"].is_u64(), "{first}");
}

fn event(seq: i64, at_ms: i64, kind: EventKind, job: i64) -> EventRecord {
    EventRecord {
        seq,
        at_ms,
        kind,
        job: Some(job),
        node: Some("p1".into()),
        incarnation: None,
    }
}

#[test]
fn a_saved_history_rechecks_to_the_same_verdict() {
    let mut h = History {
        nodes: vec![NodeInfo {
            name: "n1".into(),
            peer_id: "p1".into(),
        }],
        start_ms: 1000,
        heal_ms: 2000,
        end_ms: 3000,
        survivors: vec![0],
        ..History::default()
    };
    for id in 1..=2 {
        h.attempts.push(Attempt {
            key: format!("chaos-{id}"),
            kind: "sleep".into(),
            submitted_ms: 1000,
            acked: Some(id),
            error: None,
        });
        h.events.push(event(id, 2500, EventKind::JobClaimed, id));
    }
    // Job 1 succeeded; job 2 was left running: lost.
    h.events.push(event(9, 2600, EventKind::JobSucceeded, 1));
    h.jobs = vec![
        JobRecord {
            id: 1,
            unique_key: Some("chaos-1".into()),
            state: JobState::Succeeded,
        },
        JobRecord {
            id: 2,
            unique_key: Some("chaos-2".into()),
            state: JobState::Running,
        },
    ];
    let saved = serde_json::to_string(&h).unwrap();
    let loaded: History = serde_json::from_str(&saved).unwrap();
    let cfg = CheckConfig::default();
    let (v1, v2) = (check(&h, &cfg), check(&loaded, &cfg));
    assert_eq!(v1, v2);
    assert_eq!((v1.counts.lost, v1.counts.completed), (1, 1));
    assert!(!v1.passed());
}
