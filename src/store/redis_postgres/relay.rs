//! The event relay: copies the lifecycle events Postgres recorded (every job transition
//! writes its event in its own transaction, and worker and node events are written in
//! batches by `record_events`) into the Redis stream for live watchers, in batches.
//!
//! Postgres is the record; the stream is a bounded live feed. One store instance at a
//! time relays (a lock key with an expiry, renewed by the holder), from the position
//! kept in Redis beside the stream and advanced in the same `MULTI` as the `XADD`s, so a
//! batch is copied once. When the position is missing (first start, or Redis lost its
//! data) the relay starts `stream_maxlen` events before the newest, which refills the
//! stream with about what it would hold had it never been lost; older events are in
//! Postgres (`jobmesh events`).
//!
//! With each batch the relay sets the current-state hashes (`P:state:<id>`) of the jobs
//! it concerns, read from Postgres, so they follow every transition that records an
//! event off the hot path; the two transitions without one (due jobs promoted, children
//! released) set theirs after their commit ([`Shared::note_available`]).
//!
//! The relay reads through `events_after`, which never passes a gap in the sequence that
//! a transaction still in progress could fill, so an event committed late is relayed in
//! its place, not lost.

use std::collections::BTreeSet;

use crate::event::LifecycleEvent;
use crate::job::{JobId, JobState};
use crate::store::{EventLog, StoreError};

use super::Shared;

impl Shared {
    /// Copies up to `relay_rounds` batches of new events into the stream if this
    /// instance holds (or takes) the relay lock; returns how many were copied.
    pub(super) async fn relay_events(&self) -> Result<usize, StoreError> {
        if self.redis_is_down() || !self.hold_relay_lock().await? {
            return Ok(0);
        }
        let mut after = match self.redis.relayed_seq().await? {
            Some(seq) => seq,
            None => {
                let newest = self.pg.newest_event_seq().await?;
                // Start a stream's worth back: about what a never-flushed stream would hold.
                let maxlen = i64::try_from(self.redis.config().stream_maxlen).unwrap_or(i64::MAX);
                let start = newest.unwrap_or(0).saturating_sub(maxlen).max(0);
                self.redis.publish_relayed(&[], start).await?;
                start
            }
        };
        let mut copied = 0;
        for _ in 0..self.config.relay_rounds {
            let batch = self.pg.events_after(after, self.config.relay_batch).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            let events: Vec<_> = batch.into_iter().map(|e| e.event).collect();
            // States first: a failure leaves the position where it was, so the next
            // round sets them again with the batch.
            self.relay_states(&events).await?;
            self.redis.publish_relayed(&events, last).await?;
            copied += events.len();
            after = last;
            if events.len() < self.config.relay_batch as usize {
                break;
            }
        }
        Ok(copied)
    }

    /// Sets the state hashes of the jobs `events` concern to their state in Postgres now
    /// (one query by primary key, one Redis pipeline). The current state rather than one
    /// derived from each event: an enqueue event does not say whether the job waits,
    /// is scheduled or is available, and a relay that lags behind must not set a state
    /// the job has since left. Jobs purged meanwhile are skipped.
    async fn relay_states(&self, events: &[LifecycleEvent]) -> Result<(), StoreError> {
        let ids: BTreeSet<JobId> = events.iter().filter_map(|e| e.job).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<JobId> = ids.into_iter().collect();
        let states = self.pg.states_of(&ids).await?;
        self.redis.set_state(&states).await
    }

    /// Sets the state hashes of jobs that became available without an event (due
    /// scheduled and retryable jobs, children released by their parents' success), which
    /// the relay would not see. Best-effort, like every write to Redis after a commit.
    pub(super) async fn note_available(&self, ids: &[JobId]) {
        if ids.is_empty() || self.redis_is_down() {
            return;
        }
        let states: Vec<_> = ids.iter().map(|id| (*id, JobState::Available)).collect();
        if let Err(e) = self.redis.set_state(&states).await {
            tracing::debug!(error = %e, n = ids.len(), "setting job state hashes failed");
            self.redis_failed(&e);
        }
    }

    /// Takes the relay lock, or renews it if this instance holds it.
    async fn hold_relay_lock(&self) -> Result<bool, StoreError> {
        let key = self.redis.keys().relay_lock();
        let ttl_ms = (self.config.pump_interval.as_millis() as u64 * 5).max(1000);
        let mut conn = self.redis.conn();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await?;
        if taken.is_some() {
            return Ok(true);
        }
        // Renew only if the holder is this instance (a compare-and-expire).
        let renewed: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then \
               return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
        )
        .key(&key)
        .arg(&self.instance)
        .arg(ttl_ms)
        .invoke_async(&mut conn)
        .await?;
        Ok(renewed == 1)
    }
}
