//! Finishing attempts: success recorded exactly once, the fencing of stale leases,
//! the retry cycle, and lost leases (expiry, revocation with a node).

use super::*;

/// Success is recorded once, with output, an execution and an event.
pub async fn success_and_exactly_once(s: &dyn Store) {
    ids(s, vec![job("a")], T0).await;
    let c = claim(s, 1, T0).await.remove(0);
    let t1 = T0.plus(Duration::from_millis(5));
    let r = s.complete(vec![ok(&c, t1), ok(&c, t1)]).await.unwrap();
    assert_eq!(
        r,
        [CompletionResult::Applied, CompletionResult::StaleLease],
        "a duplicate in one batch applies once"
    );
    assert_eq!(
        s.complete(vec![ok(&c, t1)]).await.unwrap(),
        [CompletionResult::StaleLease],
        "a repeated completion is refused"
    );
    let j = s.get_job(c.job.id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.finished_at, j.output),
        (JobState::Succeeded, Some(t1), Some(json!({"ok": true})))
    );
    let kinds = event_kinds(s, c.job.id).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::JobSucceeded)
            .count(),
        1,
        "{kinds:?}"
    );
}

/// Two reports of one lease in a batch, a failure then a success: the first wins on
/// every store, whatever the order a backend applies outcomes in.
pub async fn first_report_of_a_lease_wins(s: &dyn Store) {
    ids(s, vec![job("a")], T0).await;
    let c = claim(s, 1, T0).await.remove(0);
    let t1 = T0.plus(Duration::from_millis(5));
    let failed = done(
        &c,
        Outcome::Discard {
            error: "boom".into(),
        },
        t1,
    );
    let r = s.complete(vec![failed, ok(&c, t1)]).await.unwrap();
    assert_eq!(
        r,
        [CompletionResult::Applied, CompletionResult::StaleLease],
        "the failure came first"
    );
    assert_eq!(state(s, c.job.id).await, JobState::Discarded);
}

/// A zombie holding an old lease cannot finish a rescued job; the new holder can.
pub async fn stale_lease_is_refused_after_rescue(s: &dyn Store) {
    ids(s, vec![job("a")], T0).await;
    let zombie = claim(s, 1, T0).await.remove(0);
    let later = T0.plus(LEASE + Duration::from_secs(1));
    let rescued = s.rescue_expired(later).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(
        (rescued[0].id, rescued[0].state),
        (zombie.job.id, JobState::Available)
    );
    let fresh = claim(s, 1, later).await.remove(0);
    assert_eq!(fresh.lease.attempt, 2);
    assert!(fresh.lease.token > zombie.lease.token);
    assert_eq!(
        s.complete(vec![ok(&zombie, later)]).await.unwrap(),
        [CompletionResult::StaleLease]
    );
    assert_eq!(
        state(s, zombie.job.id).await,
        JobState::Running,
        "the zombie changed nothing"
    );
    assert_eq!(
        s.complete(vec![ok(&fresh, later)]).await.unwrap(),
        [CompletionResult::Applied]
    );
    assert!(
        event_kinds(s, zombie.job.id)
            .await
            .contains(&EventKind::JobRescued)
    );
}

/// Retry: retryable, promoted when due, claimed again with the next attempt.
pub async fn retry_cycle(s: &dyn Store) {
    ids(s, vec![job("a")], T0).await;
    let c = claim(s, 1, T0).await.remove(0);
    let run_at = T0.plus(Duration::from_secs(2));
    let r = s
        .complete(vec![done(
            &c,
            Outcome::Retry {
                error: "boom".into(),
                run_at,
            },
            T0,
        )])
        .await
        .unwrap();
    assert_eq!(r, [CompletionResult::Applied]);
    let j = s.get_job(c.job.id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.run_at, j.last_error.as_deref()),
        (JobState::Retryable, run_at, Some("boom"))
    );
    assert_eq!(s.promote_due(run_at).await.unwrap(), 1);
    let again = claim(s, 1, run_at).await.remove(0);
    assert_eq!(again.lease.attempt, 2);
    let kinds = event_kinds(s, c.job.id).await;
    assert!(
        kinds.contains(&EventKind::JobFailed) && kinds.contains(&EventKind::JobRetryScheduled),
        "{kinds:?}"
    );
}

/// Revocation touches only the named node's running jobs; out of attempts means discard.
pub async fn revoke_node_and_expiry(s: &dyn Store) {
    let mut once = job("once");
    once.max_attempts = 1;
    ids(s, vec![job("a"), job("b"), once], T0).await;
    let a = s.claim(&request("n1", 1, T0)).await.unwrap().remove(0);
    let b = s.claim(&request("n2", 1, T0)).await.unwrap().remove(0);
    let rescued = s
        .revoke_node(&NodeId("n1".into()), T0, json!({"certificate": "c"}))
        .await
        .unwrap();
    assert_eq!(rescued.iter().map(|r| r.id).collect::<Vec<_>>(), [a.job.id]);
    assert_eq!(state(s, a.job.id).await, JobState::Available);
    assert_eq!(
        state(s, b.job.id).await,
        JobState::Running,
        "another node's lease is untouched"
    );
    let later = T0.plus(LEASE * 2);
    let once = s.claim(&request("n2", 5, T0)).await.unwrap();
    let once = once
        .iter()
        .find(|c| c.job.kind == "once")
        .expect("claimed `once`");
    let rescued = s.rescue_expired(later).await.unwrap();
    let by_id: BTreeMap<JobId, JobState> = rescued.iter().map(|r| (r.id, r.state)).collect();
    assert_eq!(
        by_id.get(&once.job.id),
        Some(&JobState::Discarded),
        "no attempts left: {rescued:?}"
    );
    assert_eq!(by_id.get(&b.job.id), Some(&JobState::Available));
    assert_eq!(s.dead_letters(None, 10).await.unwrap().len(), 1);
}
