//! [`MeteredStore`]: a store wrapped so that what passes through it is counted (errors
//! by kind, enqueue outcomes, claims with their queue wait, batch latencies, rescued and
//! revoked leases), while the store traits and the backends know nothing of metrics.
//!
//! Every capability method delegates to the wrapped store; a method added to a
//! capability trait needs its line here (the compiler asks for it).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::Metrics;
use crate::clock::Millis;
use crate::event::{LifecycleEvent, StoredEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, Lease, NewJob, NodeId,
    ProgressReport,
};
use crate::limits::{Limit, LimitUsage};
use crate::periodic::PeriodicJob;
use crate::store::JobLimits;
use crate::store::audit::{AuditAction, AuditId, AuditQuery, AuditRecord, AuditTarget};
use crate::store::bulk::{BulkAction, BulkActions, BulkOutcome, BulkTarget};
use crate::store::history::Attempt;
use crate::store::insights::{DeadLetterGroups, FinishTiming, Insights, JobBrief, Link};
use crate::store::models::{ModelStore, SavedModels};
use crate::store::periodic::{PeriodicTicks, TickMark, TickOutcome};
use crate::store::periodic_schedules::{
    ConfigSync, PeriodicSchedules, ScheduleOutcome, StoredSchedule,
};
use crate::store::queues::PausedQueue;
use crate::store::retention::{Purged, Retention};
use crate::store::throughput::ThroughputRow;
use crate::store::tokens::{ApiToken, NewApiToken, Reservation, StoredAnswer, TokenHash, TokenId};
use crate::store::{
    Activity, ApiTokens, AuditContext, AuditLog, CancelOutcome, Counts, DeadLetter, EnqueueOutcome,
    EventLog, FinishedSlice, Heartbeats, JobAdmin, JobFilter, JobHistory, JobQueue, Leadership,
    QueueControl, Redrive, RescuedJob, SharedStore, Store, StoreError, WakeupSource,
};

/// A store whose calls are recorded in [`Metrics`].
pub struct MeteredStore {
    inner: SharedStore,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore")
            .field("backend", &self.inner.backend())
            .finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn wrap(inner: SharedStore, metrics: Arc<Metrics>) -> SharedStore {
        Arc::new(MeteredStore { inner, metrics })
    }

    fn seen<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            self.metrics.store_error(e);
        }
        r
    }
}

#[async_trait]
impl JobQueue for MeteredStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        // The labels are taken before the jobs move into the store call; consecutive jobs
        // of one queue and kind (the common batch) share one lookup.
        let mut tags = Vec::with_capacity(jobs.len());
        let mut last: Option<(&str, &str, usize)> = None;
        let mut distinct = Vec::new();
        for j in &jobs {
            match last {
                Some((q, k, i)) if q == j.queue && k == j.kind => tags.push(i),
                _ => {
                    distinct.push(self.metrics.tag(&j.queue, &j.kind));
                    let i = distinct.len() - 1;
                    last = Some((&j.queue, &j.kind, i));
                    tags.push(i);
                }
            }
        }
        let out = self.seen(self.inner.enqueue(jobs, now).await)?;
        self.metrics.enqueued(&distinct, &tags, &out);
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        let started = Instant::now();
        let r = self.seen(self.inner.claim(req).await);
        self.metrics
            .store
            .claim_batch
            .observe(started.elapsed().as_secs_f64());
        let jobs = r?;
        self.metrics.claimed(&jobs, req.now);
        Ok(jobs)
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<CompletionResult>, StoreError> {
        let started = Instant::now();
        let r = self.seen(self.inner.complete(batch).await);
        self.metrics
            .store
            .completion_batch
            .observe(started.elapsed().as_secs_f64());
        r
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.seen(self.inner.extend_leases(leases, until).await)
    }

    async fn record_progress(
        &self,
        reports: &[ProgressReport],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.seen(self.inner.record_progress(reports, until).await)
    }

    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError> {
        let r = self.seen(self.inner.release(leases, now).await)?;
        let released = r.iter().filter(|b| **b).count();
        self.metrics.jobs.released.inc_by(released as u64);
        Ok(r)
    }

    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError> {
        self.seen(self.inner.promote_due(now).await)
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.seen(self.inner.next_due().await)
    }

    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        let r = self.seen(self.inner.rescue_expired(now).await)?;
        self.metrics.jobs.leases_rescued.inc_by(r.len() as u64);
        Ok(r)
    }

    async fn revoke_node(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError> {
        let r = self.seen(self.inner.revoke_node(node, now, detail).await)?;
        self.metrics.jobs.leases_revoked.inc_by(r.len() as u64);
        Ok(r)
    }
}

#[async_trait]
impl JobAdmin for MeteredStore {
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.seen(self.inner.get_job(id).await)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        self.seen(self.inner.list_jobs(filter).await)
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        self.seen(self.inner.counts().await)
    }

    async fn cancel(
        &self,
        ctx: &AuditContext,
        id: JobId,
        now: Millis,
    ) -> Result<CancelOutcome, StoreError> {
        self.seen(self.inner.cancel(ctx, id, now).await)
    }

    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.seen(self.inner.dead_letters(queue, limit).await)
    }

    async fn redrive(
        &self,
        ctx: &AuditContext,
        which: Redrive,
        now: Millis,
    ) -> Result<Vec<JobId>, StoreError> {
        self.seen(self.inner.redrive(ctx, which, now).await)
    }

    async fn purge(&self, retention: &Retention, now: Millis) -> Result<Purged, StoreError> {
        self.seen(self.inner.purge(retention, now).await)
    }
}

#[async_trait]
impl EventLog for MeteredStore {
    async fn record_events(&self, events: Vec<LifecycleEvent>) -> Result<(), StoreError> {
        self.seen(self.inner.record_events(events).await)
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.seen(self.inner.events_after(after, limit).await)
    }
}

#[async_trait]
impl Leadership for MeteredStore {
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: std::time::Duration,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.seen(self.inner.try_lead(role, holder, ttl, now).await)
    }

    async fn post(&self, key: &str, body: &[u8], at: Millis) -> Result<(), StoreError> {
        self.seen(self.inner.post(key, body, at).await)
    }

    async fn posted(&self, key: &str) -> Result<Option<(Millis, Vec<u8>)>, StoreError> {
        self.seen(self.inner.posted(key).await)
    }
}

#[async_trait]
impl QueueControl for MeteredStore {
    async fn pause_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.seen(self.inner.pause_queue(ctx, queue, now).await)
    }

    async fn resume_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.seen(self.inner.resume_queue(ctx, queue, now).await)
    }

    async fn paused_queues(&self) -> Result<Vec<PausedQueue>, StoreError> {
        self.seen(self.inner.paused_queues().await)
    }
}

#[async_trait]
impl JobLimits for MeteredStore {
    async fn set_limits(&self, limits: &[Limit], now: Millis) -> Result<(), StoreError> {
        self.seen(self.inner.set_limits(limits, now).await)
    }

    async fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        self.seen(self.inner.limits().await)
    }

    async fn limit_usage(&self) -> Result<Vec<LimitUsage>, StoreError> {
        self.seen(self.inner.limit_usage().await)
    }
}

#[async_trait]
impl ModelStore for MeteredStore {
    async fn save_models(&self, node: &str, body: &[u8], now: Millis) -> Result<(), StoreError> {
        self.seen(self.inner.save_models(node, body, now).await)
    }

    async fn load_models(&self) -> Result<Vec<SavedModels>, StoreError> {
        self.seen(self.inner.load_models().await)
    }
}

#[async_trait]
impl ApiTokens for MeteredStore {
    async fn create_token(
        &self,
        ctx: &AuditContext,
        token: &NewApiToken,
        hash: &TokenHash,
        now: Millis,
    ) -> Result<TokenId, StoreError> {
        self.seen(self.inner.create_token(ctx, token, hash, now).await)
    }

    async fn token(&self, id: TokenId) -> Result<Option<(ApiToken, TokenHash)>, StoreError> {
        self.seen(self.inner.token(id).await)
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.seen(self.inner.list_tokens().await)
    }

    async fn revoke_token(
        &self,
        ctx: &AuditContext,
        id: TokenId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.seen(self.inner.revoke_token(ctx, id, now).await)
    }

    async fn touch_token(&self, id: TokenId, now: Millis) -> Result<(), StoreError> {
        self.seen(self.inner.touch_token(id, now).await)
    }

    async fn has_live_tokens(&self) -> Result<bool, StoreError> {
        self.seen(self.inner.has_live_tokens().await)
    }

    async fn reserve_answer(
        &self,
        token: TokenId,
        key: &str,
        fingerprint: &str,
        now: Millis,
        stale_before: Millis,
    ) -> Result<Reservation, StoreError> {
        self.seen(
            self.inner
                .reserve_answer(token, key, fingerprint, now, stale_before)
                .await,
        )
    }

    async fn record_answer(
        &self,
        token: TokenId,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        self.seen(self.inner.record_answer(token, key, answer).await)
    }

    async fn forget_answer(&self, token: TokenId, key: &str) -> Result<(), StoreError> {
        self.seen(self.inner.forget_answer(token, key).await)
    }

    async fn purge_answers(&self, before: Millis) -> Result<u64, StoreError> {
        self.seen(self.inner.purge_answers(before).await)
    }
}

#[async_trait]
impl AuditLog for MeteredStore {
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.seen(self.inner.list_audit(query).await)
    }

    async fn record_refusal(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        reason: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        self.seen(
            self.inner
                .record_refusal(ctx, action, target, reason, now)
                .await,
        )
    }

    async fn record_failure(
        &self,
        ctx: &AuditContext,
        action: AuditAction,
        target: &AuditTarget,
        error: &str,
        now: Millis,
    ) -> Result<AuditId, StoreError> {
        self.seen(
            self.inner
                .record_failure(ctx, action, target, error, now)
                .await,
        )
    }
}

#[async_trait]
impl BulkActions for MeteredStore {
    async fn bulk(
        &self,
        ctx: &AuditContext,
        action: BulkAction,
        target: &BulkTarget,
        now: Millis,
    ) -> Result<BulkOutcome, StoreError> {
        self.seen(self.inner.bulk(ctx, action, target, now).await)
    }
}

#[async_trait]
impl PeriodicTicks for MeteredStore {
    async fn register_schedules(
        &self,
        schedules: &[String],
        now: Millis,
    ) -> Result<Vec<TickMark>, StoreError> {
        self.seen(self.inner.register_schedules(schedules, now).await)
    }

    async fn tick_marks(&self) -> Result<Vec<TickMark>, StoreError> {
        self.seen(self.inner.tick_marks().await)
    }

    async fn enqueue_tick(
        &self,
        schedule: &str,
        tick: Millis,
        job: NewJob,
        now: Millis,
    ) -> Result<TickOutcome, StoreError> {
        self.seen(self.inner.enqueue_tick(schedule, tick, job, now).await)
    }
}

#[async_trait]
impl PeriodicSchedules for MeteredStore {
    async fn sync_config_schedules(
        &self,
        schedules: &[PeriodicJob],
        now: Millis,
    ) -> Result<ConfigSync, StoreError> {
        self.seen(self.inner.sync_config_schedules(schedules, now).await)
    }

    async fn create_schedule(
        &self,
        ctx: &AuditContext,
        job: &PeriodicJob,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<StoredSchedule>, StoreError> {
        self.seen(self.inner.create_schedule(ctx, job, paused, now).await)
    }

    async fn set_schedule_paused(
        &self,
        ctx: &AuditContext,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<bool>, StoreError> {
        self.seen(self.inner.set_schedule_paused(ctx, name, paused, now).await)
    }

    async fn delete_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        config_too: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<()>, StoreError> {
        self.seen(self.inner.delete_schedule(ctx, name, config_too, now).await)
    }

    async fn trigger_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        now: Millis,
    ) -> Result<ScheduleOutcome<EnqueueOutcome>, StoreError> {
        self.seen(self.inner.trigger_schedule(ctx, name, now).await)
    }

    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        self.seen(self.inner.schedules().await)
    }
}

#[async_trait]
impl JobHistory for MeteredStore {
    async fn attempts(&self, job: JobId, limit: u32) -> Result<Vec<Attempt>, StoreError> {
        self.seen(self.inner.attempts(job, limit).await)
    }

    async fn job_events(&self, job: JobId, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.seen(self.inner.job_events(job, limit).await)
    }
}

#[async_trait]
impl Activity for MeteredStore {
    async fn oldest_available(&self, queue: &str) -> Result<Option<Millis>, StoreError> {
        self.seen(self.inner.oldest_available(queue).await)
    }

    async fn finished_slices(
        &self,
        from: Millis,
        to: Millis,
        slice_ms: i64,
    ) -> Result<Vec<FinishedSlice>, StoreError> {
        self.seen(self.inner.finished_slices(from, to, slice_ms).await)
    }

    async fn member_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.seen(self.inner.member_events(limit).await)
    }
}

#[async_trait]
impl crate::store::NodePresence for MeteredStore {
    async fn announce(&self, p: &crate::store::presence::Presence) -> Result<(), StoreError> {
        self.seen(self.inner.announce(p).await)
    }

    async fn withdraw(&self, node: &NodeId, started_at: Millis) -> Result<bool, StoreError> {
        self.seen(self.inner.withdraw(node, started_at).await)
    }

    async fn presences(&self) -> Result<Vec<crate::store::presence::Presence>, StoreError> {
        self.seen(self.inner.presences().await)
    }

    async fn running_jobs(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::store::presence::RunningJob>, StoreError> {
        self.seen(self.inner.running_jobs(limit).await)
    }
}

#[async_trait]
impl Insights for MeteredStore {
    async fn finish_timings(
        &self,
        slices: &[(Millis, Millis)],
        per_slice: u32,
    ) -> Result<Vec<FinishTiming>, StoreError> {
        self.seen(self.inner.finish_timings(slices, per_slice).await)
    }

    async fn links_of(&self, jobs: &[JobId], limit: u32) -> Result<Vec<Link>, StoreError> {
        self.seen(self.inner.links_of(jobs, limit).await)
    }

    async fn job_briefs(&self, jobs: &[JobId]) -> Result<Vec<JobBrief>, StoreError> {
        self.seen(self.inner.job_briefs(jobs).await)
    }

    async fn dead_letter_groups(&self, limit: u32) -> Result<DeadLetterGroups, StoreError> {
        self.seen(self.inner.dead_letter_groups(limit).await)
    }

    async fn count_jobs(
        &self,
        filter: &JobFilter,
        states: &[&str],
        cap: u64,
    ) -> Result<u64, StoreError> {
        self.seen(self.inner.count_jobs(filter, states, cap).await)
    }

    async fn throughput(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<ThroughputRow>, StoreError> {
        self.seen(self.inner.throughput(from, to, interval_ms).await)
    }

    async fn incidents(
        &self,
        from: Millis,
        to: Millis,
        interval_ms: i64,
    ) -> Result<Vec<crate::store::incidents::IncidentRow>, StoreError> {
        self.seen(self.inner.incidents(from, to, interval_ms).await)
    }
}

impl Store for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn wakeup_source(&self) -> Option<&dyn WakeupSource> {
        self.inner.wakeup_source()
    }

    fn heartbeats(&self) -> Option<&dyn Heartbeats> {
        self.inner.heartbeats()
    }
}
