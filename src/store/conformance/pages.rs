//! Keyset pages beyond plain ids: a listing with a finished range goes by finish time
//! then id, and a payload match pages the same at every density (on Postgres a page
//! of a rare match is read through the GIN index, of a common one by walking the
//! order: both must give the same pages).

use super::*;
use crate::store::filter::{After, Cursor, Order, PayloadMatch, SortKey, TimeRange};

/// Every page of `filter` from the start, each cursor passed through its text form;
/// the ids in listing order.
async fn every_page(s: &dyn Store, mut filter: JobFilter) -> Vec<JobId> {
    let mut seen = Vec::new();
    loop {
        filter.check().expect("a valid filter");
        let page = s.list_jobs(&filter).await.expect("list_jobs");
        assert!(
            page.len() <= filter.limit as usize,
            "a page holds at most `limit`"
        );
        seen.extend(page.iter().map(|j| j.id));
        match Cursor::after_page(&filter, &page) {
            Some(c) => {
                let c = Cursor::decode(&c.encode()).expect("a cursor reads back");
                assert_eq!(c.order, filter.order);
                filter.after = Some(c.after);
            }
            None => return seen,
        }
    }
}

/// Claims every available job and completes job `i` (by id order) at `finish(i)`,
/// which may give several the same millisecond; returns (id, finished_at) by id.
async fn finish_all(
    s: &dyn Store,
    ids: &[JobId],
    finish: impl Fn(usize) -> Millis,
) -> Vec<(JobId, Millis)> {
    let mut claimed = claim(s, ids.len() as u32, T0).await;
    claimed.sort_by_key(|c| c.job.id);
    assert_eq!(claimed.len(), ids.len(), "every job claimed");
    let mut done = Vec::new();
    let mut completions = Vec::new();
    for (i, c) in claimed.iter().enumerate() {
        completions.push(ok(c, finish(i)));
        done.push((c.job.id, finish(i)));
    }
    s.complete(completions).await.expect("complete");
    done
}

/// A listing with a finished range goes by `(finished_at, id)`, ascending and
/// descending: complete (every job finished in the range once, unfinished and
/// out-of-range jobs never), ties in the same millisecond broken by id, a job finished
/// mid-listing seen at the end (ascending), and a cursor by id refused for it.
pub async fn finished_pages_go_by_finish_time(s: &dyn Store) {
    let all = ids(s, (0..29).map(|_| job("f")).collect(), T0).await;
    // Out of id order, with ties: job i finishes at second (i * 7) % 10.
    let done = finish_all(s, &all, |i| {
        T0.plus(Duration::from_secs(((i * 7) % 10) as u64 + 1))
    })
    .await;
    let unfinished = ids(s, (0..3).map(|_| job("f")).collect(), T0).await;
    let range = TimeRange {
        from: Some(T0),
        to: Some(T0.plus(Duration::from_secs(3600))),
    };
    let mut want: Vec<(Millis, JobId)> = done.iter().map(|&(id, at)| (at, id)).collect();
    want.sort();
    for order in [Order::Asc, Order::Desc] {
        let filter = JobFilter {
            finished: range,
            limit: 4,
            order,
            ..Default::default()
        };
        assert_eq!(filter.sort_key(), SortKey::Finished);
        let mut expected: Vec<JobId> = want.iter().map(|&(_, id)| id).collect();
        if order == Order::Desc {
            expected.reverse();
        }
        assert_eq!(
            every_page(s, filter).await,
            expected,
            "{order:?}: every finished job once, by finish time then id"
        );
    }
    // A narrower range: only its jobs, `to` exclusive.
    let narrow = JobFilter {
        finished: TimeRange {
            from: Some(T0.plus(Duration::from_secs(3))),
            to: Some(T0.plus(Duration::from_secs(5))),
        },
        limit: 2,
        ..Default::default()
    };
    let expected: Vec<JobId> = want
        .iter()
        .filter(|&&(at, _)| {
            at >= T0.plus(Duration::from_secs(3)) && at < T0.plus(Duration::from_secs(5))
        })
        .map(|&(_, id)| id)
        .collect();
    assert!(expected.len() >= 4, "the narrow range spans pages");
    assert_eq!(every_page(s, narrow).await, expected);

    // A job finishing while a listing is read comes after every page read so far.
    let mut filter = JobFilter {
        finished: range,
        limit: 10,
        ..Default::default()
    };
    let first = s.list_jobs(&filter).await.unwrap();
    let c = Cursor::after_page(&filter, &first).expect("more pages");
    assert!(matches!(c.after, After::Finished { .. }));
    let late = claim(s, 1, T0).await.remove(0);
    s.complete(vec![ok(&late, T0.plus(Duration::from_secs(60)))])
        .await
        .unwrap();
    filter.after = Some(c.after);
    let mut rest = every_page(s, filter.clone()).await;
    assert_eq!(rest.pop(), Some(late.job.id), "the late job comes last");
    assert!(unfinished.contains(&late.job.id));
    let mut seen: Vec<JobId> = first.iter().map(|j| j.id).collect();
    seen.extend(rest);
    let expected: Vec<JobId> = want.iter().map(|&(_, id)| id).collect();
    assert_eq!(seen, expected, "no job repeated or skipped");

    // A cursor by id does not continue a listing by finish time, nor the reverse.
    filter.after = Some(After::Id(all[3]));
    assert_eq!(filter.check().unwrap_err().field, "cursor");
    let by_id = JobFilter {
        after: Some(c.after),
        ..Default::default()
    };
    assert_eq!(by_id.check().unwrap_err().field, "cursor");
}

/// A density case: its name, which of the jobs match, and how many should.
type Density<'a> = (&'a str, &'a dyn Fn(usize) -> bool, u32);

/// A payload match pages the same way at every density (every job, one in two, one in
/// fifty, one job, none), ascending and descending, with other conditions and with a
/// finished range: every match once, in order. Small pages make a rare match exceed
/// what Postgres walks before it reads the GIN index, so both ways are taken.
pub async fn payload_pages_at_every_density(s: &dyn Store) {
    let n = 600;
    let jobs = (0..n)
        .map(|i| {
            let mut j = NewJob::new(
                "d",
                json!({"all": true, "d2": i % 2, "d50": format!("v{}", i % 50), "one": i == 317}),
            );
            if i % 3 == 0 {
                j.queue = "other".into();
            }
            j
        })
        .collect();
    let all = ids(s, jobs, T0).await;
    // The first 200 (default queue, by id) finish, one per second.
    let default: Vec<JobId> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, &id)| id)
        .collect();
    let mut claimed = claim(s, 200, T0).await;
    claimed.sort_by_key(|c| c.job.id);
    let finished: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
    assert_eq!(finished, default[..200]);
    let completions = claimed
        .iter()
        .enumerate()
        // In reverse id order, so that finish order differs from id order.
        .map(|(i, c)| ok(c, T0.plus(Duration::from_secs(200 - i as u64))))
        .collect();
    s.complete(completions).await.unwrap();

    let index = |id: &JobId| all.iter().position(|a| a == id).unwrap();
    // (match, which jobs it matches, page size): pages of 2 for the sparse ones, which
    // Postgres walks 200 rows for (of 600) before it reads its index.
    let cases: [Density<'_>; 6] = [
        ("$.all == true", &|_| true, 7),
        ("$.d2 == 1", &|i| i % 2 == 1, 7),
        (r#"$.d50 == "v7""#, &|i| i % 50 == 7, 2),
        ("$.one == true", &|i| i == 317, 2),
        (r#"$.d50 == "v50""#, &|_| false, 2),
        ("$.d2 == \"1\"", &|_| false, 2),
    ];
    for (expr, pred, limit) in cases {
        let m = PayloadMatch::parse(expr).unwrap();
        for order in [Order::Asc, Order::Desc] {
            let mut want: Vec<JobId> = all.iter().copied().filter(|id| pred(index(id))).collect();
            if order == Order::Desc {
                want.reverse();
            }
            let filter = JobFilter {
                payload: Some(m.clone()),
                limit,
                order,
                ..Default::default()
            };
            assert_eq!(every_page(s, filter).await, want, "{expr} {order:?}");

            let in_other: Vec<JobId> = want
                .iter()
                .copied()
                .filter(|id| index(id) % 3 == 0)
                .collect();
            let filter = JobFilter {
                payload: Some(m.clone()),
                queues: vec!["other".into()],
                limit,
                order,
                ..Default::default()
            };
            assert_eq!(
                every_page(s, filter).await,
                in_other,
                "{expr} {order:?} other"
            );

            // Finished jobs by finish time: job finished[k] at 200 - k s, so by finish
            // time ascending is by id descending.
            let mut by_finish: Vec<JobId> = finished
                .iter()
                .rev()
                .copied()
                .filter(|id| pred(index(id)))
                .collect();
            if order == Order::Desc {
                by_finish.reverse();
            }
            let filter = JobFilter {
                payload: Some(m.clone()),
                finished: TimeRange {
                    from: Some(T0),
                    to: None,
                },
                limit,
                order,
                ..Default::default()
            };
            assert_eq!(
                every_page(s, filter).await,
                by_finish,
                "{expr} {order:?} finished"
            );
        }
    }
}

/// Payload pages larger than a sample: Postgres first walks a sample of 1000 rows, then
/// the whole window (100 rows per job asked) only where the sample leaves it unsure,
/// and goes to its count and index at once where the sample found the value rare; a
/// walk by one queue or one kind goes by that column's index, and where it is unsure
/// first tallies the value's matches in the GIN index: few (`d100` in q2 or k1), the
/// page is read through the index; many (`mix`, all of q0 but one in 50 of q1), it
/// walks on. Every way gives every match once, in order, with a page of 20 (a window
/// of 2000 rows) over 2500 jobs.
pub async fn payload_pages_past_the_sample(s: &dyn Store) {
    let n = 2500;
    let mut all = Vec::new();
    for chunk in (0..n).collect::<Vec<usize>>().chunks(500) {
        let jobs = chunk
            .iter()
            .map(|&i| {
                let mut j = NewJob::new(
                    format!("k{}", i % 2),
                    json!({
                        "d25": i % 25 == 4,
                        "d100": i % 100 == 7,
                        "d500": i % 500 == 3,
                        "mix": i % 5 == 0 || i % 250 == 1,
                    }),
                );
                j.queue = format!("q{}", i % 5);
                j
            })
            .collect();
        all.extend(ids(s, jobs, T0).await);
    }
    let index = |id: &JobId| all.iter().position(|a| a == id).unwrap();
    // (match, which jobs it matches): a sample of 1000 finds a full page (1 in 25),
    // about ten matches and walks on (1 in 100), or two and reads the index (1 in 500);
    // `mix` is one in 50 of q1 (whose 500 rows a sample of 1000 reads at once: ten
    // matches) and every job of q0, so that a tally of q1's page runs out.
    let cases: [(&str, &dyn Fn(usize) -> bool); 4] = [
        ("$.d25 == true", &|i| i % 25 == 4),
        ("$.d100 == true", &|i| i % 100 == 7),
        ("$.d500 == true", &|i| i % 500 == 3),
        ("$.mix == true", &|i| i % 5 == 0 || i % 250 == 1),
    ];
    for (expr, pred) in cases {
        let m = PayloadMatch::parse(expr).unwrap();
        for order in [Order::Asc, Order::Desc] {
            // Every job, then one queue (q4 holds the 1-in-25 matches, q2 the 1-in-100,
            // neither the 1-in-500; q1 ten of `mix`), then one kind.
            let narrowings: [(JobFilter, &dyn Fn(usize) -> bool); 5] = [
                (JobFilter::default(), &|_| true),
                (
                    JobFilter {
                        queues: vec!["q4".into()],
                        ..Default::default()
                    },
                    &|i| i % 5 == 4,
                ),
                (
                    JobFilter {
                        queues: vec!["q2".into()],
                        ..Default::default()
                    },
                    &|i| i % 5 == 2,
                ),
                (
                    JobFilter {
                        queues: vec!["q1".into()],
                        ..Default::default()
                    },
                    &|i| i % 5 == 1,
                ),
                (
                    JobFilter {
                        kind: Some("k1".into()),
                        ..Default::default()
                    },
                    &|i| i % 2 == 1,
                ),
            ];
            for (narrow, within) in narrowings {
                let mut want: Vec<JobId> = all
                    .iter()
                    .copied()
                    .filter(|id| pred(index(id)) && within(index(id)))
                    .collect();
                if order == Order::Desc {
                    want.reverse();
                }
                let filter = JobFilter {
                    payload: Some(m.clone()),
                    limit: 20,
                    order,
                    ..narrow.clone()
                };
                assert_eq!(
                    every_page(s, filter).await,
                    want,
                    "{expr} {order:?} {:?} {:?}",
                    narrow.queues,
                    narrow.kind
                );
            }
        }
    }
}
