//! Input and rows that must fail alone: hostile input refused the same on every
//! store, NULs in results scrubbed, undecodable rows and events left out.

use super::*;

/// What a store holds, to compare before and after a refused request.
async fn snapshot(s: &dyn Store) -> (Vec<crate::job::Job>, usize) {
    let jobs = s
        .list_jobs(&JobFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("list_jobs");
    let events = s.events_after(0, 100_000).await.expect("events").len();
    (jobs, events)
}

/// `{"a": {"a": ... 1}}` with `n` objects.
pub fn nested(n: usize) -> serde_json::Value {
    (0..n).fold(json!(1), |v, _| json!({ "a": v }))
}

/// A payload nested deeper than [`crate::payload::MAX_PAYLOAD_DEPTH`], or a NUL in any
/// string field or anywhere in the payload, is refused at enqueue with the field's path,
/// the same on every store, and the store holds exactly what it held before.
pub async fn hostile_input_is_refused(s: &dyn Store) {
    ids(s, vec![job("before")], T0).await;
    let before = snapshot(s).await;
    let depth = crate::payload::MAX_PAYLOAD_DEPTH;
    let deep_path = format!("payload{}", ".a".repeat(depth));
    let with = |f: &dyn Fn(&mut NewJob)| {
        let mut j = job("hostile");
        f(&mut j);
        j
    };
    let cases: Vec<(NewJob, String)> = vec![
        (
            with(&|j| j.payload = nested(depth + 1)),
            format!("{deep_path}: nested deeper than {depth} levels"),
        ),
        (
            // 126 levels: what once stopped every claim on SQLite.
            with(&|j| j.payload = nested(126)),
            format!("{deep_path}: nested deeper than {depth} levels"),
        ),
        (
            with(&|j| j.payload = json!({"a": {"b": ["x", "y", "z\u{0}"]}})),
            "payload.a.b[2]: string contains a NUL character".into(),
        ),
        (
            with(&|j| j.payload = json!({"a": [{"k\u{0}": 1}]})),
            "payload.a[0]: key \"k\\0\" contains a NUL character".into(),
        ),
        (
            with(&|j| j.queue = "de\u{0}fault".into()),
            "queue: contains a NUL character".into(),
        ),
        (
            with(&|j| j.kind = "noop\u{0}".into()),
            "kind: contains a NUL character".into(),
        ),
        (
            with(&|j| j.unique_key = Some("\u{0}".into())),
            "unique_key: contains a NUL character".into(),
        ),
    ];
    for (bad, want) in cases {
        // After a good job in the same batch: the whole batch is refused.
        let err = s
            .enqueue(vec![job("fine"), bad], T0)
            .await
            .expect_err(&format!("refused: {want}"))
            .to_string();
        assert!(
            err.contains(&format!("job 1 of the batch: {want}")),
            "the error names the field: got `{err}`, want `{want}`"
        );
        assert!(
            snapshot(s).await == before,
            "a refused batch leaves the store as it was ({want})"
        );
    }
    // At the limit is fine.
    let mut deepest = job("deepest");
    deepest.payload = nested(depth);
    let [id] = ids(s, vec![deepest], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(s.get_job(id).await.unwrap().unwrap().payload, nested(depth));
}

/// What a finished attempt reports (an output, an error) and the events a node records
/// are stored even with NUL characters in them, replaced by U+FFFD the same on every
/// store, and never fail the batch they come in (Postgres cannot hold a NUL).
pub async fn nul_in_results_is_scrubbed(s: &dyn Store) {
    let jobs = ids(s, vec![job("a"), job("b")], T0).await;
    let c = claim(s, 2, T0).await;
    let batch = vec![
        done(
            &c[0],
            Outcome::Succeeded {
                output: Some(json!({"out\u{0}": "a\u{0}b"})),
            },
            T0,
        ),
        done(
            &c[1],
            Outcome::Discard {
                error: "bad\u{0}byte".into(),
            },
            T0,
        ),
    ];
    let r = s.complete(batch).await.expect("complete with NULs");
    assert_eq!(r, vec![CompletionResult::Applied; 2]);
    let a = s.get_job(jobs[0]).await.unwrap().unwrap();
    assert_eq!(a.output, Some(json!({"out\u{FFFD}": "a\u{FFFD}b"})));
    let b = s.get_job(jobs[1]).await.unwrap().unwrap();
    assert_eq!(b.last_error.as_deref(), Some("bad\u{FFFD}byte"));
    s.record_events(vec![
        LifecycleEvent::new(EventKind::WorkerCrashed, T0)
            .worker(WorkerId("n1/w\u{0}".into()))
            .detail(json!({"error": "\u{0}"})),
    ])
    .await
    .expect("record_events with NULs");
    let last = s.events_after(0, 100_000).await.unwrap().pop().unwrap();
    assert_eq!(last.event.detail, json!({"error": "\u{FFFD}"}));
    assert_eq!(last.event.worker, Some(WorkerId("n1/w\u{FFFD}".into())));
}

/// Rewrites a stored job's row so that this version cannot decode it, as a row written
/// by another version or by hand in SQL could be: variant 0 and 1 are two different
/// kinds of damage to the job's row, chosen by the backend; variant 2 gives the job's
/// events a kind this version does not know (it needs raw SQL, so each backend's test
/// binary supplies it).
pub type Spoil = Box<
    dyn Fn(JobId, u8) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// A row that cannot be decoded fails only its own job: claims beside it (and on other
/// queues) go on, and it ends dead-lettered with the decode error as the reason, under
/// a fenced discard; listings and the event log leave it out instead of failing.
pub async fn undecodable_row_fails_only_its_job(s: &dyn Store, spoil: &Spoil) {
    let mut other = job("other");
    other.queue = "other".into();
    let jobs = ids(
        s,
        vec![job("a"), job("bad0"), job("b"), job("bad1"), other],
        T0,
    )
    .await;
    spoil(jobs[1], 0).await;
    spoil(jobs[3], 1).await;
    let mut req = request("n1", 10, T0);
    req.queues = vec!["default".into(), "other".into()];
    let claimed = s
        .claim(&req)
        .await
        .expect("a claim beside bad rows succeeds");
    let got: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
    assert_eq!(
        got,
        vec![jobs[0], jobs[2], jobs[4]],
        "the good jobs are claimed"
    );
    assert!(
        s.claim(&req).await.expect("claim").is_empty(),
        "the bad jobs are not handed out later either"
    );
    let counts = s.counts().await.unwrap();
    assert_eq!(counts["default"][&JobState::Discarded], 2, "{counts:?}");
    assert_eq!(counts["default"][&JobState::Running], 2, "{counts:?}");
    for bad in [jobs[1], jobs[3]] {
        let err = s
            .get_job(bad)
            .await
            .expect_err("reading the bad row alone is an error")
            .to_string();
        assert!(err.contains(&format!("job {bad}")), "{err}");
        let events = s.events_after(0, 100_000).await.unwrap();
        let discarded = events
            .iter()
            .find(|e| e.event.job == Some(bad) && e.event.kind == EventKind::JobDiscarded)
            .unwrap_or_else(|| panic!("job {bad} has a job.discarded event"));
        let reason = discarded.event.detail["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.starts_with("undecodable row: "), "{reason}");
    }
    let listed: Vec<JobId> = s
        .list_jobs(&JobFilter::default())
        .await
        .expect("a listing beside bad rows succeeds")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        listed,
        vec![jobs[0], jobs[2], jobs[4]],
        "bad rows are left out"
    );
    assert!(
        s.dead_letters(None, 100)
            .await
            .expect("the dead-letter listing beside bad rows succeeds")
            .is_empty()
    );
    // The good jobs' leases are untouched by the discards beside them.
    let done: Vec<Completion> = claimed.iter().map(|c| ok(c, T0)).collect();
    assert!(
        s.complete(done)
            .await
            .unwrap()
            .iter()
            .all(|r| *r == CompletionResult::Applied)
    );
}

/// An event this version cannot decode is left out without making its page look like
/// the end of the log: `events_after` reads on until it has `limit` events, so readers
/// that stop at a short page (`jobmesh events`, the tail position) still see what follows.
pub async fn undecodable_event_does_not_end_a_page(s: &dyn Store, spoil: &Spoil) {
    let before = s.events_after(0, 100_000).await.unwrap();
    let base = before.last().map_or(0, |e| e.seq);
    let jobs = ids(s, vec![job("a"), job("bad"), job("c")], T0).await;
    spoil(jobs[1], 2).await;
    let page = s
        .events_after(base, 2)
        .await
        .expect("a page beside a bad event");
    let got: Vec<Option<JobId>> = page.iter().map(|e| e.event.job).collect();
    assert_eq!(
        got,
        vec![Some(jobs[0]), Some(jobs[2])],
        "a full page: the bad event is left out and the next one read in its place"
    );
    assert!(
        s.events_after(page[1].seq, 2).await.unwrap().is_empty(),
        "nothing after the last"
    );
}
