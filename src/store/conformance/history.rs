//! The read-side views: a job's attempts and timeline, queues' oldest available job and
//! recent finishes, node and worker events.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A claim like [`request`] from queue `q`.
fn from_queue(q: &str, limit: u32, now: Millis) -> ClaimRequest {
    ClaimRequest {
        queues: vec![q.into()],
        ..request("n1", limit, now)
    }
}

/// A job that failed once and then succeeded has two attempts, in order, with the
/// failure's error, and a timeline of its own events oldest first; the limit bounds it.
pub async fn attempts_and_timeline(s: &dyn Store) {
    let id = ids(s, vec![job("a"), job("other")], T0).await[0];
    let first = claim(s, 1, T0).await.remove(0);
    assert_eq!(first.job.id, id);
    let t1 = T0.plus(ms(10));
    let retry_at = T0.plus(ms(100));
    let failed = Completion {
        started_at: T0.plus(ms(1)),
        ..done(
            &first,
            Outcome::Retry {
                error: "boom".into(),
                run_at: retry_at,
            },
            t1,
        )
    };
    s.complete(vec![failed]).await.unwrap();
    s.promote_due(retry_at).await.unwrap();
    let second = s
        .claim(&request("n2", 2, retry_at))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.job.id == id)
        .expect("the retry is claimed");
    let t2 = retry_at.plus(ms(5));
    s.complete(vec![ok(&second, t2)]).await.unwrap();

    let attempts = s.attempts(id, 100).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let (a1, a2) = (&attempts[0], &attempts[1]);
    assert_eq!(
        (a1.attempt, a1.outcome, a1.error.as_deref()),
        (1, crate::store::AttemptOutcome::Failed, Some("boom"))
    );
    assert_eq!((a1.started_at, a1.finished_at), (Some(T0.plus(ms(1))), t1));
    assert_eq!(
        (
            a1.node.as_ref().map(|n| n.0.as_str()),
            a1.worker.as_ref().map(|w| w.0.as_str())
        ),
        (Some("n1"), Some("n1/w0"))
    );
    assert_eq!(
        (a2.attempt, a2.outcome, a2.error.as_deref(), a2.finished_at),
        (2, crate::store::AttemptOutcome::Succeeded, None, t2)
    );
    assert_eq!(a2.node.as_ref().map(|n| n.0.as_str()), Some("n2"));
    assert_eq!(s.attempts(id, 1).await.unwrap().len(), 1, "the limit holds");

    let timeline = s.job_events(id, 100).await.unwrap();
    let kinds: Vec<EventKind> = timeline.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::JobEnqueued,
            EventKind::JobClaimed,
            EventKind::JobFailed,
            EventKind::JobRetryScheduled,
            EventKind::JobClaimed,
            EventKind::JobSucceeded
        ]
    );
    assert!(
        timeline.windows(2).all(|w| w[0].seq < w[1].seq),
        "oldest first"
    );
    assert!(
        timeline.iter().all(|e| e.event.job == Some(id)),
        "only its own events"
    );
    assert_eq!(timeline[2].event.detail["error"], "boom");
    let head = s.job_events(id, 2).await.unwrap();
    assert_eq!(
        head.iter().map(|e| e.seq).collect::<Vec<_>>(),
        timeline[..2].iter().map(|e| e.seq).collect::<Vec<_>>(),
        "a bounded timeline is its oldest events"
    );
    assert!(s.attempts(JobId(i64::MAX), 10).await.unwrap().is_empty());
    assert!(s.job_events(JobId(i64::MAX), 10).await.unwrap().is_empty());
}

/// The oldest available job of a queue is found across priorities (the claim order is
/// by priority first), ignores scheduled jobs and other queues, and moves as jobs are
/// claimed; finishes are counted by queue and state from a given time on.
pub async fn queue_activity(s: &dyn Store) {
    let on = |q: &str, priority: i16| {
        let mut j = job("a");
        j.queue = q.into();
        j.priority = priority;
        j
    };
    assert_eq!(s.oldest_available("q").await.unwrap(), None);
    ids(s, vec![on("q", 0)], T0).await;
    ids(s, vec![on("q", 9), on("other", 0)], T0.plus(ms(10))).await;
    ids(s, vec![on("q", -3)], T0.plus(ms(20))).await;
    let mut later = on("q", 100);
    later.run_at = Some(T0.plus(ms(1_000_000)));
    ids(s, vec![later], T0.plus(ms(30))).await;
    let now = T0.plus(ms(40));
    assert_eq!(s.oldest_available("q").await.unwrap(), Some(T0));
    // The claim takes priority 9 first: the oldest is still the priority-0 job.
    let c9 = s.claim(&from_queue("q", 1, now)).await.unwrap().remove(0);
    assert_eq!(c9.job.priority, 9);
    assert_eq!(s.oldest_available("q").await.unwrap(), Some(T0));
    let c0 = s.claim(&from_queue("q", 1, now)).await.unwrap().remove(0);
    assert_eq!(c0.job.priority, 0);
    assert_eq!(
        s.oldest_available("q").await.unwrap(),
        Some(T0.plus(ms(20)))
    );
    assert_eq!(s.oldest_available("nope").await.unwrap(), None);

    let t = T0.plus(ms(50));
    s.complete(vec![
        ok(&c9, t),
        done(&c0, Outcome::Discard { error: "no".into() }, t.plus(ms(1))),
    ])
    .await
    .unwrap();
    let end = Millis(i64::MAX);
    let slices = s.finished_slices(t, end, 1).await.unwrap();
    assert_eq!(slices.len(), 2, "one slice per finishing time: {slices:?}");
    assert_eq!(
        (slices[0].start, slices[1].start),
        (t, t.plus(ms(1))),
        "{slices:?}"
    );
    assert_eq!(slices[0].counts["q"].get(&JobState::Succeeded), Some(&1));
    assert_eq!(slices[1].counts["q"].get(&JobState::Discarded), Some(&1));
    let whole = s.finished_slices(t, end, 1_000).await.unwrap();
    assert_eq!(whole.len(), 1, "{whole:?}");
    let q = &whole[0].counts["q"];
    assert_eq!(
        (q.get(&JobState::Succeeded), q.get(&JobState::Discarded)),
        (Some(&1), Some(&1)),
        "{whole:?}"
    );
    assert!(!whole[0].counts.contains_key("other"));
    // The range is half-open: a finish at `to` is not in it.
    let before = s.finished_slices(t, t.plus(ms(1)), 1_000).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].counts["q"].get(&JobState::Discarded), None);
    let later = s.finished_slices(t.plus(ms(1)), end, 1_000).await.unwrap();
    assert_eq!(later[0].counts["q"].get(&JobState::Succeeded), None);
    assert!(
        s.finished_slices(t.plus(ms(2)), end, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.finished_slices(t, end, 0).await,
        Err(crate::store::StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.finished_slices(t.plus(ms(1)), t, 1).await,
        Err(crate::store::StoreError::Invalid(_))
    ));
}

/// The maintenance leader's last minute of finishes, read a few seconds at a time
/// across rounds, says what a recount of the window says at every round while jobs
/// finish between the rounds (and some land in slices settled since the last round).
pub async fn finished_window_matches_a_recount(s: &dyn Store) {
    use crate::metrics::finished_window::FinishedWindow;
    use std::time::Duration;
    let window = Duration::from_secs(60);
    let mut kept = FinishedWindow::new(window);
    let mut now = T0.plus(ms(100_000));
    for round in 0..40_i64 {
        // A few jobs finish at times spread over the last seconds before `now`.
        let queue = if round % 3 == 0 { "a" } else { "b" };
        let claimed = {
            let mut jobs = Vec::new();
            for _ in 0..3 {
                let mut j = job("k");
                j.queue = queue.into();
                jobs.push(j);
            }
            ids(s, jobs, Millis(now.0 - 8_000)).await;
            s.claim(&from_queue(queue, 3, Millis(now.0 - 7_000)))
                .await
                .unwrap()
        };
        let outcomes = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let at = Millis(now.0 - i as i64 * 1_700);
                if i == 2 {
                    done(c, Outcome::Discard { error: "no".into() }, at)
                } else {
                    ok(c, at)
                }
            })
            .collect();
        s.complete(outcomes).await.unwrap();
        let got = kept.read(s, now).await.unwrap();
        // The recount from the kept window's start: its first whole second.
        let start = Millis((now.0 - 60_000 + 999).div_euclid(1_000) * 1_000);
        let recount = s
            .finished_slices(start, Millis(i64::MAX), i64::MAX)
            .await
            .unwrap()
            .pop()
            .map(|slice| slice.counts)
            .unwrap_or_default();
        assert_eq!(got, recount, "round {round} at {now:?}");
        now = Millis(now.0 + 2_300 + (round % 4) * 900);
    }
}

/// Node and worker events come back newest `limit`, in log order, whether or not they
/// name a job (a crash during an attempt does), and no other event does.
pub async fn member_events_are_the_newest_window(s: &dyn Store) {
    let node = NodeId("n1".into());
    let worker = WorkerId("n1/w0".into());
    s.record_events(vec![
        LifecycleEvent::new(EventKind::NodeJoined, T0).node(node.clone()),
        LifecycleEvent::new(EventKind::WorkerStarted, T0)
            .worker(worker.clone())
            .node(node.clone()),
        LifecycleEvent::new(EventKind::QueuePaused, T0).detail(json!({"queue": "q"})),
    ])
    .await
    .unwrap();
    let id = ids(s, vec![job("a")], T0).await[0];
    s.record_events(vec![
        LifecycleEvent::new(EventKind::WorkerCrashed, T0.plus(ms(1)))
            .worker(worker.clone())
            .node(node.clone())
            .job(id, Some(1)),
        LifecycleEvent::new(EventKind::WorkerRestarted, T0.plus(ms(2)))
            .worker(worker.clone())
            .node(node.clone()),
    ])
    .await
    .unwrap();
    let all = s.member_events(100).await.unwrap();
    let kinds: Vec<EventKind> = all.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::NodeJoined,
            EventKind::WorkerStarted,
            EventKind::WorkerCrashed,
            EventKind::WorkerRestarted
        ]
    );
    let newest = s.member_events(2).await.unwrap();
    let kinds: Vec<EventKind> = newest.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::WorkerCrashed, EventKind::WorkerRestarted]
    );
    let nodes = crate::store::fold_members(&all, None);
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        (nodes[0].workers[0].restarts, nodes[0].workers[0].crashes),
        (1, 1)
    );
}
