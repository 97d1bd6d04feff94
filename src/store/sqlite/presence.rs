//! [`NodePresence`] on SQLite: the `node_presence` table (migration 0019), and the
//! running jobs read from `jobs_lease_node` (lease_node) WHERE state = 'running'.

use async_trait::async_trait;

use super::SqliteStore;
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::presence::{
    self, FORGET_AFTER, MAX_PRESENCES, MAX_RUNNING, Presence, PresenceRow, RunningJob, RunningRow,
    presence_columns_sql,
};
use crate::store::{NodePresence, StoreError};

/// The running jobs, by node, from the partial index of running leases (its entries
/// are the running jobs only, so the read never touches the rest of the table).
pub(super) const RUNNING: &str = "SELECT id, queue, kind, lease_node, lease_expires_at
     FROM jobs INDEXED BY jobs_lease_node
     WHERE state = 'running'
     ORDER BY lease_node
     LIMIT ?1";

#[async_trait]
impl NodePresence for SqliteStore {
    async fn announce(&self, p: &Presence) -> Result<(), StoreError> {
        p.check()?;
        let (queues, working) = presence::row_json(p);
        let forget = p.seen_at.0 - FORGET_AFTER.as_millis() as i64;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO node_presence (node, queues, slots, working, started_at, seen_at, every_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (node) DO UPDATE SET queues = excluded.queues, slots = excluded.slots,
                 working = excluded.working, started_at = excluded.started_at,
                 seen_at = excluded.seen_at, every_ms = excluded.every_ms",
        )
        .bind(&p.node.0)
        .bind(queues)
        .bind(i64::from(p.slots))
        .bind(working)
        .bind(p.started_at.0)
        .bind(p.seen_at.0)
        .bind(p.every.as_millis() as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM node_presence WHERE seen_at < ?1")
            .bind(forget)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn withdraw(&self, node: &NodeId, started_at: Millis) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let gone = sqlx::query("DELETE FROM node_presence WHERE node = ?1 AND started_at = ?2")
            .bind(&node.0)
            .bind(started_at.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone > 0)
    }

    async fn presences(&self) -> Result<Vec<Presence>, StoreError> {
        let rows: Vec<PresenceRow> = sqlx::query_as(concat!(
            "SELECT ",
            presence_columns_sql!(""),
            " FROM node_presence ORDER BY node LIMIT ?1"
        ))
        .bind(i64::from(MAX_PRESENCES))
        .fetch_all(&self.read)
        .await?;
        Ok(presence::presences_of(rows))
    }

    async fn running_jobs(&self, limit: u32) -> Result<Vec<RunningJob>, StoreError> {
        let rows: Vec<RunningRow> = sqlx::query_as(RUNNING)
            .bind(i64::from(limit.min(MAX_RUNNING)))
            .fetch_all(&self.read)
            .await?;
        Ok(presence::running_of(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running jobs are read from their partial index, never through jobs_state_id
    /// or a scan of the table.
    #[tokio::test]
    async fn running_jobs_are_read_from_the_lease_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("plan.db"))
            .await
            .unwrap();
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {RUNNING}")))
                .bind(1_i64)
                .fetch_all(&store.write)
                .await
                .unwrap();
        let text: Vec<String> = rows.into_iter().map(|r| r.3).collect();
        let text = text.join("\n");
        assert!(text.contains("USING INDEX jobs_lease_node"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "no sort: {text}");
    }
}
