//! Claiming: the order claims hand jobs out in, what a claim sets, delayed jobs, lease
//! extension, giving unstarted claims back, and concurrent claimers.

use super::*;

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

/// Concurrent claimers never take the same job, and every job is taken once.
pub async fn concurrent_claimers(s: Arc<dyn Store>) {
    claim_concurrently(s, &["default"]).await;
}

/// The same with the jobs spread over three queues and every claimer serving all three
/// (Postgres claims several queues with another statement than one).
pub async fn concurrent_claimers_of_several_queues(s: Arc<dyn Store>) {
    claim_concurrently(s, &["a", "b", "c"]).await;
}

async fn claim_concurrently(s: Arc<dyn Store>, queues: &[&str]) {
    let total = 2000;
    let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    for chunk in 0..(total / 500) {
        let jobs = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                let mut j = job(&format!("j{n}"));
                j.queue = queues[n % queues.len()].clone();
                j
            })
            .collect();
        s.enqueue(jobs, T0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        let queues = queues.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let req = ClaimRequest {
                    queues: queues.clone(),
                    ..request(&format!("n{w}"), 7, T0)
                };
                let got = s.claim(&req).await.unwrap();
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
    let counts = s.counts().await.unwrap();
    let succeeded: u64 = queues.iter().map(|q| counts[q][&JobState::Succeeded]).sum();
    assert_eq!(succeeded, total as u64);
}
