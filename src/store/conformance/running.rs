//! Running jobs under control: progress recorded under the lease (and refused without
//! it), snoozes that give the attempt back and count themselves.

use super::*;
use crate::job::{Progress, ProgressReport};
use crate::store::AttemptOutcome;

fn report(c: &ClaimedJob, fraction: f64, message: &str, at: Millis) -> ProgressReport {
    ProgressReport {
        lease: c.lease.clone(),
        progress: Progress {
            fraction,
            message: message.into(),
            at,
        },
    }
}

async fn progress_events(s: &dyn Store, id: JobId) -> Vec<serde_json::Value> {
    s.events_after(0, 100_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event.job == Some(id) && e.event.kind == EventKind::JobProgress)
        .map(|e| e.event.detail)
        .collect()
}

/// A report under a current lease sets the job's progress (the last of a lease's
/// reports in a batch), extends the lease and writes one `job.progress` event per
/// recorded report; the progress stays after the job finishes.
pub async fn progress_is_recorded_under_the_lease(s: &dyn Store) {
    let id = ids(s, vec![job("a"), job("b")], T0).await;
    let cs = claim(s, 2, T0).await;
    let (a, b) = (&cs[0], &cs[1]);
    assert_eq!((a.job.id, b.job.id), (id[0], id[1]));
    assert_eq!(a.job.progress, None, "a fresh job has no progress");
    let t1 = T0.plus(Duration::from_secs(1));
    let until = t1.plus(LEASE);
    let r = s
        .record_progress(
            &[
                report(a, 0.25, "first", t1),
                report(b, 0.1, "b\nline", t1),
                report(a, 0.5, "copying 5/10", t1),
            ],
            until,
        )
        .await
        .unwrap();
    assert_eq!(r, [true, true, true]);
    let ja = s.get_job(a.job.id).await.unwrap().unwrap();
    assert_eq!(
        ja.progress,
        Some(Progress {
            fraction: 0.5,
            message: "copying 5/10".into(),
            at: t1
        }),
        "the last report of a lease wins"
    );
    assert_eq!(
        ja.lease_expires_at,
        Some(until),
        "a report extends the lease"
    );
    let jb = s.get_job(b.job.id).await.unwrap().unwrap();
    assert_eq!(
        jb.progress.map(|p| p.message),
        Some("b line".to_string()),
        "messages are cleaned by the store"
    );
    let evs = progress_events(s, a.job.id).await;
    assert_eq!(evs, [json!({"fraction": 0.5, "message": "copying 5/10"})]);

    let t2 = t1.plus(Duration::from_secs(1));
    s.record_progress(&[report(a, 1.0, "done", t2)], t2.plus(LEASE))
        .await
        .unwrap();
    s.complete(vec![ok(a, t2)]).await.unwrap();
    let ja = s.get_job(a.job.id).await.unwrap().unwrap();
    assert_eq!(ja.state, JobState::Succeeded);
    assert_eq!(
        ja.progress.map(|p| p.fraction),
        Some(1.0),
        "kept after the end"
    );
    assert_eq!(progress_events(s, a.job.id).await.len(), 2);
    assert_eq!(
        s.record_progress(&[report(a, 0.1, "late", t2)], t2.plus(LEASE))
            .await
            .unwrap(),
        [false],
        "a finished job takes no more progress"
    );
    assert!(s.record_progress(&[], t2).await.unwrap().is_empty());
}

/// A zombie's report (its lease rescued) is refused and changes nothing: no progress,
/// no lease extension, no event; a report with a bad fraction fails its batch and
/// writes nothing of it.
pub async fn stale_progress_is_refused(s: &dyn Store) {
    ids(s, vec![job("a")], T0).await;
    let zombie = claim(s, 1, T0).await.remove(0);
    let later = T0.plus(LEASE + Duration::from_secs(1));
    assert_eq!(s.rescue_expired(later).await.unwrap().len(), 1);
    let r = s
        .record_progress(&[report(&zombie, 0.9, "zombie", later)], later.plus(LEASE))
        .await
        .unwrap();
    assert_eq!(r, [false]);
    let j = s.get_job(zombie.job.id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.progress, j.lease_expires_at),
        (JobState::Available, None, None)
    );
    assert!(progress_events(s, zombie.job.id).await.is_empty());

    let fresh = claim(s, 1, later).await.remove(0);
    let before = s.get_job(fresh.job.id).await.unwrap().unwrap();
    let e = s
        .record_progress(
            &[
                report(&fresh, 0.5, "fine", later),
                report(&fresh, f64::NAN, "bad", later),
            ],
            later.plus(LEASE * 2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, crate::store::StoreError::Invalid(ref m) if m.contains("progress report 1")),
        "{e}"
    );
    assert_eq!(s.get_job(fresh.job.id).await.unwrap().unwrap(), before);
    let r = s
        .record_progress(
            &[
                report(&zombie, 0.2, "zombie", later),
                report(&fresh, 0.3, "fresh", later),
            ],
            later.plus(LEASE),
        )
        .await
        .unwrap();
    assert_eq!(r, [false, true], "one stale report does not fail the batch");
}

/// A snooze schedules the job, gives the attempt back and counts itself, with an
/// execution row and a `job.snoozed` event; the job is promoted and claimed again
/// (through the dispatch index where there is one) under the same attempt number.
/// Three snoozes and a success end with attempt 1 and three snoozes. A zombie's snooze
/// is refused.
pub async fn snooze_gives_the_attempt_back(s: &dyn Store) {
    let mut one = job("a");
    one.max_attempts = 1;
    let id = ids(s, vec![one], T0).await[0];
    let mut now = T0;
    for n in 1..=3u32 {
        let c = claim(s, 1, now).await.remove(0);
        assert_eq!((c.job.id, c.lease.attempt), (id, 1), "snooze {n}");
        assert_eq!(c.job.snoozes, n - 1);
        let run_at = now.plus(Duration::from_secs(5));
        let r = s
            .complete(vec![done(&c, Outcome::Snoozed { run_at }, now)])
            .await
            .unwrap();
        assert_eq!(r, [CompletionResult::Applied]);
        let j = s.get_job(id).await.unwrap().unwrap();
        assert_eq!(
            (j.state, j.attempt, j.snoozes, j.run_at, j.lease_expires_at),
            (JobState::Scheduled, 0, n, run_at, None)
        );
        assert!(
            claim(s, 1, now).await.is_empty(),
            "a snoozed job waits for its time"
        );
        assert_eq!(s.next_due().await.unwrap(), Some(run_at));
        assert_eq!(s.promote_due(run_at).await.unwrap(), 1);
        now = run_at;
    }
    let c = claim(s, 1, now).await.remove(0);
    assert_eq!((c.lease.attempt, c.job.snoozes), (1, 3));
    s.complete(vec![ok(&c, now)]).await.unwrap();
    let j = s.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.attempt, j.max_attempts, j.snoozes),
        (JobState::Succeeded, 1, 1, 3)
    );
    let attempts = s.attempts(id, 100).await.unwrap();
    let outcomes: Vec<(u32, AttemptOutcome)> =
        attempts.iter().map(|a| (a.attempt, a.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (1, AttemptOutcome::Snoozed),
            (1, AttemptOutcome::Snoozed),
            (1, AttemptOutcome::Snoozed),
            (1, AttemptOutcome::Succeeded)
        ]
    );
    let snoozed: Vec<serde_json::Value> = s
        .job_events(id, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind == EventKind::JobSnoozed)
        .map(|e| e.event.detail)
        .collect();
    assert_eq!(snoozed.len(), 3);
    assert_eq!(
        snoozed[0],
        json!({"run_at": T0.plus(Duration::from_secs(5)).0})
    );

    // A zombie cannot snooze a rescued job.
    let id = ids(s, vec![job("z")], now).await[0];
    let zombie = claim(s, 1, now).await.remove(0);
    assert_eq!(zombie.job.id, id);
    let later = now.plus(LEASE + Duration::from_secs(1));
    s.rescue_expired(later).await.unwrap();
    let r = s
        .complete(vec![done(
            &zombie,
            Outcome::Snoozed {
                run_at: later.plus(Duration::from_secs(60)),
            },
            later,
        )])
        .await
        .unwrap();
    assert_eq!(r, [CompletionResult::StaleLease]);
    let j = s.get_job(id).await.unwrap().unwrap();
    assert_eq!((j.state, j.snoozes, j.attempt), (JobState::Available, 0, 1));
}
