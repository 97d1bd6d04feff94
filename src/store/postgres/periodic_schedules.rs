//! Periodic schedules ([`PeriodicSchedules`]): rows of `periodic_schedules`, each
//! change in one transaction with its tick mark and audit row. A change locks the
//! schedule's row (`FOR UPDATE`), which a tick's enqueue reads `FOR SHARE`, so the two
//! are ordered. The production store calls these for its Postgres side.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::collections::BTreeSet;

use super::{PostgresStore, Tx, audit, wake};
use crate::clock::Millis;
use crate::periodic::{MAX_SCHEDULES, PeriodicJob};
use crate::store::audit::{AuditAction, AuditContext};
use crate::store::periodic::check_schedule;
use crate::store::periodic_schedules::{
    ConfigSync, MARK_TICKS, PeriodicSchedules, REMOVE_MARK, REMOVE_ROW, SCHEDULE_COLUMNS,
    ScheduleColumns, ScheduleOrigin, ScheduleOutcome, StoredSchedule, check_storable,
    declared_in_config, decode_all, name_taken, schedule_audit, too_many, trigger_detail,
    trigger_job,
};
use crate::store::{EnqueueOutcome, StoreError};

/// A row selected with [`SCHEDULE_COLUMNS`].
fn columns(row: &PgRow) -> Result<ScheduleColumns, StoreError> {
    ScheduleColumns::from_row(row, row.try_get("payload")?)
}

/// The row of `name`, read in `tx`.
async fn find(tx: &mut Tx, name: &str) -> Result<Option<StoredSchedule>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM periodic_schedules WHERE name = $1 FOR UPDATE"
    )))
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| columns(&r)?.decode()).transpose()
}

/// Inserts `c`, or (`replace`) writes its definition and origin over the row of its
/// name, keeping the pause and the creation time; registers the tick mark at `now`.
async fn upsert(tx: &mut Tx, c: &ScheduleColumns, now: Millis) -> Result<(), StoreError> {
    c.bind_upsert(c.payload.clone()).execute(&mut **tx).await?;
    sqlx::query(MARK_TICKS)
        .bind(&c.name)
        .bind(now.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes the row of `name` and its tick mark.
async fn remove(tx: &mut Tx, name: &str) -> Result<(), StoreError> {
    sqlx::query(REMOVE_ROW)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query(REMOVE_MARK)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl PeriodicSchedules for PostgresStore {
    async fn sync_config_schedules(
        &self,
        schedules: &[PeriodicJob],
        now: Millis,
    ) -> Result<ConfigSync, StoreError> {
        check_storable(schedules, now)?;
        let mut tx = self.pool.begin().await?;
        let existing: Vec<(String, String)> =
            sqlx::query_as("SELECT name, origin FROM periodic_schedules FOR UPDATE")
                .fetch_all(&mut *tx)
                .await?;
        let mut sync = ConfigSync::default();
        for job in schedules {
            match existing.iter().find(|(n, _)| *n == job.name) {
                None => sync.created.push(job.name.clone()),
                Some((_, o)) if o == ScheduleOrigin::Config.as_str() => {
                    sync.kept.push(job.name.clone())
                }
                Some(_) => sync.taken_over.push(job.name.clone()),
            }
            let c = ScheduleColumns::new(job, ScheduleOrigin::Config, false, now);
            upsert(&mut tx, &c, now).await?;
        }
        for (name, origin) in existing {
            if origin == ScheduleOrigin::Config.as_str()
                && !schedules.iter().any(|j| j.name == name)
            {
                remove(&mut tx, &name).await?;
                sync.removed.push(name);
            }
        }
        tx.commit().await?;
        Ok(sync)
    }

    async fn create_schedule(
        &self,
        ctx: &AuditContext,
        job: &PeriodicJob,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<StoredSchedule>, StoreError> {
        check_storable(std::slice::from_ref(job), now)?;
        let mut tx = self.pool.begin().await?;
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM periodic_schedules")
            .fetch_one(&mut *tx)
            .await?;
        let outcome = match find(&mut tx, &job.name).await? {
            Some(found) => ScheduleOutcome::Refused(name_taken(&job.name, found.origin)),
            None if held >= MAX_SCHEDULES as i64 => ScheduleOutcome::Refused(too_many()),
            None => {
                let c = ScheduleColumns::new(job, ScheduleOrigin::Api, paused, now);
                // A mark left by a schedule of that name that had no row (an older
                // version's config) would let its old ticks run: start afresh.
                sqlx::query(REMOVE_MARK)
                    .bind(&job.name)
                    .execute(&mut *tx)
                    .await?;
                upsert(&mut tx, &c, now).await?;
                ScheduleOutcome::Done(c.decode()?)
            }
        };
        let (action, target, audited) = schedule_audit(
            AuditAction::PeriodicCreate,
            &job.name,
            &outcome,
            |s| serde_json::json!({ "schedule": s.job.schedule.as_str(), "kind": s.job.job.kind, "queue": s.job.job.queue, "paused": paused }),
        );
        audit::write(&mut tx, ctx, action, &target, &audited, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_schedule_paused(
        &self,
        ctx: &AuditContext,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<bool>, StoreError> {
        check_schedule(name)?;
        let mut tx = self.pool.begin().await?;
        let found: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT paused_at FROM periodic_schedules WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match found {
            None => ScheduleOutcome::NotFound,
            Some(at) if at.is_some() == paused => ScheduleOutcome::Done(false),
            Some(_) => {
                sqlx::query(
                    "UPDATE periodic_schedules SET paused_at = $2, updated_at = $3 WHERE name = $1",
                )
                .bind(name)
                .bind(paused.then_some(now.0))
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
                if !paused {
                    // The ticks of the pause are passed over.
                    sqlx::query(
                        "UPDATE periodic_ticks SET last_tick = $2, last_job = NULL, updated_at = $2
                         WHERE schedule = $1 AND last_tick < $2",
                    )
                    .bind(name)
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                }
                ScheduleOutcome::Done(true)
            }
        };
        let action = if paused {
            AuditAction::PeriodicPause
        } else {
            AuditAction::PeriodicResume
        };
        let (action, target, audited) = schedule_audit(
            action,
            name,
            &outcome,
            |changed| serde_json::json!({ "changed": changed }),
        );
        audit::write(&mut tx, ctx, action, &target, &audited, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn delete_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        config_too: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<()>, StoreError> {
        check_schedule(name)?;
        let mut tx = self.pool.begin().await?;
        let origin: Option<String> =
            sqlx::query_scalar("SELECT origin FROM periodic_schedules WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match origin.as_deref() {
            None => ScheduleOutcome::NotFound,
            Some("config") if !config_too => ScheduleOutcome::Refused(declared_in_config(name)),
            Some(_) => {
                remove(&mut tx, name).await?;
                ScheduleOutcome::Done(())
            }
        };
        let (action, target, audited) = schedule_audit(
            AuditAction::PeriodicDelete,
            name,
            &outcome,
            |()| serde_json::json!({ "deleted": true }),
        );
        audit::write(&mut tx, ctx, action, &target, &audited, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn trigger_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        now: Millis,
    ) -> Result<ScheduleOutcome<EnqueueOutcome>, StoreError> {
        check_schedule(name)?;
        let mut tx = self.pool.begin().await?;
        let outcome = match find(&mut tx, name).await? {
            None => ScheduleOutcome::NotFound,
            Some(s) => {
                let job = trigger_job(&s.job, now);
                crate::store::check_new_jobs(std::slice::from_ref(&job))?;
                let mut queues = BTreeSet::new();
                let out = Self::insert_linked(&mut tx, &job, Vec::new(), now, &mut queues).await?;
                wake(&mut tx, queues).await?;
                ScheduleOutcome::Done(out)
            }
        };
        let (action, target, audited) =
            schedule_audit(AuditAction::PeriodicTrigger, name, &outcome, trigger_detail);
        audit::write(&mut tx, ctx, action, &target, &audited, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM periodic_schedules ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut cols = Vec::with_capacity(rows.len());
        for r in &rows {
            match columns(r) {
                Ok(c) => cols.push(c),
                Err(e) => {
                    tracing::warn!(error = %e, "a periodic schedule cannot be read; left out")
                }
            }
        }
        Ok(decode_all(cols))
    }
}
