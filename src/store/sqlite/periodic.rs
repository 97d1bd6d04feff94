//! Periodic ticks ([`PeriodicTicks`]): the `periodic_ticks` marks, advanced by
//! compare-and-set in the `BEGIN IMMEDIATE` transaction that inserts the tick's job
//! (the insert of `enqueue.rs`), so SQLite's one writer serialises racing enqueues, and
//! a pause or delete of the schedule (`periodic_schedules`, read in that transaction).

use async_trait::async_trait;

use super::SqliteStore;
use super::rows::to_json;
use crate::clock::Millis;
use crate::job::NewJob;
use crate::store::periodic::{
    PeriodicTicks, TickMark, TickOutcome, check_schedule, check_schedules, mark,
};
use crate::store::{EnqueueOutcome, StoreError};

type MarkRow = (String, i64, Option<i64>, i64);

#[async_trait]
impl PeriodicTicks for SqliteStore {
    async fn register_schedules(
        &self,
        schedules: &[String],
        now: Millis,
    ) -> Result<Vec<TickMark>, StoreError> {
        check_schedules(schedules)?;
        let names = to_json(&schedules);
        let mut tx = self.begin().await?;
        // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
        sqlx::query(
            "INSERT INTO periodic_ticks (schedule, last_tick, updated_at)
             SELECT value, ?2, ?2 FROM json_each(?1) WHERE true
             ON CONFLICT (schedule) DO NOTHING",
        )
        .bind(&names)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<MarkRow> = sqlx::query_as(
            "SELECT schedule, last_tick, last_job, updated_at FROM periodic_ticks
             WHERE schedule IN (SELECT value FROM json_each(?1)) ORDER BY schedule",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(mark).collect())
    }

    async fn tick_marks(&self) -> Result<Vec<TickMark>, StoreError> {
        let rows: Vec<MarkRow> = sqlx::query_as(
            "SELECT schedule, last_tick, last_job, updated_at FROM periodic_ticks ORDER BY schedule",
        )
        .fetch_all(&self.read)
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
        let mut tx = self.begin().await?;
        // The schedule as it is now (the write lock is held): not what the leader read.
        let paused: Option<Option<i64>> =
            sqlx::query_scalar("SELECT paused_at FROM periodic_schedules WHERE name = ?1")
                .bind(schedule)
                .fetch_optional(&mut *tx)
                .await?;
        match paused {
            None => return Ok(TickOutcome::NoSchedule),
            Some(Some(_)) => return Ok(TickOutcome::Paused),
            Some(None) => {}
        }
        let advanced: Option<String> = sqlx::query_scalar(
            "INSERT INTO periodic_ticks (schedule, last_tick, updated_at) VALUES (?1, ?2, ?3)
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
                sqlx::query_scalar("SELECT last_tick FROM periodic_ticks WHERE schedule = ?1")
                    .bind(schedule)
                    .fetch_one(&mut *tx)
                    .await?;
            // Nothing was written: ending the transaction either way is the same.
            tx.rollback().await?;
            return Ok(TickOutcome::Passed {
                last_tick: Millis(last),
            });
        }
        let outcome = Self::insert_linked(&mut tx, &job, Vec::new(), now).await?;
        if let EnqueueOutcome::Inserted(id) = outcome {
            sqlx::query("UPDATE periodic_ticks SET last_job = ?2 WHERE schedule = ?1")
                .bind(schedule)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(TickOutcome::Enqueued { outcome })
    }
}
