//! Filters, keyset pages and bulk actions: every filter field narrows a listing the
//! same way on every store, values are data, pages cover every job once, and each bulk
//! action changes exactly the jobs `store::bulk` says it applies to, in batches.

use super::*;
use crate::store::audit::{Actor, AuditAction, AuditContext, AuditQuery};
use crate::store::bulk::{BULK_BATCH, BulkAction, BulkTarget};
use crate::store::filter::{Cursor, Order, PayloadMatch, TimeRange};

/// The operator every bulk action here is audited as.
fn operator() -> AuditContext {
    AuditContext::new(Actor::cli("ops", "bulk-test"))
}

fn matching(expr: &str) -> Option<PayloadMatch> {
    Some(PayloadMatch::parse(expr).expect("a valid match"))
}

async fn listed(s: &dyn Store, filter: JobFilter) -> Vec<JobId> {
    filter.check().expect("a valid filter");
    s.list_jobs(&filter)
        .await
        .expect("list_jobs")
        .into_iter()
        .map(|j| j.id)
        .collect()
}

/// Each filter field narrows a listing; payload matches compare typed values; SQL
/// metacharacters in any value are data.
pub async fn filters_narrow_listings(s: &dyn Store) {
    let odd = "x' OR '1'='1; DROP TABLE jobs; --";
    let mut jobs = Vec::new();
    for (i, payload) in [
        json!({"customer": {"id": "42"}, "n": 1}),
        json!({"customer": {"id": 42}, "n": 1.0}),
        json!({"customer": {"id": "7"}, "flag": true}),
        json!({"flag": 1, "gone": null}),
        json!({"customer": {"id": odd}}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut j = NewJob::new(if i == 4 { odd } else { "k" }, payload);
        j.priority = (i as i16) * 10 - 20;
        if i % 2 == 1 {
            j.queue = "other".into();
        }
        jobs.push(j);
    }
    let mut all = Vec::new();
    for (i, j) in jobs.into_iter().enumerate() {
        // One enqueue per job, a second apart, for the created range.
        all.extend(ids(s, vec![j], T0.plus(Duration::from_secs(i as u64))).await);
    }
    let pick = |is: &[usize]| is.iter().map(|&i| all[i]).collect::<Vec<_>>();
    let f = JobFilter::default;

    assert_eq!(listed(s, f()).await, all);
    let other = JobFilter {
        queues: vec!["other".into()],
        ..f()
    };
    assert_eq!(listed(s, other).await, pick(&[1, 3]));
    let both = JobFilter {
        queues: vec!["other".into(), "default".into()],
        ..f()
    };
    assert_eq!(listed(s, both).await, all);
    assert_eq!(
        listed(
            s,
            JobFilter {
                kind: Some(odd.into()),
                ..f()
            }
        )
        .await,
        pick(&[4])
    );
    for v in ["x' OR '1'='1", "%", "_", "k' --"] {
        assert!(
            listed(
                s,
                JobFilter {
                    kind: Some(v.into()),
                    ..f()
                }
            )
            .await
            .is_empty(),
            "{v}"
        );
        assert!(
            listed(
                s,
                JobFilter {
                    queues: vec![v.into()],
                    ..f()
                }
            )
            .await
            .is_empty(),
            "{v}"
        );
    }
    let prio = JobFilter {
        priority_min: Some(-10),
        priority_max: Some(10),
        ..f()
    };
    assert_eq!(listed(s, prio).await, pick(&[1, 2, 3]));
    let created = JobFilter {
        created: TimeRange {
            from: Some(T0.plus(Duration::from_secs(1))),
            to: Some(T0.plus(Duration::from_secs(3))),
        },
        ..f()
    };
    assert_eq!(listed(s, created).await, pick(&[1, 2]));

    for (expr, want) in [
        (r#"$.customer.id == "42""#, vec![0]),
        ("$.customer.id == 42", vec![1]),
        ("$.customer.id == 42.0", vec![1]),
        ("$.n == 1", vec![0, 1]),
        ("$.flag == true", vec![2]),
        ("$.flag == 1", vec![3]),
        ("$.gone == null", vec![3]),
        ("$.customer == null", vec![]),
        ("$.missing == null", vec![]),
        (
            r#"$.customer.id == "x' OR '1'='1; DROP TABLE jobs; --""#,
            vec![4],
        ),
        (r#"$.customer.id == "x' OR '1'='1""#, vec![]),
        (r#"$.customer.id == "%""#, vec![]),
    ] {
        let got = listed(
            s,
            JobFilter {
                payload: matching(expr),
                ..f()
            },
        )
        .await;
        assert_eq!(got, pick(&want), "{expr}");
    }
    let combined = JobFilter {
        queues: vec!["default".into()],
        payload: matching("$.n == 1"),
        ..f()
    };
    assert_eq!(listed(s, combined).await, pick(&[0]));

    // Finished range: only finished jobs, by when they finished.
    let c = claim(s, 1, T0).await.remove(0);
    s.complete(vec![ok(&c, T0.plus(Duration::from_secs(60)))])
        .await
        .unwrap();
    let finished = JobFilter {
        finished: TimeRange {
            from: Some(T0),
            to: None,
        },
        ..f()
    };
    assert_eq!(listed(s, finished).await, vec![c.job.id]);
    let states = JobFilter {
        states: vec![JobState::Succeeded, JobState::Running],
        ..f()
    };
    assert_eq!(listed(s, states).await, vec![c.job.id]);
    let early = JobFilter {
        finished: TimeRange {
            from: None,
            to: Some(T0.plus(Duration::from_secs(60))),
        },
        ..f()
    };
    assert!(listed(s, early).await.is_empty(), "`to` is exclusive");
}

/// Keyset pages, ascending and descending, cover every job exactly once, and pages
/// taken while jobs are added neither repeat nor skip one.
pub async fn keyset_pages_cover_every_job_once(s: &dyn Store) {
    let mut all = ids(s, (0..23).map(|_| job("p")).collect(), T0).await;
    for order in [Order::Asc, Order::Desc] {
        let mut filter = JobFilter {
            limit: 4,
            order,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut added = false;
        loop {
            let page = s.list_jobs(&filter).await.unwrap();
            seen.extend(page.iter().map(|j| j.id));
            if !added && order == Order::Asc {
                // A job added mid-listing comes after every page read so far.
                all.extend(ids(s, vec![job("p")], T0).await);
                added = true;
            }
            match Cursor::after_page(&filter, &page) {
                Some(c) => {
                    let c = Cursor::decode(&c.encode()).unwrap();
                    assert_eq!(c.order, order);
                    filter.after = Some(c.after);
                }
                None => break,
            }
        }
        let mut want = all.clone();
        if order == Order::Desc {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}: every job once, in order");
    }
}

/// Each bulk action changes the jobs in the states it applies to, by ids or by filter,
/// with the events and side tables of the single operation, and counts what it did.
pub async fn bulk_actions_by_ids_and_filter(s: &dyn Store) {
    let now = T0;
    let later = NewJob {
        run_at: Some(T0.plus(Duration::from_secs(3600))),
        ..job("b")
    };
    let [scheduled, running, dead, done_, avail] =
        ids(s, vec![later, job("b"), job("b"), job("b"), job("b")], now).await[..]
    else {
        unreachable!()
    };
    let cs = claim(s, 3, now).await;
    let by_id = |id: JobId| cs.iter().find(|c| c.job.id == id).unwrap();
    s.complete(vec![
        done(
            by_id(dead),
            Outcome::Discard {
                error: "boom".into(),
            },
            now,
        ),
        ok(by_id(done_), now),
    ])
    .await
    .unwrap();
    let _ = running;

    // Retry now: only the scheduled job changes; unknown ids are counted.
    let out = s
        .bulk(
            &operator(),
            BulkAction::Retry,
            &BulkTarget::Ids(vec![scheduled, avail, dead, JobId(987_654)]),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            out.matched,
            out.changed,
            out.skipped,
            out.not_found,
            out.batches
        ),
        (3, 1, 2, 1, 1)
    );
    let j = s.get_job(scheduled).await.unwrap().unwrap();
    assert_eq!((j.state, j.run_at), (JobState::Available, now));
    assert!(
        event_kinds(s, scheduled)
            .await
            .contains(&EventKind::JobRetryScheduled)
    );
    assert_eq!(
        state(s, dead).await,
        JobState::Discarded,
        "retry leaves the DLQ to redrive"
    );

    // Redrive by filter: the dead letter comes back with fresh attempts, the DLQ empties.
    let f = JobFilter {
        kind: Some("b".into()),
        ..Default::default()
    };
    let out = s
        .bulk(
            &operator(),
            BulkAction::Redrive,
            &BulkTarget::Filter(Box::new(f.clone())),
            now,
        )
        .await
        .unwrap();
    assert_eq!((out.matched, out.changed), (1, 1));
    let j = s.get_job(dead).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Available, 0));
    assert!(s.dead_letters(None, 10).await.unwrap().is_empty());

    // Cancel by filter: every unfinished job (the running one loses its lease).
    let out = s
        .bulk(
            &operator(),
            BulkAction::Cancel,
            &BulkTarget::Filter(Box::new(f.clone())),
            now,
        )
        .await
        .unwrap();
    assert_eq!(out.changed, 4, "{out:?}");
    for id in [scheduled, avail, running, dead] {
        assert_eq!(state(s, id).await, JobState::Cancelled, "{id}");
    }
    assert_eq!(
        s.complete(vec![ok(by_id(running), now)]).await.unwrap(),
        [CompletionResult::StaleLease]
    );
    assert!(
        event_kinds(s, running)
            .await
            .contains(&EventKind::JobCancelled)
    );
    assert_eq!(state(s, done_).await, JobState::Succeeded);

    // Delete by filter narrowed to a state; then every finished job.
    let only_done = JobFilter {
        states: vec![JobState::Succeeded],
        ..f.clone()
    };
    let out = s
        .bulk(
            &operator(),
            BulkAction::Delete,
            &BulkTarget::Filter(Box::new(only_done)),
            now,
        )
        .await
        .unwrap();
    assert_eq!(out.changed, 1);
    assert!(s.get_job(done_).await.unwrap().is_none());
    assert!(
        event_kinds(s, done_).await.is_empty(),
        "its events went with it"
    );
    let keep = ids(s, vec![job("b")], now).await[0];
    let out = s
        .bulk(
            &operator(),
            BulkAction::Delete,
            &BulkTarget::Filter(Box::new(f)),
            now,
        )
        .await
        .unwrap();
    assert_eq!(out.changed, 4);
    assert_eq!(
        listed(s, JobFilter::default()).await,
        vec![keep],
        "unfinished jobs stay"
    );

    // A target out of bounds is refused before anything changes.
    assert!(
        s.bulk(
            &operator(),
            BulkAction::Cancel,
            &BulkTarget::Ids(vec![]),
            now
        )
        .await
        .is_err()
    );
    let bad = JobFilter {
        priority_min: Some(500),
        ..Default::default()
    };
    assert!(
        s.bulk(
            &operator(),
            BulkAction::Cancel,
            &BulkTarget::Filter(Box::new(bad)),
            now
        )
        .await
        .is_err()
    );
    assert_eq!(state(s, keep).await, JobState::Available);
}

/// A bulk action by filter covers every match, a batch per transaction, and not the
/// jobs outside the filter.
pub async fn bulk_by_filter_covers_every_match_in_batches(s: &dyn Store) {
    let n = BULK_BATCH * 2 + 17;
    let mut jobs: Vec<NewJob> = (0..n).map(|_| job("many")).collect();
    jobs.extend((0..5).map(|_| job("few")));
    ids(s, jobs, T0).await;
    let filter = JobFilter {
        kind: Some("many".into()),
        ..Default::default()
    };
    let out = s
        .bulk(
            &operator(),
            BulkAction::Cancel,
            &BulkTarget::Filter(Box::new(filter.clone())),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        (out.matched, out.changed, out.batches),
        (n as u64, n as u64, 3)
    );
    let counts = s.counts().await.unwrap();
    assert_eq!(counts["default"][&JobState::Cancelled], n as u64);
    assert_eq!(counts["default"][&JobState::Available], 5);
    let again = s
        .bulk(
            &operator(),
            BulkAction::Cancel,
            &BulkTarget::Filter(Box::new(filter)),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(again.changed, 0, "nothing left to cancel");
    // One audit row per batch transaction, with the counts; the empty run writes one.
    let rows = s
        .list_audit(&AuditQuery {
            action: Some(AuditAction::Cancel),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.actor == operator().actor));
    let changed: u64 = rows
        .iter()
        .map(|r| r.detail["changed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(changed, n as u64, "{:?}", rows[0]);
    assert!(
        rows.iter().all(|r| r.target.to_string().contains("many")),
        "{:?}",
        rows[0].target
    );
}
