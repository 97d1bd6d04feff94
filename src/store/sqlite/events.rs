//! The lifecycle event log: the events a transition writes in its own transaction,
//! and [`EventLog`] (events recorded outside a transition, reading the log in order).

use async_trait::async_trait;
use serde_json::json;

use super::rows::to_json;
use super::{SqliteStore, Tx};
use crate::event::{LifecycleEvent, StoredEvent};
use crate::store::{EventLog, EventRow, StoreError};

/// Writes `events` in the transaction of the transition they record.
pub(super) async fn events(tx: &mut Tx, events: &[LifecycleEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            json!({
                "at": e.at.0, "k": e.kind.as_str(), "j": e.job.map(|j| j.0), "a": e.attempt,
                "w": e.worker.as_ref().map(|w| &w.0), "n": e.node.as_ref().map(|n| &n.0),
                "d": if e.detail.is_null() { None } else { Some(e.detail.to_string()) },
            })
        })
        .collect();
    sqlx::query(
        "INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node, detail)
         SELECT value->>'at', value->>'k', value->>'j', value->>'a', value->>'w', value->>'n', value->>'d'
         FROM json_each(?1) ORDER BY key",
    )
    .bind(to_json(&rows))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// One page of [`EventLog::events_after`]: the events that decode, how many rows were
    /// read and the sequence number of the last one (see [`crate::store::fill_events`]).
    async fn events_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<crate::store::EventPage, StoreError> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i64,
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(
            "SELECT seq, at, kind, job, attempt, worker, node, detail FROM lifecycle_events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        let read = rows.len();
        let last = rows.last().map(|r| r.0);
        let events = rows
            .into_iter()
            .map(|(seq, at, kind, job, attempt, worker, node, detail)| {
                EventRow {
                    seq,
                    at,
                    kind,
                    job,
                    attempt,
                    worker,
                    node,
                    detail,
                }
                .decode()
            });
        Ok((crate::store::skip_undecodable("events", events), read, last))
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn record_events(&self, mut evs: Vec<LifecycleEvent>) -> Result<(), StoreError> {
        if evs.is_empty() {
            return Ok(());
        }
        crate::store::storable_events(&mut evs);
        let mut tx = self.begin().await?;
        events(&mut tx, &evs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        crate::store::fill_events(after, limit, |after, limit| self.events_page(after, limit)).await
    }
}
