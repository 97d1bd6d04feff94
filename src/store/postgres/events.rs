//! The lifecycle event log: events recorded outside a transition, and reading it back.

use async_trait::async_trait;

use super::{PostgresStore, events};
use crate::event::{LifecycleEvent, StoredEvent};
use crate::store::{EventLog, EventRow, StoreError};

#[async_trait]
impl EventLog for PostgresStore {
    async fn record_events(&self, mut evs: Vec<LifecycleEvent>) -> Result<(), StoreError> {
        if evs.is_empty() {
            return Ok(());
        }
        crate::store::storable_events(&mut evs);
        let mut conn = self.pool.acquire().await?;
        events(&mut conn, &evs).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        crate::store::fill_events(after, limit, |after, limit| self.events_page(after, limit)).await
    }
}

impl PostgresStore {
    /// The sequence number of the newest event recorded, if any.
    pub(crate) async fn newest_event_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT max(seq) FROM lifecycle_events")
            .fetch_one(&self.pool)
            .await?)
    }

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
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(
            // The detail as text, parsed row by row: one unreadable detail must not fail
            // the batch (decoding jsonb into a tuple would).
            "SELECT seq, at, kind, job, attempt, worker, node, detail::text FROM lifecycle_events
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
                    attempt: attempt.map(i64::from),
                    worker,
                    node,
                    detail,
                }
                .decode()
            });
        Ok((crate::store::skip_undecodable("events", events), read, last))
    }
}
