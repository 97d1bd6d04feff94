//! `/api/v1/periodic`: periodic schedules kept in the store. List them with their next
//! run times (`read`); create, pause, resume, delete, and trigger one now (`operate`),
//! each recorded in the audit log. The node holding the `periodic` leader lease picks
//! a change up at its next round (within a third of its lease; see
//! `jobmesh_actors`' periodic task), and the store checks a pause or delete again in
//! the transaction of each tick's enqueue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::config::DEFAULT_BACKFILL;
use jobmesh::periodic::{MissedTicks, PeriodicJob, Schedule, check_schedule_name, parse_timezone};
use jobmesh::store::audit::{AuditAction, AuditTarget};
use jobmesh::store::tokens::Scope;
use jobmesh::store::{EnqueueOutcome, ScheduleOutcome, StoredSchedule};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::checked;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::idempotency::{Answer, answer_once};
use crate::model::{EnqueueRequest, OnParentFailure};
use crate::problem::{Problem, ProblemKind};
use crate::routes::jobs::check_job;
use crate::state::AppState;

/// What happens to ticks missed while no node enqueued them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Only the latest missed tick runs.
    #[default]
    Skip,
    /// Missed ticks within `backfill_ms` run (at most 1000, the most recent).
    CatchUp,
}

/// A schedule to create. The job passes the checks of `POST /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Unique name: 1-100 letters, digits, `- _ . :`.
    pub name: String,
    /// A cron expression (`*/5 * * * *`; a sixth field first for seconds) or
    /// `every <duration>` (`every 30s`, from 1 s to 366 days).
    pub schedule: String,
    /// The IANA time zone a cron expression is read in (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Handler kind of each tick's job.
    pub kind: String,
    /// Its payload (default `{}`), checked against the kind's rules.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Queue (default `default`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Priority, -100..=100.
    #[serde(default)]
    pub priority: i16,
    /// Attempts before a tick's job is dead-lettered (default 25).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Timeout of each attempt, in ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Missed ticks: `skip` (default) or `catch_up`.
    #[serde(default)]
    pub policy: Policy,
    /// With `catch_up`: how far back missed ticks still run, in ms (default one hour,
    /// at most 7 days).
    #[serde(default)]
    pub backfill_ms: Option<u64>,
    /// Create it paused (no tick runs until it is resumed).
    #[serde(default)]
    pub paused: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A schedule with the store's record of its ticks and its next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// When it ticks, as written.
    pub schedule: String,
    /// The IANA zone a cron expression is read in.
    pub timezone: String,
    /// Missed ticks: `skip` or `catch_up`.
    pub policy: Policy,
    /// With `catch_up`, in ms.
    pub backfill_ms: Option<u64>,
    /// Each tick's job's kind.
    pub kind: String,
    /// Its payload.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: i16,
    /// Its attempts.
    pub max_attempts: u32,
    /// Its per-attempt timeout, in ms.
    pub timeout_ms: Option<u64>,
    /// `config` (declared by `[[periodic]]`; delete it there) or `api`.
    pub origin: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Since when (ms since the epoch).
    pub paused_at: Option<i64>,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// Every tick at or before this was enqueued or passed over (ms since the epoch).
    pub last_tick: Option<i64>,
    /// The job of `last_tick`.
    pub last_job: Option<i64>,
    /// Its next tick after now (ms since the epoch); `null` while paused.
    pub next_run: Option<i64>,
}

/// The schedules the token may see, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<ScheduleView>,
}

/// What a pause, resume or delete did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleChanged {
    /// The schedule.
    pub name: String,
    /// Whether it is paused now (`null` once deleted).
    pub paused: Option<bool>,
    /// Whether this request changed it (`false`: it already was so).
    pub changed: bool,
}

/// The job a trigger enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Triggered {
    /// The schedule.
    pub name: String,
    /// The job.
    pub id: i64,
    /// `true` if an unfinished job of a trigger in the same millisecond held the key.
    pub duplicate: bool,
}

fn view(
    s: StoredSchedule,
    marks: &HashMap<String, (i64, Option<i64>)>,
    now: Millis,
) -> ScheduleView {
    let (policy, backfill_ms) = match s.job.policy {
        MissedTicks::Skip => (Policy::Skip, None),
        MissedTicks::CatchUp { backfill } => (Policy::CatchUp, Some(backfill.as_millis() as u64)),
    };
    let mark = marks.get(&s.job.name);
    let next_run = match s.paused_at {
        Some(_) => None,
        None => s.job.next_after(now).map(|t| t.0),
    };
    let j = s.job.job;
    ScheduleView {
        name: s.job.name,
        schedule: s.job.schedule.to_string(),
        timezone: s.job.timezone.name().to_string(),
        policy,
        backfill_ms,
        kind: j.kind,
        payload: j.payload,
        queue: j.queue,
        priority: j.priority,
        max_attempts: j.max_attempts,
        timeout_ms: j.timeout.map(|t| t.as_millis() as u64),
        origin: s.origin.to_string(),
        paused: s.paused_at.is_some(),
        paused_at: s.paused_at.map(|t| t.0),
        created_at: s.created_at.0,
        last_tick: mark.map(|m| m.0),
        last_job: mark.and_then(|m| m.1),
        next_run,
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    Ok((
        status,
        serde_json::to_value(value)
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?,
    ))
}

/// Every schedule whose queue the token may see, with its last handled tick and its
/// next run time.
#[utoipa::path(
    get,
    path = "/api/v1/periodic",
    tag = "periodic",
    responses((status = 200, description = "The schedules", body = ScheduleList)),
    security(("bearer" = ["read"]))
)]
pub async fn list_schedules(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ScheduleList>, Problem> {
    caller.require(Scope::Read)?;
    let marks: HashMap<String, (i64, Option<i64>)> = state
        .store
        .tick_marks()
        .await?
        .into_iter()
        .map(|m| (m.schedule, (m.last_tick.0, m.last_job.map(|j| j.0))))
        .collect();
    let now = SystemClock.now();
    let schedules = state
        .store
        .schedules()
        .await?
        .into_iter()
        .filter(|s| caller.allows_queue(&s.job.job.queue))
        .map(|s| view(s, &marks, now))
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// The periodic job `req` describes, or the problem naming the field at fault.
fn periodic_job(
    state: &AppState,
    caller: &Caller,
    req: CreateSchedule,
) -> Result<PeriodicJob, Problem> {
    let invalid = |field: &str, m: String| Problem::field(ProblemKind::InvalidField, field, m);
    check_schedule_name(&req.name).map_err(|m| invalid("name", m))?;
    let schedule =
        Schedule::parse(&req.schedule).map_err(|e| invalid("schedule", format!("schedule {e}")))?;
    let timezone = match &req.timezone {
        Some(tz) => parse_timezone(tz).map_err(|e| invalid("timezone", e.to_string()))?,
        None => jobmesh::periodic::Tz::UTC,
    };
    let policy = match (req.policy, req.backfill_ms) {
        (Policy::Skip, Some(_)) => {
            return Err(invalid(
                "backfill_ms",
                "only applies with policy `catch_up`".into(),
            ));
        }
        (Policy::Skip, None) => MissedTicks::Skip,
        (Policy::CatchUp, b) => MissedTicks::CatchUp {
            backfill: b.map_or(DEFAULT_BACKFILL, Duration::from_millis),
        },
    };
    // Each tick's job as `POST /api/v1/jobs` reads one: its request model and its
    // conversion (the options a schedule has no use for left at their defaults).
    let job = EnqueueRequest {
        kind: req.kind,
        payload: req.payload,
        queue: req.queue,
        priority: req.priority,
        max_attempts: req.max_attempts,
        timeout_ms: req.timeout_ms,
        run_at: None,
        unique_key: None,
        depends_on: Vec::new(),
        on_parent_failure: OnParentFailure::default(),
    }
    .into_job();
    let p = PeriodicJob {
        name: req.name,
        schedule,
        timezone,
        policy,
        job,
    };
    p.check(SystemClock.now()).map_err(|e| {
        let field = if e.field == "backfill" {
            "backfill_ms"
        } else {
            e.field
        };
        invalid(field, e.message)
    })?;
    // The job as `POST /api/v1/jobs` checks it: kind, payload, options, the token's
    // queues.
    check_job(state, caller, &p.job, "")?;
    Ok(p)
}

/// Create a schedule. Its first tick is the first after now; the leader enqueues it
/// (one job per tick across the cluster).
#[utoipa::path(
    post,
    path = "/api/v1/periodic",
    tag = "periodic",
    request_body = CreateSchedule,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "A field is invalid (schedule, timezone, ...)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The job was refused by its kind's rules", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn create_schedule(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<CreateSchedule>,
) -> Response {
    let work = async {
        let req = body.value;
        let target = AuditTarget::Schedule(req.name.clone());
        // The scope first: a token that may not create learns nothing of the rules.
        let (ctx, ()) = checked(
            &state,
            &caller,
            AuditAction::PeriodicCreate,
            &target,
            async { caller.require(Scope::Operate) },
        )
        .await?;
        let paused = req.paused;
        let job = match periodic_job(&state, &caller, req) {
            Ok(j) => j,
            // A queue the token may not use is a refusal the log keeps.
            Err(p) if p.status == 403 => {
                return Err(crate::audit::refused(
                    &state,
                    &caller,
                    AuditAction::PeriodicCreate,
                    &target,
                    p,
                )
                .await);
            }
            Err(p) => return Err(p),
        };
        let now = SystemClock.now();
        match state.store.create_schedule(&ctx, &job, paused, now).await? {
            ScheduleOutcome::Done(s) => {
                let marks = HashMap::from([(s.job.name.clone(), (now.0, None))]);
                json(StatusCode::CREATED, &view(s, &marks, now))
            }
            ScheduleOutcome::NotFound => Err(not_found(&job.name)),
            ScheduleOutcome::Refused(why) => {
                Err(Problem::field(ProblemKind::Conflict, "name", why))
            }
        }
    };
    answer_once(
        &state,
        &caller,
        &headers,
        "POST /api/v1/periodic",
        &body.digest,
        work,
    )
    .await
}

fn not_found(name: &str) -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        format!("schedule `{name}` not found"),
    )
}

/// Checks `name`, then (recording a refusal) the scope and that the schedule exists
/// on a queue the token may act on; the caller's audit context when they pass.
async fn operate(
    state: &AppState,
    caller: &Caller,
    name: &str,
    action: AuditAction,
) -> Result<jobmesh::store::AuditContext, Problem> {
    check_schedule_name(name).map_err(|m| Problem::field(ProblemKind::InvalidField, "name", m))?;
    let target = AuditTarget::Schedule(name.to_owned());
    let (ctx, ()) = checked(state, caller, action, &target, async {
        caller.require(Scope::Operate)?;
        if !caller.queues.is_empty() {
            let s = state.store.schedules().await?;
            let s = s
                .iter()
                .find(|s| s.job.name == name)
                .ok_or_else(|| not_found(name))?;
            caller.require_queue(&s.job.job.queue, "queue")?;
        }
        Ok(())
    })
    .await?;
    Ok(ctx)
}

/// What a store answer of a pause, resume or delete becomes.
fn changed(name: String, paused: Option<bool>, out: ScheduleOutcome<bool>) -> Answer {
    match out {
        ScheduleOutcome::Done(changed) => json(
            StatusCode::OK,
            &ScheduleChanged {
                name,
                paused,
                changed,
            },
        ),
        ScheduleOutcome::NotFound => Err(not_found(&name)),
        ScheduleOutcome::Refused(why) => Err(Problem::new(ProblemKind::Conflict, why)),
    }
}

/// Pause a schedule: no job for its ticks until it is resumed (checked by the store
/// in each tick's transaction). Kept across restarts and config syncs.
#[utoipa::path(
    post,
    path = "/api/v1/periodic/{name}/pause",
    tag = "periodic",
    params(
        ("name" = String, Path, description = "The schedule"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Paused (or already paused)", body = ScheduleChanged),
        (status = 400, description = "Not a schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn pause_schedule(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/periodic/{name}/pause");
    let work = set_paused(&state, &caller, name, true);
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}

/// Resume a paused schedule. Ticks that passed while it was paused are passed over;
/// the first to run is the first after the resume.
#[utoipa::path(
    post,
    path = "/api/v1/periodic/{name}/resume",
    tag = "periodic",
    params(
        ("name" = String, Path, description = "The schedule"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Resumed (or was not paused)", body = ScheduleChanged),
        (status = 400, description = "Not a schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn resume_schedule(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/periodic/{name}/resume");
    let work = set_paused(&state, &caller, name, false);
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}

async fn set_paused(state: &AppState, caller: &Caller, name: String, pause: bool) -> Answer {
    let action = if pause {
        AuditAction::PeriodicPause
    } else {
        AuditAction::PeriodicResume
    };
    let ctx = operate(state, caller, &name, action).await?;
    let out = state
        .store
        .set_schedule_paused(&ctx, &name, pause, SystemClock.now())
        .await?;
    changed(name, Some(pause), out)
}

/// Delete a schedule created through the API (its jobs stay). A schedule declared in
/// the config is refused (409): remove it from `[[periodic]]`.
#[utoipa::path(
    delete,
    path = "/api/v1/periodic/{name}",
    tag = "periodic",
    params(
        ("name" = String, Path, description = "The schedule"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Deleted", body = ScheduleChanged),
        (status = 400, description = "Not a schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Declared in the config (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn delete_schedule(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let route = format!("DELETE /api/v1/periodic/{name}");
    let work = async {
        let ctx = operate(&state, &caller, &name, AuditAction::PeriodicDelete).await?;
        let out = state
            .store
            .delete_schedule(&ctx, &name, false, SystemClock.now())
            .await?;
        let out = match out {
            ScheduleOutcome::Done(()) => ScheduleOutcome::Done(true),
            ScheduleOutcome::NotFound => ScheduleOutcome::NotFound,
            ScheduleOutcome::Refused(r) => ScheduleOutcome::Refused(r),
        };
        changed(name.clone(), None, out)
    };
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}

/// Enqueue one job of the schedule now, paused or not, outside its ticks (its unique
/// key, `periodic-trigger:<name>:<ms>`, cannot equal a tick's). Send an
/// `Idempotency-Key` to make a retried request enqueue nothing more.
#[utoipa::path(
    post,
    path = "/api/v1/periodic/{name}/trigger",
    tag = "periodic",
    params(
        ("name" = String, Path, description = "The schedule"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 201, description = "Enqueued", body = Triggered),
        (status = 400, description = "Not a schedule name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such schedule (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn trigger_schedule(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/periodic/{name}/trigger");
    let work = async {
        let ctx = operate(&state, &caller, &name, AuditAction::PeriodicTrigger).await?;
        match state
            .store
            .trigger_schedule(&ctx, &name, SystemClock.now())
            .await?
        {
            ScheduleOutcome::Done(o) => {
                let (id, duplicate) = match o {
                    EnqueueOutcome::Inserted(id) => (id, false),
                    EnqueueOutcome::Duplicate(id) => (id, true),
                };
                let status = if duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                json(
                    status,
                    &Triggered {
                        name: name.clone(),
                        id: id.0,
                        duplicate,
                    },
                )
            }
            ScheduleOutcome::NotFound => Err(not_found(&name)),
            ScheduleOutcome::Refused(why) => Err(Problem::new(ProblemKind::Conflict, why)),
        }
    };
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}
