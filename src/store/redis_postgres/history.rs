//! The read-side views ([`JobHistory`], [`Activity`]) on the production store: Postgres
//! holds the whole record (attempts, events, finished jobs, the claim index), so each
//! is the Postgres store's own read. Redis adds only the live heartbeats, read through
//! [`crate::store::Heartbeats::live_members`].

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::event::StoredEvent;
use crate::job::JobId;
use crate::store::activity::{Activity, FinishedSlice};
use crate::store::history::{Attempt, JobHistory};
use crate::store::incidents::IncidentRow;
use crate::store::insights::{DeadLetterGroups, FinishTiming, Insights, JobBrief, Link};
use crate::store::throughput::ThroughputRow;
use crate::store::{JobFilter, StoreError};

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

    async fn finished_slices(
        &self,
        from: Millis,
        to: Millis,
        slice_ms: i64,
    ) -> Result<Vec<FinishedSlice>, StoreError> {
        self.shared.pg.finished_slices(from, to, slice_ms).await
    }

    async fn member_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.shared.pg.member_events(limit).await
    }
}

#[async_trait]
impl Insights for RedisPostgresStore {
    async fn finish_timings(
        &self,
        slices: &[(Millis, Millis)],
        per_slice: u32,
    ) -> Result<Vec<FinishTiming>, StoreError> {
        self.shared.pg.finish_timings(slices, per_slice).await
    }

    async fn links_of(&self, jobs: &[JobId], limit: u32) -> Result<Vec<Link>, StoreError> {
        self.shared.pg.links_of(jobs, limit).await
    }

    async fn job_briefs(&self, jobs: &[JobId]) -> Result<Vec<JobBrief>, StoreError> {
        self.shared.pg.job_briefs(jobs).await
    }

    async fn dead_letter_groups(&self, limit: u32) -> Result<DeadLetterGroups, StoreError> {
        self.shared.pg.dead_letter_groups(limit).await
    }

    async fn count_jobs(
        &self,
        filter: &JobFilter,
        states: &[&str],
        cap: u64,
    ) -> Result<u64, StoreError> {
        self.shared.pg.count_jobs(filter, states, cap).await
    }

    async fn throughput(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<ThroughputRow>, StoreError> {
        self.shared.pg.throughput(from, to, interval_ms).await
    }

    async fn incidents(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        self.shared.pg.incidents(from, to, interval_ms).await
    }
}
