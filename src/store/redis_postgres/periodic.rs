//! Periodic ticks ([`PeriodicTicks`]) on the production store: the marks and the
//! tick's insert are the Postgres store's (one transaction there); a tick's job that
//! starts available is then pushed to Redis like any enqueued job (a failed push is the
//! reconciler's to repair).

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::job::NewJob;
use crate::store::periodic::{PeriodicTicks, TickMark, TickOutcome};
use crate::store::{EnqueueOutcome, StoreError};

#[async_trait]
impl PeriodicTicks for RedisPostgresStore {
    async fn register_schedules(
        &self,
        schedules: &[String],
        now: Millis,
    ) -> Result<Vec<TickMark>, StoreError> {
        self.shared.pg.register_schedules(schedules, now).await
    }

    async fn tick_marks(&self) -> Result<Vec<TickMark>, StoreError> {
        self.shared.pg.tick_marks().await
    }

    async fn enqueue_tick(
        &self,
        schedule: &str,
        tick: Millis,
        job: NewJob,
        now: Millis,
    ) -> Result<TickOutcome, StoreError> {
        let s = &self.shared;
        let out = s.pg.enqueue_tick(schedule, tick, job, now).await?;
        if let TickOutcome::Enqueued {
            outcome: EnqueueOutcome::Inserted(id),
        } = out
        {
            // Reads the row back: only an available job goes to Redis.
            s.push_after_commit(&[id], now).await;
        }
        Ok(out)
    }
}
