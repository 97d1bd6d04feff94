//! `GET /api/v1/jobs/{id}`: one job with its finished attempts (`job_executions`) and
//! its event timeline, oldest first and bounded by `events`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use jobmesh::store::tokens::Scope;
use serde::Deserialize;
use utoipa::IntoParams;

use super::jobs::{job_id, visible_job};
use crate::auth::Caller;
use crate::body::QueryParams;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use crate::views::JobDetail;

/// Events listed when the request does not say.
pub const DEFAULT_EVENTS: u32 = 100;
/// Most events one answer lists (`events`).
pub const MAX_EVENTS: u32 = 1000;
/// Most attempts one answer lists (a job with more says `attempts_truncated`).
pub const MAX_ATTEMPTS: u32 = 1000;

/// How much of the job's history to include.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DetailParams {
    /// At most this many events, oldest first (1..=1000, default 100).
    pub events: Option<u32>,
}

/// One job, with its attempts and its event timeline.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id"), DetailParams),
    responses(
        (status = 200, description = "The job, its attempts and its events", body = JobDetail),
        (status = 400, description = "A bad id or parameter, named in `field`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(p): QueryParams<DetailParams>,
) -> Result<Json<JobDetail>, Problem> {
    caller.require(Scope::Read)?;
    let id = job_id(&id)?;
    let events = p.events.unwrap_or(DEFAULT_EVENTS);
    if !(1..=MAX_EVENTS).contains(&events) {
        return Err(Problem::field(
            ProblemKind::InvalidField,
            "events",
            format!("must be within 1..={MAX_EVENTS}, got {events}"),
        ));
    }
    let job = visible_job(&state, &caller, id).await?;
    // One more than shown, to say whether there are more. (Three reads, not one
    // transaction: a job that moves between them shows its newer attempts or events,
    // never a torn row.)
    let mut attempts = state.store.attempts(id, MAX_ATTEMPTS + 1).await?;
    let attempts_truncated = attempts.len() > MAX_ATTEMPTS as usize;
    attempts.truncate(MAX_ATTEMPTS as usize);
    let mut timeline = state.store.job_events(id, events + 1).await?;
    let events_truncated = timeline.len() > events as usize;
    timeline.truncate(events as usize);
    let eta = eta(&state, &job, &timeline).await;
    Ok(Json(JobDetail {
        eta,
        job: job.into(),
        attempts: attempts.into_iter().map(Into::into).collect(),
        attempts_truncated,
        events: timeline.into_iter().map(Into::into).collect(),
        events_truncated,
    }))
}

/// The job's ETA from the shared predictions; a running attempt's start is its
/// `job.claimed` event in the timeline. Predictions are a view: a failed read leaves it
/// out rather than failing the request.
async fn eta(
    state: &AppState,
    job: &jobmesh::job::Job,
    timeline: &[jobmesh::event::StoredEvent],
) -> Option<crate::views::EtaView> {
    use jobmesh::clock::{Clock, SystemClock};
    use jobmesh::event::EventKind;
    if job.finished_at.is_some() {
        return None;
    }
    let p = match state.predictions.get(&*state.store).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "reading the saved models failed; no ETA");
            return None;
        }
    };
    let since = timeline
        .iter()
        .rev()
        .find(|e| e.event.kind == EventKind::JobClaimed && e.event.attempt == Some(job.attempt))
        .map(|e| e.event.at.0);
    p.eta(job, since, SystemClock.now().0).map(Into::into)
}
