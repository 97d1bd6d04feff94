//! [`NodePresence`] on Postgres: the `node_presence` table (migration 0022), and the
//! running jobs read from `jobs_lease_expiry` (lease_expires_at) WHERE lease_expires_at
//! IS NOT NULL, whose entries are exactly the running jobs.

use async_trait::async_trait;

use super::PostgresStore;
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::presence::{
    self, FORGET_AFTER, MAX_PRESENCES, MAX_RUNNING, Presence, PresenceRow, RunningJob, RunningRow,
    presence_columns_sql,
};
use crate::store::{NodePresence, StoreError};

/// The running jobs, in lease order, from the partial index of leases: its predicate is
/// repeated word for word so the planner can use it, and `state = 'running'` only
/// filters the few rows it yields.
pub(super) const RUNNING: &str = "SELECT id, queue, kind, lease_node, lease_expires_at
     FROM jobs
     WHERE lease_expires_at IS NOT NULL AND state = 'running'
     ORDER BY lease_expires_at
     LIMIT $1";

#[async_trait]
impl NodePresence for PostgresStore {
    async fn announce(&self, p: &Presence) -> Result<(), StoreError> {
        p.check()?;
        let (queues, working) = presence::row_json(p);
        let forget = p.seen_at.0 - FORGET_AFTER.as_millis() as i64;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO node_presence (node, queues, slots, working, started_at, seen_at, every_ms)
             VALUES ($1, $2::jsonb, $3, $4::jsonb, $5, $6, $7)
             ON CONFLICT (node) DO UPDATE SET queues = excluded.queues, slots = excluded.slots,
                 working = excluded.working, started_at = excluded.started_at,
                 seen_at = excluded.seen_at, every_ms = excluded.every_ms",
        )
        .bind(&p.node.0)
        .bind(queues)
        .bind(p.slots as i32)
        .bind(working)
        .bind(p.started_at.0)
        .bind(p.seen_at.0)
        .bind(p.every.as_millis() as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM node_presence WHERE seen_at < $1")
            .bind(forget)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn withdraw(&self, node: &NodeId, started_at: Millis) -> Result<bool, StoreError> {
        let gone = sqlx::query("DELETE FROM node_presence WHERE node = $1 AND started_at = $2")
            .bind(&node.0)
            .bind(started_at.0)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone > 0)
    }

    async fn presences(&self) -> Result<Vec<Presence>, StoreError> {
        let rows: Vec<(String, String, i32, String, i64, i64, i64)> = sqlx::query_as(concat!(
            "SELECT ",
            presence_columns_sql!("::text"),
            " FROM node_presence ORDER BY node LIMIT $1"
        ))
        .bind(i64::from(MAX_PRESENCES))
        .fetch_all(&self.pool)
        .await?;
        let rows: Vec<PresenceRow> = rows
            .into_iter()
            .map(|(n, q, s, w, a, b, c)| (n, q, i64::from(s), w, a, b, c))
            .collect();
        Ok(presence::presences_of(rows))
    }

    async fn running_jobs(&self, limit: u32) -> Result<Vec<RunningJob>, StoreError> {
        let rows: Vec<RunningRow> = sqlx::query_as(RUNNING)
            .bind(i64::from(limit.min(MAX_RUNNING)))
            .fetch_all(&self.pool)
            .await?;
        Ok(presence::running_of(rows))
    }
}
