//! The read-side views ([`JobHistory`], [`Activity`]) on the production store: Postgres
//! holds the whole record (attempts, events, finished jobs, the claim index), so each
//! is the Postgres store's own read. Redis adds only the live heartbeats, read through
//! [`crate::store::Heartbeats::live_members`].

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::event::StoredEvent;
use crate::job::JobId;
use crate::store::activity::Activity;
use crate::store::history::{Attempt, JobHistory};
use crate::store::{Counts, StoreError};

#[async_trait]
impl JobHistory for RedisPostgresStore {
    async fn attempts(&self, job: JobId, limit: u32) -> Result<Vec<Attempt>, StoreError> {
        self.shared.pg.attempts(job, limit).await
    }

    async fn job_events(&self, job: JobId, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.shared.pg.job_events(job, limit).await
    }
}

#[async_trait]
impl Activity for RedisPostgresStore {
    async fn oldest_available(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        self.shared.pg.oldest_available(queue).await
    }

    async fn finished_since(&self, since: Millis) -> Result<Counts, StoreError> {
        self.shared.pg.finished_since(since).await
    }

    async fn member_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.shared.pg.member_events(limit).await
    }
}
