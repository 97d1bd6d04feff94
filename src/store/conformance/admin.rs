//! Operating on jobs: the dead-letter queue and redrive, cancel, retention with the
//! leader lease, listings and the event log.

use super::*;

/// Discard fills the dead-letter queue; redrive empties it with fresh attempts.
pub async fn dead_letter_and_redrive(s: &dyn Store) {
    ids(s, vec![job("a"), job("b")], T0).await;
    let cs = claim(s, 2, T0).await;
    let batch = cs
        .iter()
        .map(|c| {
            done(
                c,
                Outcome::Discard {
                    error: format!("bad {}", c.job.kind),
                },
                T0,
            )
        })
        .collect();
    assert_eq!(
        s.complete(batch).await.unwrap(),
        [CompletionResult::Applied; 2]
    );
    let dead = s.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].reason, "bad a");
    assert_eq!(dead[0].job.state, JobState::Discarded);
    assert_eq!(s.dead_letters(Some("other"), 10).await.unwrap().len(), 0);
    let redriven = s
        .redrive(&sys(), Redrive::Ids(vec![cs[0].job.id]), T0)
        .await
        .unwrap();
    assert_eq!(redriven, [cs[0].job.id]);
    let j = s.get_job(cs[0].job.id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));
    assert_eq!(s.dead_letters(None, 10).await.unwrap().len(), 1);
    assert_eq!(
        s.redrive(&sys(), Redrive::All, T0).await.unwrap(),
        [cs[1].job.id]
    );
    assert!(s.dead_letters(None, 10).await.unwrap().is_empty());
    assert!(
        event_kinds(s, cs[0].job.id)
            .await
            .contains(&EventKind::JobRedriven)
    );
}

/// Cancel in each state; a running job's late completion is refused.
pub async fn cancel(s: &dyn Store) {
    let [a, b] = ids(s, vec![job("a"), job("b")], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(
        s.cancel(&sys(), a, T0).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let running = claim(s, 1, T0).await.remove(0);
    assert_eq!(running.job.id, b);
    assert_eq!(
        s.cancel(&sys(), b, T0).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        s.complete(vec![ok(&running, T0)]).await.unwrap(),
        [CompletionResult::StaleLease]
    );
    assert_eq!(state(s, b).await, JobState::Cancelled);
    assert_eq!(
        s.extend_leases(std::slice::from_ref(&running.lease), T0)
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        s.cancel(&sys(), a, T0).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    assert!(matches!(
        s.cancel(&sys(), JobId(999_999), T0).await,
        Err(crate::store::StoreError::NotFound(_))
    ));
}

/// Retention removes only finished work older than its namespace's TTL, with its
/// events; the leader lease keeps others out until it lapses.
pub async fn retention_and_leader_lease(s: &dyn Store) {
    use crate::store::retention::Retention;
    let hour = Duration::from_secs(3600);
    let r = Retention {
        finished_jobs: hour,
        dead_letters: hour * 2,
        coordination: hour,
        ..Retention::default()
    };
    let ids = ids(s, vec![job("a"), job("b"), job("c"), job("d")], T0).await;
    let cs = claim(s, 3, T0).await;
    let discard = Outcome::Discard {
        error: "broken".into(),
    };
    s.complete(vec![ok(&cs[0], T0), done(&cs[1], discard, T0)])
        .await
        .unwrap();
    let p = s.purge(&r, T0.plus(hour / 2)).await.unwrap();
    assert_eq!(
        (p.jobs, p.dead_letters),
        (0, 0),
        "nothing is old enough yet"
    );
    let p = s.purge(&r, T0.plus(hour + hour / 2)).await.unwrap();
    assert_eq!((p.jobs, p.dead_letters), (1, 0));
    assert!(p.events >= 3, "the job's events go with it: {p:?}");
    assert!(s.get_job(ids[0]).await.unwrap().is_none());
    assert!(event_kinds(s, ids[0]).await.is_empty());
    assert_eq!(state(s, ids[1]).await, JobState::Discarded);
    assert_eq!(
        state(s, ids[2]).await,
        JobState::Running,
        "unfinished jobs stay"
    );
    assert_eq!(state(s, ids[3]).await, JobState::Available);
    let p = s.purge(&r, T0.plus(hour * 3)).await.unwrap();
    assert_eq!((p.jobs, p.dead_letters), (0, 1));
    assert!(s.dead_letters(None, 10).await.unwrap().is_empty());
    assert_eq!(state(s, ids[2]).await, JobState::Running);

    let (a, b) = (NodeId("a".into()), NodeId("b".into()));
    let ttl = Duration::from_secs(10);
    let at = |secs: u64| T0.plus(Duration::from_secs(secs));
    assert!(s.try_lead("maintenance", &a, ttl, at(0)).await.unwrap());
    assert!(!s.try_lead("maintenance", &b, ttl, at(5)).await.unwrap());
    assert!(
        s.try_lead("maintenance", &a, ttl, at(5)).await.unwrap(),
        "renewal"
    );
    assert!(!s.try_lead("maintenance", &b, ttl, at(14)).await.unwrap());
    assert!(
        s.try_lead("maintenance", &b, ttl, at(16)).await.unwrap(),
        "lapsed"
    );
    assert!(!s.try_lead("maintenance", &a, ttl, at(17)).await.unwrap());
    assert!(s.try_lead("other-role", &a, ttl, at(17)).await.unwrap());

    // Posts: one per key, replaced with their time; an oversized one refused, the last
    // kept.
    assert_eq!(s.posted("counts").await.unwrap(), None);
    s.post("counts", b"one", at(1)).await.unwrap();
    s.post("counts", b"two", at(2)).await.unwrap();
    s.post("wish", b"x", at(3)).await.unwrap();
    assert_eq!(
        s.posted("counts").await.unwrap(),
        Some((at(2), b"two".to_vec()))
    );
    let big = vec![0u8; crate::store::MAX_POST_BYTES + 1];
    assert!(matches!(
        s.post("counts", &big, at(4)).await,
        Err(crate::store::StoreError::Invalid(_))
    ));
    assert_eq!(
        s.posted("wish").await.unwrap(),
        Some((at(3), b"x".to_vec()))
    );
    assert_eq!(s.posted("counts").await.unwrap().unwrap().0, at(2));
}

/// Counts, filters, paging and the event log.
pub async fn listing_and_events(s: &dyn Store) {
    let mut other = job("x");
    other.queue = "other".into();
    ids(s, vec![job("a"), job("b"), job("a"), other], T0).await;
    let c = claim(s, 1, T0).await.remove(0);
    s.complete(vec![ok(&c, T0)]).await.unwrap();
    let counts = s.counts().await.unwrap();
    assert_eq!(counts["default"][&JobState::Succeeded], 1);
    assert_eq!(counts["default"][&JobState::Available], 2);
    assert_eq!(counts["other"][&JobState::Available], 1);
    let only_a = s
        .list_jobs(&JobFilter {
            kind: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_a.len(), 2);
    let page1 = s
        .list_jobs(&JobFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let page2 = s
        .list_jobs(&JobFilter {
            limit: 2,
            after: Some(crate::store::After::Id(page1[1].id)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 4);
    assert!(page2[0].id > page1[1].id);
    let avail = s
        .list_jobs(&JobFilter {
            states: vec![JobState::Available],
            queues: vec!["default".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(avail.len(), 2);
    s.record_events(vec![
        LifecycleEvent::new(EventKind::WorkerStarted, T0).worker(WorkerId("n1/w0".into())),
    ])
    .await
    .unwrap();
    let all = s.events_after(0, 1000).await.unwrap();
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "events are ordered by seq"
    );
    assert_eq!(all.last().unwrap().event.kind, EventKind::WorkerStarted);
    let tail = s.events_after(all[all.len() - 2].seq, 1000).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(
        all.iter()
            .filter(|e| e.event.kind == EventKind::JobEnqueued)
            .count(),
        4
    );
}
