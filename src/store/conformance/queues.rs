//! Queue pause and resume.

use super::*;

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
        s.pause_queue(&sys(), "mail", T0).await.unwrap(),
        "first pause changes"
    );
    assert!(
        !s.pause_queue(&sys(), "mail", T0.plus(Duration::from_millis(1)))
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

    assert!(
        s.resume_queue(&sys(), "mail", T0).await.unwrap(),
        "resume changes"
    );
    assert!(
        !s.resume_queue(&sys(), "mail", T0).await.unwrap(),
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
    s.pause_queue(&sys(), "a", T0).await.unwrap();
    let got = s
        .claim(&from_queues(&["a", "b", "c"], 10, T0))
        .await
        .unwrap();
    let queues: Vec<&str> = got.iter().map(|c| c.job.queue.as_str()).collect();
    assert_eq!(queues, ["b", "c"]);
    let e = s.pause_queue(&sys(), "", T0).await.unwrap_err().to_string();
    assert!(e.contains("queue name is empty"), "{e}");
    let e = s
        .resume_queue(&sys(), "", T0)
        .await
        .unwrap_err()
        .to_string();
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
    s.pause_queue(&sys(), "mail", T0).await.unwrap();
    drop(s);
    let s = reopen().await;
    assert_eq!(s.paused_queues().await.unwrap()[0].queue, "mail");
    assert!(
        s.claim(&from_queues(&["mail"], 5, T0))
            .await
            .unwrap()
            .is_empty()
    );
    s.resume_queue(&sys(), "mail", T0).await.unwrap();
    let got = s.claim(&from_queues(&["mail"], 5, T0)).await.unwrap();
    assert_eq!(got.iter().map(|c| c.job.id).collect::<Vec<_>>(), [id]);
}
