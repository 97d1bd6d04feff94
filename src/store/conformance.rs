//! A backend-agnostic conformance suite for [`Store`]: every backend runs the same
//! cases (see [`crate::store_conformance_tests`]). Each case takes a fresh, empty store
//! and panics with a message naming the broken rule.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CancelOutcome, EnqueueOutcome, JobFilter, Redrive, Store};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, JobId, JobState, NewJob, NodeId,
    Outcome, ParentFailurePolicy, WorkerId,
};

/// The time every case starts at.
pub const T0: Millis = Millis(1_700_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

fn job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({"k": kind}))
}

/// A claim by node `node` (worker `<node>/w0`) of up to `limit` jobs of the `default`
/// queue, with 30 s leases. Shared with the backends' own suites.
pub fn request(node: &str, limit: u32, now: Millis) -> ClaimRequest {
    ClaimRequest {
        queues: vec!["default".into()],
        worker: WorkerId(format!("{node}/w0")),
        node: NodeId(node.into()),
        limit,
        lease_for: LEASE,
        now,
    }
}

async fn claim(s: &dyn Store, limit: u32, now: Millis) -> Vec<ClaimedJob> {
    s.claim(&request("n1", limit, now)).await.expect("claim")
}

/// The attempt of claim `c`, started and finished at `at`, ending with `outcome`.
pub fn done(c: &ClaimedJob, outcome: Outcome, at: Millis) -> Completion {
    Completion {
        lease: c.lease.clone(),
        outcome,
        started_at: at,
        finished_at: at,
    }
}

/// The attempt of claim `c`, succeeded at `at` (output `{"ok": true}`).
pub fn ok(c: &ClaimedJob, at: Millis) -> Completion {
    done(
        c,
        Outcome::Succeeded {
            output: Some(json!({"ok": true})),
        },
        at,
    )
}

async fn ids(s: &dyn Store, jobs: Vec<NewJob>, now: Millis) -> Vec<JobId> {
    s.enqueue(jobs, now)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|o| o.id())
        .collect()
}

async fn state(s: &dyn Store, id: JobId) -> JobState {
    s.get_job(id)
        .await
        .expect("get_job")
        .unwrap_or_else(|| panic!("job {id} vanished"))
        .state
}

async fn event_kinds(s: &dyn Store, id: JobId) -> Vec<EventKind> {
    s.events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.job == Some(id))
        .map(|e| e.event.kind)
        .collect()
}

/// Claims follow priority (higher first), then `run_at`, then id.
pub async fn claim_order(s: &dyn Store) {
    let mut low = job("low");
    low.priority = -5;
    let mut high = job("high");
    high.priority = 10;
    let mut early = job("early");
    early.run_at = Some(Millis(T0.0 - 1000));
    let jobs = ids(s, vec![job("plain"), low, high, early], T0).await;
    let got: Vec<JobId> = claim(s, 10, T0).await.iter().map(|c| c.job.id).collect();
    assert_eq!(
        got,
        vec![jobs[2], jobs[3], jobs[0], jobs[1]],
        "claim order: priority desc, run_at, id"
    );
}

/// A claim sets the lease, bumps the attempt and token, and writes `job.claimed`.
pub async fn claim_sets_lease(s: &dyn Store) {
    let [id] = ids(s, vec![job("a")], T0).await[..] else {
        unreachable!()
    };
    let before = s.get_job(id).await.unwrap().unwrap();
    assert_eq!((before.state, before.attempt), (JobState::Available, 0));
    let c = claim(s, 5, T0).await;
    assert_eq!(c.len(), 1);
    let (j, l) = (&c[0].job, &c[0].lease);
    assert_eq!((j.state, j.attempt, l.attempt), (JobState::Running, 1, 1));
    assert!(
        l.token > before.lease_token,
        "claim must bump the fencing token"
    );
    assert_eq!(l.expires_at, T0.plus(LEASE));
    assert_eq!(j.lease_node, Some(NodeId("n1".into())));
    assert!(
        claim(s, 5, T0).await.is_empty(),
        "a running job is not claimed again"
    );
    assert_eq!(
        event_kinds(s, id).await,
        [EventKind::JobEnqueued, EventKind::JobClaimed]
    );
}

/// Delayed jobs wait for `promote_due`; `next_due` reports the earliest.
pub async fn delayed_jobs(s: &dyn Store) {
    let mut later = job("later");
    later.run_at = Some(T0.plus(Duration::from_secs(60)));
    let [id] = ids(s, vec![later], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(state(s, id).await, JobState::Scheduled);
    assert_eq!(
        s.next_due().await.unwrap(),
        Some(T0.plus(Duration::from_secs(60)))
    );
    assert_eq!(
        s.promote_due(T0.plus(Duration::from_secs(59)))
            .await
            .unwrap(),
        0
    );
    assert!(
        claim(s, 5, T0).await.is_empty(),
        "a scheduled job is not claimable"
    );
    assert_eq!(
        s.promote_due(T0.plus(Duration::from_secs(60)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(claim(s, 5, T0.plus(Duration::from_secs(60))).await.len(), 1);
    assert_eq!(s.next_due().await.unwrap(), None);
}

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
        .redrive(Redrive::Ids(vec![cs[0].job.id]), T0)
        .await
        .unwrap();
    assert_eq!(redriven, [cs[0].job.id]);
    let j = s.get_job(cs[0].job.id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));
    assert_eq!(s.dead_letters(None, 10).await.unwrap().len(), 1);
    assert_eq!(s.redrive(Redrive::All, T0).await.unwrap(), [cs[1].job.id]);
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
    assert_eq!(s.cancel(a, T0).await.unwrap(), CancelOutcome::Cancelled);
    let running = claim(s, 1, T0).await.remove(0);
    assert_eq!(running.job.id, b);
    assert_eq!(s.cancel(b, T0).await.unwrap(), CancelOutcome::Cancelled);
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
        s.cancel(a, T0).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    assert!(matches!(
        s.cancel(JobId(999_999), T0).await,
        Err(super::StoreError::NotFound(_))
    ));
}

/// A unique key admits one unfinished job, and is free again once it finished.
pub async fn unique_keys(s: &dyn Store) {
    let mut u = job("u");
    u.unique_key = Some("report-42".into());
    let first = s.enqueue(vec![u.clone(), u.clone()], T0).await.unwrap();
    let EnqueueOutcome::Inserted(id) = first[0] else {
        panic!("first insert: {first:?}")
    };
    assert_eq!(
        first[1],
        EnqueueOutcome::Duplicate(id),
        "a duplicate within the batch"
    );
    assert_eq!(
        s.enqueue(vec![u.clone()], T0).await.unwrap(),
        [EnqueueOutcome::Duplicate(id)]
    );
    let c = claim(s, 1, T0).await.remove(0);
    s.complete(vec![ok(&c, T0)]).await.unwrap();
    assert!(
        matches!(s.enqueue(vec![u], T0).await.unwrap()[0], EnqueueOutcome::Inserted(n) if n != id)
    );
}

/// Children wait for all parents; success releases them.
pub async fn dependencies_release_on_success(s: &dyn Store) {
    let [p1, p2] = ids(s, vec![job("p1"), job("p2")], T0).await[..] else {
        unreachable!()
    };
    let mut child = job("child");
    child.depends_on = vec![p1, p2];
    let [c] = ids(s, vec![child], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(state(s, c).await, JobState::Waiting);
    assert_eq!(s.get_job(c).await.unwrap().unwrap().depends_on, [p1, p2]);
    let claimed = claim(s, 5, T0).await;
    assert_eq!(claimed.len(), 2, "the child is not claimable");
    s.complete(vec![ok(&claimed[0], T0)]).await.unwrap();
    assert_eq!(
        state(s, c).await,
        JobState::Waiting,
        "one parent is not enough"
    );
    s.complete(vec![ok(&claimed[1], T0)]).await.unwrap();
    assert_eq!(state(s, c).await, JobState::Available);
    // A parent that already succeeded does not hold a new child back.
    let mut late = job("late");
    late.depends_on = vec![p1];
    let [l] = ids(s, vec![late], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(state(s, l).await, JobState::Available);
}

/// A workflow submitted in one batch links parents by index.
pub async fn dependencies_by_batch_index(s: &dyn Store) {
    let mut b = job("b");
    b.depends_on_index = vec![0];
    let mut c = job("c");
    c.depends_on_index = vec![0, 1];
    let [a, b, c] = ids(s, vec![job("a"), b, c], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(s.get_job(c).await.unwrap().unwrap().depends_on, [a, b]);
    let mut bad = job("bad");
    bad.depends_on_index = vec![0];
    let err = s.enqueue(vec![bad], T0).await.unwrap_err();
    assert!(matches!(err, super::StoreError::Invalid(_)), "{err}");
}

/// An unknown parent refuses the whole batch and stores nothing.
pub async fn unknown_parent_stores_nothing(s: &dyn Store) {
    let mut orphan = job("orphan");
    orphan.depends_on = vec![JobId(424_242)];
    let err = s
        .enqueue(vec![job("innocent"), orphan], T0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("424242"), "{err}");
    assert!(
        s.list_jobs(&JobFilter::default()).await.unwrap().is_empty(),
        "the batch is all or nothing"
    );
}

/// A discarded parent discards `discard` children transitively and holds `hold` ones;
/// a held child runs once its parent is redriven and succeeds.
pub async fn dependencies_parent_failure(s: &dyn Store) {
    let [p] = ids(s, vec![job("p")], T0).await[..] else {
        unreachable!()
    };
    let mut d1 = job("d1");
    d1.depends_on = vec![p];
    let mut d2 = job("d2");
    d2.depends_on_index = vec![0];
    let mut h = job("h");
    h.depends_on = vec![p];
    h.on_parent_failure = ParentFailurePolicy::Hold;
    let [d1, d2, h] = ids(s, vec![d1, d2, h], T0).await[..] else {
        unreachable!()
    };
    let c = claim(s, 1, T0).await.remove(0);
    s.complete(vec![done(
        &c,
        Outcome::Discard {
            error: "dead".into(),
        },
        T0,
    )])
    .await
    .unwrap();
    assert_eq!(state(s, d1).await, JobState::Discarded);
    assert_eq!(
        state(s, d2).await,
        JobState::Discarded,
        "discard cascades to grandchildren"
    );
    assert_eq!(state(s, h).await, JobState::Waiting, "hold keeps waiting");
    let dead: HashSet<JobId> = s
        .dead_letters(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.job.id)
        .collect();
    assert_eq!(dead, HashSet::from([p, d1, d2]));
    s.redrive(Redrive::Ids(vec![p]), T0).await.unwrap();
    let again = claim(s, 1, T0).await.remove(0);
    assert_eq!(again.job.id, p);
    s.complete(vec![ok(&again, T0)]).await.unwrap();
    assert_eq!(
        state(s, h).await,
        JobState::Available,
        "the held child is released"
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

/// Lease extension succeeds only for current leases.
pub async fn extend_leases(s: &dyn Store) {
    ids(s, vec![job("a"), job("b")], T0).await;
    let cs = claim(s, 2, T0).await;
    s.complete(vec![ok(&cs[1], T0)]).await.unwrap();
    let until = T0.plus(LEASE * 3);
    let r = s
        .extend_leases(&[cs[0].lease.clone(), cs[1].lease.clone()], until)
        .await
        .unwrap();
    assert_eq!(r, [true, false]);
    assert_eq!(
        s.get_job(cs[0].job.id)
            .await
            .unwrap()
            .unwrap()
            .lease_expires_at,
        Some(until)
    );
    assert!(
        s.rescue_expired(T0.plus(LEASE * 2))
            .await
            .unwrap()
            .is_empty(),
        "an extended lease is not rescued"
    );
}

/// Releasing unstarted jobs returns their attempt and kills the old lease.
pub async fn release_unstarted(s: &dyn Store) {
    ids(s, vec![job("a"), job("b")], T0).await;
    let cs = claim(s, 2, T0).await;
    s.complete(vec![ok(&cs[1], T0)]).await.unwrap();
    let r = s
        .release(&[cs[0].lease.clone(), cs[1].lease.clone()], T0)
        .await
        .unwrap();
    assert_eq!(r, [true, false], "a finished job is not released");
    let j = s.get_job(cs[0].job.id).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));
    assert_eq!(
        s.complete(vec![ok(&cs[0], T0)]).await.unwrap(),
        [CompletionResult::StaleLease],
        "the released lease is dead"
    );
    let again = claim(s, 1, T0).await.remove(0);
    assert_eq!((again.job.id, again.lease.attempt), (cs[0].job.id, 1));
    assert!(again.lease.token > cs[0].lease.token);
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
            after: Some(page1[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), 4);
    assert!(page2[0].id > page1[1].id);
    let avail = s
        .list_jobs(&JobFilter {
            state: Some(JobState::Available),
            queue: Some("default".into()),
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

/// Concurrent claimers never take the same job, and every job is taken once.
pub async fn concurrent_claimers(s: Arc<dyn Store>) {
    let total = 2000;
    for chunk in 0..(total / 500) {
        let jobs = (0..500)
            .map(|i| job(&format!("j{}", chunk * 500 + i)))
            .collect();
        s.enqueue(jobs, T0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim(&request(&format!("n{w}"), 7, T0)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                let batch: Vec<_> = got.iter().map(|c| ok(c, T0)).collect();
                let r = s.complete(batch).await.unwrap();
                assert!(r.iter().all(|r| *r == CompletionResult::Applied));
                mine.extend(got.into_iter().map(|c| c.job.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), total);
    assert_eq!(
        s.counts().await.unwrap()["default"][&JobState::Succeeded],
        total as u64
    );
}

/// What a store holds, to compare before and after a refused request.
async fn snapshot(s: &dyn Store) -> (Vec<crate::job::Job>, usize) {
    let jobs = s
        .list_jobs(&JobFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list_jobs");
    let events = s.events_after(0, 100_000).await.expect("events").len();
    (jobs, events)
}

/// `{"a": {"a": ... 1}}` with `n` objects.
pub fn nested(n: usize) -> serde_json::Value {
    (0..n).fold(json!(1), |v, _| json!({ "a": v }))
}

/// A payload nested deeper than [`crate::payload::MAX_PAYLOAD_DEPTH`], or a NUL in any
/// string field or anywhere in the payload, is refused at enqueue with the field's path,
/// the same on every store, and the store holds exactly what it held before.
pub async fn hostile_input_is_refused(s: &dyn Store) {
    ids(s, vec![job("before")], T0).await;
    let before = snapshot(s).await;
    let depth = crate::payload::MAX_PAYLOAD_DEPTH;
    let deep_path = format!("payload{}", ".a".repeat(depth));
    let with = |f: &dyn Fn(&mut NewJob)| {
        let mut j = job("hostile");
        f(&mut j);
        j
    };
    let cases: Vec<(NewJob, String)> = vec![
        (
            with(&|j| j.payload = nested(depth + 1)),
            format!("{deep_path}: nested deeper than {depth} levels"),
        ),
        (
            // 126 levels: what once stopped every claim on SQLite.
            with(&|j| j.payload = nested(126)),
            format!("{deep_path}: nested deeper than {depth} levels"),
        ),
        (
            with(&|j| j.payload = json!({"a": {"b": ["x", "y", "z\u{0}"]}})),
            "payload.a.b[2]: string contains a NUL character".into(),
        ),
        (
            with(&|j| j.payload = json!({"a": [{"k\u{0}": 1}]})),
            "payload.a[0]: key \"k\\0\" contains a NUL character".into(),
        ),
        (
            with(&|j| j.queue = "de\u{0}fault".into()),
            "queue: contains a NUL character".into(),
        ),
        (
            with(&|j| j.kind = "noop\u{0}".into()),
            "kind: contains a NUL character".into(),
        ),
        (
            with(&|j| j.unique_key = Some("\u{0}".into())),
            "unique_key: contains a NUL character".into(),
        ),
    ];
    for (bad, want) in cases {
        // After a good job in the same batch: the whole batch is refused.
        let err = s
            .enqueue(vec![job("fine"), bad], T0)
            .await
            .expect_err(&format!("refused: {want}"))
            .to_string();
        assert!(
            err.contains(&format!("job 1 of the batch: {want}")),
            "the error names the field: got `{err}`, want `{want}`"
        );
        assert!(
            snapshot(s).await == before,
            "a refused batch leaves the store as it was ({want})"
        );
    }
    // At the limit is fine.
    let mut deepest = job("deepest");
    deepest.payload = nested(depth);
    let [id] = ids(s, vec![deepest], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(s.get_job(id).await.unwrap().unwrap().payload, nested(depth));
}

/// What a finished attempt reports (an output, an error) and the events a node records
/// are stored even with NUL characters in them, replaced by U+FFFD the same on every
/// store, and never fail the batch they come in (Postgres cannot hold a NUL).
pub async fn nul_in_results_is_scrubbed(s: &dyn Store) {
    let jobs = ids(s, vec![job("a"), job("b")], T0).await;
    let c = claim(s, 2, T0).await;
    let batch = vec![
        done(
            &c[0],
            Outcome::Succeeded {
                output: Some(json!({"out\u{0}": "a\u{0}b"})),
            },
            T0,
        ),
        done(
            &c[1],
            Outcome::Discard {
                error: "bad\u{0}byte".into(),
            },
            T0,
        ),
    ];
    let r = s.complete(batch).await.expect("complete with NULs");
    assert_eq!(r, vec![CompletionResult::Applied; 2]);
    let a = s.get_job(jobs[0]).await.unwrap().unwrap();
    assert_eq!(a.output, Some(json!({"out\u{FFFD}": "a\u{FFFD}b"})));
    let b = s.get_job(jobs[1]).await.unwrap().unwrap();
    assert_eq!(b.last_error.as_deref(), Some("bad\u{FFFD}byte"));
    s.record_events(vec![
        LifecycleEvent::new(EventKind::WorkerCrashed, T0)
            .worker(WorkerId("n1/w\u{0}".into()))
            .detail(json!({"error": "\u{0}"})),
    ])
    .await
    .expect("record_events with NULs");
    let last = s.events_after(0, 100_000).await.unwrap().pop().unwrap();
    assert_eq!(last.event.detail, json!({"error": "\u{FFFD}"}));
    assert_eq!(last.event.worker, Some(WorkerId("n1/w\u{FFFD}".into())));
}

/// Rewrites a stored job's row so that this version cannot decode it, as a row written
/// by another version or by hand in SQL could be: variant 0 and 1 are two different
/// kinds of damage to the job's row, chosen by the backend; variant 2 gives the job's
/// events a kind this version does not know (it needs raw SQL, so each backend's test
/// binary supplies it).
pub type Spoil = Box<
    dyn Fn(JobId, u8) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A row that cannot be decoded fails only its own job: claims beside it (and on other
/// queues) go on, and it ends dead-lettered with the decode error as the reason, under
/// a fenced discard; listings and the event log leave it out instead of failing.
pub async fn undecodable_row_fails_only_its_job(s: &dyn Store, spoil: &Spoil) {
    let mut other = job("other");
    other.queue = "other".into();
    let jobs = ids(
        s,
        vec![job("a"), job("bad0"), job("b"), job("bad1"), other],
        T0,
    )
    .await;
    spoil(jobs[1], 0).await;
    spoil(jobs[3], 1).await;
    let mut req = request("n1", 10, T0);
    req.queues = vec!["default".into(), "other".into()];
    let claimed = s
        .claim(&req)
        .await
        .expect("a claim beside bad rows succeeds");
    let got: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
    assert_eq!(
        got,
        vec![jobs[0], jobs[2], jobs[4]],
        "the good jobs are claimed"
    );
    assert!(
        s.claim(&req).await.expect("claim").is_empty(),
        "the bad jobs are not handed out later either"
    );
    let counts = s.counts().await.unwrap();
    assert_eq!(counts["default"][&JobState::Discarded], 2, "{counts:?}");
    assert_eq!(counts["default"][&JobState::Running], 2, "{counts:?}");
    for bad in [jobs[1], jobs[3]] {
        let err = s
            .get_job(bad)
            .await
            .expect_err("reading the bad row alone is an error")
            .to_string();
        assert!(err.contains(&format!("job {bad}")), "{err}");
        let events = s.events_after(0, 100_000).await.unwrap();
        let discarded = events
            .iter()
            .find(|e| e.event.job == Some(bad) && e.event.kind == EventKind::JobDiscarded)
            .unwrap_or_else(|| panic!("job {bad} has a job.discarded event"));
        let reason = discarded.event.detail["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.starts_with("undecodable row: "), "{reason}");
    }
    let listed: Vec<JobId> = s
        .list_jobs(&JobFilter::default())
        .await
        .expect("a listing beside bad rows succeeds")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        listed,
        vec![jobs[0], jobs[2], jobs[4]],
        "bad rows are left out"
    );
    assert!(
        s.dead_letters(None, 100)
            .await
            .expect("the dead-letter listing beside bad rows succeeds")
            .is_empty()
    );
    // The good jobs' leases are untouched by the discards beside them.
    let done: Vec<Completion> = claimed.iter().map(|c| ok(c, T0)).collect();
    assert!(
        s.complete(done)
            .await
            .unwrap()
            .iter()
            .all(|r| *r == CompletionResult::Applied)
    );
}

/// An event this version cannot decode is left out without making its page look like
/// the end of the log: `events_after` reads on until it has `limit` events, so readers
/// that stop at a short page (`jobmesh events`, the tail position) still see what follows.
pub async fn undecodable_event_does_not_end_a_page(s: &dyn Store, spoil: &Spoil) {
    let before = s.events_after(0, 100_000).await.unwrap();
    let base = before.last().map_or(0, |e| e.seq);
    let jobs = ids(s, vec![job("a"), job("bad"), job("c")], T0).await;
    spoil(jobs[1], 2).await;
    let page = s
        .events_after(base, 2)
        .await
        .expect("a page beside a bad event");
    let got: Vec<Option<JobId>> = page.iter().map(|e| e.event.job).collect();
    assert_eq!(
        got,
        vec![Some(jobs[0]), Some(jobs[2])],
        "a full page: the bad event is left out and the next one read in its place"
    );
    assert!(
        s.events_after(page[1].seq, 2).await.unwrap().is_empty(),
        "nothing after the last"
    );
}

fn on_queue(kind: &str, queue: &str) -> NewJob {
    let mut j = job(kind);
    j.queue = queue.into();
    j
}

/// A claim like [`request`] from the given queues.
fn from_queues(queues: &[&str], limit: u32, now: Millis) -> ClaimRequest {
    ClaimRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        ..request("n1", limit, now)
    }
}

/// The queues named by the `queue.paused` / `queue.resumed` events, in log order.
async fn queue_events(s: &dyn Store) -> Vec<(EventKind, String)> {
    s.events_after(0, 10_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| {
            matches!(
                e.event.kind,
                EventKind::QueuePaused | EventKind::QueueResumed
            )
        })
        .map(|e| {
            let q = e.event.detail["queue"].as_str().expect("queue in detail");
            (e.event.kind, q.to_owned())
        })
        .collect()
}

/// A paused queue takes jobs but hands none out, while other queues run; resuming makes
/// its jobs claimable. Pause and resume are idempotent and each change writes one event.
pub async fn paused_queue_is_not_claimed(s: &dyn Store) {
    let before = ids(s, vec![on_queue("m", "mail"), on_queue("m", "mail")], T0).await;
    assert!(
        s.pause_queue("mail", T0).await.unwrap(),
        "first pause changes"
    );
    assert!(
        !s.pause_queue("mail", T0.plus(Duration::from_millis(1)))
            .await
            .unwrap(),
        "pausing a paused queue changes nothing"
    );
    let paused = s.paused_queues().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(
        (paused[0].queue.as_str(), paused[0].paused_at),
        ("mail", T0)
    );
    // Enqueues still succeed.
    let after = ids(s, vec![on_queue("m", "mail"), job("d"), job("d")], T0).await;
    assert_eq!(after.len(), 3);
    assert_eq!(state(s, after[0]).await, JobState::Available);

    let got = s
        .claim(&from_queues(&["default", "mail"], 10, T0))
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "only the running queue's jobs");
    assert!(got.iter().all(|c| c.job.queue == "default"), "{got:?}");
    let none = s.claim(&from_queues(&["mail"], 10, T0)).await.unwrap();
    assert!(
        none.is_empty(),
        "a paused queue hands out nothing: {none:?}"
    );
    for id in before.iter().chain(&after[..1]) {
        assert_eq!(state(s, *id).await, JobState::Available);
    }

    assert!(s.resume_queue("mail", T0).await.unwrap(), "resume changes");
    assert!(
        !s.resume_queue("mail", T0).await.unwrap(),
        "resuming twice changes nothing"
    );
    assert!(s.paused_queues().await.unwrap().is_empty());
    let got = s.claim(&from_queues(&["mail"], 10, T0)).await.unwrap();
    let mut claimed: Vec<JobId> = got.iter().map(|c| c.job.id).collect();
    claimed.sort();
    let mut want: Vec<JobId> = before.iter().chain(&after[..1]).copied().collect();
    want.sort();
    assert_eq!(
        claimed, want,
        "resumed: every job of the queue is claimable"
    );

    assert_eq!(
        queue_events(s).await,
        [
            (EventKind::QueuePaused, "mail".to_owned()),
            (EventKind::QueueResumed, "mail".to_owned())
        ],
        "one event per change, none for the repeats"
    );
}

/// Pausing one queue leaves a claim of several queues served in dispatch order from the
/// others, and a queue name no job could carry is refused with the reason.
pub async fn pause_is_per_queue(s: &dyn Store) {
    let mut hi = on_queue("h", "a");
    hi.priority = 10;
    ids(s, vec![hi, on_queue("b", "b"), on_queue("c", "c")], T0).await;
    s.pause_queue("a", T0).await.unwrap();
    let got = s
        .claim(&from_queues(&["a", "b", "c"], 10, T0))
        .await
        .unwrap();
    let queues: Vec<&str> = got.iter().map(|c| c.job.queue.as_str()).collect();
    assert_eq!(queues, ["b", "c"]);
    let e = s.pause_queue("", T0).await.unwrap_err().to_string();
    assert!(e.contains("queue name is empty"), "{e}");
    let e = s.resume_queue("", T0).await.unwrap_err().to_string();
    assert!(e.contains("queue name is empty"), "{e}");
}

/// A pause is kept by the store: `reopen` opens the same store again (as a restarted
/// node does), which still skips the queue until it is resumed there.
pub async fn pause_survives_reopen<F, Fut>(s: Arc<dyn Store>, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let id = ids(&*s, vec![on_queue("m", "mail")], T0).await[0];
    s.pause_queue("mail", T0).await.unwrap();
    drop(s);
    let s = reopen().await;
    assert_eq!(s.paused_queues().await.unwrap()[0].queue, "mail");
    assert!(
        s.claim(&from_queues(&["mail"], 5, T0))
            .await
            .unwrap()
            .is_empty()
    );
    s.resume_queue("mail", T0).await.unwrap();
    let got = s.claim(&from_queues(&["mail"], 5, T0)).await.unwrap();
    assert_eq!(got.iter().map(|c| c.job.id).collect::<Vec<_>>(), [id]);
}

/// Expands to one `#[tokio::test]` per conformance case, each with a fresh store from
/// `$make` (an async fn returning `SharedStore`). With a second argument (an async fn
/// returning a fresh `SharedStore` and a [`conformance::Spoil`](crate::store::conformance::Spoil)
/// for it), also the cases that need rows planted by raw SQL.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path, $spoilable:path) => {
        $crate::store_conformance_tests!($make);
        #[tokio::test]
        async fn undecodable_row_fails_only_its_job() {
            let (store, spoil) = $spoilable().await;
            $crate::store::conformance::undecodable_row_fails_only_its_job(&*store, &spoil).await;
        }
        #[tokio::test]
        async fn undecodable_event_does_not_end_a_page() {
            let (store, spoil) = $spoilable().await;
            $crate::store::conformance::undecodable_event_does_not_end_a_page(&*store, &spoil)
                .await;
        }
    };
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            claim_order, claim_sets_lease, delayed_jobs, success_and_exactly_once,
            stale_lease_is_refused_after_rescue, retry_cycle, dead_letter_and_redrive, cancel, unique_keys,
            dependencies_release_on_success, dependencies_by_batch_index, unknown_parent_stores_nothing,
            dependencies_parent_failure, revoke_node_and_expiry, extend_leases, release_unstarted,
            retention_and_leader_lease, listing_and_events, hostile_input_is_refused,
            nul_in_results_is_scrubbed, paused_queue_is_not_claimed, pause_is_per_queue);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_claimers() {
            $crate::store::conformance::concurrent_claimers($make().await).await;
        }
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let store = $make().await;
                $crate::store::conformance::$case(&*store).await;
            }
        )*
    };
}
