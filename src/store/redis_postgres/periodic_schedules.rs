//! Periodic schedules ([`PeriodicSchedules`]) on the production store: Postgres holds
//! them (the Postgres store's rows, marks and audit rows, one transaction each); a
//! trigger's job that starts available is then pushed to Redis like any enqueued job
//! (a failed push is the reconciler's to repair).

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::periodic::PeriodicJob;
use crate::store::audit::AuditContext;
use crate::store::periodic_schedules::{
    ConfigSync, PeriodicSchedules, ScheduleOutcome, StoredSchedule,
};
use crate::store::{EnqueueOutcome, StoreError};

#[async_trait]
impl PeriodicSchedules for RedisPostgresStore {
    async fn sync_config_schedules(
        &self,
        schedules: &[PeriodicJob],
        now: Millis,
    ) -> Result<ConfigSync, StoreError> {
        self.shared.pg.sync_config_schedules(schedules, now).await
    }

    async fn create_schedule(
        &self,
        ctx: &AuditContext,
        job: &PeriodicJob,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<StoredSchedule>, StoreError> {
        self.shared.pg.create_schedule(ctx, job, paused, now).await
    }

    async fn set_schedule_paused(
        &self,
        ctx: &AuditContext,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<bool>, StoreError> {
        self.shared
            .pg
            .set_schedule_paused(ctx, name, paused, now)
            .await
    }

    async fn delete_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        config_too: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<()>, StoreError> {
        self.shared
            .pg
            .delete_schedule(ctx, name, config_too, now)
            .await
    }

    async fn trigger_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        now: Millis,
    ) -> Result<ScheduleOutcome<EnqueueOutcome>, StoreError> {
        let s = &self.shared;
        let out = s.pg.trigger_schedule(ctx, name, now).await?;
        if let ScheduleOutcome::Done(EnqueueOutcome::Inserted(id)) = out {
            s.push_after_commit(&[id], now).await;
        }
        Ok(out)
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        self.shared.pg.schedules().await
    }
}
