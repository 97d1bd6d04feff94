//! Periodic schedules in the store: create, pause, resume, delete, trigger, the
//! config's set, and the guard every tick's enqueue applies.

use super::periodic::{declare, every_minute};
use super::*;
use crate::periodic::tick_key;
use crate::store::audit::{AuditAction, AuditQuery, AuditResult};
use crate::store::{ScheduleOrigin, ScheduleOutcome, StoreError, StoredSchedule, TickOutcome};

fn at(secs: i64) -> Millis {
    Millis(T0.0 + secs * 1000)
}

async fn find(s: &dyn Store, name: &str) -> Option<StoredSchedule> {
    s.schedules()
        .await
        .expect("schedules")
        .into_iter()
        .find(|x| x.job.name == name)
}

async fn tick(s: &dyn Store, name: &str, t: Millis) -> TickOutcome {
    let job = every_minute(name).job_for(t);
    s.enqueue_tick(name, t, job, t).await.expect("enqueue_tick")
}

async fn mark(s: &dyn Store, name: &str) -> Option<Millis> {
    s.tick_marks()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.schedule == name)
        .map(|m| m.last_tick)
}

async fn audit_results(s: &dyn Store, action: AuditAction) -> Vec<AuditResult> {
    let mut rows = s
        .list_audit(&AuditQuery {
            action: Some(action),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows.into_iter().map(|r| r.result).collect()
}

/// A created schedule is listed with its mark at the creation; a pause stops its
/// ticks in the store itself; a resume passes over the pause's ticks; a delete stops
/// them for good and removes the mark. Every call writes its audit row, refusals too.
pub async fn schedules_create_pause_resume_delete(s: &dyn Store) {
    let ops = sys();
    let job = every_minute("report");
    let made = s.create_schedule(&ops, &job, false, at(5)).await.unwrap();
    let ScheduleOutcome::Done(made) = made else {
        panic!("created: {made:?}")
    };
    assert_eq!(
        (made.job.clone(), made.origin),
        (job.clone(), ScheduleOrigin::Api)
    );
    assert_eq!(find(s, "report").await.as_ref(), Some(&made));
    assert_eq!(
        mark(s, "report").await,
        Some(at(5)),
        "no tick from before the creation"
    );
    let again = s.create_schedule(&ops, &job, false, at(6)).await.unwrap();
    assert!(
        matches!(&again, ScheduleOutcome::Refused(m) if m.contains("exists")),
        "{again:?}"
    );

    assert_eq!(
        s.set_schedule_paused(&ops, "report", true, at(10))
            .await
            .unwrap(),
        ScheduleOutcome::Done(true)
    );
    assert_eq!(
        s.set_schedule_paused(&ops, "report", true, at(11))
            .await
            .unwrap(),
        ScheduleOutcome::Done(false),
        "pausing a paused schedule changes nothing"
    );
    assert_eq!(find(s, "report").await.unwrap().paused_at, Some(at(10)));
    assert_eq!(tick(s, "report", at(60)).await, TickOutcome::Paused);
    assert_eq!(
        mark(s, "report").await,
        Some(at(5)),
        "a paused tick moves no mark"
    );
    assert_eq!(
        s.set_schedule_paused(&ops, "report", false, at(130))
            .await
            .unwrap(),
        ScheduleOutcome::Done(true)
    );
    assert_eq!(find(s, "report").await.unwrap().paused_at, None);
    assert_eq!(
        mark(s, "report").await,
        Some(at(130)),
        "the pause's ticks are passed over"
    );
    assert!(matches!(
        tick(s, "report", at(120)).await,
        TickOutcome::Passed { .. }
    ));
    let TickOutcome::Enqueued { outcome } = tick(s, "report", at(180)).await else {
        panic!("a tick after the resume runs");
    };
    let kept = outcome.id();

    assert_eq!(
        s.delete_schedule(&ops, "report", false, at(200))
            .await
            .unwrap(),
        ScheduleOutcome::Done(())
    );
    assert!(find(s, "report").await.is_none());
    assert_eq!(mark(s, "report").await, None, "the mark goes with it");
    assert_eq!(tick(s, "report", at(240)).await, TickOutcome::NoSchedule);
    assert!(s.get_job(kept).await.unwrap().is_some(), "its jobs stay");
    assert_eq!(
        s.delete_schedule(&ops, "report", false, at(201))
            .await
            .unwrap(),
        ScheduleOutcome::NotFound
    );
    assert_eq!(
        s.set_schedule_paused(&ops, "report", true, at(202))
            .await
            .unwrap(),
        ScheduleOutcome::NotFound
    );
    // Created again under the name, it starts afresh.
    s.create_schedule(&ops, &job, true, at(300)).await.unwrap();
    assert_eq!(mark(s, "report").await, Some(at(300)));
    assert!(
        find(s, "report").await.unwrap().paused_at.is_some(),
        "created paused"
    );

    use AuditResult::{Ok as Done, Refused};
    assert_eq!(
        audit_results(s, AuditAction::PeriodicCreate).await,
        [Done, Refused, Done]
    );
    assert_eq!(
        audit_results(s, AuditAction::PeriodicPause).await,
        [Done, Done, Refused]
    );
    assert_eq!(audit_results(s, AuditAction::PeriodicResume).await, [Done]);
    assert_eq!(
        audit_results(s, AuditAction::PeriodicDelete).await,
        [Done, Refused]
    );
}

/// A trigger enqueues one job now under a key no tick has, paused or not, and leaves
/// the ticks alone; the same millisecond's second trigger is a duplicate.
pub async fn trigger_enqueues_one_job_outside_the_ticks(s: &dyn Store) {
    let ops = sys();
    s.create_schedule(&ops, &every_minute("beat"), true, T0)
        .await
        .unwrap();
    let ScheduleOutcome::Done(EnqueueOutcome::Inserted(id)) =
        s.trigger_schedule(&ops, "beat", at(60)).await.unwrap()
    else {
        panic!("a trigger of a paused schedule enqueues");
    };
    let job = s.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        job.unique_key.as_deref(),
        Some(format!("periodic-trigger:beat:{}", at(60).0).as_str())
    );
    assert_eq!((job.state, job.run_at), (JobState::Available, at(60)));
    assert_eq!(
        s.trigger_schedule(&ops, "beat", at(60)).await.unwrap(),
        ScheduleOutcome::Done(EnqueueOutcome::Duplicate(id))
    );
    assert_eq!(mark(s, "beat").await, Some(T0), "a trigger is no tick");
    s.set_schedule_paused(&ops, "beat", false, at(60))
        .await
        .unwrap();
    let TickOutcome::Enqueued { outcome } = tick(s, "beat", at(120)).await else {
        panic!("the tick runs beside the trigger");
    };
    assert_ne!(outcome.id(), id);
    assert_eq!(
        s.get_job(outcome.id()).await.unwrap().unwrap().unique_key,
        Some(tick_key("beat", at(120)))
    );
    assert_eq!(
        s.trigger_schedule(&ops, "nope", at(61)).await.unwrap(),
        ScheduleOutcome::NotFound
    );
    assert_eq!(
        audit_results(s, AuditAction::PeriodicTrigger).await,
        [AuditResult::Ok, AuditResult::Ok, AuditResult::Refused]
    );
}

/// A config sync creates what is new, writes its definition over its names (taking a
/// name over from the API), keeps pauses, and removes the config schedules it no
/// longer declares; a config schedule is deleted only when the caller says the config
/// no longer has it.
pub async fn config_sync_replaces_the_config_set(s: &dyn Store) {
    let ops = sys();
    s.create_schedule(&ops, &every_minute("x"), false, T0)
        .await
        .unwrap();
    let sync = s
        .sync_config_schedules(&[every_minute("a"), every_minute("b")], T0)
        .await
        .unwrap();
    assert_eq!(
        (sync.created, sync.removed),
        (vec!["a".to_string(), "b".into()], vec![])
    );
    s.set_schedule_paused(&ops, "a", true, at(1)).await.unwrap();
    let mut a = every_minute("a");
    a.schedule = crate::periodic::Schedule::parse("every 2m").unwrap();
    let sync = s
        .sync_config_schedules(&[a.clone(), every_minute("x")], at(2))
        .await
        .unwrap();
    assert_eq!(sync.kept, ["a"]);
    assert_eq!(sync.taken_over, ["x"]);
    assert_eq!(sync.removed, ["b"]);
    let stored = find(s, "a").await.unwrap();
    assert_eq!(stored.job, a, "the config's definition wins");
    assert_eq!(stored.paused_at, Some(at(1)), "the pause is kept");
    assert_eq!(find(s, "x").await.unwrap().origin, ScheduleOrigin::Config);
    assert!(find(s, "b").await.is_none());
    assert_eq!(mark(s, "b").await, None);
    let refused = s.delete_schedule(&ops, "x", false, at(3)).await.unwrap();
    assert!(
        matches!(&refused, ScheduleOutcome::Refused(m) if m.contains("config")),
        "{refused:?}"
    );
    assert_eq!(
        s.delete_schedule(&ops, "x", true, at(4)).await.unwrap(),
        ScheduleOutcome::Done(())
    );
    let names: Vec<String> = s
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.job.name)
        .collect();
    assert_eq!(names, ["a"]);
    // Declaring none removes the config's set.
    let sync = s.sync_config_schedules(&[], at(5)).await.unwrap();
    assert_eq!(sync.removed, ["a"]);
    assert!(s.schedules().await.unwrap().is_empty());
}

/// Schedules no store should hold are refused, and nothing is stored.
pub async fn schedule_hostile_input_stores_nothing(s: &dyn Store) {
    let ops = sys();
    let mut bad_name = every_minute("x");
    bad_name.name = "a b".into();
    let mut nul = every_minute("nul");
    nul.job.payload = json!({"a": "nul \u{0} here"});
    let mut keyed = every_minute("keyed");
    keyed.job.unique_key = Some("mine".into());
    for bad in [bad_name, nul, keyed] {
        assert!(
            matches!(
                s.create_schedule(&ops, &bad, false, T0).await,
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
        assert!(s.sync_config_schedules(&[bad], T0).await.is_err());
    }
    let e = s
        .sync_config_schedules(&[every_minute("t"), every_minute("t")], T0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("two schedules"), "{e}");
    for bad in ["", "a b", "x\u{0}", &"n".repeat(101)] {
        assert!(s.set_schedule_paused(&ops, bad, true, T0).await.is_err());
        assert!(s.delete_schedule(&ops, bad, true, T0).await.is_err());
        assert!(s.trigger_schedule(&ops, bad, T0).await.is_err());
    }
    assert!(s.schedules().await.unwrap().is_empty());
    assert!(s.tick_marks().await.unwrap().is_empty());
    declare(s, &[]).await;
}

/// A create is refused once the store holds the most schedules a node may run.
pub async fn schedule_count_is_bounded(s: &dyn Store) {
    let full: Vec<_> = (0..crate::periodic::MAX_SCHEDULES)
        .map(|i| every_minute(&format!("s{i}")))
        .collect();
    s.sync_config_schedules(&full, T0).await.unwrap();
    let out = s
        .create_schedule(&sys(), &every_minute("one-more"), false, at(1))
        .await
        .unwrap();
    assert!(
        matches!(&out, ScheduleOutcome::Refused(m) if m.contains("most allowed")),
        "{out:?}"
    );
    assert!(find(s, "one-more").await.is_none());
}
