//! Periodic schedules kept in the store: what the `periodic` leader enqueues ticks for,
//! whichever node, API or CLI created, paused or deleted them.
//!
//! A schedule is one row (`periodic_schedules`) with its origin:
//!
//! - `config`: declared by `[[periodic]]` (or [`Node::set_periodic`] in the library).
//!   A node starting with a config replaces the config-declared set with its own
//!   ([`PeriodicSchedules::sync_config_schedules`]): its entries are written over
//!   whatever held their names (config wins, also over a schedule the API created
//!   under that name, which it then owns), and config rows it no longer declares are
//!   removed (a node whose config declares none does not sync, so worker-only nodes
//!   leave the set alone). The pause is an operator's and is kept across syncs. The
//!   API may pause, resume and trigger such a schedule, but not delete it (it would
//!   come back at the next start): remove it from the config, then restart a node
//!   with that config or run `jobmesh periodic delete NAME` with it.
//! - `api`: created through the API, the CLI or the library; deleted the same way.
//!
//! Exactly once and pause are the store's: [`super::PeriodicTicks::enqueue_tick`]
//! reads the schedule's row in the transaction of the tick's insert (locking it
//! against a concurrent pause or delete on Postgres; SQLite has one writer), so a
//! paused or deleted schedule gets no job for a tick whose enqueue starts after the
//! pause or delete committed, whatever the leader read before. A resume passes over
//! the ticks of the pause (the mark moves to the resume), so it never floods a queue
//! with what was missed. A delete removes the tick mark too: a schedule created again
//! under the name starts afresh. A trigger enqueues one job now, outside the ticks,
//! with a unique key (`periodic-trigger:<name>:<ms>`) that no tick's key
//! (`periodic:<name>:<ms>`) can equal.
//!
//! [`Node::set_periodic`]: ../../jobmesh_actors/struct.Node.html#method.set_periodic

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::audit::{AuditAction, AuditContext, AuditOutcome, AuditTarget};
use super::{EnqueueOutcome, StoreError};
use crate::clock::Millis;
use crate::job::NewJob;
use crate::periodic::{MAX_SCHEDULES, MissedTicks, PeriodicJob, Schedule, parse_timezone};

/// Where a schedule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleOrigin {
    /// `[[periodic]]` of a node's config (or `Node::set_periodic`).
    Config,
    /// Created through the API, the CLI or the library.
    Api,
}

impl ScheduleOrigin {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleOrigin::Config => "config",
            ScheduleOrigin::Api => "api",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(ScheduleOrigin::Config),
            "api" => Some(ScheduleOrigin::Api),
            _ => None,
        }
    }
}

impl fmt::Display for ScheduleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A schedule as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchedule {
    /// The schedule and its job.
    pub job: PeriodicJob,
    /// Where it came from.
    pub origin: ScheduleOrigin,
    /// When it was paused, while it is.
    pub paused_at: Option<Millis>,
    /// When the row was first written.
    pub created_at: Millis,
    /// When the definition or the pause last changed.
    pub updated_at: Millis,
}

/// What a sync of the config-declared schedules changed, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSync {
    /// Schedules that had no row.
    pub created: Vec<String>,
    /// Config schedules whose definition was written again (changed or not).
    pub kept: Vec<String>,
    /// Schedules the API had created under a name the config declares: the config's
    /// definition replaced theirs.
    pub taken_over: Vec<String>,
    /// Config schedules no longer declared, removed with their tick marks.
    pub removed: Vec<String>,
}

/// How a schedule operation ended when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleOutcome<T> {
    /// Done.
    Done(T),
    /// No schedule has the name; nothing changed.
    NotFound,
    /// Refused (the name is taken; the schedule is the config's), with the reason;
    /// nothing changed.
    Refused(String),
}

/// Schedules in the store. Every backend has them, so [`super::Store`] requires it.
/// Mutations take the caller's [`AuditContext`] and write its audit row in their
/// transaction, refusals included.
#[async_trait]
pub trait PeriodicSchedules: Send + Sync + 'static {
    /// Replaces the config-declared schedules with `schedules` (see the module doc) in
    /// one transaction, registering the tick mark of each new one at `now`. Callers
    /// check each first ([`PeriodicJob::check`], the kind's payload rules); the store
    /// checks what it must to hold them.
    async fn sync_config_schedules(
        &self,
        schedules: &[PeriodicJob],
        now: Millis,
    ) -> Result<ConfigSync, StoreError>;

    /// Creates a schedule of origin `api` with its tick mark at `now` (no tick from
    /// before the creation runs), paused if `paused`. Refused if the name is taken or
    /// the store holds [`MAX_SCHEDULES`] schedules already.
    async fn create_schedule(
        &self,
        ctx: &AuditContext,
        job: &PeriodicJob,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<StoredSchedule>, StoreError>;

    /// Pauses (`paused = true`) or resumes a schedule; `Done(changed)`. A resume moves
    /// the tick mark to `now`, passing over the ticks of the pause.
    async fn set_schedule_paused(
        &self,
        ctx: &AuditContext,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<bool>, StoreError>;

    /// Deletes a schedule with its tick mark; its jobs stay. A schedule of origin
    /// `config` is refused unless `config_too` (the CLI passes it when its own config
    /// no longer declares the name: the way to retire a config's last schedule, since
    /// a node whose config declares none leaves the config set alone).
    async fn delete_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        config_too: bool,
        now: Millis,
    ) -> Result<ScheduleOutcome<()>, StoreError>;

    /// Enqueues one job of the schedule now ([`trigger_job`]), paused or not, leaving
    /// its ticks as they are.
    async fn trigger_schedule(
        &self,
        ctx: &AuditContext,
        name: &str,
        now: Millis,
    ) -> Result<ScheduleOutcome<EnqueueOutcome>, StoreError>;

    /// Every schedule, by name. A row this version cannot read is left out with a
    /// warning (it fails only itself).
    async fn schedules(&self) -> Result<Vec<StoredSchedule>, StoreError>;
}

/// The job a trigger of `job` at `now` enqueues: the template, due now, with the unique
/// key `periodic-trigger:<name>:<now ms>` (a tick's key starts `periodic:`, so none
/// can equal it; a second trigger in the same millisecond is a duplicate).
pub fn trigger_job(job: &PeriodicJob, now: Millis) -> NewJob {
    let mut j = job.job.clone();
    j.unique_key = Some(format!("periodic-trigger:{}:{}", job.name, now.0));
    j.run_at = None;
    j
}

/// Refuses what no store should hold: a bad name or schedule, a job no store could
/// read back, more schedules than a node may hold.
pub(crate) fn check_storable(jobs: &[PeriodicJob], now: Millis) -> Result<(), StoreError> {
    if jobs.len() > MAX_SCHEDULES {
        return Err(StoreError::Invalid(format!(
            "{} schedules; at most {MAX_SCHEDULES} are allowed",
            jobs.len()
        )));
    }
    let mut names = std::collections::HashSet::new();
    for j in jobs {
        j.check(now)
            .map_err(|e| StoreError::Invalid(format!("schedule `{}`: {e}", j.name)))?;
        j.job
            .check_storable()
            .map_err(|m| StoreError::Invalid(format!("schedule `{}`: {m}", j.name)))?;
        if !names.insert(j.name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "two schedules are named `{}`",
                j.name
            )));
        }
    }
    Ok(())
}

/// The audit row's parts for `action` on schedule `name`, ending with `outcome`.
pub(crate) fn schedule_audit<T>(
    action: AuditAction,
    name: &str,
    outcome: &ScheduleOutcome<T>,
    done: impl FnOnce(&T) -> serde_json::Value,
) -> (AuditAction, AuditTarget, AuditOutcome) {
    let outcome = match outcome {
        ScheduleOutcome::Done(t) => AuditOutcome::Ok(done(t)),
        ScheduleOutcome::NotFound => AuditOutcome::Refused(format!("schedule `{name}` not found")),
        ScheduleOutcome::Refused(why) => AuditOutcome::Refused(why.clone()),
    };
    (action, AuditTarget::Schedule(name.to_owned()), outcome)
}

/// What a create of `name` finds when the name is taken.
pub(crate) fn name_taken(name: &str, origin: ScheduleOrigin) -> String {
    format!("a schedule named `{name}` exists already (origin {origin})")
}

/// Why a create is refused when the store holds [`MAX_SCHEDULES`] schedules already.
pub(crate) fn too_many() -> String {
    format!("the store holds {MAX_SCHEDULES} schedules, the most allowed; delete one first")
}

/// Why a config schedule cannot be deleted.
pub(crate) fn declared_in_config(name: &str) -> String {
    format!(
        "schedule `{name}` is declared in the config ([[periodic]]); remove it there (pause it meanwhile)"
    )
}

/// The audit detail of a trigger.
pub(crate) fn trigger_detail(o: &EnqueueOutcome) -> serde_json::Value {
    match o {
        EnqueueOutcome::Inserted(id) => json!({ "job": id.0, "duplicate": false }),
        EnqueueOutcome::Duplicate(id) => json!({ "job": id.0, "duplicate": true }),
    }
}

/// A schedule's columns as every backend binds them: decided here so the stores
/// cannot differ.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScheduleColumns {
    pub name: String,
    pub schedule: String,
    pub timezone: String,
    pub policy: String,
    pub backfill_ms: Option<i64>,
    pub kind: String,
    pub payload: serde_json::Value,
    pub queue: String,
    pub priority: i64,
    pub max_attempts: i64,
    pub timeout_ms: Option<i64>,
    pub origin: String,
    pub paused_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ScheduleColumns {
    /// The columns of `job` with `origin`, written at `now` (`paused_at`, `created_at`
    /// are the store's to keep on an update).
    pub(crate) fn new(
        job: &PeriodicJob,
        origin: ScheduleOrigin,
        paused: bool,
        now: Millis,
    ) -> Self {
        let (policy, backfill_ms) = match job.policy {
            MissedTicks::Skip => ("skip", None),
            MissedTicks::CatchUp { backfill } => ("catch_up", Some(backfill.as_millis() as i64)),
        };
        let j = &job.job;
        Self {
            name: job.name.clone(),
            schedule: job.schedule.as_str().to_owned(),
            timezone: job.timezone.name().to_owned(),
            policy: policy.to_owned(),
            backfill_ms,
            kind: j.kind.clone(),
            payload: j.payload.clone(),
            queue: j.queue.clone(),
            priority: i64::from(j.priority),
            max_attempts: i64::from(j.max_attempts),
            timeout_ms: j.timeout.map(|t| t.as_millis() as i64),
            origin: origin.as_str().to_owned(),
            paused_at: paused.then_some(now.0),
            created_at: now.0,
            updated_at: now.0,
        }
    }

    /// The schedule, or why the row cannot be one.
    pub(crate) fn decode(self) -> Result<StoredSchedule, StoreError> {
        let name = self.name;
        let corrupt = |col: &str, e: String| {
            StoreError::Corrupt(format!("periodic_schedules.{col} of `{name}`: {e}"))
        };
        let schedule =
            Schedule::parse(&self.schedule).map_err(|e| corrupt("schedule", e.to_string()))?;
        let timezone =
            parse_timezone(&self.timezone).map_err(|e| corrupt("timezone", e.to_string()))?;
        let policy = match (self.policy.as_str(), self.backfill_ms) {
            ("skip", _) => MissedTicks::Skip,
            ("catch_up", Some(ms)) if ms > 0 => MissedTicks::CatchUp {
                backfill: Duration::from_millis(ms as u64),
            },
            (p, b) => return Err(corrupt("policy", format!("`{p}` with backfill {b:?}"))),
        };
        let origin = ScheduleOrigin::parse(&self.origin)
            .ok_or_else(|| corrupt("origin", format!("`{}`", self.origin)))?;
        let mut job = NewJob::new(self.kind, self.payload);
        job.queue = self.queue;
        job.priority = i16::try_from(self.priority)
            .map_err(|_| corrupt("priority", self.priority.to_string()))?;
        job.max_attempts = u32::try_from(self.max_attempts)
            .map_err(|_| corrupt("max_attempts", self.max_attempts.to_string()))?;
        job.timeout = match self.timeout_ms {
            Some(ms) => Some(Duration::from_millis(
                u64::try_from(ms).map_err(|_| corrupt("timeout_ms", ms.to_string()))?,
            )),
            None => None,
        };
        Ok(StoredSchedule {
            job: PeriodicJob {
                name,
                schedule,
                timezone,
                policy,
                job,
            },
            origin,
            paused_at: self.paused_at.map(Millis),
            created_at: Millis(self.created_at),
            updated_at: Millis(self.updated_at),
        })
    }
}

/// The columns of `periodic_schedules`, as every backend selects them for
/// [`ScheduleColumns::from_row`].
pub(crate) const SCHEDULE_COLUMNS: &str = "name, schedule, timezone, policy, backfill_ms, kind, \
     payload, queue, priority, max_attempts, timeout_ms, origin, paused_at, created_at, updated_at";

/// Inserts a schedule's row (`$1`..`$15`, bound by [`ScheduleColumns::bind_upsert`]),
/// or writes its definition and origin over the row of its name, keeping the pause and
/// the creation time. `$n` placeholders, which SQLite (through sqlx) reads as Postgres
/// does.
const UPSERT: &str = "INSERT INTO periodic_schedules (name, schedule, timezone, policy,
         backfill_ms, kind, payload, queue, priority, max_attempts, timeout_ms, origin,
         paused_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
     ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule,
         timezone = excluded.timezone, policy = excluded.policy,
         backfill_ms = excluded.backfill_ms, kind = excluded.kind,
         payload = excluded.payload, queue = excluded.queue, priority = excluded.priority,
         max_attempts = excluded.max_attempts, timeout_ms = excluded.timeout_ms,
         origin = excluded.origin, updated_at = excluded.updated_at";

/// Registers the tick mark of schedule `$1` at `$2`, unless it has one: the upsert's
/// second statement.
pub(crate) const MARK_TICKS: &str =
    "INSERT INTO periodic_ticks (schedule, last_tick, updated_at) VALUES ($1, $2, $2)
     ON CONFLICT (schedule) DO NOTHING";

/// Removes the row of schedule `$1`; with [`REMOVE_MARK`], a schedule gone.
pub(crate) const REMOVE_ROW: &str = "DELETE FROM periodic_schedules WHERE name = $1";

/// Removes the tick mark of schedule `$1`.
pub(crate) const REMOVE_MARK: &str = "DELETE FROM periodic_ticks WHERE schedule = $1";

impl ScheduleColumns {
    /// The columns of a row selected with [`SCHEDULE_COLUMNS`], its `payload` as the
    /// backend stores it (jsonb, or JSON text) decoded by the caller.
    pub(crate) fn from_row<'r, R>(
        row: &'r R,
        payload: serde_json::Value,
    ) -> Result<Self, StoreError>
    where
        R: sqlx::Row,
        &'static str: sqlx::ColumnIndex<R>,
        String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(ScheduleColumns {
            name: row.try_get("name")?,
            schedule: row.try_get("schedule")?,
            timezone: row.try_get("timezone")?,
            policy: row.try_get("policy")?,
            backfill_ms: row.try_get("backfill_ms")?,
            kind: row.try_get("kind")?,
            payload,
            queue: row.try_get("queue")?,
            priority: row.try_get("priority")?,
            max_attempts: row.try_get("max_attempts")?,
            timeout_ms: row.try_get("timeout_ms")?,
            origin: row.try_get("origin")?,
            paused_at: row.try_get("paused_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// The upsert of these columns (see [`UPSERT`]), `payload` as the backend stores
    /// it; the caller runs it, then [`MARK_TICKS`], in its transaction.
    pub(crate) fn bind_upsert<DB, P>(
        &self,
        payload: P,
    ) -> sqlx::query::Query<'static, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        P: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
        Option<i64>: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    {
        sqlx::query::<DB>(UPSERT)
            .bind(self.name.clone())
            .bind(self.schedule.clone())
            .bind(self.timezone.clone())
            .bind(self.policy.clone())
            .bind(self.backfill_ms)
            .bind(self.kind.clone())
            .bind(payload)
            .bind(self.queue.clone())
            .bind(self.priority)
            .bind(self.max_attempts)
            .bind(self.timeout_ms)
            .bind(self.origin.clone())
            .bind(self.paused_at)
            .bind(self.created_at)
            .bind(self.updated_at)
    }
}

/// Decodes rows, leaving out (with a warning) those this version cannot read.
pub(crate) fn decode_all(rows: Vec<ScheduleColumns>) -> Vec<StoredSchedule> {
    rows.into_iter()
        .filter_map(|r| match r.decode() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "a periodic schedule cannot be read; left out");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> PeriodicJob {
        let mut p = PeriodicJob::new(
            "nightly",
            Schedule::parse("0 3 * * *").unwrap(),
            NewJob::new("noop", json!({"a": 1})),
        );
        p.timezone = parse_timezone("Europe/Berlin").unwrap();
        p.policy = MissedTicks::CatchUp {
            backfill: Duration::from_secs(90),
        };
        p.job.queue = "maint".into();
        p.job.priority = -3;
        p.job.timeout = Some(Duration::from_millis(1500));
        p
    }

    #[test]
    fn a_schedule_survives_its_columns() {
        let cols = ScheduleColumns::new(&job(), ScheduleOrigin::Api, true, Millis(7));
        assert_eq!(cols.paused_at, Some(7));
        let back = cols.decode().unwrap();
        assert_eq!(back.job, job());
        assert_eq!(back.origin, ScheduleOrigin::Api);
        assert_eq!(back.paused_at, Some(Millis(7)));
    }

    #[test]
    fn a_bad_row_is_corrupt_naming_the_column() {
        let mut cols = ScheduleColumns::new(&job(), ScheduleOrigin::Config, false, Millis(7));
        cols.timezone = "Mars/Olympus".into();
        let e = cols.clone().decode().unwrap_err().to_string();
        assert!(e.contains("timezone") && e.contains("nightly"), "{e}");
        let mut cols = ScheduleColumns::new(&job(), ScheduleOrigin::Config, false, Millis(7));
        cols.priority = 1 << 20;
        assert!(decode_all(vec![cols]).is_empty());
    }

    #[test]
    fn a_trigger_key_never_equals_a_tick_key() {
        // Names may hold `:`, so the prefixes keep them apart, not the name.
        let mut a = job();
        a.name = "a:trigger".into();
        let t = trigger_job(&job(), Millis(5));
        assert_eq!(t.unique_key.as_deref(), Some("periodic-trigger:nightly:5"));
        assert!(t.run_at.is_none());
        assert_ne!(
            trigger_job(&job(), Millis(5)).unique_key.unwrap(),
            crate::periodic::tick_key(&a.name, Millis(5))
        );
        assert!(!t.unique_key.unwrap().starts_with("periodic:"));
    }
}
