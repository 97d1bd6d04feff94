//! Pausing a queue on Postgres with two real nodes: once the pause has committed, no
//! claim on either node takes from the queue (while both keep claiming another queue),
//! and a resume starts its jobs on both. Needs the machine's Postgres
//! (`JOBMESH_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::event::{EventKind, StoredEvent};
use jobmesh::job::{JobId, JobState, NewJob};
use jobmesh::store::{AuditContext, SharedStore};
use tokio::sync::broadcast;

fn on(queue: &str, n: usize) -> Vec<NewJob> {
    (0..n)
        .map(|_| {
            let mut j = NewJob::new("sleep", serde_json::json!({"ms": 5}));
            j.queue = queue.into();
            j
        })
        .collect()
}

/// Waits, woken by either node's events (or every 200 ms, for events of the other
/// node's store), until `queue` has `n` succeeded jobs. The deadline bounds a failure.
async fn until_succeeded(
    store: &SharedStore,
    events: &mut [broadcast::Receiver<jobmesh::event::LifecycleEvent>],
    queue: &str,
    n: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts = store.counts().await.unwrap();
        let done = counts
            .get(queue)
            .and_then(|c| c.get(&JobState::Succeeded))
            .copied()
            .unwrap_or(0);
        if done >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} jobs of {queue} to succeed: {counts:?}"
        );
        let [a, b] = events else { unreachable!() };
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            tokio::select! { _ = a.recv() => {}, _ = b.recv() => {} }
        })
        .await;
    }
}

async fn all_events(store: &SharedStore) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &StoredEvent| e.seq);
        let page = store.events_after(after, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_claims_on_both_nodes_and_resume_restarts_them() {
    logs();
    let schema = pg_schema();
    // Each node has its own connection pool, as two processes would.
    let (s1, s2) = (pg_store(&schema).await, pg_store(&schema).await);
    let mut w = workers(4);
    w.queues = vec!["mail".into(), "other".into()];
    let n1 = node("n1", &s1, w.clone(), builtins()).await;
    let n2 = node("n2", &s2, w, builtins()).await;
    let mut events = [n1.subscribe(), n2.subscribe()];

    // Jobs are flowing on the queue when it is paused.
    let mail: Vec<JobId> = s1
        .enqueue(on("mail", 400), SystemClock.now())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    until_succeeded(&s1, &mut events, "mail", 1).await;
    assert!(
        s1.pause_queue(&AuditContext::system(), "mail", SystemClock.now())
            .await
            .unwrap()
    );
    // Any claim that read its clock after this instant began after the pause committed.
    let paused_by: Millis = SystemClock.now();

    // Both nodes keep claiming: the other queue's jobs, enqueued after the pause, all run,
    // each node taking some of them (claims of both queues are one statement).
    s2.enqueue(on("other", 200), SystemClock.now())
        .await
        .unwrap();
    until_succeeded(&s1, &mut events, "other", 200).await;
    let log = all_events(&s1).await;
    let claimers = |ids: &BTreeSet<JobId>| -> BTreeSet<String> {
        log.iter()
            .filter(|e| e.event.kind == EventKind::JobClaimed)
            .filter(|e| e.event.job.is_some_and(|j| ids.contains(&j)))
            .filter_map(|e| e.event.node.as_ref().map(|n| n.0.clone()))
            .collect()
    };
    let mail_ids: BTreeSet<JobId> = mail.iter().copied().collect();
    let other_ids: BTreeSet<JobId> = log
        .iter()
        .filter_map(|e| e.event.job)
        .filter(|j| !mail_ids.contains(j))
        .collect();
    assert_eq!(
        claimers(&other_ids),
        BTreeSet::from(["n1".to_owned(), "n2".to_owned()]),
        "both nodes claimed while the queue was paused"
    );
    let late: Vec<_> = log
        .iter()
        .filter(|e| e.event.kind == EventKind::JobClaimed && e.event.at > paused_by)
        .filter(|e| e.event.job.is_some_and(|j| mail_ids.contains(&j)))
        .collect();
    assert!(
        late.is_empty(),
        "claims of the paused queue after the pause: {late:?}"
    );
    let waiting = s1.counts().await.unwrap()["mail"][&JobState::Available];
    assert!(waiting > 0, "the pause left jobs waiting");

    // Resume: the waiting jobs run without another enqueue to wake the nodes.
    assert!(
        s2.resume_queue(&AuditContext::system(), "mail", SystemClock.now())
            .await
            .unwrap()
    );
    until_succeeded(&s1, &mut events, "mail", 400).await;
    let resumed: BTreeSet<JobId> = all_events(&s1)
        .await
        .iter()
        .filter(|e| e.event.kind == EventKind::JobClaimed && e.event.at > paused_by)
        .filter_map(|e| e.event.job)
        .filter(|j| mail_ids.contains(j))
        .collect();
    assert_eq!(
        resumed.len() as u64,
        waiting,
        "every waiting job ran after the resume"
    );

    n1.shutdown(Duration::from_secs(5)).await.unwrap();
    n2.shutdown(Duration::from_secs(5)).await.unwrap();
}
