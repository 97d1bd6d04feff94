use std::collections::HashMap;

use super::plan::{Candidate, Limits, Partition, allocate, blocked, choose};
use super::*;
use crate::job::JobId;

fn pair(limit: &str, key: &str) -> (String, String) {
    (limit.to_owned(), key.to_owned())
}

#[test]
fn rates_parse_in_their_units_and_refuse_nonsense() {
    assert_eq!(
        Rate::parse("100/s").unwrap(),
        Rate {
            count: 100,
            per_ms: 1000
        }
    );
    assert_eq!(Rate::parse("5/min").unwrap().per_ms, 60_000);
    assert_eq!(Rate::parse("3/h").unwrap().per_ms, 3_600_000);
    assert_eq!(Rate::parse("10/250ms").unwrap().per_ms, 250);
    for bad in [
        "100",
        "0/s",
        "x/s",
        "5/fortnight",
        "5/0s",
        "5/2d",
        "2000000/s",
    ] {
        assert!(Rate::parse(bad).is_err(), "{bad} should be refused");
    }
    assert_eq!(Rate::parse("100/s").unwrap().to_string(), "100/s");
}

#[test]
fn limits_are_checked_with_their_name() {
    let ok = Limit::queue("emails")
        .max_running(5)
        .limit_by("$.customer_id");
    assert!(ok.check().is_ok());
    let e = Limit::queue("emails").check().unwrap_err();
    assert_eq!(e.name, "queue:emails");
    assert!(e.reason.contains("max_running, rate"), "{e}");
    let e = Limit::kind("http").max_running(0).check().unwrap_err();
    assert!(e.reason.contains("pause"), "{e}");
    let e = Limit::queue("q")
        .max_running(1)
        .limit_by("customer")
        .check()
        .unwrap_err();
    assert!(e.reason.contains("limit_by"), "{e}");
    let mut burst_alone = Limit::queue("q").max_running(1);
    burst_alone.burst = Some(3);
    assert!(burst_alone.check().is_err());
    let e = check_limits(&[
        Limit::queue("q").max_running(1),
        Limit::queue("q").max_running(2),
    ])
    .unwrap_err();
    assert!(e.reason.contains("same queue"), "{e}");
    assert!(
        check_limits(&[
            Limit::queue("q").max_running(1),
            Limit::kind("q").max_running(2)
        ])
        .is_ok()
    );
}

#[test]
fn buckets_refill_at_the_rate_up_to_the_burst() {
    let l = Limit::queue("q").rate(Rate::parse("10/s").unwrap(), Some(4));
    assert_eq!(Bucket::at(&l, None, Millis(0)).tokens, 4.0);
    let empty = Bucket {
        tokens: 0.0,
        at: Millis(1000),
    };
    assert!((Bucket::at(&l, Some(empty), Millis(1250)).tokens - 2.5).abs() < 1e-9);
    assert_eq!(Bucket::at(&l, Some(empty), Millis(60_000)).tokens, 4.0);
    // Another node's clock behind: no refill, no drain.
    assert_eq!(Bucket::at(&l, Some(empty), Millis(500)).tokens, 0.0);
    assert_eq!(Bucket::at(&l, Some(empty), Millis(500)).at, Millis(1000));
}

#[test]
fn a_full_key_is_blocked_and_the_choice_respects_room_per_key() {
    let limits = Limits::new([Limit::queue("q").max_running(2).limit_by("$.c")]);
    let running = HashMap::from([(pair("queue:q", "a"), 2), (pair("queue:q", "b"), 1)]);
    assert_eq!(
        blocked(&limits, &running, &HashMap::new(), Millis(0)),
        vec![pair("queue:q", "a")]
    );
    // Round-robin order as the backends read it: b1, c1, b2, c2, c3.
    let cands: Vec<Candidate> = [(1, "b"), (2, "c"), (3, "b"), (4, "c"), (5, "c")]
        .into_iter()
        .map(|(id, k)| Candidate {
            id: JobId(id),
            keys: vec![pair("queue:q", k)],
        })
        .collect();
    let got = choose(&limits, &running, &HashMap::new(), &cands, 10, Millis(0));
    assert_eq!(
        got.take,
        vec![JobId(1), JobId(2), JobId(4)],
        "b has one slot, c two"
    );
    let got = choose(&limits, &running, &HashMap::new(), &cands, 2, Millis(0));
    assert_eq!(got.take, vec![JobId(1), JobId(2)], "stops at want");
}

#[test]
fn tokens_are_spent_and_both_limits_of_a_job_must_have_room() {
    let limits = Limits::new([
        Limit::queue("q").rate(Rate::parse("1/s").unwrap(), Some(2)),
        Limit::kind("k").max_running(1),
    ]);
    let under_both = |id| Candidate {
        id: JobId(id),
        keys: vec![pair("queue:q", ""), pair("kind:k", "")],
    };
    let queue_only = |id| Candidate {
        id: JobId(id),
        keys: vec![pair("queue:q", "")],
    };
    let cands = vec![under_both(1), under_both(2), queue_only(3), queue_only(4)];
    let got = choose(
        &limits,
        &HashMap::new(),
        &HashMap::new(),
        &cands,
        10,
        Millis(0),
    );
    assert_eq!(
        got.take,
        vec![JobId(1), JobId(3)],
        "kind k has one slot, the bucket two tokens"
    );
    assert_eq!(
        got.buckets,
        vec![(
            pair("queue:q", ""),
            Bucket {
                tokens: 0.0,
                at: Millis(0)
            }
        )]
    );
    let stored = HashMap::from([(
        pair("queue:q", ""),
        Bucket {
            tokens: 0.0,
            at: Millis(0),
        },
    )]);
    assert_eq!(
        blocked(&limits, &HashMap::new(), &stored, Millis(999)),
        vec![pair("queue:q", "")]
    );
    assert!(blocked(&limits, &HashMap::new(), &stored, Millis(1000)).is_empty());
}

#[test]
fn partitions_are_served_round_robin_within_their_room() {
    let limits = Limits::new([Limit::queue("q").max_running(3).limit_by("$.c")]);
    let running = HashMap::from([(pair("queue:q", "b"), 2)]);
    let part = |k: &str, count| Partition {
        keys: vec![pair("queue:q", k)],
        count,
    };
    let parts = vec![part("a", 100), part("b", 100), part("c", 1)];
    let (alloc, _) = allocate(&limits, &running, &HashMap::new(), &parts, 5, Millis(0));
    assert_eq!(
        alloc,
        vec![3, 1, 1],
        "a1 b1 c1, then a2 a3 (b has one slot, c one job)"
    );
    let (alloc, _) = allocate(&limits, &running, &HashMap::new(), &parts, 2, Millis(0));
    assert_eq!(alloc, vec![1, 1, 0], "the first keys first");
}
