//! Periodic ticks: one job per (schedule, tick), even after that job finished, however
//! many enqueues of the tick race.

use super::*;
use crate::periodic::tick_key;
use crate::store::{TickMark, TickOutcome};

const KIND: &str = "periodic-test";

/// `T0` plus `secs` seconds.
fn at(secs: i64) -> Millis {
    Millis(T0.0 + secs * 1000)
}

/// The job of `schedule`'s tick at `tick`, as a periodic runner builds it.
fn tick_job(schedule: &str, tick: Millis) -> NewJob {
    let mut j = NewJob::new(KIND, json!({"schedule": schedule}));
    j.unique_key = Some(tick_key(schedule, tick));
    j.run_at = Some(tick);
    j
}

/// A schedule named `name` ticking every minute, as a config declares it.
pub(super) fn every_minute(name: &str) -> crate::periodic::PeriodicJob {
    crate::periodic::PeriodicJob::new(
        name,
        crate::periodic::Schedule::parse("every 60s").expect("schedule"),
        NewJob::new(KIND, json!({"schedule": name})),
    )
}

/// Declares `names` as the config's schedules at `T0`.
pub(super) async fn declare(s: &dyn Store, names: &[&str]) {
    let jobs: Vec<_> = names.iter().map(|n| every_minute(n)).collect();
    s.sync_config_schedules(&jobs, T0).await.expect("sync");
}

async fn enqueue_tick(s: &dyn Store, schedule: &str, tick: Millis, now: Millis) -> TickOutcome {
    s.enqueue_tick(schedule, tick, tick_job(schedule, tick), now)
        .await
        .expect("enqueue_tick")
}

async fn periodic_jobs(s: &dyn Store) -> Vec<crate::job::Job> {
    s.list_jobs(&JobFilter {
        kind: Some(KIND.into()),
        limit: 1000,
        ..JobFilter::default()
    })
    .await
    .expect("list_jobs")
}

fn mark_of(marks: &[TickMark], schedule: &str) -> TickMark {
    marks
        .iter()
        .find(|m| m.schedule == schedule)
        .unwrap_or_else(|| panic!("no mark for {schedule}: {marks:?}"))
        .clone()
}

/// A tick is enqueued once: again while its job is unfinished, again after the job
/// succeeded (when the partial unique index no longer holds its key), and an older
/// tick, all store nothing. The next tick is a new job, and the mark follows.
pub async fn periodic_tick_enqueues_once(s: &dyn Store) {
    let name = "nightly";
    declare(s, &[name]).await;
    let marks = s
        .register_schedules(&[name.to_string()], T0)
        .await
        .expect("register");
    let m = mark_of(&marks, name);
    assert_eq!(
        (m.last_tick, m.last_job),
        (T0, None),
        "first sight marks T0"
    );

    let tick = at(60);
    let TickOutcome::Enqueued {
        outcome: EnqueueOutcome::Inserted(id),
    } = enqueue_tick(s, name, tick, at(60)).await
    else {
        panic!("the first enqueue of a tick stores its job");
    };
    let job = s.get_job(id).await.unwrap().expect("the tick's job");
    assert_eq!(
        job.unique_key.as_deref(),
        Some(tick_key(name, tick).as_str())
    );
    assert_eq!(job.run_at, tick);
    assert_eq!(
        enqueue_tick(s, name, tick, at(61)).await,
        TickOutcome::Passed { last_tick: tick },
        "a second enqueue of an unfinished tick stores nothing"
    );

    let claimed = claim(s, 10, at(62)).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].job.id, id);
    s.complete(vec![ok(&claimed[0], at(63))]).await.unwrap();
    assert_eq!(state(s, id).await, JobState::Succeeded);
    assert_eq!(
        enqueue_tick(s, name, tick, at(64)).await,
        TickOutcome::Passed { last_tick: tick },
        "a tick whose job finished is not enqueued again"
    );
    assert_eq!(
        enqueue_tick(s, name, at(30), at(65)).await,
        TickOutcome::Passed { last_tick: tick },
        "an older tick is handled already"
    );
    assert_eq!(periodic_jobs(s).await.len(), 1, "one job for the tick");

    let TickOutcome::Enqueued {
        outcome: EnqueueOutcome::Inserted(next),
    } = enqueue_tick(s, name, at(120), at(120)).await
    else {
        panic!("the next tick stores a job");
    };
    assert_ne!(next, id);
    let m = mark_of(&s.tick_marks().await.unwrap(), name);
    assert_eq!((m.last_tick, m.last_job), (at(120), Some(next)));
    // Registering again (a node restarting, a new leader) keeps the mark.
    let m = mark_of(
        &s.register_schedules(&[name.to_string(), "other".into()], at(500))
            .await
            .unwrap(),
        name,
    );
    assert_eq!(m.last_tick, at(120));
    assert_eq!(periodic_jobs(s).await.len(), 2);
}

/// Schedules have their own marks; a name no schedule has gets no job (and no mark).
pub async fn periodic_marks_are_per_schedule(s: &dyn Store) {
    declare(s, &["a", "b"]).await;
    let names = vec!["a".to_string(), "b".to_string()];
    let marks = s.register_schedules(&names, T0).await.unwrap();
    assert_eq!(marks.len(), 2);
    assert!(matches!(
        enqueue_tick(s, "a", at(10), at(10)).await,
        TickOutcome::Enqueued { .. }
    ));
    assert!(matches!(
        enqueue_tick(s, "b", at(10), at(10)).await,
        TickOutcome::Enqueued { .. }
    ));
    assert_eq!(
        enqueue_tick(s, "unknown", at(10), at(10)).await,
        TickOutcome::NoSchedule
    );
    let marks = s.tick_marks().await.unwrap();
    let names: Vec<&str> = marks.iter().map(|m| m.schedule.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(marks.iter().all(|m| m.last_tick == at(10)));
    assert_eq!(periodic_jobs(s).await.len(), 2);
}

/// Names no schedule can have, too many names, and a tick's job no store can hold are
/// refused, and nothing is stored.
pub async fn periodic_hostile_input_stores_nothing(s: &dyn Store) {
    for bad in ["", "a b", "x\u{0}", &"n".repeat(101)] {
        let e = s
            .register_schedules(&[bad.to_string()], T0)
            .await
            .expect_err(bad);
        assert!(e.to_string().contains("schedule name"), "{bad:?}: {e}");
        let e = s
            .enqueue_tick(bad, at(1), tick_job("ok", at(1)), at(1))
            .await
            .expect_err(bad);
        assert!(e.to_string().contains("schedule name"), "{bad:?}: {e}");
    }
    let many: Vec<String> = (0..=crate::periodic::MAX_SCHEDULES)
        .map(|i| format!("s{i}"))
        .collect();
    let e = s.register_schedules(&many, T0).await.unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    let mut bad_job = tick_job("ok", at(1));
    bad_job.payload = json!({"a": "nul \u{0} here"});
    assert!(s.enqueue_tick("ok", at(1), bad_job, at(1)).await.is_err());
    assert!(s.tick_marks().await.unwrap().is_empty(), "no mark stored");
    assert!(periodic_jobs(s).await.is_empty(), "no job stored");
}

/// Sixteen enqueues of one tick at once (nodes racing over a lapsed lease) store one
/// job; after it finished, another burst stores none.
pub async fn concurrent_tick_enqueues(s: Arc<dyn Store>) {
    let name = "race";
    declare(&*s, &[name]).await;
    let burst = |tick: Millis| {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        match s.enqueue_tick(name, tick, tick_job(name, tick), tick).await {
                            Ok(o) => return o,
                            // SQLite's busy writer or a Postgres serialisation hiccup:
                            // a racing node would retry too.
                            Err(e) if e.is_transient() => continue,
                            Err(e) => panic!("enqueue_tick: {e}"),
                        }
                    }
                    panic!("enqueue_tick kept failing with transient errors")
                })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task"));
            }
            out
        }
    };
    let outcomes = burst(at(60)).await;
    let enqueued = outcomes
        .iter()
        .filter(|o| matches!(o, TickOutcome::Enqueued { .. }))
        .count();
    assert_eq!(enqueued, 1, "{outcomes:?}");
    let claimed = claim(&*s, 10, at(61)).await;
    assert_eq!(claimed.len(), 1);
    s.complete(vec![ok(&claimed[0], at(62))]).await.unwrap();
    let outcomes = burst(at(60)).await;
    assert!(
        outcomes
            .iter()
            .all(|o| *o == TickOutcome::Passed { last_tick: at(60) }),
        "{outcomes:?}"
    );
    assert_eq!(periodic_jobs(&*s).await.len(), 1);
}
