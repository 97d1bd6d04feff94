//! The Postgres backend against the store conformance suite, plus Postgres specifics:
//! LISTEN/NOTIFY wake-ups, the unique-key index under concurrency, batched completion
//! with stale and fresh tokens, and many concurrent claimers.
//!
//! Needs a Postgres server: `JOBMESH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`. Each test gets a schema of its own,
//! so the tests run in parallel against one database.

use jobmesh::store::{JobAdmin, JobQueue};
use sqlx::Connection;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::job::{CompletionResult, JobState, NewJob, NodeId, Outcome};
use jobmesh::store::conformance::{Spoil, T0, done, ok, request};
use jobmesh::store::postgres::{PostgresStore, Wakeup, Wakeups};
use jobmesh::store::{EnqueueOutcome, SharedStore, StoreError};
use serde_json::json;

mod common;

/// Generous: a wake-up normally arrives within milliseconds; this only bounds a failure.
const WAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Test schemas older than this are dropped by later runs.
const STALE_SCHEMA_SECS: u64 = 3600;

/// A store in a new schema `jm_test_<unix secs>_<random>`.
async fn store() -> PostgresStore {
    let schema = common::test_schema();
    let url = common::pg_url();
    let s = PostgresStore::connect(&url, Some(&schema))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Postgres at {url} ({e}). These tests need a running server: \
                 `apt-get install postgresql` and start it with \
                 `pg_ctlcluster --skip-systemctl-redirect 15 main start`, or point \
                 JOBMESH_TEST_POSTGRES_URL at one."
            )
        });
    drop_stale_schemas(&s).await;
    s
}

/// Removes schemas left by test runs more than an hour old (tests never drop their own:
/// the conformance suite holds the store until the end of each case).
async fn drop_stale_schemas(s: &PostgresStore) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'jm\\_test\\_%'",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    let cutoff = common::unix_secs().saturating_sub(STALE_SCHEMA_SECS);
    for name in names {
        let born = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        let plain = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if born < cutoff && plain {
            // Another run may be dropping it too; either way it goes.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(s.pool())
            .await;
        }
    }
}

async fn fresh() -> SharedStore {
    Arc::new(store().await)
}

async fn spoilable() -> (SharedStore, Spoil) {
    let s = store().await;
    let spoil = common::postgres_spoiler(s.pool().clone());
    (Arc::new(s), spoil)
}

jobmesh::store_conformance_tests!(fresh, spoilable);

fn on(queue: &str) -> NewJob {
    let mut j = NewJob::new("noop", json!({}));
    j.queue = queue.into();
    j
}

async fn next_wakeup(w: &mut Wakeups) -> Wakeup {
    tokio::time::timeout(WAKE_TIMEOUT, w.recv())
        .await
        .expect("no wake-up within the timeout")
        .expect("the listener stopped")
}

#[tokio::test]
async fn listen_wakes_on_enqueue_for_its_queues_only() {
    let s = store().await;
    let mut w = s.listen(&["default".into()]).await.unwrap();
    // Another queue first: filtered out, so the first wake-up must name `default`.
    s.enqueue(vec![on("other")], T0).await.unwrap();
    s.enqueue(vec![on("default")], T0).await.unwrap();
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("default".into()));
    let claimed = s.claim(&request("n1", 10, T0)).await.unwrap();
    assert_eq!(claimed.len(), 1, "the woken claimer finds the job");
}

#[tokio::test]
async fn listen_is_scoped_to_the_store_schema() {
    let mine = store().await;
    let theirs = store().await;
    let mut w = mine.listen(&[]).await.unwrap();
    // Notifications are database-wide; the per-schema channel keeps them apart. If the
    // other store's commit leaked through, it would arrive first (commit order).
    theirs.enqueue(vec![on("theirs")], T0).await.unwrap();
    mine.enqueue(vec![on("mine")], T0).await.unwrap();
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("mine".into()));
}

#[tokio::test]
async fn listen_wakes_on_promotion_retry_rescue_and_release() {
    let s = store().await;
    let mut w = s.listen(&[]).await.unwrap();
    // A delayed job wakes nobody until promoted.
    let mut later = on("delayed");
    later.run_at = Some(T0.plus(Duration::from_secs(60)));
    s.enqueue(vec![later], T0).await.unwrap();
    s.promote_due(T0.plus(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("delayed".into()));

    // A retry wakes when promoted, a lost lease when rescued.
    s.enqueue(vec![on("default"), on("default")], T0)
        .await
        .unwrap();
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("default".into()));
    let cs = s.claim(&request("n1", 2, T0)).await.unwrap();
    assert_eq!(cs.len(), 2);
    let retry_at = T0.plus(Duration::from_secs(1));
    s.complete(vec![done(
        &cs[0],
        Outcome::Retry {
            error: "boom".into(),
            run_at: retry_at,
        },
        T0,
    )])
    .await
    .unwrap();
    s.promote_due(retry_at).await.unwrap();
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("default".into()));
    s.revoke_node(&NodeId("n1".into()), T0, json!("test"))
        .await
        .unwrap();
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("default".into()));

    // A child released by its parent's success wakes its queue.
    let [parent] = s.enqueue(vec![on("parents")], T0).await.unwrap()[..] else {
        unreachable!()
    };
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("parents".into()));
    let mut child = on("children");
    child.depends_on = vec![parent.id()];
    s.enqueue(vec![child], T0).await.unwrap();
    let mut req = request("n2", 1, T0);
    req.queues = vec!["parents".into()];
    let p = s.claim(&req).await.unwrap().remove(0);
    assert_eq!(
        s.complete(vec![ok(&p, T0)]).await.unwrap(),
        [CompletionResult::Applied]
    );
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Queue("children".into()));
}

#[tokio::test]
async fn unique_key_admits_one_of_many_concurrent_enqueues() {
    let s = Arc::new(store().await);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut j = NewJob::new("report", json!({}));
            j.unique_key = Some("daily-report".into());
            s.enqueue(vec![j], T0).await.unwrap().remove(0)
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let inserted: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, EnqueueOutcome::Inserted(_)))
        .collect();
    assert_eq!(inserted.len(), 1, "{outcomes:?}");
    let id = inserted[0].id();
    assert!(outcomes.iter().all(|o| o.id() == id), "{outcomes:?}");

    // The index itself refuses a second unfinished row, whatever the code path.
    let err = sqlx::query(
        "INSERT INTO jobs (queue, kind, payload, state, max_attempts, run_at, created_at, unique_key)
         VALUES ('default', 'report', '{}', 'scheduled', 1, 0, 0, 'daily-report')",
    )
    .execute(s.pool())
    .await
    .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("23505"),
        "{err}"
    );
    // A finished job frees the key.
    let c = s.claim(&request("n1", 1, T0)).await.unwrap().remove(0);
    s.complete(vec![ok(&c, T0)]).await.unwrap();
    let mut j = NewJob::new("report", json!({}));
    j.unique_key = Some("daily-report".into());
    assert!(matches!(
        s.enqueue(vec![j], T0).await.unwrap()[0],
        EnqueueOutcome::Inserted(n) if n != id
    ));
}

#[tokio::test]
async fn batched_completion_applies_fresh_tokens_and_refuses_stale_ones() {
    let s = store().await;
    s.enqueue((0..10).map(|_| on("default")).collect(), T0)
        .await
        .unwrap();
    let zombies = s.claim(&request("n1", 5, T0)).await.unwrap();
    let others = s.claim(&request("n2", 5, T0)).await.unwrap();
    s.revoke_node(&NodeId("n1".into()), T0, json!("evicted"))
        .await
        .unwrap();
    let fresh = s.claim(&request("n3", 5, T0)).await.unwrap();
    assert_eq!(fresh.len(), 5);
    // Interleave stale and current leases, with every kind of outcome, in one batch.
    let mut batch = Vec::new();
    for (i, (z, f)) in zombies.iter().zip(&fresh).enumerate() {
        batch.push(ok(z, T0));
        batch.push(match i {
            0 => done(
                f,
                Outcome::Retry {
                    error: "flaky".into(),
                    run_at: T0.plus(Duration::from_secs(5)),
                },
                T0,
            ),
            1 => done(
                f,
                Outcome::Discard {
                    error: "bad".into(),
                },
                T0,
            ),
            _ => ok(f, T0),
        });
    }
    batch.extend(others.iter().map(|c| ok(c, T0)));
    batch.push(ok(&others[0], T0)); // a duplicate of a current lease: applied once
    let results = s.complete(batch.clone()).await.unwrap();
    let expected: Vec<CompletionResult> = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                CompletionResult::StaleLease
            } else {
                CompletionResult::Applied
            }
        })
        .chain([CompletionResult::Applied; 5])
        .chain([CompletionResult::StaleLease])
        .collect();
    assert_eq!(results, expected);

    let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM job_executions")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(executions, 10, "only applied entries record an execution");
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        states,
        [
            ("discarded".to_string(), 1),
            ("retryable".to_string(), 1),
            ("succeeded".to_string(), 8)
        ]
    );
    assert_eq!(s.dead_letters(None, 10).await.unwrap()[0].reason, "bad");
    // The same batch again: everything is stale now.
    let again = s.complete(batch).await.unwrap();
    assert!(again.iter().all(|r| *r == CompletionResult::StaleLease));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_claimers_never_share_a_job() {
    let s = Arc::new(store().await);
    let total = 3000;
    for _ in 0..3 {
        s.enqueue((0..1000).map(|_| on("default")).collect(), T0)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim(&request(&format!("n{w}"), 1 + w % 16, T0))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                let r = s
                    .complete(got.iter().map(|c| ok(c, T0)).collect())
                    .await
                    .unwrap();
                assert!(r.iter().all(|r| *r == CompletionResult::Applied));
                mine.extend(got.into_iter().map(|c| c.job.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), total);
    // Each job was leased exactly once: one claim event, one execution, and the first
    // token of its claimer's incarnation (`incarnation << 24`; a second lease would
    // have added one).
    let (claims, execs, later_tokens): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM lifecycle_events WHERE kind = 'job.claimed'),
                (SELECT count(*) FROM job_executions),
                (SELECT count(*) FROM jobs WHERE lease_token % (1::bigint << 24) <> 0)",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        (claims, execs, later_tokens),
        (total as i64, total as i64, 0)
    );
    assert_eq!(
        s.counts().await.unwrap()["default"][&JobState::Succeeded],
        total as u64
    );
}

/// The grouped count of the jobs table itself, the truth the kept counts must match.
async fn counted_rows(s: &PostgresStore) -> Vec<(String, String, i64)> {
    sqlx::query_as("SELECT queue, state, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2")
        .fetch_all(s.pool())
        .await
        .unwrap()
}

/// What `counts()` says, in the same shape.
async fn kept_rows(s: &PostgresStore) -> Vec<(String, String, i64)> {
    let mut rows: Vec<_> = s
        .counts()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|(q, m)| {
            m.into_iter()
                .map(move |(st, n)| (q.clone(), st.as_str().to_owned(), n as i64))
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_match_the_table_through_concurrent_claims_folds_and_outside_writes() {
    let s = Arc::new(store().await);
    for q in ["a", "b"] {
        s.enqueue((0..600).map(|_| on(q)).collect(), T0)
            .await
            .unwrap();
    }
    // Claimers finish their jobs three ways while readers fold the deltas at the same
    // time: every delta is added once, whoever folds it.
    let mut tasks = Vec::new();
    for w in 0..6u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = request(&format!("n{w}"), 1 + w * 3, T0);
            req.queues = vec!["a".into(), "b".into()];
            loop {
                let got = s.claim(&req).await.unwrap();
                if got.is_empty() {
                    return;
                }
                let outcomes = got
                    .iter()
                    .map(|c| match c.job.id.0 % 3 {
                        0 => ok(c, T0),
                        1 => done(c, Outcome::Discard { error: "x".into() }, T0),
                        _ => done(
                            c,
                            Outcome::Retry {
                                error: "later".into(),
                                run_at: Millis(T0.0 + 3_600_000),
                            },
                            T0,
                        ),
                    })
                    .collect();
                s.complete(outcomes).await.unwrap();
            }
        }));
    }
    for _ in 0..3 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                s.counts().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(kept_rows(&s).await, counted_rows(&s).await);

    // An operator's session with another search_path, naming the schema: still counted
    // in this store's tables; a state emptied by a delete is no longer listed.
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(s.pool())
        .await
        .unwrap();
    let mut outside = sqlx::PgConnection::connect(&common::pg_url())
        .await
        .unwrap();
    for statement in [
        format!(
            "UPDATE \"{schema}\".jobs SET queue = 'c' WHERE queue = 'b' AND state = 'retryable'"
        ),
        format!("DELETE FROM \"{schema}\".jobs WHERE queue = 'a' AND state = 'succeeded'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut outside)
            .await
            .unwrap();
    }
    let kept = kept_rows(&s).await;
    assert_eq!(kept, counted_rows(&s).await);
    assert!(
        !kept.iter().any(|(q, st, _)| q == "a" && st == "succeeded"),
        "{kept:?}"
    );
    assert!(
        kept.iter()
            .any(|(q, st, n)| q == "c" && st == "retryable" && *n > 0),
        "{kept:?}"
    );
    // The trigger functions name the schema itself, not the migrating session's path.
    let paths: Vec<String> = sqlx::query_scalar(
        "SELECT array_to_string(proconfig, ',') FROM pg_proc
         WHERE proname LIKE 'jm\\_count\\_%' AND pronamespace = current_schema()::regnamespace",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(paths.len(), 4, "{paths:?}");
    let pinned = format!("search_path={schema}, pg_temp");
    assert!(paths.iter().all(|p| *p == pinned), "{paths:?}");
    // TRUNCATE empties the counts with the table.
    sqlx::query("TRUNCATE jobs CASCADE")
        .execute(s.pool())
        .await
        .unwrap();
    assert_eq!(kept_rows(&s).await, []);
}

#[tokio::test]
async fn bad_schema_names_are_refused_before_connecting() {
    for bad in ["Robert'); DROP TABLE jobs;--", "", "1abc", "has space"] {
        let err = PostgresStore::connect(&common::pg_url(), Some(bad))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad}: {err}");
    }
}

#[tokio::test]
async fn claim_across_queues_follows_priority_and_skips_other_queues() {
    let s = store().await;
    let mut a = on("a");
    a.priority = 0;
    let mut b = on("b");
    b.priority = 5;
    let mut c = on("c");
    c.priority = 10;
    let ids: Vec<_> = s
        .enqueue(vec![a.clone(), b, c, a], T0)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();
    let mut req = request("n1", 1, T0);
    req.queues = vec!["a".into(), "b".into(), "a".into()];
    let first = s.claim(&req).await.unwrap();
    assert_eq!(
        first.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        [ids[1]],
        "highest priority of the claimed queues"
    );
    req.limit = 10;
    let rest = s.claim(&req).await.unwrap();
    assert_eq!(
        rest.iter().map(|c| c.job.id).collect::<Vec<_>>(),
        [ids[0], ids[3]],
        "queue `c` is not claimed"
    );
    assert_eq!(
        s.get_job(ids[2]).await.unwrap().unwrap().state,
        JobState::Available
    );
}

/// A claim of several queues whose first candidates another claimer holds (here an open
/// transaction holding the first two per slot asked) still takes the free jobs after
/// them, in dispatch order: the claim that locks only what it takes finds every
/// candidate held and falls back to the one that skips held rows in each queue's scan.
#[tokio::test]
async fn a_claim_of_several_queues_takes_free_jobs_past_held_candidates() {
    let s = store().await;
    let jobs = (0..30).map(|i| on(["a", "b", "c"][i % 3])).collect();
    let ids: Vec<_> = s
        .enqueue(jobs, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id().0)
        .collect();
    let mut holder = s.pool().begin().await.unwrap();
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE state = 'available'
         ORDER BY priority DESC, run_at, id LIMIT 8 FOR UPDATE",
    )
    .fetch_all(&mut *holder)
    .await
    .unwrap();
    assert_eq!(held, ids[..8]);
    let mut req = request("n1", 4, T0);
    req.queues = vec!["a".into(), "b".into(), "c".into()];
    let got: Vec<i64> = s
        .claim(&req)
        .await
        .unwrap()
        .iter()
        .map(|c| c.job.id.0)
        .collect();
    assert_eq!(got, ids[8..12], "the first free jobs, in dispatch order");
    holder.rollback().await.unwrap();
}

#[tokio::test]
async fn a_lost_listener_connection_reports_lagged_and_recovers() {
    let s = store().await;
    let mut w = s.listen(&["default".into()]).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE query = 'LISTEN \"' || $1 || '\"') AS t",
    )
    .bind(s.channel())
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(killed, 1, "exactly this store's listener connection");
    // Whatever was notified while the connection was down is gone: the receiver is told
    // to poll every queue.
    assert_eq!(next_wakeup(&mut w).await, Wakeup::Lagged);
    // The listener reconnects and LISTENs again on its own; once it has, enqueues wake it.
    // (Each round waits on the wake-up with a timeout; nothing sleeps.)
    for round in 0.. {
        assert!(round < 20, "the listener never came back");
        s.enqueue(vec![on("default")], T0).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), w.recv()).await {
            Ok(Some(Wakeup::Queue(q))) => {
                assert_eq!(q, "default");
                break;
            }
            Ok(Some(Wakeup::Lagged)) | Err(_) => continue,
            Ok(None) => panic!("the listener stopped"),
        }
    }
}

/// A node on Postgres hears jobs committed by another process through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_jobs_enqueued_by_other_processes_without_waiting_for_its_poll() {
    common::a_node_wakes_for_jobs_enqueued_elsewhere(Arc::new(store().await)).await;
}

#[tokio::test]
async fn pause_survives_reopen() {
    let s = store().await;
    let schema = s.schema().to_owned();
    jobmesh::store::conformance::pause_survives_reopen(Arc::new(s), || async move {
        Arc::new(
            PostgresStore::connect(&common::pg_url(), Some(&schema))
                .await
                .unwrap(),
        ) as SharedStore
    })
    .await;
}

/// `n` stores on one new schema: separate pools, as separate nodes have.
async fn nodes(n: usize) -> Vec<SharedStore> {
    let first = store().await;
    let schema = first.schema().to_owned();
    let mut out: Vec<SharedStore> = vec![Arc::new(first)];
    for _ in 1..n {
        out.push(Arc::new(
            PostgresStore::connect(&common::pg_url(), Some(&schema))
                .await
                .unwrap(),
        ));
    }
    out
}

/// Three nodes claim one limited queue at once; a sampler reads the running counts
/// from the store throughout: never over a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_nodes() {
    jobmesh::store::conformance::limits_hold_across_nodes(nodes(3).await).await;
}

#[tokio::test]
async fn a_node_that_has_not_seen_a_new_limit_does_not_pass_it() {
    let n = nodes(2).await;
    jobmesh::store::conformance::a_node_that_has_not_seen_a_new_limit_does_not_pass_it(
        &*n[0], &*n[1],
    )
    .await;
}

/// A rate of 40/s (burst 20) over one minute of real time, three nodes claiming as
/// fast as they can: within 5% of 2420 claims. (The other backends run the shorter
/// burst-and-refill case of the conformance suite.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_over_a_minute_is_within_five_percent() {
    let (got, allowed) = jobmesh::store::conformance::rate_over_a_minute(nodes(3).await).await;
    println!("claimed {got} of {allowed} allowed in 60 s");
}

/// With the opt-in GIN index on payloads (see migration 0014), payload pages are the
/// same: a walk that found a match rare reads the index (bitmap scans only) instead.
#[tokio::test]
async fn payload_pages_with_the_gin_index() {
    let s = store().await;
    sqlx::query("CREATE INDEX jobs_payload ON jobs USING gin (payload jsonb_path_ops)")
        .execute(s.pool())
        .await
        .unwrap();
    jobmesh::store::conformance::payload_pages_at_every_density(&s).await;
}

/// Pages larger than the first sample Postgres walks, without the GIN index (the
/// rare value's page then walks on) and with it (read through the index).
#[tokio::test]
async fn payload_pages_past_the_sample() {
    jobmesh::store::conformance::payload_pages_past_the_sample(&store().await).await;
    let s = store().await;
    sqlx::query("CREATE INDEX jobs_payload ON jobs USING gin (payload jsonb_path_ops)")
        .execute(s.pool())
        .await
        .unwrap();
    jobmesh::store::conformance::payload_pages_past_the_sample(&s).await;
}

/// An event whose transaction commits after a later one is read in its place: a reader
/// that follows the log (its cursor at the last event it read, as the SSE stream,
/// `events --follow` and the Redis relay do) stops at the gap while the slow writer is in
/// progress, instead of moving past it and losing the event; a gap left by a rolled back
/// writer is passed once that writer has ended.
#[tokio::test]
async fn a_follower_of_the_event_log_misses_no_event_committed_late() {
    use jobmesh::event::{EventKind, LifecycleEvent};
    use jobmesh::store::EventLog;
    let s = store().await;
    let joined = |n: &str| LifecycleEvent::new(EventKind::NodeJoined, T0).node(NodeId(n.into()));
    s.record_events(vec![joined("before")]).await.unwrap();
    let mut cursor = s.events_after(0, 1000).await.unwrap().last().unwrap().seq;
    let mut seen: Vec<String> = Vec::new();
    let mut follow = async |s: &PostgresStore, seen: &mut Vec<String>| {
        for e in s.events_after(cursor, 1000).await.unwrap() {
            cursor = e.seq;
            seen.push(e.event.node.map(|n| n.0).unwrap_or_default());
        }
    };

    // The slow writer draws its seq first and holds it uncommitted.
    let mut slow = s.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO lifecycle_events (at, kind, node) VALUES (1, 'node.joined', 'slow')")
        .execute(&mut *slow)
        .await
        .unwrap();
    s.record_events(vec![joined("fast")]).await.unwrap();
    follow(&s, &mut seen).await;
    assert!(
        seen.is_empty(),
        "the reader passed the slow writer's gap: {seen:?}"
    );
    slow.commit().await.unwrap();
    follow(&s, &mut seen).await;
    assert_eq!(seen, ["slow", "fast"], "in seq order, nothing lost");

    // A writer that rolls back leaves a gap for good: passed once it has ended.
    let mut doomed = s.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO lifecycle_events (at, kind, node) VALUES (1, 'node.joined', 'doomed')",
    )
    .execute(&mut *doomed)
    .await
    .unwrap();
    s.record_events(vec![joined("after")]).await.unwrap();
    follow(&s, &mut seen).await;
    assert_eq!(seen.len(), 2, "held at the doomed writer's gap: {seen:?}");
    doomed.rollback().await.unwrap();
    follow(&s, &mut seen).await;
    assert_eq!(seen, ["slow", "fast", "after"]);
}
