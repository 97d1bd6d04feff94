//! Periodic ticks ([`PeriodicTicks`]): the `periodic_ticks` marks, advanced by
//! compare-and-set in the transaction that inserts the tick's job (the insert of
//! `enqueue.rs`). The upsert locks the schedule's row, so a racing enqueue of the same
//! tick waits for this transaction and then finds the mark at the tick: it inserts
//! nothing. The schedule's row (`periodic_schedules`) is read `FOR SHARE` first, so a
//! pause or delete is ordered with the tick: a paused or deleted schedule gets no job.
//! The production store calls these for its Postgres side.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::{PostgresStore, wake};
use crate::clock::Millis;
use crate::job::NewJob;
use crate::store::periodic::{
    PeriodicTicks, TickMark, TickOutcome, check_schedule, check_schedules, mark,
};
use crate::store::{EnqueueOutcome, StoreError};

type MarkRow = (String, i64, Option<i64>, i64);

#[async_trait]
impl PeriodicTicks for PostgresStore {
    async fn register_schedules(
        &self,
        schedules: &[String],
        now: Millis,
    ) -> Result<Vec<TickMark>, StoreError> {
        check_schedules(schedules)?;
        let rows: Vec<MarkRow> = sqlx::query_as(
            "WITH ins AS (
                 INSERT INTO periodic_ticks (schedule, last_tick, updated_at)
                 SELECT unnest($1::text[]), $2, $2
                 ON CONFLICT (schedule) DO NOTHING
                 RETURNING schedule, last_tick, last_job, updated_at
             )
             SELECT schedule, last_tick, last_job, updated_at FROM ins
             UNION ALL
             SELECT schedule, last_tick, last_job, updated_at FROM periodic_ticks
             WHERE schedule = ANY ($1)
             ORDER BY schedule",
        )
        .bind(schedules)
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        // A statement sees the table as it was before it began, so a new row comes only
        // from `ins` and an old one only from the table; no name appears twice.
        Ok(rows.into_iter().map(mark).collect())
    }

    async fn tick_marks(&self) -> Result<Vec<TickMark>, StoreError> {
        let rows: Vec<MarkRow> = sqlx::query_as(
            "SELECT schedule, last_tick, last_job, updated_at FROM periodic_ticks ORDER BY schedule",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(mark).collect())
    }

    async fn enqueue_tick(
        &self,
        schedule: &str,
        tick: Millis,
        job: NewJob,
        now: Millis,
    ) -> Result<TickOutcome, StoreError> {
        check_schedule(schedule)?;
        crate::store::check_new_jobs(std::slice::from_ref(&job))?;
        let mut tx = self.pool.begin().await?;
        // Locks the schedule's row against a pause or delete (which update or delete
        // it) until this commits; one that committed first is seen here.
        let paused: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT paused_at FROM periodic_schedules WHERE name = $1 FOR SHARE",
        )
        .bind(schedule)
        .fetch_optional(&mut *tx)
        .await?;
        match paused {
            None => return Ok(TickOutcome::NoSchedule),
            Some(Some(_)) => return Ok(TickOutcome::Paused),
            Some(None) => {}
        }
        let advanced: Option<String> = sqlx::query_scalar(
            "INSERT INTO periodic_ticks (schedule, last_tick, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (schedule) DO UPDATE SET last_tick = excluded.last_tick,
                 last_job = NULL, updated_at = excluded.updated_at
             WHERE periodic_ticks.last_tick < excluded.last_tick
             RETURNING schedule",
        )
        .bind(schedule)
        .bind(tick.0)
        .bind(now.0)
        .fetch_optional(&mut *tx)
        .await?;
        if advanced.is_none() {
            let last: i64 =
                sqlx::query_scalar("SELECT last_tick FROM periodic_ticks WHERE schedule = $1")
                    .bind(schedule)
                    .fetch_one(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(TickOutcome::Passed {
                last_tick: Millis(last),
            });
        }
        let mut queues = BTreeSet::new();
        let outcome = Self::insert_linked(&mut tx, &job, Vec::new(), now, &mut queues).await?;
        if let EnqueueOutcome::Inserted(id) = outcome {
            sqlx::query("UPDATE periodic_ticks SET last_job = $2 WHERE schedule = $1")
                .bind(schedule)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        wake(&mut tx, queues).await?;
        tx.commit().await?;
        Ok(TickOutcome::Enqueued { outcome })
    }
}
