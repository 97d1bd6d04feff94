//! The job counts per queue, kind and state (`job_counts`) for the two transitions of
//! the drain's hot path, counted per batch: a claim moves its jobs from `available` to
//! `running`, a success from `running` to `succeeded`, and the statement that does it
//! moves the counts in two grouped writes per queue and kind. The trigger of migration
//! 0017 counts every other change row by row and leaves these two to this.

/// Two statements (one `?` each, the same JSON array of job ids) that move the counts
/// of those jobs, all now in state `$to`, from `$from` to `$to`. Appended to the
/// command that changed their state, in its transaction.
macro_rules! move_counts {
    ($from:literal, $to:literal) => {
        concat!(
            "UPDATE job_counts SET n = n - c.k
             FROM (SELECT queue, kind, count(*) AS k FROM jobs
                   WHERE id IN (SELECT value FROM json_each(?)) GROUP BY queue, kind) AS c
             WHERE job_counts.queue = c.queue AND job_counts.kind = c.kind
               AND job_counts.state = '",
            $from,
            "';
             INSERT INTO job_counts (queue, kind, state, n)
             SELECT queue, kind, '",
            $to,
            "', count(*) FROM jobs
             WHERE id IN (SELECT value FROM json_each(?)) GROUP BY queue, kind
             ON CONFLICT (queue, kind, state) DO UPDATE SET n = n + excluded.n;"
        )
    };
}
pub(super) use move_counts;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::SqliteStore;
    use crate::clock::Millis;
    use crate::job::{ClaimRequest, JobId, NewJob, NodeId, Outcome, WorkerId};
    use crate::store::conformance::{T0, done, ok, sys};
    use crate::store::{BulkAction, BulkActions, BulkTarget, JobAdmin, JobQueue};

    type Counted = BTreeMap<(String, String, String), i64>;

    /// The kept counts, and the jobs table counted afresh.
    async fn both(s: &SqliteStore) -> (Counted, Counted) {
        let read = |sql: &'static str| async move {
            let rows: Vec<(String, String, String, i64)> =
                sqlx::query_as(sql).fetch_all(&s.read).await.unwrap();
            rows.into_iter()
                .map(|(q, k, st, n)| ((q, k, st), n))
                .collect::<Counted>()
        };
        (
            read("SELECT queue, kind, state, n FROM job_counts WHERE n <> 0").await,
            read("SELECT queue, kind, state, count(*) FROM jobs GROUP BY 1, 2, 3").await,
        )
    }

    fn claim_of(queues: &[&str], limit: u32, now: Millis) -> ClaimRequest {
        ClaimRequest {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            worker: WorkerId("n1/w0".into()),
            node: NodeId("n1".into()),
            limit,
            lease_for: std::time::Duration::from_secs(30),
            now,
        }
    }

    #[tokio::test]
    async fn counts_kept_per_batch_and_per_row_match_the_jobs_table() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("counts.db"))
            .await
            .unwrap();
        let mut jobs = Vec::new();
        for i in 0..60 {
            let mut j = NewJob::new(["a", "b", "c"][i % 3], json!({"i": i}));
            j.queue = ["q1", "q2"][i % 2].into();
            jobs.push(j);
        }
        s.enqueue(jobs, T0).await.unwrap();
        // Claims over two queues at once, then one queue.
        let first = s.claim(&claim_of(&["q1", "q2"], 25, T0)).await.unwrap();
        let second = s.claim(&claim_of(&["q2"], 10, T0)).await.unwrap();
        assert_eq!((first.len(), second.len()), (25, 10));
        let (kept, fresh) = both(&s).await;
        assert_eq!(kept, fresh, "after the claims");
        // Successes in one batch with failures, a retry and a discard beside them.
        let mut batch: Vec<_> = first[..15].iter().map(|c| ok(c, T0)).collect();
        batch.push(done(
            &first[15],
            Outcome::Retry {
                run_at: Millis(T0.0 + 60_000),
                error: "later".into(),
            },
            T0,
        ));
        batch.push(done(
            &first[16],
            Outcome::Discard {
                error: "never".into(),
            },
            T0,
        ));
        s.complete(batch).await.unwrap();
        // A success of a lease that is no longer current counts nothing.
        s.complete(vec![ok(&first[0], T0)]).await.unwrap();
        let (kept, fresh) = both(&s).await;
        assert_eq!(kept, fresh, "after the completions");
        // Row-by-row changes: release, rescue, cancel, redrive, promotion, bulk delete.
        s.release(&[second[0].lease.clone()], T0).await.unwrap();
        s.cancel(&sys(), second[1].job.id, T0).await.unwrap();
        s.rescue_expired(Millis(T0.0 + 31_000)).await.unwrap();
        s.promote_due(Millis(T0.0 + 61_000)).await.unwrap();
        s.bulk(
            &sys(),
            BulkAction::Redrive,
            &BulkTarget::Ids(vec![first[16].job.id]),
            T0,
        )
        .await
        .unwrap();
        let finished: Vec<JobId> = first[1..15].iter().map(|c| c.job.id).collect();
        s.bulk(&sys(), BulkAction::Delete, &BulkTarget::Ids(finished), T0)
            .await
            .unwrap();
        let (kept, fresh) = both(&s).await;
        assert_eq!(kept, fresh, "after the row-by-row changes");
        // And a drain of everything left.
        let rest = s
            .claim(&claim_of(&["q1", "q2"], 1000, Millis(T0.0 + 62_000)))
            .await
            .unwrap();
        assert!(!rest.is_empty());
        s.complete(rest.iter().map(|c| ok(c, T0)).collect())
            .await
            .unwrap();
        let (kept, fresh) = both(&s).await;
        assert_eq!(kept, fresh, "after the drain");
        assert!(
            fresh.keys().any(|(_, _, st)| st == "succeeded"),
            "{fresh:?}"
        );
    }
}
