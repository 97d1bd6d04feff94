//! Storing new jobs ([`JobQueue::enqueue`]): runs of plain jobs in one statement each,
//! jobs with a unique key or parents one at a time. Where each starts is decided in
//! `store::rules` ([`Start`]); this applies it.
//!
//! [`JobQueue::enqueue`]: crate::store::JobQueue::enqueue

use std::collections::HashMap;

use super::discard::dead_letter;
use super::events::events;
use super::rows::{self, InsertRow, policy_name, to_json};
use super::{SqliteStore, Tx};
use crate::clock::Millis;
use crate::job::{JobId, JobState, NewJob};
use crate::store::rules::{Start, check_parents_exist, parent_ids, stored_alone};
use crate::store::{EnqueueOutcome, StoreError};

impl SqliteStore {
    /// See [`crate::store::JobQueue::enqueue`].
    pub(super) async fn insert_jobs(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        crate::store::check_new_jobs(&jobs)?;
        let mut tx = self.begin().await?;
        let mut out: Vec<EnqueueOutcome> = Vec::with_capacity(jobs.len());
        let mut plain: Vec<&NewJob> = Vec::new();
        for job in &jobs {
            if !stored_alone(job) {
                plain.push(job);
                continue;
            }
            Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
            plain.clear();
            let parents = parent_ids(job, &out);
            let outcome = Self::insert_linked(&mut tx, job, parents, now).await?;
            out.push(outcome);
        }
        Self::insert_plain(&mut tx, &plain, now, &mut out).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Inserts a run of jobs with no unique key and no parents in one statement.
    async fn insert_plain(
        tx: &mut Tx,
        jobs: &[&NewJob],
        now: Millis,
        out: &mut Vec<EnqueueOutcome>,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let rows: Vec<InsertRow> = jobs
            .iter()
            .map(|j| {
                let run_at = j.run_at.unwrap_or(now);
                InsertRow {
                    q: &j.queue,
                    k: &j.kind,
                    p: &j.payload,
                    pr: j.priority,
                    s: Start::of(j, [], now).state.as_str(),
                    m: j.max_attempts,
                    r: run_at.0,
                    t: j.timeout.map(|t| t.as_millis() as i64),
                    pf: policy_name(j.on_parent_failure),
                }
            })
            .collect();
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at, timeout_ms,
                               on_parent_failure)
             SELECT value->>'q', value->>'k', value->'p', value->>'pr', value->>'s', value->>'m', value->>'r', ?1,
                    value->>'t', value->>'pf'
             FROM json_each(?2) ORDER BY key
             RETURNING id",
        )
        .bind(now.0)
        .bind(to_json(&rows))
        .fetch_all(&mut **tx)
        .await?;
        // Rowids are handed out in insertion order, so sorted ids line up with the rows.
        ids.sort_unstable();
        sqlx::query(
            "INSERT INTO lifecycle_events (at, kind, job, attempt)
             SELECT ?1, 'job.enqueued', value, 0 FROM json_each(?2) ORDER BY key",
        )
        .bind(now.0)
        .bind(to_json(&ids))
        .execute(&mut **tx)
        .await?;
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
    ) -> Result<EnqueueOutcome, StoreError> {
        if let Some(key) = &job.unique_key {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE unique_key = ?1 AND state NOT IN ('succeeded', 'discarded', 'cancelled')",
            )
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(id) = existing {
                return Ok(EnqueueOutcome::Duplicate(JobId(id)));
            }
        }
        let states: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(to_json(&parents))
        .fetch_all(&mut **tx)
        .await?;
        let known: HashMap<i64, JobState> = states
            .into_iter()
            .map(|(id, s)| Ok((id, rows::state(&s)?)))
            .collect::<Result<_, StoreError>>()?;
        check_parents_exist(&parents, &known)?;
        let start = Start::of(job, known.values().copied(), now);
        let discarded = start.state == JobState::Discarded;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, payload, priority, state, max_attempts, run_at, created_at, timeout_ms,
                               unique_key, on_parent_failure, pending_parents, finished_at, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             RETURNING id",
        )
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(job.payload.to_string())
        .bind(job.priority as i64)
        .bind(start.state.as_str())
        .bind(job.max_attempts as i64)
        .bind(job.run_at.unwrap_or(now).0)
        .bind(now.0)
        .bind(job.timeout.map(|t| t.as_millis() as i64))
        .bind(&job.unique_key)
        .bind(policy_name(job.on_parent_failure))
        .bind(i64::from(start.pending_parents))
        .bind(discarded.then_some(now.0))
        .bind(discarded.then_some(Start::PARENT_FAILED))
        .fetch_one(&mut **tx)
        .await?;
        if !parents.is_empty() {
            sqlx::query(
                "INSERT OR IGNORE INTO job_dependencies (parent, child) SELECT value, ?1 FROM json_each(?2)",
            )
            .bind(id)
            .bind(to_json(&parents))
            .execute(&mut **tx)
            .await?;
        }
        if discarded {
            dead_letter(tx, &[id], now).await?;
        }
        events(tx, &start.events(JobId(id), now)).await?;
        Ok(EnqueueOutcome::Inserted(JobId(id)))
    }
}
