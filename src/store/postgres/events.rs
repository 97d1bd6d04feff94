//! The lifecycle event log: events recorded outside a transition, and reading it back.

use async_trait::async_trait;

use super::{PostgresStore, event_gaps, events, history};
use crate::event::{LifecycleEvent, StoredEvent};
use crate::store::{EventLog, StoreError};

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
    ///
    /// A page never passes a gap in the sequence that a transaction still in progress
    /// could fill (see [`super::event_gaps`]): a reader that moves its cursor to the
    /// page's last row skips nothing that commits later.
    async fn events_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<crate::store::EventPage, StoreError> {
        let (mut rows, writer) = self.event_rows(after, limit).await?;
        if let (Some(gap), Some(newest_writer)) = (
            event_gaps::first_gap(after, rows.iter().map(|r| r.0)),
            writer,
        ) {
            let last = rows.last().map_or(after, |r| r.0);
            if self.writers_ended(&newest_writer).await? {
                // Every writer that could have held a seq at or below `last` has ended:
                // what is visible up to it now is all there will ever be.
                let (again, _) = self.event_rows(after, limit).await?;
                rows = again.into_iter().take_while(|r| r.0 <= last).collect();
            } else {
                rows.truncate(gap);
            }
        }
        let read = rows.len();
        let last = rows.last().map(|r| r.0);
        let rows = rows
            .into_iter()
            .map(
                |(seq, at, kind, job, attempt, worker, node, detail, _writer)| {
                    (seq, at, kind, job, attempt, worker, node, detail)
                },
            )
            .collect();
        Ok((history::decode_events("events", rows), read, last))
    }

    /// Up to `limit` rows after `after` in seq order, and the newest transaction in
    /// progress when they were read (the same snapshot), if any.
    async fn event_rows(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<(Vec<EventDbRow>, Option<String>), StoreError> {
        let rows: Vec<EventDbRow> = sqlx::query_as(
            // The detail as text, parsed row by row: one unreadable detail must not fail
            // the batch (decoding jsonb into a tuple would). The in-progress transactions
            // come from the statement's own snapshot, the one the rows were read with.
            "SELECT seq, at, kind, job, attempt, worker, node, detail::text,
                    (SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x
                      ORDER BY x DESC LIMIT 1)
               FROM lifecycle_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let writer = rows.first().and_then(|r| r.8.clone());
        Ok((rows, writer))
    }

    /// Waits, at most [`event_gaps::WRITER_WAIT`], until every transaction up to
    /// `newest` (an `xid8` as text) has ended; whether they did.
    async fn writers_ended(&self, newest: &str) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + event_gaps::WRITER_WAIT;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            let ended: bool = sqlx::query_scalar(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::text::xid8",
            )
            .bind(newest)
            .fetch_one(&self.pool)
            .await?;
            if ended {
                return Ok(true);
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(20));
        }
    }
}

/// A row of `lifecycle_events` as read, with the snapshot's newest in-progress
/// transaction.
type EventDbRow = (
    i64,
    i64,
    String,
    Option<i64>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);
