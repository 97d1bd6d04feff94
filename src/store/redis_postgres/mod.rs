//! redis_postgres, the production store: Postgres is the system of record, Redis the
//! dispatch index and the live event stream.
//!
//! Every state change and lifecycle event is written to Postgres by the
//! [`PostgresStore`] itself (the same tables, the same lease-token guards), so no
//! completion is ever recorded twice and Postgres alone can answer any question about a
//! job. This store runs no SQL of its own: it composes the Postgres store's operations,
//! its trait methods and the narrow `pub(crate)` ones written for an index kept outside
//! Postgres (claim given ids, promote returning the promoted rows, read ready rows by
//! id, by parent or page by page, read states; see `store/postgres/ready.rs`), with the
//! Redis calls of [`RedisDispatch`]. Redis holds, per queue, a ready ZSET of the ids
//! Postgres holds as `available`, and a bounded stream of the lifecycle events.
//!
//! Files: this one the store, its settings and the trait impls; `claim.rs` claims
//! through Redis with the Postgres fallback (and claims of limited queues through
//! Postgres alone); `limits.rs` the cluster-wide limits, held by Postgres; `queues.rs`
//! pauses and resumes queues
//! (Postgres owns the pause, Redis mirrors it for the take script); `periodic.rs`
//! enqueues periodic ticks through Postgres and pushes their jobs; `bulk.rs` runs the Postgres
//! store's bulk batches and keeps Redis in step after each; `outbox.rs` pushes
//! ready jobs after commits (a failed push marks the index dirty); `reconciler.rs`
//! checks that the Redis prefix belongs to this store, rebuilds Redis and runs the
//! background task; `relay.rs` copies events and job states into Redis; `audit.rs` the
//! audit log (Postgres alone, like `tokens.rs`).
//!
//! Design choices, and why:
//!
//! - **Leases live only in Postgres.** A claim takes ids from Redis
//!   ([`RedisDispatch::take`], one Lua call, best first across the queues) and confirms
//!   them in Postgres in one statement for the batch (`PostgresStore::claim_by_ids`:
//!   `UPDATE .. WHERE id = <taken id> AND state = 'available' RETURNING ..`), which bumps
//!   the fencing token there; ids Postgres refuses (cancelled, already running, stale) are
//!   dropped. Redis keeps no lease and no token of its own: a second lease table with a
//!   second token sequence would have to be kept in step with Postgres across flushes,
//!   and the check that matters (is this still the current lease?) is made anyway in
//!   the Postgres statement that records the outcome. So completion, extension, rescue
//!   and revocation are pure Postgres operations, and a Redis flush cannot lose a lease.
//! - **No outbox table**: the `jobs` table is the outbox (see `outbox.rs`). Each write that
//!   makes jobs available pushes them after its commit; a failed push marks the index
//!   dirty; the `reconciler.rs` re-pushes every available job on a generation change, when
//!   dirty, and periodically. A lost push delays a job, it never loses it, and a stale
//!   entry costs one refused id in a claim. (A trigger-fed outbox table would add a
//!   write and a delete per job to the hot path for the same guarantee.)
//! - **Redis down: claims fall back to Postgres** (`FOR UPDATE SKIP LOCKED`, the Postgres
//!   store's claim) for `redis_retry` after each Redis failure, and whenever Redis has
//!   lost its generation marker and holds nothing for the queues; so a Redis outage or
//!   flush slows dispatch to Postgres speed instead of stopping the node. Writes never
//!   fail because of Redis once Postgres committed them.
//! - **Postgres down: operations fail with transient errors** ([`StoreError::is_transient`])
//!   and the node retries them (its completer and event sink back off and retry; its
//!   dispatcher claims again on the next wake). Ids taken from Redis for a claim that
//!   Postgres could not confirm are put back by the reconciler, and for `redis_retry`
//!   after such a failure claims leave Redis alone (they go to Postgres, which fails
//!   fast or, once it is back, answers), so an outage does not empty Redis.
//! - **Events**: Postgres records each event in the transaction of its change; the
//!   `relay.rs` copies them into the Redis stream in batches from a background task, so
//!   publishing never sits on the hot path.
//!
//! The background task (the "pump", every `pump_interval`) runs the reconciler check and
//! the event relay (unless [`RedisPostgresConfig::relay`] is off); it stops when the store
//! is dropped.
//!
//! [`PostgresStore`]: crate::store::postgres::PostgresStore
//! [`RedisDispatch`]: crate::store::redis::RedisDispatch
//! [`RedisDispatch::take`]: crate::store::redis::RedisDispatch::take
//! [`RedisPostgresConfig::relay`]: crate::store::redis_postgres::RedisPostgresConfig::relay

mod audit;
mod bulk;
mod claim;
mod history;
mod limits;
mod models;
mod outbox;
mod periodic;
mod periodic_schedules;
mod presence;
mod queues;
mod reconciler;
mod relay;
mod tokens;

pub use reconciler::ReconcileReport;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::audit::AuditContext;
use super::postgres::PostgresStore;
use super::redis::{Generation, ReadyJob, RedisDispatch, RedisDispatchConfig};
use super::rules::Start;
use super::{
    CancelOutcome, Counts, DeadLetter, EnqueueOutcome, EventLog, Heartbeats, JobAdmin, JobFilter,
    JobQueue, Leadership, Redrive, RescuedJob, Store, StoreError, WakeupSource, Wakeups, retention,
};
use crate::clock::Millis;
use crate::event::{LifecycleEvent, StoredEvent};
use crate::job::{
    ClaimRequest, ClaimedJob, Completion, CompletionResult, Job, JobId, JobState, Lease, NewJob,
    NodeId, Outcome, ProgressReport, WorkerId,
};

/// Settings of a [`RedisPostgresStore`].
#[derive(Debug, Clone)]
pub struct RedisPostgresConfig {
    /// The Redis dispatch settings (key prefix, timeouts, stream length).
    pub redis: RedisDispatchConfig,
    /// How often the background task checks the generation marker and relays events.
    pub pump_interval: Duration,
    /// A full reconcile runs at least this often even when nothing looks wrong (it
    /// catches pushes lost with a crashed node).
    pub reconcile_interval: Duration,
    /// Available jobs read per reconcile query.
    pub reconcile_page: u32,
    /// After a Redis failure (or a Postgres failure to confirm a claim), claims go
    /// straight to Postgres for this long.
    pub redis_retry: Duration,
    /// Whether the background task copies lifecycle events into the Redis stream (and
    /// with them sets the job-state hashes; see `relay.rs`).
    pub relay: bool,
    /// Events per relay batch (one Postgres read, one Redis `MULTI`). A `MULTI` holds
    /// Redis while it runs, so batches stay small enough not to stall claims.
    pub relay_batch: u32,
    /// Most relay batches per pump round.
    pub relay_rounds: u32,
    /// Whether claims of the Postgres record commit asynchronously (see
    /// [`PostgresStore::with_async_claims`]).
    pub async_claims: bool,
}

impl RedisPostgresConfig {
    /// Defaults with Redis keys under `prefix`. Redis commands time out after 1 s (not
    /// the dispatch library's 5 s) so that a stalled Redis hands claims to Postgres quickly.
    pub fn new(prefix: impl Into<String>) -> Self {
        let mut redis = RedisDispatchConfig::new(prefix);
        redis.response_timeout = Duration::from_secs(1);
        redis.reconnect_retries = 1;
        Self {
            redis,
            pump_interval: Duration::from_millis(200),
            reconcile_interval: Duration::from_secs(30),
            reconcile_page: 5000,
            redis_retry: Duration::from_secs(1),
            relay: true,
            relay_batch: 1000,
            relay_rounds: 50,
            async_claims: crate::store::postgres::DEFAULT_ASYNC_CLAIMS,
        }
    }
}

/// Postgres as the record, Redis for dispatch and the live event stream (see the module
/// doc).
pub struct RedisPostgresStore {
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
}

impl std::fmt::Debug for RedisPostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPostgresStore")
            .field("schema", &self.shared.pg.schema())
            .field("redis", &self.shared.redis)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisPostgresStore {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// What the store and its background task share.
struct Shared {
    pg: PostgresStore,
    redis: RedisDispatch,
    config: RedisPostgresConfig,
    /// Names this instance as the holder of the relay lock.
    instance: String,
    /// Until when claims skip Redis (after a Redis failure).
    redis_down_until: Mutex<Option<Instant>>,
    /// Until when claims skip Redis because Postgres failed to confirm a claim: taking
    /// ids that cannot be confirmed would only empty Redis for the reconciler to refill.
    pg_down_until: Mutex<Option<Instant>>,
    /// Counts reasons to reconcile (failed pushes, lost data); `clean` is the count the
    /// last reconcile covered. Counters rather than a flag, so that a failure during a
    /// reconcile is not cleared by it.
    dirty: AtomicU64,
    clean: AtomicU64,
    /// The generation marker the last reconcile saw or set.
    generation: Mutex<Option<Generation>>,
    last_reconcile: Mutex<Instant>,
    reconcile_lock: tokio::sync::Mutex<()>,
    /// Jobs claimed here that have children: their success releases children to push.
    parents: Mutex<HashSet<JobId>>,
    /// Claims that went to Postgres alone.
    fallback_claims: AtomicU64,
    /// Wakes the background task early.
    kick: Notify,
}

impl Shared {
    fn redis_is_down(&self) -> bool {
        self.redis_down_until
            .lock()
            .expect("redis state lock")
            .is_some_and(|t| Instant::now() < t)
    }

    /// Notes a Redis failure: transient ones send claims to Postgres for a while.
    fn redis_failed(&self, e: &StoreError) {
        if e.is_transient() {
            *self.redis_down_until.lock().expect("redis state lock") =
                Some(Instant::now() + self.config.redis_retry);
        }
    }

    fn redis_ok(&self) {
        *self.redis_down_until.lock().expect("redis state lock") = None;
    }

    fn pg_is_down(&self) -> bool {
        self.pg_down_until
            .lock()
            .expect("postgres state lock")
            .is_some_and(|t| Instant::now() < t)
    }

    /// Notes a Postgres failure to confirm a claim (transient ones only).
    fn pg_failed(&self, e: &StoreError) {
        if e.is_transient() {
            *self.pg_down_until.lock().expect("postgres state lock") =
                Some(Instant::now() + self.config.redis_retry);
        }
    }
}

impl RedisPostgresStore {
    /// Connects to Postgres (`schema` as in [`PostgresStore::connect`]; migrations are
    /// applied) and Redis, reconciles Redis with Postgres once, and starts the
    /// background task. Both servers must be reachable at start.
    pub async fn connect(
        postgres_url: &str,
        schema: Option<&str>,
        redis_url: &str,
        config: RedisPostgresConfig,
    ) -> Result<Self, StoreError> {
        let pg = PostgresStore::connect(postgres_url, schema)
            .await?
            .with_async_claims(config.async_claims);
        let redis = RedisDispatch::connect_with(redis_url, config.redis.clone()).await?;
        Self::from_parts(pg, redis, config).await
    }

    /// A store over connections already made (`redis` must use `config.redis`'s prefix).
    pub async fn from_parts(
        pg: PostgresStore,
        redis: RedisDispatch,
        config: RedisPostgresConfig,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            pg,
            redis,
            config,
            instance: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            redis_down_until: Mutex::new(None),
            pg_down_until: Mutex::new(None),
            dirty: AtomicU64::new(0),
            clean: AtomicU64::new(0),
            generation: Mutex::new(None),
            last_reconcile: Mutex::new(Instant::now()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            parents: Mutex::new(HashSet::new()),
            fallback_claims: AtomicU64::new(0),
            kick: Notify::new(),
        });
        shared.reconcile().await?;
        let pump = tokio::spawn(reconciler::pump(Arc::downgrade(&shared)));
        Ok(Self { shared, pump })
    }

    /// The Postgres system of record.
    pub fn postgres(&self) -> &PostgresStore {
        &self.shared.pg
    }

    /// The Redis dispatch index.
    pub fn redis(&self) -> &RedisDispatch {
        &self.shared.redis
    }

    /// Puts every job Postgres holds as available into Redis now (the background task
    /// does this by itself when needed; see `reconciler.rs`).
    pub async fn reconcile(&self) -> Result<ReconcileReport, StoreError> {
        self.shared.reconcile().await
    }

    /// Copies new lifecycle events into the Redis stream now, if this instance holds the
    /// relay lock (the background task does this every `pump_interval`); how many.
    pub async fn relay_events(&self) -> Result<usize, StoreError> {
        self.shared.relay_events().await
    }

    /// How many claims went to Postgres alone (Redis down, or flushed and not yet rebuilt).
    pub fn fallback_claims(&self) -> u64 {
        self.shared.fallback_claims.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl JobQueue for RedisPostgresStore {
    async fn enqueue(
        &self,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<Vec<EnqueueOutcome>, StoreError> {
        let s = &self.shared;
        // What the batch will look like once stored, to push without reading it back.
        let plain: Vec<Option<ReadyJob>> = jobs
            .iter()
            .map(|j| {
                // Without parents a job's start depends on its `run_at` alone.
                let free = j.depends_on.is_empty() && j.depends_on_index.is_empty();
                (free && Start::of(j, [], now).state == JobState::Available).then(|| {
                    ReadyJob::new(
                        JobId(0),
                        j.queue.clone(),
                        j.priority,
                        j.run_at.unwrap_or(now),
                    )
                })
            })
            .collect();
        let linked: Vec<bool> = jobs
            .iter()
            .map(|j| !j.depends_on.is_empty() || !j.depends_on_index.is_empty())
            .collect();
        let out = s.pg.enqueue(jobs, now).await?;
        let mut ready = Vec::new();
        let mut check = Vec::new();
        for ((o, p), l) in out.iter().zip(plain).zip(linked) {
            let EnqueueOutcome::Inserted(id) = *o else {
                continue;
            };
            match p {
                Some(mut r) => {
                    r.id = id;
                    ready.push(r);
                }
                None if l => check.push(id),
                None => {}
            }
        }
        s.push_ready(ready, now).await;
        if let Err(e) = s.push_ids(&check, now).await {
            tracing::warn!(error = %e, "reading enqueued children back failed; the reconciler will push them");
            s.mark_dirty();
        }
        Ok(out)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        self.shared.claim(req).await
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<CompletionResult>, StoreError> {
        let s = &self.shared;
        let sent: Vec<(JobId, bool)> = batch
            .iter()
            .map(|c| (c.lease.job, matches!(c.outcome, Outcome::Succeeded { .. })))
            .collect();
        let finished = batch.iter().map(|c| c.finished_at).max();
        let results = s.pg.complete(batch).await?;
        let mut released = Vec::new();
        {
            let mut parents = s.parents.lock().expect("parents lock");
            if !parents.is_empty() {
                for ((id, success), r) in sent.iter().zip(&results) {
                    if *r == CompletionResult::Applied && parents.remove(id) && *success {
                        released.push(*id);
                    }
                }
            }
        }
        if let Err(e) = s
            .push_released_children(&released, finished.unwrap_or(Millis(0)))
            .await
        {
            tracing::warn!(error = %e, "reading released children failed; the reconciler will push them");
            s.mark_dirty();
        }
        Ok(results)
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.shared.pg.extend_leases(leases, until).await
    }

    /// A Postgres operation: progress lives on the job's row, beside its lease.
    async fn record_progress(
        &self,
        reports: &[ProgressReport],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        self.shared.pg.record_progress(reports, until).await
    }

    async fn release(&self, leases: &[Lease], now: Millis) -> Result<Vec<bool>, StoreError> {
        let s = &self.shared;
        let released = s.pg.release(leases, now).await?;
        let ids: Vec<JobId> = leases
            .iter()
            .zip(&released)
            .filter(|(_, r)| **r)
            .map(|(l, _)| l.job)
            .collect();
        s.push_after_commit(&ids, now).await;
        Ok(released)
    }

    async fn promote_due(&self, now: Millis) -> Result<u64, StoreError> {
        let s = &self.shared;
        let rows = s.pg.promote_due_returning(now).await?;
        let n = rows.len() as u64;
        let ids: Vec<JobId> = rows.iter().map(|r| r.id).collect();
        s.push_ready(outbox::ready_jobs(rows), now).await;
        s.note_available(&ids).await;
        Ok(n)
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.shared.pg.next_due().await
    }

    async fn rescue_expired(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        let s = &self.shared;
        let rescued = s.pg.rescue_expired(now).await?;
        s.push_rescued(&rescued, now).await;
        Ok(rescued)
    }

    async fn revoke_node(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError> {
        let s = &self.shared;
        let rescued = s.pg.revoke_node(node, now, detail).await?;
        s.push_rescued(&rescued, now).await;
        Ok(rescued)
    }
}

#[async_trait]
impl JobAdmin for RedisPostgresStore {
    async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.shared.pg.get_job(id).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        self.shared.pg.list_jobs(filter).await
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        self.shared.pg.counts().await
    }

    async fn cancel(
        &self,
        ctx: &AuditContext,
        id: JobId,
        now: Millis,
    ) -> Result<CancelOutcome, StoreError> {
        let s = &self.shared;
        let outcome = s.pg.cancel(ctx, id, now).await?;
        if outcome == CancelOutcome::Cancelled && !s.redis_is_down() {
            // Only tidiness: a stale id is refused by the next claim's confirmation anyway.
            if let Err(e) = s.redis.remove(&[id]).await {
                tracing::debug!(error = %e, job = %id, "removing a cancelled job from Redis failed");
            }
        }
        Ok(outcome)
    }

    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.shared.pg.dead_letters(queue, limit).await
    }

    async fn redrive(
        &self,
        ctx: &AuditContext,
        which: Redrive,
        now: Millis,
    ) -> Result<Vec<JobId>, StoreError> {
        let s = &self.shared;
        let ids = s.pg.redrive(ctx, which, now).await?;
        s.push_after_commit(&ids, now).await;
        Ok(ids)
    }

    async fn purge(
        &self,
        retention: &retention::Retention,
        now: Millis,
    ) -> Result<retention::Purged, StoreError> {
        self.shared.pg.purge(retention, now).await
    }
}

#[async_trait]
impl EventLog for RedisPostgresStore {
    async fn record_events(&self, events: Vec<LifecycleEvent>) -> Result<(), StoreError> {
        // The relay copies them into the stream with the job events.
        self.shared.pg.record_events(events).await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.shared.pg.events_after(after, limit).await
    }
}

#[async_trait]
impl Leadership for RedisPostgresStore {
    async fn try_lead(
        &self,
        role: &str,
        holder: &NodeId,
        ttl: Duration,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.shared.pg.try_lead(role, holder, ttl, now).await
    }

    async fn post(&self, key: &str, body: &[u8], at: Millis) -> Result<(), StoreError> {
        self.shared.pg.post(key, body, at).await
    }

    async fn posted(&self, key: &str) -> Result<Option<(Millis, Vec<u8>)>, StoreError> {
        self.shared.pg.posted(key).await
    }
}

#[async_trait]
impl WakeupSource for RedisPostgresStore {
    /// From the Redis wake lists: a job reaches Redis after the Postgres commit, so a
    /// Postgres NOTIFY could wake a claimer before there is anything to take.
    async fn wakeups(&self, queues: &[String]) -> Result<Wakeups, StoreError> {
        self.shared.redis.wakeups(queues)
    }
}

#[async_trait]
impl Heartbeats for RedisPostgresStore {
    /// Into the Redis heartbeat registries, one pipeline per round. Skipped while Redis
    /// is marked down (claims go to Postgres then); a failure marks it down like a failed
    /// claim and is returned for the caller to log: nothing else depends on it.
    async fn heartbeat(
        &self,
        node: &NodeId,
        workers: &[WorkerId],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let s = &self.shared;
        if s.redis_is_down() {
            return Ok(());
        }
        let result = s.redis.heartbeat_members(node, workers, ttl).await;
        if let Err(e) = &result {
            s.redis_failed(e);
        }
        result
    }

    /// From the Redis registries. A Redis failure is an error (and marks Redis down, like
    /// a failed claim), never an empty registry: "no heartbeats read" must not look like
    /// "no live nodes".
    async fn live_members(&self) -> Result<super::LiveMembers, StoreError> {
        let s = &self.shared;
        let result = s.redis.live_members().await;
        if let Err(e) = &result {
            s.redis_failed(e);
        }
        result
    }
}

impl Store for RedisPostgresStore {
    fn backend(&self) -> &'static str {
        "redis_postgres"
    }

    fn wakeup_source(&self) -> Option<&dyn WakeupSource> {
        Some(self)
    }

    fn heartbeats(&self) -> Option<&dyn Heartbeats> {
        Some(self)
    }
}
