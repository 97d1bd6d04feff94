//! Storing new jobs: plain batches in one statement, jobs with a unique key or parents
//! one by one in the batch's transaction.

use std::collections::{BTreeSet, HashMap};

use sqlx::PgConnection;

use super::rows::{self, policy_name};
use super::{PostgresStore, Tx, attempt_col, dead_letter, events, wake};
use crate::clock::Millis;
use crate::job::{JobId, JobState, NewJob};
use crate::store::rules::{Start, check_parents_exist, parent_ids, stored_alone};
use crate::store::{EnqueueOutcome, StoreError};

/// The unfinished job holding a unique key, if any.
async fn unfinished_with_key(tx: &mut Tx, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM jobs WHERE unique_key = $1
           AND state NOT IN ('succeeded', 'discarded', 'cancelled')",
    )
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?)
}

impl PostgresStore {
    /// See [`crate::store::JobQueue::enqueue`].
    pub(super) async fn insert_batch(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        crate::store::check_new_jobs(&jobs)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<EnqueueOutcome> = Vec::with_capacity(jobs.len());
        if !jobs.iter().any(stored_alone) {
            // One statement is its own transaction: skip BEGIN and COMMIT round trips.
            let mut conn = self.pool.acquire().await?;
            let plain: Vec<&NewJob> = jobs.iter().collect();
            Self::insert_plain(&mut conn, &plain, now, &mut out).await?;
            return Ok(out);
        }
        let mut tx = self.pool.begin().await?;
        let mut plain: Vec<&NewJob> = Vec::new();
        let mut queues = BTreeSet::new();
        for job in &jobs {
            if !stored_alone(job) {
                plain.push(job);
                continue;
            }
            Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
            plain.clear();
            let parents = parent_ids(job, &out);
            let outcome = Self::insert_linked(&mut tx, job, parents, now, &mut queues).await?;
            out.push(outcome);
        }
        Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
        wake(&mut tx, queues).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Inserts a run of jobs with no unique key and no parents in one statement, with
    /// their events and the wake-up of their queues.
    async fn insert_plain(
        conn: &mut PgConnection,
        jobs: &[&NewJob],
        now: Millis,
        out: &mut Vec<EnqueueOutcome>,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let run_at = |j: &NewJob| j.run_at.unwrap_or(now);
        // `woke` is a one-row aggregate joined into the result, which makes Postgres
        // evaluate it (an unreferenced SELECT in a WITH is never run).
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "WITH ins AS (
                 INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at,
                                   timeout_ms, on_parent_failure)
                 SELECT q, k, p, pr, s, m, r, $1, t, pf
                 FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::smallint[], $6::text[], $7::integer[],
                             $8::bigint[], $9::bigint[], $10::text[])
                      WITH ORDINALITY AS n(q, k, p, pr, s, m, r, t, pf, ord)
                 ORDER BY ord
                 RETURNING id, queue, state
             ), ev AS (
                 INSERT INTO lifecycle_events (at, kind, job, attempt)
                 SELECT $1, 'job.enqueued', id, 0 FROM ins ORDER BY id
             ), woke AS (
                 SELECT jm_wake(array_agg(DISTINCT queue)) FROM ins WHERE state = 'available'
             )
             SELECT ins.id FROM ins, woke",
        )
        .bind(now.0)
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| &j.payload).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| Start::of(j, [], now).state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| attempt_col(j.max_attempts))
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| run_at(j).0).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.timeout.map(|t| t.as_millis() as i64))
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| policy_name(j.on_parent_failure))
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await?;
        // One statement draws its ids from the sequence in insertion order, so sorted
        // ids line up with the rows.
        ids.sort_unstable();
        out.extend(
            ids.into_iter()
                .map(|id| EnqueueOutcome::Inserted(JobId(id))),
        );
        Ok(())
    }

    /// Inserts one job that has a unique key or parents (also a periodic tick's job,
    /// in the transaction that advances its schedule's mark).
    pub(super) async fn insert_linked(
        tx: &mut Tx,
        job: &NewJob,
        parents: Vec<i64>,
        now: Millis,
        queues: &mut BTreeSet<String>,
    ) -> Result<EnqueueOutcome, StoreError> {
        if let Some(key) = &job.unique_key
            && let Some(id) = unfinished_with_key(tx, key).await?
        {
            return Ok(EnqueueOutcome::Duplicate(JobId(id)));
        }
        // Locking the parents (by marking them) orders this insert against their
        // completion: a parent finishing concurrently either sees the dependency row
        // written here, or finished before this reads its state.
        let known: HashMap<i64, JobState> = if parents.is_empty() {
            HashMap::new()
        } else {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "UPDATE jobs SET has_children = true WHERE id = ANY ($1) RETURNING id, state",
            )
            .bind(&parents)
            .fetch_all(&mut **tx)
            .await?;
            rows.into_iter()
                .map(|(id, s)| Ok((id, rows::state(&s)?)))
                .collect::<Result<_, StoreError>>()?
        };
        check_parents_exist(&parents, &known)?;
        let start = Start::of(job, known.values().copied(), now);
        let state = start.state;
        let discarded = state == JobState::Discarded;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at, timeout_ms,
                               unique_key, on_parent_failure, pending_parents, finished_at, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (unique_key)
                 WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'discarded', 'cancelled')
                 DO NOTHING
             RETURNING id",
        )
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(&job.payload)
        .bind(job.priority)
        .bind(state.as_str())
        .bind(attempt_col(job.max_attempts))
        .bind(job.run_at.unwrap_or(now).0)
        .bind(now.0)
        .bind(job.timeout.map(|t| t.as_millis() as i64))
        .bind(&job.unique_key)
        .bind(policy_name(job.on_parent_failure))
        .bind(i32::try_from(start.pending_parents).unwrap_or(i32::MAX))
        .bind(discarded.then_some(now.0))
        .bind(discarded.then_some(Start::PARENT_FAILED))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = inserted else {
            // Another transaction committed the same key after the check above.
            let key = job.unique_key.as_deref().unwrap_or_default();
            return match unfinished_with_key(tx, key).await? {
                Some(id) => Ok(EnqueueOutcome::Duplicate(JobId(id))),
                None => Err(StoreError::Invalid(
                    "unique key conflict with a job that finished meanwhile; retry the enqueue"
                        .into(),
                )),
            };
        };
        if !parents.is_empty() {
            sqlx::query(
                "INSERT INTO job_dependencies (parent, child) SELECT unnest($1::bigint[]), $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(&parents)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        if discarded {
            dead_letter(tx, &[id], now).await?;
        }
        if state == JobState::Available {
            queues.insert(job.queue.clone());
        }
        events(tx, &start.events(JobId(id), now)).await?;
        Ok(EnqueueOutcome::Inserted(JobId(id)))
    }
}
