//! Storing new jobs: unique keys and dependencies (by id, by batch index, unknown
//! parents, and what a failed parent does to its children).

use super::*;

/// A unique key admits one unfinished job, and is free again once it finished.
pub async fn unique_keys(s: &dyn Store) {
    let mut u = job("u");
    u.unique_key = Some("report-42".into());
    let first = s.enqueue(vec![u.clone(), u.clone()], T0).await.unwrap();
    let EnqueueOutcome::Inserted(id) = first[0] else {
        panic!("first insert: {first:?}")
    };
    assert_eq!(
        first[1],
        EnqueueOutcome::Duplicate(id),
        "a duplicate within the batch"
    );
    assert_eq!(
        s.enqueue(vec![u.clone()], T0).await.unwrap(),
        [EnqueueOutcome::Duplicate(id)]
    );
    let c = claim(s, 1, T0).await.remove(0);
    s.complete(vec![ok(&c, T0)]).await.unwrap();
    assert!(
        matches!(s.enqueue(vec![u], T0).await.unwrap()[0], EnqueueOutcome::Inserted(n) if n != id)
    );
}

/// Children wait for all parents; success releases them.
pub async fn dependencies_release_on_success(s: &dyn Store) {
    let [p1, p2] = ids(s, vec![job("p1"), job("p2")], T0).await[..] else {
        unreachable!()
    };
    let mut child = job("child");
    child.depends_on = vec![p1, p2];
    let [c] = ids(s, vec![child], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(state(s, c).await, JobState::Waiting);
    assert_eq!(s.get_job(c).await.unwrap().unwrap().depends_on, [p1, p2]);
    let claimed = claim(s, 5, T0).await;
    assert_eq!(claimed.len(), 2, "the child is not claimable");
    s.complete(vec![ok(&claimed[0], T0)]).await.unwrap();
    assert_eq!(
        state(s, c).await,
        JobState::Waiting,
        "one parent is not enough"
    );
    s.complete(vec![ok(&claimed[1], T0)]).await.unwrap();
    assert_eq!(state(s, c).await, JobState::Available);
    // A parent that already succeeded does not hold a new child back.
    let mut late = job("late");
    late.depends_on = vec![p1];
    let [l] = ids(s, vec![late], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(state(s, l).await, JobState::Available);
}

/// A workflow submitted in one batch links parents by index.
pub async fn dependencies_by_batch_index(s: &dyn Store) {
    let mut b = job("b");
    b.depends_on_index = vec![0];
    let mut c = job("c");
    c.depends_on_index = vec![0, 1];
    let [a, b, c] = ids(s, vec![job("a"), b, c], T0).await[..] else {
        unreachable!()
    };
    assert_eq!(s.get_job(c).await.unwrap().unwrap().depends_on, [a, b]);
    let mut bad = job("bad");
    bad.depends_on_index = vec![0];
    let err = s.enqueue(vec![bad], T0).await.unwrap_err();
    assert!(matches!(err, crate::store::StoreError::Invalid(_)), "{err}");
}

/// An unknown parent refuses the whole batch and stores nothing.
pub async fn unknown_parent_stores_nothing(s: &dyn Store) {
    let mut orphan = job("orphan");
    orphan.depends_on = vec![JobId(424_242)];
    let err = s
        .enqueue(vec![job("innocent"), orphan], T0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("424242"), "{err}");
    assert!(
        s.list_jobs(&JobFilter::default()).await.unwrap().is_empty(),
        "the batch is all or nothing"
    );
}

/// A discarded parent discards `discard` children transitively and holds `hold` ones;
/// a held child runs once its parent is redriven and succeeds.
pub async fn dependencies_parent_failure(s: &dyn Store) {
    let [p] = ids(s, vec![job("p")], T0).await[..] else {
        unreachable!()
    };
    let mut d1 = job("d1");
    d1.depends_on = vec![p];
    let mut d2 = job("d2");
    d2.depends_on_index = vec![0];
    let mut h = job("h");
    h.depends_on = vec![p];
    h.on_parent_failure = ParentFailurePolicy::Hold;
    let [d1, d2, h] = ids(s, vec![d1, d2, h], T0).await[..] else {
        unreachable!()
    };
    let c = claim(s, 1, T0).await.remove(0);
    s.complete(vec![done(
        &c,
        Outcome::Discard {
            error: "dead".into(),
        },
        T0,
    )])
    .await
    .unwrap();
    assert_eq!(state(s, d1).await, JobState::Discarded);
    assert_eq!(
        state(s, d2).await,
        JobState::Discarded,
        "discard cascades to grandchildren"
    );
    assert_eq!(state(s, h).await, JobState::Waiting, "hold keeps waiting");
    let dead: BTreeMap<JobId, Vec<JobId>> = s
        .dead_letters(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.job.id, d.job.depends_on))
        .collect();
    assert_eq!(
        dead.keys().copied().collect::<HashSet<_>>(),
        HashSet::from([p, d1, d2])
    );
    assert_eq!(dead[&d2], [d1], "a dead letter lists its parents");
    s.redrive(&sys(), Redrive::Ids(vec![p]), T0).await.unwrap();
    let again = claim(s, 1, T0).await.remove(0);
    assert_eq!(again.job.id, p);
    s.complete(vec![ok(&again, T0)]).await.unwrap();
    assert_eq!(
        state(s, h).await,
        JobState::Available,
        "the held child is released"
    );
}
