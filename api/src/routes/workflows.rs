//! `POST /api/v1/workflows`: named steps that run after each other, stored in one
//! transaction (the model of `jobmesh submit --workflow`, planned by [`jobmesh::dag`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::dag::{self, WorkflowStep};
use jobmesh::job::NewJob;
use jobmesh::store::tokens::Scope;

use super::jobs::{check_batch_size, check_job};
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::idempotency::answer_once;
use crate::model::{Enqueued, WorkflowJob, WorkflowRequest, WorkflowResponse};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Submit a workflow. The graph is checked first (unknown step names and cycles are
/// refused), then every step as a single job would be; nothing is stored unless all
/// pass.
#[utoipa::path(
    post,
    path = "/api/v1/workflows",
    tag = "workflows",
    request_body = WorkflowRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    responses(
        (status = 201, description = "Stored, parents first", body = WorkflowResponse),
        (status = "4XX", description = "Refused; nothing stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["enqueue"]))
)]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<WorkflowRequest>,
) -> Response {
    let work = async {
        caller.require(Scope::Enqueue)?;
        let steps = body.value.steps;
        check_batch_size(&state, steps.len(), "steps")?;
        let mut index = std::collections::HashMap::new();
        let planned: Vec<WorkflowStep> = steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                index.insert(s.name.clone(), i);
                let mut job = NewJob::new(s.kind, s.payload);
                if let Some(q) = s.queue {
                    job.queue = q;
                }
                job.priority = s.priority;
                if let Some(n) = s.max_attempts {
                    job.max_attempts = n;
                }
                job.timeout = s.timeout_ms.map(Duration::from_millis);
                job.on_parent_failure = s.on_parent_failure.into();
                WorkflowStep {
                    name: s.name,
                    after: s.after,
                    job,
                }
            })
            .collect();
        let jobs = dag::plan(planned)
            .map_err(|e| Problem::field(ProblemKind::InvalidField, "steps", e.to_string()))?;
        for (name, job) in &jobs {
            check_job(&state, &caller, job, &format!("steps[{}].", index[name]))?;
        }
        let outcomes = state
            .store
            .enqueue(
                jobs.iter().map(|(_, j)| j.clone()).collect(),
                SystemClock.now(),
            )
            .await?;
        let jobs = jobs
            .into_iter()
            .zip(outcomes)
            .map(|((name, _), o)| {
                let e = Enqueued::from(o);
                WorkflowJob {
                    name,
                    id: e.id,
                    outcome: e.outcome,
                }
            })
            .collect();
        let body = serde_json::to_value(WorkflowResponse { jobs })
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        Ok((StatusCode::CREATED, body))
    };
    answer_once(
        &state,
        &caller,
        &headers,
        "POST /api/v1/workflows",
        &body.digest,
        work,
    )
    .await
}
