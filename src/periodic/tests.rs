//! Schedules, daylight-saving changes in Europe/Berlin, and the missed-tick policies,
//! all on instants given by hand or by a [`ManualClock`].

use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::clock::{Clock, ManualClock, Millis};
use crate::job::NewJob;

const BERLIN: Tz = Tz::Europe__Berlin;

/// The instant `y-m-d h:mi:00` UTC.
fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> Millis {
    Millis(
        Utc.with_ymd_and_hms(y, m, d, h, mi, 0)
            .unwrap()
            .timestamp_millis(),
    )
}

fn sched(text: &str) -> Schedule {
    Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Every tick in `(from, to]`, walking forward.
fn forward(s: &Schedule, tz: Tz, from: Millis, to: Millis) -> Vec<Millis> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(t) = s.next_after(at, tz).filter(|t| *t <= to) {
        out.push(t);
        at = t;
    }
    out
}

/// Every tick in `(from, to]`, walking back from `to`.
fn backward(s: &Schedule, tz: Tz, from: Millis, to: Millis) -> Vec<Millis> {
    let mut out = Vec::new();
    let mut at = s.latest_at_or_before(to, tz);
    while let Some(t) = at.filter(|t| *t > from) {
        out.push(t);
        at = s.latest_at_or_before(Millis(t.0 - 1000), tz);
    }
    out.reverse();
    out
}

#[test]
fn schedules_parse_and_bad_ones_say_why() {
    assert_eq!(sched("*/5 * * * *").to_string(), "*/5 * * * *");
    assert_eq!(sched("  0 30 2 * * *  ").as_str(), "0 30 2 * * *");
    assert_eq!(sched("every 30s").interval(), Some(Duration::from_secs(30)));
    assert_eq!(
        sched("every 1h 30m").interval(),
        Some(Duration::from_secs(5400))
    );
    for (text, says) in [
        ("", "empty"),
        ("   ", "empty"),
        ("every 0s", "from 1s"),
        ("every 500ms", "from 1s"),
        ("every 1500ms", "whole seconds"),
        ("every 400days", "366 days"),
        ("every soon", "duration such as"),
        ("61 * * * *", "neither a cron expression"),
        ("* * *", "neither a cron expression"),
        ("*/5 * *\n * *", "control character"),
        ("0 0\u{7} * * *", "control character"),
    ] {
        let e = Schedule::parse(text).expect_err(text).to_string();
        assert!(e.contains(says), "{text:?}: {e}");
    }
    let long = format!("every {}s", "1".repeat(MAX_SCHEDULE_LEN));
    assert!(
        Schedule::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("at most")
    );
}

#[test]
fn every_ticks_on_multiples_of_its_interval_since_the_epoch() {
    let s = sched("every 10s");
    assert_eq!(s.next_after(Millis(12_345), Tz::UTC), Some(Millis(20_000)));
    // A tick is not after itself.
    assert_eq!(s.next_after(Millis(20_000), Tz::UTC), Some(Millis(30_000)));
    assert_eq!(
        s.latest_at_or_before(Millis(29_999), Tz::UTC),
        Some(Millis(20_000))
    );
    assert_eq!(
        s.latest_at_or_before(Millis(30_000), Tz::UTC),
        Some(Millis(30_000))
    );
    // The zone changes nothing for an interval.
    assert_eq!(s.next_after(Millis(12_345), BERLIN), Some(Millis(20_000)));
}

#[test]
fn cron_reads_the_wall_clock_of_its_zone() {
    let s = sched("0 9 * * *");
    // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert_eq!(
        s.next_after(utc(2026, 1, 10, 0, 0), BERLIN),
        Some(utc(2026, 1, 10, 8, 0))
    );
    assert_eq!(
        s.next_after(utc(2026, 7, 10, 0, 0), BERLIN),
        Some(utc(2026, 7, 10, 7, 0))
    );
    assert_eq!(
        s.next_after(utc(2026, 7, 10, 0, 0), Tz::UTC),
        Some(utc(2026, 7, 10, 9, 0))
    );
    // Milliseconds inside the tick's second: the next tick is the following day's.
    assert_eq!(
        s.next_after(Millis(utc(2026, 7, 10, 7, 0).0 + 500), BERLIN),
        Some(utc(2026, 7, 11, 7, 0))
    );
    // Seconds as a sixth field.
    assert_eq!(
        sched("*/15 * * * * *").next_after(utc(2026, 1, 1, 0, 0), Tz::UTC),
        Some(Millis(utc(2026, 1, 1, 0, 0).0 + 15_000))
    );
}

/// Spring forward in Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC),
/// so 02:30 does not exist that day.
#[test]
fn spring_forward_a_fixed_time_in_the_gap_runs_at_the_end_of_the_gap() {
    let daily = sched("30 2 * * *");
    let ticks = forward(
        &daily,
        BERLIN,
        utc(2026, 3, 27, 12, 0),
        utc(2026, 3, 30, 12, 0),
    );
    assert_eq!(
        ticks,
        vec![
            utc(2026, 3, 28, 1, 30), // 02:30 CET
            utc(2026, 3, 29, 1, 0),  // 03:00 CEST, the first instant after the gap
            utc(2026, 3, 30, 0, 30), // 02:30 CEST
        ]
    );
}

#[test]
fn spring_forward_an_interval_has_no_ticks_in_the_gap() {
    let half_hourly = sched("*/30 * * * *");
    let ticks = forward(
        &half_hourly,
        BERLIN,
        utc(2026, 3, 29, 0, 0),  // 01:00 CET
        utc(2026, 3, 29, 1, 30), // 03:30 CEST
    );
    assert_eq!(
        ticks,
        vec![
            utc(2026, 3, 29, 0, 30), // 01:30 CET
            utc(2026, 3, 29, 1, 0),  // 03:00 CEST: 02:00 and 02:30 do not exist
            utc(2026, 3, 29, 1, 30), // 03:30 CEST
        ]
    );
}

/// Fall back in Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC), so
/// 02:00-02:59 happens twice.
#[test]
fn fall_back_a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() {
    let daily = sched("30 2 * * *");
    let ticks = forward(
        &daily,
        BERLIN,
        utc(2026, 10, 24, 12, 0),
        utc(2026, 10, 26, 12, 0),
    );
    assert_eq!(
        ticks,
        vec![
            utc(2026, 10, 25, 0, 30), // 02:30 CEST; not again at 02:30 CET (01:30 UTC)
            utc(2026, 10, 26, 1, 30), // 02:30 CET
        ]
    );
}

#[test]
fn fall_back_an_interval_ticks_on_both_passes_of_the_repeated_hour() {
    let half_hourly = sched("*/30 * * * *");
    let ticks = forward(
        &half_hourly,
        BERLIN,
        utc(2026, 10, 24, 23, 45), // 01:45 CEST
        utc(2026, 10, 25, 2, 0),   // 03:00 CET
    );
    assert_eq!(
        ticks,
        vec![
            utc(2026, 10, 25, 0, 0),  // 02:00 CEST
            utc(2026, 10, 25, 0, 30), // 02:30 CEST
            utc(2026, 10, 25, 1, 0),  // 02:00 CET
            utc(2026, 10, 25, 1, 30), // 02:30 CET
            utc(2026, 10, 25, 2, 0),  // 03:00 CET
        ]
    );
}

#[test]
fn every_is_real_time_across_daylight_saving_changes() {
    let hourly = sched("every 1h");
    // Local midnight to local midnight: 23 hours in spring, 25 in autumn.
    let spring = forward(
        &hourly,
        BERLIN,
        utc(2026, 3, 28, 23, 0),
        utc(2026, 3, 29, 22, 0),
    );
    assert_eq!(spring.len(), 23);
    let autumn = forward(
        &hourly,
        BERLIN,
        utc(2026, 10, 24, 22, 0),
        utc(2026, 10, 25, 23, 0),
    );
    assert_eq!(autumn.len(), 25);
    assert!(autumn.windows(2).all(|w| w[1].0 - w[0].0 == 3_600_000));
}

/// The catch-up walks back from now; it must find the ticks a forward walk finds,
/// including across both changes.
#[test]
fn walking_back_finds_the_ticks_walking_forward_finds() {
    let windows = [
        (utc(2026, 3, 28, 20, 0), utc(2026, 3, 29, 4, 0)),
        (utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 4, 0)),
        (utc(2026, 6, 1, 0, 0), utc(2026, 6, 1, 6, 0)),
    ];
    for text in [
        "30 2 * * *",
        "0 2 * * *",
        "*/30 * * * *",
        "0 * * * *",
        "15 1-3 * * *",
        "*/20 2 * * *",
        "0 */7 * * * *",
        "every 25m",
    ] {
        let s = sched(text);
        for (from, to) in windows {
            assert_eq!(
                backward(&s, BERLIN, from, to),
                forward(&s, BERLIN, from, to),
                "{text} in ({from}, {to}]"
            );
        }
    }
}

#[test]
fn skip_runs_only_the_latest_missed_tick() {
    let s = sched("every 10s");
    // Handled through 100 s; now 165 s: ticks 110..=160 are due, only 160 runs.
    assert_eq!(
        due_ticks(
            &s,
            Tz::UTC,
            MissedTicks::Skip,
            Millis(100_000),
            Millis(165_000)
        ),
        vec![Millis(160_000)]
    );
    // The latest tick handled already: nothing.
    assert!(
        due_ticks(
            &s,
            Tz::UTC,
            MissedTicks::Skip,
            Millis(160_000),
            Millis(165_000)
        )
        .is_empty()
    );
    // On time: the tick that just came.
    assert_eq!(
        due_ticks(
            &s,
            Tz::UTC,
            MissedTicks::Skip,
            Millis(160_000),
            Millis(170_000)
        ),
        vec![Millis(170_000)]
    );
}

#[test]
fn catch_up_runs_every_missed_tick_within_the_backfill_window() {
    let s = sched("every 10m");
    let policy = MissedTicks::CatchUp {
        backfill: Duration::from_secs(3600),
    };
    let now = utc(2026, 5, 1, 12, 5);
    // Down since 09:00: only ticks from 11:05 on are within the hour.
    let due = due_ticks(&s, Tz::UTC, policy, utc(2026, 5, 1, 9, 0), now);
    let expect: Vec<Millis> = (1..=6)
        .map(|i| Millis(utc(2026, 5, 1, 11, 0).0 + i * 600_000))
        .collect();
    assert_eq!(due, expect);
    // Down since 11:40: the mark bounds it.
    let due = due_ticks(&s, Tz::UTC, policy, utc(2026, 5, 1, 11, 40), now);
    assert_eq!(due, vec![utc(2026, 5, 1, 11, 50), utc(2026, 5, 1, 12, 0)]);
}

#[test]
fn catch_up_never_floods_past_its_bound() {
    let s = sched("every 1s");
    let policy = MissedTicks::CatchUp {
        backfill: MAX_BACKFILL,
    };
    let now = Millis(10_000_000_000);
    let due = due_ticks(&s, Tz::UTC, policy, Millis(0), now);
    assert_eq!(due.len(), MAX_CATCH_UP);
    // The most recent ones, oldest first, ending at now.
    assert_eq!(due.last(), Some(&now));
    assert_eq!(due[0], Millis(now.0 - 1000 * (MAX_CATCH_UP as i64 - 1)));
    assert!(due.windows(2).all(|w| w[0] < w[1]));
}

/// The loop the leader runs, reduced to the pure parts: a mark that only moves forward
/// by compare-and-set (as the store's), leaders that come and go, and a clock moved by
/// hand. An `every 1s` schedule over a minute with two outages of several seconds
/// yields each of the 60 ticks exactly once under `catch_up`, and loses the missed
/// ones but the latest under `skip`.
#[test]
fn a_minute_of_every_second_across_leader_outages_with_the_injected_clock() {
    fn run(policy: MissedTicks) -> Vec<Millis> {
        let clock = ManualClock::new(Millis(1_000_000));
        let mut job = PeriodicJob::new("tick", sched("every 1s"), NewJob::new("noop", json!({})));
        job.policy = policy;
        let start = clock.now();
        let mut mark = start;
        let mut enqueued = Vec::new();
        // Leaders are down (a kill, then a lease to lapse) during these seconds.
        let down = |t: Millis| {
            let s = (t.0 - start.0) / 1000;
            (12..17).contains(&s) || (40..44).contains(&s)
        };
        let end = Millis(start.0 + 60_000);
        while clock.now() < end {
            let now = clock.now();
            if !down(now) {
                for t in job.due(mark, now) {
                    // The store's compare-and-set: only a later tick advances the mark.
                    if t > mark {
                        mark = t;
                        enqueued.push(t);
                    }
                }
            }
            // Sleep until the next tick (or a lease check 300 ms on, if sooner).
            let next = job.next_after(now).unwrap();
            clock.set(next.min(Millis(now.0 + 300)));
        }
        let now = clock.now();
        for t in job.due(mark, now) {
            if t > mark {
                mark = t;
                enqueued.push(t);
            }
        }
        enqueued
    }
    let ticks = run(MissedTicks::CatchUp {
        backfill: Duration::from_secs(60),
    });
    let expect: Vec<Millis> = (1..=60).map(|i| Millis(1_000_000 + i * 1000)).collect();
    assert_eq!(ticks, expect);
    let skipped = run(MissedTicks::Skip);
    // Nobody leads during 12..=16 s and 40..=43 s: those ticks are lost, and 17 s and
    // 44 s run on time when a leader is back.
    assert_eq!(skipped.len(), 60 - 5 - 4, "{skipped:?}");
    assert!(!skipped.contains(&Millis(1_016_000)) && skipped.contains(&Millis(1_017_000)));
    assert!(skipped.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn each_tick_gets_its_own_unique_key_and_time() {
    let mut template = NewJob::new("noop", json!({"a": 1}));
    template.queue = "reports".into();
    template.priority = 5;
    let job = PeriodicJob::new("nightly", sched("0 3 * * *"), template.clone());
    let tick = utc(2026, 5, 1, 3, 0);
    let j = job.job_for(tick);
    assert_eq!(
        j.unique_key.as_deref(),
        Some(format!("periodic:nightly:{}", tick.0).as_str())
    );
    assert_eq!(j.run_at, Some(tick));
    assert_eq!(
        (j.queue.as_str(), j.priority, &j.payload),
        ("reports", 5, &template.payload)
    );
    assert_ne!(
        job.job_for(Millis(tick.0 + 86_400_000)).unique_key,
        j.unique_key
    );
}

#[test]
fn periodic_jobs_that_cannot_work_are_refused_naming_the_field() {
    let now = utc(2026, 5, 1, 0, 0);
    let ok = PeriodicJob::new("ok", sched("every 1m"), NewJob::new("noop", json!({})));
    ok.check(now).unwrap();
    let refused = |f: &dyn Fn(&mut PeriodicJob)| {
        let mut j = ok.clone();
        f(&mut j);
        j.check(now).unwrap_err()
    };
    assert_eq!(refused(&|j| j.name = String::new()).field, "name");
    assert_eq!(refused(&|j| j.name = "a b".into()).field, "name");
    assert_eq!(
        refused(&|j| j.name = "x".repeat(MAX_NAME_LEN + 1)).field,
        "name"
    );
    // 30 February never comes.
    assert_eq!(
        refused(&|j| j.schedule = sched("0 0 30 2 *")).field,
        "schedule"
    );
    let e = refused(&|j| {
        j.policy = MissedTicks::CatchUp {
            backfill: Duration::from_secs(8 * 86_400),
        }
    });
    assert_eq!(e.field, "backfill");
    assert!(e.to_string().contains("7 days"), "{e}");
    assert_eq!(
        refused(&|j| j.job.unique_key = Some("k".into())).field,
        "unique_key"
    );
    assert_eq!(refused(&|j| j.job.run_at = Some(now)).field, "run_at");
    assert_eq!(
        refused(&|j| j.job.depends_on_index = vec![0]).field,
        "depends_on"
    );
}
