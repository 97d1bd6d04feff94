//! `GET /api/v1/jobs/{id}/graph`: the workflow around a job, its parents and children
//! transitively, as far as a bound of jobs (walked by [`jobmesh::store::insights::workflow_graph`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use jobmesh::store::insights::workflow_graph;
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::jobs::{job_id, visible_job};
use crate::auth::Caller;
use crate::body::QueryParams;
use crate::model::State as JobStateView;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Jobs drawn when the request does not say.
pub const DEFAULT_JOBS: u32 = 200;
/// Most jobs one answer holds.
pub const MAX_JOBS: u32 = 500;

/// How far to walk.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GraphParams {
    /// At most this many jobs (1..=500, default 200); past it the answer says
    /// `truncated`.
    pub max_jobs: Option<u32>,
}

/// A job of the graph. Queue, kind and state are left out for a job of a queue the
/// token may not see (and for one deleted since the walk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GraphJob {
    /// The job.
    pub id: i64,
    /// Its queue.
    pub queue: Option<String>,
    /// Its kind.
    pub kind: Option<String>,
    /// Its state.
    pub state: Option<JobStateView>,
}

/// A dependency: `child` waits for `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GraphLink {
    /// The job waited for.
    pub parent: i64,
    /// The waiting job.
    pub child: i64,
}

/// The workflow around a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobGraph {
    /// The job asked about.
    pub job: i64,
    /// The jobs found, that one first, then breadth first through the links.
    pub jobs: Vec<GraphJob>,
    /// The links between them.
    pub links: Vec<GraphLink>,
    /// Whether the walk stopped at the bound with more of the workflow unread.
    pub truncated: bool,
    /// The bound.
    pub max_jobs: u32,
}

/// The workflow around a job: its parents and children, theirs in turn, breadth first
/// up to `max_jobs` jobs.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/graph",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id"), GraphParams),
    responses(
        (status = 200, description = "The jobs and links found", body = JobGraph),
        (status = 400, description = "A bad id or parameter, named in `field`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn job_graph(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    QueryParams(p): QueryParams<GraphParams>,
) -> Result<Json<JobGraph>, Problem> {
    caller.require(Scope::Read)?;
    let id = job_id(&id)?;
    let max_jobs = p.max_jobs.unwrap_or(DEFAULT_JOBS);
    if !(1..=MAX_JOBS).contains(&max_jobs) {
        return Err(Problem::field(
            ProblemKind::InvalidField,
            "max_jobs",
            format!("must be within 1..={MAX_JOBS}, got {max_jobs}"),
        ));
    }
    visible_job(&state, &caller, id).await?;
    let graph = workflow_graph(&*state.store, id, max_jobs as usize).await?;
    let briefs = state.store.job_briefs(&graph.jobs).await?;
    let jobs = graph
        .jobs
        .iter()
        .map(|j| {
            let brief = briefs
                .iter()
                .find(|b| b.id == *j)
                .filter(|b| caller.allows_queue(&b.queue));
            GraphJob {
                id: j.0,
                queue: brief.map(|b| b.queue.clone()),
                kind: brief.map(|b| b.kind.clone()),
                state: brief.map(|b| b.state.into()),
            }
        })
        .collect();
    Ok(Json(JobGraph {
        job: id.0,
        jobs,
        links: graph
            .links
            .iter()
            .map(|l| GraphLink {
                parent: l.parent.0,
                child: l.child.0,
            })
            .collect(),
        truncated: graph.truncated,
        max_jobs,
    }))
}
