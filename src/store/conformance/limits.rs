//! Cluster-wide limits: concurrency per queue, kind and key, rates, round-robin
//! fairness, slots that come back with every transition out of `running`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;
use crate::limits::{Limit, LimitUsage, Rate};

fn keyed(queue: &str, kind: &str, key: &str) -> NewJob {
    let mut j = NewJob::new(kind, json!({ "c": key }));
    j.queue = queue.into();
    j
}

fn from(queues: &[&str], limit: u32, now: Millis) -> ClaimRequest {
    ClaimRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        ..request("n1", limit, now)
    }
}

fn keys_of(got: &[ClaimedJob]) -> Vec<String> {
    let mut k: Vec<String> = got
        .iter()
        .map(|c| c.job.payload["c"].as_str().unwrap_or("").to_owned())
        .collect();
    k.sort();
    k
}

fn usage(limit: &str, key: &str, running: u64) -> LimitUsage {
    LimitUsage {
        limit: limit.into(),
        key: key.into(),
        running,
    }
}

/// The limits are stored as given and read back; a bad set is refused whole and the
/// limits in force stay.
pub async fn limits_are_stored_and_bad_sets_refused(s: &dyn Store) {
    assert!(s.limits().await.unwrap().is_empty());
    let set = vec![
        Limit::kind("http").max_running(3),
        Limit::queue("emails")
            .max_running(5)
            .rate(Rate::parse("100/s").unwrap(), Some(20))
            .limit_by("$.customer.id"),
    ];
    s.set_limits(&set, T0).await.unwrap();
    let mut got = s.limits().await.unwrap();
    got.sort_by_key(Limit::name);
    let mut want = set.clone();
    want.sort_by_key(Limit::name);
    assert_eq!(got, want);
    for bad in [
        vec![Limit::queue("q")],
        vec![Limit::queue("q").max_running(1).limit_by("customer")],
        vec![
            Limit::queue("q").max_running(1),
            Limit::queue("q").max_running(2),
        ],
    ] {
        let e = s.set_limits(&bad, T0).await.unwrap_err();
        assert!(matches!(e, crate::store::StoreError::Invalid(_)), "{e}");
    }
    assert_eq!(
        s.limits().await.unwrap().len(),
        2,
        "a refused set changes nothing"
    );
    s.set_limits(&[], T0).await.unwrap();
    assert!(s.limits().await.unwrap().is_empty());
}

/// `max_running` on a queue: claims take only what fits, the other queues of the same
/// claim are untouched, refused jobs stay available with no attempt and no event, and
/// a completion frees its slot.
pub async fn max_running_holds_per_queue(s: &dyn Store) {
    s.set_limits(&[Limit::queue("lim").max_running(2)], T0)
        .await
        .unwrap();
    let limited = ids(s, (0..5).map(|_| keyed("lim", "k", "a")).collect(), T0).await;
    ids(s, (0..3).map(|_| keyed("default", "k", "a")).collect(), T0).await;
    let got = s.claim(&from(&["lim", "default"], 10, T0)).await.unwrap();
    assert_eq!(
        got.iter().filter(|c| c.job.queue == "lim").count(),
        2,
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|c| c.job.queue == "default").count(), 3);
    assert!(s.claim(&from(&["lim"], 10, T0)).await.unwrap().is_empty());
    assert_eq!(
        s.limit_usage().await.unwrap(),
        vec![usage("queue:lim", "", 2)]
    );
    let waiting = limited
        .iter()
        .find(|id| !got.iter().any(|c| c.job.id == **id))
        .copied()
        .unwrap();
    let j = s.get_job(waiting).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));
    assert_eq!(event_kinds(s, waiting).await, vec![EventKind::JobEnqueued]);

    let first = got.iter().find(|c| c.job.queue == "lim").unwrap();
    s.complete(vec![ok(first, T0)]).await.unwrap();
    let again = s.claim(&from(&["lim"], 10, T0)).await.unwrap();
    assert_eq!(again.len(), 1, "the finished job's slot is free again");
}

/// `limit_by`: at most `max_running` per key, and one claim serves the keys round robin.
pub async fn max_running_per_key(s: &dyn Store) {
    s.set_limits(
        &[Limit::queue("default").max_running(1).limit_by("$.c")],
        T0,
    )
    .await
    .unwrap();
    let mut jobs: Vec<NewJob> = (0..4).map(|_| keyed("default", "k", "a")).collect();
    jobs.push(keyed("default", "k", "b"));
    jobs.push(keyed("default", "k", "c"));
    let mut missing = NewJob::new("k", json!({"other": 1}));
    missing.queue = "default".into();
    jobs.push(missing);
    ids(s, jobs, T0).await;
    let got = claim(s, 10, T0).await;
    assert_eq!(
        keys_of(&got),
        vec!["", "a", "b", "c"],
        "one per key; no key is a key too"
    );
    assert_eq!(
        s.limit_usage().await.unwrap(),
        vec![
            usage("queue:default", "", 1),
            usage("queue:default", "a", 1),
            usage("queue:default", "b", 1),
            usage("queue:default", "c", 1),
        ]
    );
    assert!(
        claim(s, 10, T0).await.is_empty(),
        "every key is at its limit"
    );
    let a = got.iter().find(|c| c.job.payload["c"] == "a").unwrap();
    s.complete(vec![ok(a, T0)]).await.unwrap();
    assert_eq!(keys_of(&claim(s, 10, T0).await), vec!["a"]);
}

/// A kind's limit holds across queues, together with a queue's limit on the same jobs.
pub async fn kind_limit_spans_queues(s: &dyn Store) {
    s.set_limits(
        &[
            Limit::kind("slow").max_running(2),
            Limit::queue("q2").max_running(1),
        ],
        T0,
    )
    .await
    .unwrap();
    ids(
        s,
        vec![
            keyed("q1", "slow", "x"),
            keyed("q1", "slow", "x"),
            keyed("q2", "slow", "x"),
            keyed("q2", "slow", "x"),
            keyed("q2", "fast", "x"),
            keyed("q2", "fast", "x"),
        ],
        T0,
    )
    .await;
    let got = s.claim(&from(&["q1", "q2"], 10, T0)).await.unwrap();
    let slow = got.iter().filter(|c| c.job.kind == "slow").count();
    let q2 = got.iter().filter(|c| c.job.queue == "q2").count();
    assert_eq!(slow, 2, "kind slow: two in all queues: {got:?}");
    assert_eq!(q2, 1, "queue q2: one: {got:?}");
    // In dispatch order q1's first slow job, then q2's (under both limits), which
    // fills q2: its fast jobs wait for that slot like any other of the queue.
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|c| c.job.kind == "slow"), "{got:?}");
    let more = s.claim(&from(&["q1", "q2"], 10, T0)).await.unwrap();
    assert!(more.is_empty(), "{more:?}");
}

/// A crashed or stopped holder's slots come back with the transition that takes its
/// jobs back: node revocation, lease expiry, release of unstarted jobs, cancel.
pub async fn slots_come_back_with_every_way_out_of_running(s: &dyn Store) {
    s.set_limits(&[Limit::queue("default").max_running(1)], T0)
        .await
        .unwrap();
    ids(s, (0..6).map(|_| keyed("default", "k", "a")).collect(), T0).await;
    let one = |got: Vec<ClaimedJob>| {
        assert_eq!(got.len(), 1, "{got:?}");
        got.into_iter().next().unwrap()
    };
    let blocked = |at| async move {
        assert!(claim(s, 5, at).await.is_empty(), "the slot is taken");
    };
    one(claim(s, 5, T0).await);
    blocked(T0).await;
    let revoked = s
        .revoke_node(&NodeId("n1".into()), T0, json!({}))
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    one(claim(s, 5, T0).await);
    blocked(T0).await;
    let later = T0.plus(LEASE + Duration::from_secs(1));
    assert_eq!(s.rescue_expired(later).await.unwrap().len(), 1);
    let c2 = one(claim(s, 5, later).await);
    s.release(std::slice::from_ref(&c2.lease), later)
        .await
        .unwrap();
    let c3 = one(claim(s, 5, later).await);
    s.cancel(&sys(), c3.job.id, later).await.unwrap();
    one(claim(s, 5, later).await);
    blocked(later).await;
}

/// A rate: a burst, then one claim per interval; refused jobs stay available; each key
/// has its own bucket.
pub async fn rate_limits_claims_per_key(s: &dyn Store) {
    s.set_limits(
        &[Limit::queue("default")
            .rate(Rate::parse("10/s").unwrap(), Some(3))
            .limit_by("$.c")],
        T0,
    )
    .await
    .unwrap();
    let mut jobs: Vec<NewJob> = (0..20).map(|_| keyed("default", "k", "a")).collect();
    jobs.push(keyed("default", "k", "b"));
    ids(s, jobs, T0).await;
    let got = claim(s, 10, T0).await;
    assert_eq!(
        keys_of(&got),
        vec!["a", "a", "a", "b"],
        "the burst of each key"
    );
    assert!(claim(s, 10, T0).await.is_empty(), "bucket a is empty");
    let at = |ms| T0.plus(Duration::from_millis(ms));
    assert!(claim(s, 10, at(50)).await.is_empty(), "half a token");
    assert_eq!(
        claim(s, 10, at(100)).await.len(),
        1,
        "one token after 100 ms"
    );
    assert_eq!(claim(s, 10, at(300)).await.len(), 2);
    // The purge drops full buckets only: bucket a (empty at 300 ms) still holds.
    s.purge(&crate::store::retention::Retention::default(), at(300))
        .await
        .unwrap();
    assert!(
        claim(s, 10, at(300)).await.is_empty(),
        "a spent bucket survives the purge"
    );
    assert_eq!(
        claim(s, 10, at(60_000)).await.len(),
        3,
        "refill stops at the burst"
    );
    s.set_limits(&[], at(60_000)).await.unwrap();
    assert_eq!(
        claim(s, 20, at(60_000)).await.len(),
        20 - 9,
        "no limit, no wait"
    );
}

/// Fairness: one key with 10,000 jobs ahead of ten keys with 10 each; with a few
/// running per key, the ten small keys are served before the big backlog is (judged by
/// claim order, not time).
pub async fn one_key_does_not_starve_the_others(s: &dyn Store) {
    s.set_limits(
        &[Limit::queue("default").max_running(2).limit_by("$.c")],
        T0,
    )
    .await
    .unwrap();
    for _ in 0..10 {
        ids(
            s,
            (0..1000).map(|_| keyed("default", "k", "big")).collect(),
            T0,
        )
        .await;
    }
    let small: Vec<NewJob> = (0..10)
        .flat_map(|k| (0..10).map(move |_| keyed("default", "k", &format!("s{k}"))))
        .collect();
    ids(s, small, T0).await;
    let mut big = 0;
    let mut small_done = 0;
    let mut claims = 0;
    while small_done < 100 {
        claims += 1;
        assert!(
            claims <= 30,
            "the small keys were not served: {small_done} of 100"
        );
        let got = claim(s, 8, T0).await;
        assert!(!got.is_empty(), "a claim found nothing with work left");
        for c in &got {
            if c.job.payload["c"] == "big" {
                big += 1;
            } else {
                small_done += 1;
            }
        }
        let batch = got.iter().map(|c| ok(c, T0)).collect();
        s.complete(batch).await.unwrap();
    }
    assert!(
        big <= claims * 2,
        "the big key took {big} jobs in {claims} claims, more than its 2 slots a claim"
    );
    assert!(
        big < 100,
        "the small keys waited behind {big} jobs of the big one"
    );
}

/// Concurrent claimers of one store (a Postgres pool claims on many connections at
/// once) while a sampler reads the running counts: no sample ever exceeds a limit.
pub async fn concurrent_claimers_never_exceed_a_limit(s: Arc<dyn Store>) {
    s.set_limits(
        &[
            Limit::queue("default").max_running(6),
            Limit::kind("per").max_running(2).limit_by("$.c"),
        ],
        T0,
    )
    .await
    .unwrap();
    let jobs: Vec<NewJob> = (0..600)
        .map(|i| {
            let kind = if i % 2 == 0 { "per" } else { "any" };
            keyed("default", kind, &format!("c{}", i % 5))
        })
        .collect();
    s.enqueue(jobs, T0).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (s, stop, samples) = (s.clone(), stop.clone(), samples.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for u in s.limit_usage().await.unwrap() {
                    let max = if u.limit == "queue:default" { 6 } else { 2 };
                    assert!(u.running <= max, "{u:?} exceeds its limit {max}");
                }
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            let mut idle = 0;
            while idle < 50 {
                let got = s.claim(&request(&format!("n{w}"), 4, T0)).await.unwrap();
                if got.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                n += got.len();
                tokio::task::yield_now().await;
                let batch: Vec<_> = got.iter().map(|c| ok(c, T0)).collect();
                s.complete(batch).await.unwrap();
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert_eq!(total, 600, "every job ran once");
    assert!(samples.load(Ordering::SeqCst) > 0);
}

/// Several nodes (stores opened separately on the same data: their own pools, caches
/// and connections) claim and complete at once while a sampler reads the running
/// counts from the store: no sample exceeds a limit, and every job runs once.
pub async fn limits_hold_across_nodes(nodes: Vec<Arc<dyn Store>>) {
    let s = nodes[0].clone();
    s.set_limits(
        &[
            Limit::queue("default").max_running(5),
            Limit::kind("per").max_running(2).limit_by("$.c"),
        ],
        T0,
    )
    .await
    .unwrap();
    let total = 400;
    let jobs: Vec<NewJob> = (0..total)
        .map(|i| {
            let kind = if i % 2 == 0 { "per" } else { "any" };
            keyed("default", kind, &format!("c{}", i % 3))
        })
        .collect();
    s.enqueue(jobs, T0).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (samples, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (s, stop, samples, peak) = (s.clone(), stop.clone(), samples.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for u in s.limit_usage().await.unwrap() {
                    let max = if u.limit == "queue:default" { 5 } else { 2 };
                    assert!(u.running <= max, "{u:?} exceeds its limit {max}");
                    if u.limit == "queue:default" {
                        peak.fetch_max(u.running, Ordering::SeqCst);
                    }
                }
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..3 {
            let s = node.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut idle = 0;
                while idle < 100 {
                    let got = s
                        .claim(&request(&format!("n{n}"), 3, T0))
                        .await
                        .unwrap_or_else(|e| panic!("node {n} worker {w}: {e}"));
                    if got.is_empty() {
                        idle += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle = 0;
                    tokio::task::yield_now().await;
                    let batch: Vec<_> = got.iter().map(|c| ok(c, T0)).collect();
                    s.complete(batch).await.unwrap();
                    mine.extend(got.into_iter().map(|c| c.job.id));
                }
                mine
            }));
        }
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert_eq!(seen.len(), total, "every job ran once");
    assert!(samples.load(Ordering::SeqCst) > 10, "the sampler ran");
    assert!(
        peak.load(Ordering::SeqCst) > 1,
        "the claimers ran side by side"
    );
}

/// A node that read the limits before another node set a new one neither passes the new
/// limit nor loses the jobs it holds back (the production store takes them from Redis
/// and must put them back): its next claims respect the limit, and every job runs.
pub async fn a_node_that_has_not_seen_a_new_limit_does_not_pass_it(
    first: &dyn Store,
    second: &dyn Store,
) {
    ids(
        first,
        (0..5).map(|_| keyed("default", "k", "a")).collect(),
        T0,
    )
    .await;
    // The second node claims (and reads the limits: none) from an empty queue.
    assert!(
        second
            .claim(&from(&["other"], 10, T0))
            .await
            .unwrap()
            .is_empty()
    );
    first
        .set_limits(&[Limit::queue("default").max_running(2)], T0)
        .await
        .unwrap();
    let got = second.claim(&from(&["default"], 10, T0)).await.unwrap();
    assert!(got.len() <= 2, "a stale node passed the new limit: {got:?}");
    let mut done = got.len();
    let mut running = got;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while done < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "jobs held back by the limit were lost: {done} of 5 ran"
        );
        let batch: Vec<_> = running.iter().map(|c| ok(c, T0)).collect();
        if !batch.is_empty() {
            first.complete(batch).await.unwrap();
        }
        for u in first.limit_usage().await.unwrap() {
            assert!(u.running <= 2, "{u:?}");
        }
        running = second.claim(&from(&["default"], 10, T0)).await.unwrap();
        assert!(running.len() <= 2, "{running:?}");
        done += running.len();
        if running.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A rate over a minute of real time with several nodes claiming as fast as they can:
/// the jobs claimed are within 5% of what the rate and its burst allow. Returns
/// (claimed, allowed) for the caller to print.
pub async fn rate_over_a_minute(nodes: Vec<Arc<dyn Store>>) -> (u64, u64) {
    use crate::clock::{Clock, SystemClock};
    let (per_s, burst, secs) = (40u64, 20u64, 60u64);
    let s = nodes[0].clone();
    s.set_limits(
        &[Limit::queue("default").rate(
            Rate::parse(&format!("{per_s}/s")).unwrap(),
            Some(burst as u32),
        )],
        SystemClock.now(),
    )
    .await
    .unwrap();
    for _ in 0..4 {
        s.enqueue(
            (0..1000).map(|_| keyed("default", "k", "a")).collect(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    }
    let start = std::time::Instant::now();
    let run_for = Duration::from_secs(secs);
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let (s, claimed) = (node.clone(), claimed.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < run_for {
                let got = s
                    .claim(&request(&format!("n{n}"), 10, SystemClock.now()))
                    .await
                    .unwrap();
                if start.elapsed() >= run_for {
                    // Claimed past the minute: not counted (and left running).
                    break;
                }
                claimed.fetch_add(got.len() as u64, Ordering::SeqCst);
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    let now = SystemClock.now();
                    s.complete(got.iter().map(|c| ok(c, now)).collect())
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = claimed.load(Ordering::SeqCst);
    let allowed = per_s * secs + burst;
    let off = (got as f64 - allowed as f64).abs() / allowed as f64;
    assert!(
        off <= 0.05,
        "claimed {got} in {secs} s at {per_s}/s with a burst of {burst}: {:.1}% off {allowed}",
        off * 100.0
    );
    (got, allowed)
}
