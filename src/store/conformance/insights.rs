//! Reads for operators' pages: timings of finished jobs, workflow links, dead letters
//! grouped by reason (and a group redriven), counts of a filter's matches.

use super::*;
use crate::store::insights::{LatencySummary, Link, window_latency, workflow_graph};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A finished job's timing is its last attempt's: the wait from `run_at` to the start,
/// the run from the start to the finish; a job that never ran has none (it takes its
/// place in its slice and is left out); each slice gives at most its limit, earliest
/// first.
pub async fn finish_timings_are_the_last_attempts(s: &dyn Store) {
    let [a, b, never] = ids(s, vec![job("a"), job("b"), job("never")], T0).await[..] else {
        unreachable!()
    };
    s.cancel(&sys(), never, T0.plus(ms(2500))).await.unwrap();
    let claimed = claim(s, 2, T0.plus(ms(100))).await;
    let completions: Vec<Completion> = claimed
        .iter()
        .map(|c| {
            let run = if c.job.id == a { 40 } else { 900 };
            Completion {
                started_at: T0.plus(ms(100)),
                ..ok(c, T0.plus(ms(100 + run)))
            }
        })
        .collect();
    s.complete(completions).await.unwrap();
    let all = s
        .finish_timings(&[(T0, T0.plus(ms(10_000)))], 10)
        .await
        .unwrap();
    let got: Vec<(JobId, Option<i64>, Option<i64>)> =
        all.iter().map(|t| (t.job, t.wait_ms, t.run_ms)).collect();
    assert_eq!(
        got,
        [(a, Some(100), Some(40)), (b, Some(100), Some(900))],
        "earliest finish first; the cancelled job never ran"
    );
    assert_eq!(all[0].finished_at, T0.plus(ms(140)));
    // Two slices, one job each at most: one from each slice that holds some.
    let split = s
        .finish_timings(
            &[
                (T0, T0.plus(ms(500))),
                (T0.plus(ms(500)), T0.plus(ms(2000))),
                (T0.plus(ms(2000)), T0.plus(ms(3000))),
            ],
            1,
        )
        .await
        .unwrap();
    assert_eq!(split.iter().map(|t| t.job).collect::<Vec<_>>(), [a, b]);
    let limited = s
        .finish_timings(&[(T0, T0.plus(ms(10_000)))], 1)
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert!(
        s.finish_timings(&vec![(T0, T0); 65], 1).await.is_err(),
        "too many slices are refused"
    );
    let summary = window_latency(s, T0, T0.plus(ms(60_000)), 6, 100)
        .await
        .unwrap();
    assert_eq!(
        summary,
        LatencySummary {
            jobs: 2,
            sampled: false,
            wait_p50_ms: Some(100),
            wait_p99_ms: Some(100),
            run_p50_ms: Some(40),
            run_p99_ms: Some(900),
        }
    );
}

/// Links are found from either end; the walk finds the whole workflow; briefs name
/// each job's queue, kind and state.
pub async fn workflow_links_from_either_end(s: &dyn Store) {
    let root = NewJob::new("root", json!({}));
    let left = NewJob {
        depends_on_index: vec![0],
        ..NewJob::new("left", json!({}))
    };
    let right = NewJob {
        depends_on_index: vec![0],
        ..NewJob::new("right", json!({}))
    };
    let join = NewJob {
        depends_on_index: vec![1, 2],
        ..NewJob::new("join", json!({}))
    };
    let [r, l, rt, j] = ids(s, vec![root, left, right, join, job("alone")], T0).await[..4] else {
        unreachable!()
    };
    let link = |p: JobId, c: JobId| Link {
        parent: p,
        child: c,
    };
    let mut of_root = s.links_of(&[r], 100).await.unwrap();
    of_root.sort();
    assert_eq!(of_root, [link(r, l), link(r, rt)]);
    let mut of_join = s.links_of(&[j], 100).await.unwrap();
    of_join.sort();
    assert_eq!(of_join, [link(l, j), link(rt, j)]);
    assert_eq!(s.links_of(&[r, j], 100).await.unwrap().len(), 4);
    assert_eq!(s.links_of(&[r, j], 3).await.unwrap().len(), 3, "the limit");
    let graph = workflow_graph(s, l, 100).await.unwrap();
    let mut found = graph.jobs.clone();
    found.sort();
    assert_eq!(found, [r, l, rt, j]);
    assert_eq!(graph.links.len(), 4);
    assert!(!graph.truncated);
    let briefs = s.job_briefs(&[j, r, JobId(999_999)]).await.unwrap();
    let named: Vec<(JobId, &str, JobState)> = briefs
        .iter()
        .map(|b| (b.id, b.kind.as_str(), b.state))
        .collect();
    assert_eq!(
        named,
        [
            (r, "root", JobState::Available),
            (j, "join", JobState::Waiting)
        ]
    );
}

/// Dead letters group by queue and the reason with digits folded, over every dead job;
/// redriving a group sends back exactly its jobs.
pub async fn dead_letters_group_by_reason_shape(s: &dyn Store) {
    let other = NewJob {
        queue: "other".into(),
        ..job("x")
    };
    ids(s, vec![job("a"), job("b"), job("c"), job("d")], T0).await;
    ids(s, vec![other], T0).await;
    let mut claimed = claim(s, 4, T0).await;
    claimed.sort_by_key(|c| c.job.id);
    claimed.extend(
        s.claim(&ClaimRequest {
            queues: vec!["other".into()],
            ..request("n1", 1, T0)
        })
        .await
        .unwrap(),
    );
    let errors = [
        "timeout after 1200 ms",
        "timeout after 87 ms",
        "boom",
        "timeout after 5 ms",
        "timeout after 3 ms",
    ];
    let batch = claimed
        .iter()
        .zip(errors)
        .map(|(c, e)| {
            done(
                c,
                Outcome::Discard {
                    error: e.to_string(),
                },
                T0.plus(ms(c.job.id.0 as u64)),
            )
        })
        .collect();
    s.complete(batch).await.unwrap();
    let g = s.dead_letter_groups(10).await.unwrap();
    let shape: Vec<(&str, &str, u64)> = g
        .groups
        .iter()
        .map(|g| (g.queue.as_str(), g.reason.as_str(), g.jobs))
        .collect();
    assert_eq!(
        shape,
        [
            ("default", "timeout after # ms", 3),
            ("default", "boom", 1),
            ("other", "timeout after # ms", 1),
        ]
    );
    assert_eq!((g.total_groups, g.total_jobs), (3, 5));
    let first = &g.groups[0];
    assert_eq!(
        first.sample, claimed[3].job.id,
        "the newest job of the group"
    );
    assert!(first.first_at <= first.last_at);
    let cut = s.dead_letter_groups(1).await.unwrap();
    assert_eq!(
        (cut.groups.len(), cut.total_groups, cut.total_jobs),
        (1, 3, 5)
    );

    let mut redriven = s
        .redrive(
            &sys(),
            Redrive::Group {
                queue: "default".into(),
                reason: "timeout after # ms".into(),
            },
            T0.plus(ms(100)),
        )
        .await
        .unwrap();
    redriven.sort();
    let mut expected = vec![claimed[0].job.id, claimed[1].job.id, claimed[3].job.id];
    expected.sort();
    assert_eq!(redriven, expected);
    let left = s.dead_letter_groups(10).await.unwrap();
    assert_eq!((left.total_groups, left.total_jobs), (2, 2));
}

/// A count of a filter's matches stops past its cap; states narrow it.
pub async fn counts_stop_past_the_cap(s: &dyn Store) {
    let mut jobs: Vec<NewJob> = (0..7).map(|_| job("a")).collect();
    jobs.extend((0..3).map(|_| job("b")));
    ids(s, jobs, T0).await;
    claim(s, 2, T0).await;
    let all = JobFilter::default();
    assert_eq!(s.count_jobs(&all, &[], 100).await.unwrap(), 10);
    assert_eq!(s.count_jobs(&all, &[], 4).await.unwrap(), 5, "cap + 1");
    let kind_b = JobFilter {
        kind: Some("b".into()),
        ..JobFilter::default()
    };
    assert_eq!(s.count_jobs(&kind_b, &[], 100).await.unwrap(), 3);
    assert_eq!(s.count_jobs(&all, &["running"], 100).await.unwrap(), 2);
    assert_eq!(
        s.count_jobs(&all, &["available", "running"], 100)
            .await
            .unwrap(),
        10
    );
}

/// The throughput history counts each job where its times put it: enqueued by
/// `created_at`, succeeded and dead-lettered by `finished_at` (a cancelled job in
/// neither), per queue and interval of the window; a window past the bound is refused.
pub async fn throughput_counts_by_enqueue_and_finish_time(s: &dyn Store) {
    use crate::store::throughput::{Tally, ThroughputRow};
    let sec = |n: u64| T0.plus(ms(n * 1000));
    ids(s, vec![job("a"), job("a"), job("a")], T0).await;
    let mail: Vec<NewJob> = (0..2)
        .map(|_| NewJob {
            queue: "mail".into(),
            ..job("m")
        })
        .collect();
    let mail = ids(s, mail, sec(12)).await;
    let claimed = claim(s, 3, sec(1)).await;
    assert_eq!(claimed.len(), 3);
    s.complete(vec![ok(&claimed[0], sec(2)), ok(&claimed[1], sec(3))])
        .await
        .unwrap();
    s.complete(vec![done(
        &claimed[2],
        Outcome::Discard {
            error: "boom".into(),
        },
        sec(21),
    )])
    .await
    .unwrap();
    s.cancel(&sys(), mail[0], sec(25)).await.unwrap();
    let rows = s.throughput(T0, sec(30), 10_000).await.unwrap();
    let row = |at: u64, queue: &str, enqueued: u64, succeeded: u64, failed: u64| ThroughputRow {
        start: sec(at),
        queue: queue.into(),
        tally: Tally {
            enqueued,
            succeeded,
            failed,
        },
    };
    assert_eq!(
        rows,
        vec![
            row(0, "default", 3, 2, 0),
            row(10, "mail", 2, 0, 0),
            row(20, "default", 0, 0, 1)
        ]
    );
    // Only the window asked: [10 s, 20 s) holds the mail jobs alone.
    assert_eq!(
        s.throughput(sec(10), sec(20), 10_000).await.unwrap(),
        vec![row(10, "mail", 2, 0, 0)]
    );
    assert!(matches!(
        s.throughput(T0, sec(3600 * 24), 1000).await,
        Err(crate::store::StoreError::Invalid(_))
    ));
}

/// Incidents are counted per interval by kind from the events' times: rescues, worker
/// crashes and restarts and evictions, and nothing else (a job's own events, a node
/// joining); a window past the bound is refused.
pub async fn incidents_count_rescues_crashes_restarts_and_evictions(s: &dyn Store) {
    use crate::store::incidents::{IncidentRow, Incidents};
    let sec = |n: u64| T0.plus(ms(n * 1000));
    let ev = |kind: EventKind, at: u64| LifecycleEvent::new(kind, sec(at));
    s.record_events(vec![
        ev(EventKind::JobRescued, 1),
        ev(EventKind::JobRescued, 2),
        ev(EventKind::WorkerCrashed, 3),
        ev(EventKind::WorkerRestarted, 4),
        ev(EventKind::JobEnqueued, 5),
        ev(EventKind::JobSucceeded, 5),
        ev(EventKind::NodeJoined, 6),
        ev(EventKind::NodeEvicted, 61),
        ev(EventKind::JobRescued, 62),
        ev(EventKind::JobRescued, 200),
    ])
    .await
    .unwrap();
    let rows = s.incidents(T0, sec(120), 60_000).await.unwrap();
    assert_eq!(
        rows,
        vec![
            IncidentRow {
                start: T0,
                incidents: Incidents {
                    rescued: 2,
                    worker_crashed: 1,
                    worker_restarted: 1,
                    node_evicted: 0,
                },
            },
            IncidentRow {
                start: sec(60),
                incidents: Incidents {
                    rescued: 1,
                    node_evicted: 1,
                    ..Incidents::default()
                },
            },
        ]
    );
    // Only the window asked: [60 s, 240 s) leaves the first minute out.
    let later = s.incidents(sec(60), sec(240), 60_000).await.unwrap();
    assert_eq!(later.len(), 2, "{later:?}");
    assert_eq!(later[1].start, sec(180));
    assert_eq!(later[1].incidents.rescued, 1);
    assert!(matches!(
        s.incidents(T0, sec(3600 * 24), 1000).await,
        Err(crate::store::StoreError::Invalid(_))
    ));
}

/// Counts by queue, kind and state stay exact through every way a job changes or goes:
/// enqueue, claim, success, dead letter, cancel, bulk delete.
pub async fn counts_follow_every_change(s: &dyn Store) {
    let mut jobs: Vec<NewJob> = (0..4).map(|_| job("a")).collect();
    jobs.extend((0..2).map(|_| NewJob {
        queue: "mail".into(),
        ..job("b")
    }));
    let all = ids(s, jobs, T0).await;
    let claimed = claim(s, 3, T0).await;
    s.complete(vec![
        ok(&claimed[0], T0),
        done(
            &claimed[1],
            Outcome::Discard {
                error: "boom".into(),
            },
            T0,
        ),
    ])
    .await
    .unwrap();
    s.cancel(&sys(), all[4], T0).await.unwrap();
    let done_ids = vec![claimed[0].job.id];
    s.bulk(
        &sys(),
        crate::store::BulkAction::Delete,
        &crate::store::BulkTarget::Ids(done_ids),
        T0,
    )
    .await
    .unwrap();
    let counts = s.counts().await.unwrap();
    let of = |q: &str, st: JobState| counts.get(q).and_then(|m| m.get(&st)).copied().unwrap_or(0);
    assert_eq!(
        [
            of("default", JobState::Available),
            of("default", JobState::Running),
            of("default", JobState::Succeeded),
            of("default", JobState::Discarded),
            of("mail", JobState::Available),
            of("mail", JobState::Cancelled),
        ],
        [1, 1, 0, 1, 1, 1],
        "{counts:?}"
    );
    assert!(
        !counts
            .get("default")
            .is_some_and(|m| m.contains_key(&JobState::Succeeded)),
        "a state with no job left is not listed: {counts:?}"
    );
    let kind_b = JobFilter {
        kind: Some("b".into()),
        queues: vec!["mail".into()],
        ..JobFilter::default()
    };
    assert_eq!(
        s.count_jobs(&kind_b, &["available", "cancelled"], 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.count_jobs(&JobFilter::default(), &["discarded"], 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count_jobs(&JobFilter::default(), &[], 2).await.unwrap(),
        3,
        "cap + 1"
    );
}
