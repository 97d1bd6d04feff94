//! `/api/v1/jobs`: enqueue one or a batch, read, cancel (listing is in `job_list.rs`,
//! retry, delete and bulk actions in `bulk.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::handler::SubmitError;
use jobmesh::job::{JobId, NewJob};
use jobmesh::payload::PayloadError;
use jobmesh::store::audit::{AuditAction, AuditTarget};
use jobmesh::store::tokens::Scope;
use jobmesh::store::{CancelOutcome, EnqueueOutcome};

use crate::audit::checked;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::idempotency::{Answer, answer_once};
use crate::model::{
    BatchItem, BatchRequest, BatchResponse, CancelResponse, CancelResult, EnqueueRequest, Enqueued,
};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Checks a job the way `jobmesh submit` does (the kind's payload rules and every job
/// option, through the same [`jobmesh::handler::Registry::validate`]), plus the queue
/// against the caller's token. `at` prefixes the field named in a refusal (`jobs[3].`).
pub(crate) fn check_job(
    state: &AppState,
    caller: &Caller,
    job: &NewJob,
    at: &str,
) -> Result<(), Problem> {
    // The field name is made only for a refusal: a batch checks a thousand jobs.
    if !caller.allows_queue(&job.queue) {
        caller.require_queue(&job.queue, &format!("{at}queue"))?;
    }
    state
        .registry
        .validate(job)
        .map_err(|e| submit_problem(e, at))?;
    job.check_storable()
        .map_err(|m| Problem::new(ProblemKind::JobRefused, m))
}

/// The node's admission control of one job (when a node serves the API): may defer it
/// (a later `run_at`) or refuse it with a `queue-overloaded` problem (503).
pub(crate) fn admit(state: &AppState, job: &mut NewJob, at: &str) -> Result<(), Problem> {
    let Some(admission) = &state.admission else {
        return Ok(());
    };
    admission(std::slice::from_mut(job)).map_err(|(_, reason)| {
        Problem::field(
            ProblemKind::QueueOverloaded,
            format!("{at}priority"),
            reason,
        )
    })
}

fn submit_problem(e: SubmitError, at: &str) -> Problem {
    let detail = e.to_string();
    let field = match &e {
        SubmitError::UnknownKind { .. } => "kind".to_string(),
        SubmitError::Payload {
            error: PayloadError::Invalid { path, .. },
            ..
        } => path.clone(),
        SubmitError::Payload { .. } => "payload".to_string(),
        SubmitError::Options(m) => {
            const OPTIONS: [&str; 7] = [
                "max_attempts",
                "priority",
                "queue",
                "timeout",
                "run_at",
                "unique_key",
                "depends_on",
            ];
            let first = m.split([' ', ':']).next().unwrap_or_default();
            OPTIONS
                .into_iter()
                .find(|o| *o == first)
                .map(|o| if o == "timeout" { "timeout_ms" } else { o })
                .unwrap_or("job")
                .to_string()
        }
    };
    Problem::field(ProblemKind::JobRefused, format!("{at}{field}"), detail)
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Answer {
    Ok((
        status,
        serde_json::to_value(value)
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?,
    ))
}

/// Enqueue one job.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "jobs",
    request_body = EnqueueRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    responses(
        (status = 201, description = "Stored", body = Enqueued),
        (status = 200, description = "A duplicate of an unfinished job with the same unique_key; nothing stored", body = Enqueued),
        (status = "4XX", description = "Refused; nothing stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["enqueue"]))
)]
pub async fn enqueue(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<EnqueueRequest>,
) -> Response {
    let work = async {
        caller.require(Scope::Enqueue)?;
        let mut job = body.value.into_job();
        check_job(&state, &caller, &job, "")?;
        admit(&state, &mut job, "")?;
        let outcome = state.coalescer.enqueue(job).await?;
        let status = match outcome {
            EnqueueOutcome::Inserted(_) => StatusCode::CREATED,
            EnqueueOutcome::Duplicate(_) => StatusCode::OK,
        };
        json(status, &Enqueued::from(outcome))
    };
    answer_once(
        &state,
        &caller,
        &headers,
        "POST /api/v1/jobs",
        &body.digest,
        work,
    )
    .await
}

/// Enqueue several jobs: each is checked on its own, and a refused one is reported
/// with its reason while the rest are stored (in one transaction).
#[utoipa::path(
    post,
    path = "/api/v1/jobs/batch",
    tag = "jobs",
    request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    responses(
        (status = 200, description = "Per-job results", body = BatchResponse),
        (status = "4XX", description = "The request as a whole was refused; nothing stored", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["enqueue"]))
)]
pub async fn enqueue_batch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<BatchRequest>,
) -> Response {
    let work = async {
        caller.require(Scope::Enqueue)?;
        let requests = body.value.jobs;
        check_batch_size(&state, requests.len(), "jobs")?;
        let mut items: Vec<BatchItem> = Vec::with_capacity(requests.len());
        let mut accepted: Vec<(usize, NewJob)> = Vec::new();
        for (index, r) in requests.into_iter().enumerate() {
            let mut job = r.into_job();
            let at = format!("jobs[{index}].");
            match check_job(&state, &caller, &job, &at).and_then(|()| admit(&state, &mut job, &at))
            {
                Ok(()) => accepted.push((index, job)),
                Err(p) => items.push(refused(index, p)),
            }
        }
        // A parent that does not exist fails the store's whole batch: refuse the jobs
        // that name one, so the others are stored. (A parent purged between this check
        // and the enqueue still fails the batch as a whole, storing nothing.)
        let mut known: HashMap<JobId, bool> = HashMap::new();
        let mut checked = Vec::with_capacity(accepted.len());
        for (index, job) in accepted {
            let mut missing = None;
            for &parent in &job.depends_on {
                let exists = match known.get(&parent) {
                    Some(&e) => e,
                    None => {
                        let e = state.store.get_job(parent).await?.is_some();
                        known.insert(parent, e);
                        e
                    }
                };
                if !exists {
                    missing = Some(parent);
                    break;
                }
            }
            match missing {
                Some(parent) => items.push(refused(
                    index,
                    Problem::field(
                        ProblemKind::NotFound,
                        format!("jobs[{index}].depends_on"),
                        format!("job {parent} not found"),
                    ),
                )),
                None => checked.push((index, job)),
            }
        }
        if !checked.is_empty() {
            let (indexes, jobs): (Vec<usize>, Vec<NewJob>) = checked.into_iter().unzip();
            let outcomes = state.store.enqueue(jobs, SystemClock.now()).await?;
            for (index, o) in indexes.iter().zip(outcomes) {
                let e = Enqueued::from(o);
                items.push(BatchItem {
                    index: *index,
                    id: Some(e.id),
                    outcome: Some(e.outcome),
                    problem: None,
                });
            }
        }
        items.sort_by_key(|i| i.index);
        let refused = items.iter().filter(|i| i.problem.is_some()).count();
        json(
            StatusCode::OK,
            &BatchResponse {
                accepted: items.len() - refused,
                refused,
                items,
            },
        )
    };
    answer_once(
        &state,
        &caller,
        &headers,
        "POST /api/v1/jobs/batch",
        &body.digest,
        work,
    )
    .await
}

fn refused(index: usize, problem: Problem) -> BatchItem {
    BatchItem {
        index,
        id: None,
        outcome: None,
        problem: Some(problem),
    }
}

/// Refuses more than `api.max_batch` jobs (413) and an empty list (400).
pub(crate) fn check_batch_size(state: &AppState, n: usize, field: &str) -> Result<(), Problem> {
    let max = state.config.max_batch as usize;
    if n > max {
        return Err(Problem::field(
            ProblemKind::BatchTooLarge,
            field,
            format!("{n} jobs, over the limit of {max} (api.max_batch)"),
        ));
    }
    if n == 0 {
        return Err(Problem::field(
            ProblemKind::InvalidField,
            field,
            "name at least one job",
        ));
    }
    Ok(())
}

/// A job id from the path, refused by name if it is not one.
pub(crate) fn job_id(text: &str) -> Result<JobId, Problem> {
    text.parse::<i64>().map(JobId).map_err(|_| {
        Problem::field(
            ProblemKind::InvalidField,
            "id",
            format!("`{}` is not a job id", text.escape_debug()),
        )
    })
}

/// A job the caller may see, or 404 / 403.
pub(crate) async fn visible_job(
    state: &AppState,
    caller: &Caller,
    id: JobId,
) -> Result<jobmesh::job::Job, Problem> {
    let job = state.store.get_job(id).await?.ok_or_else(|| {
        Problem::field(ProblemKind::NotFound, "id", format!("job {id} not found"))
    })?;
    if !caller.allows_queue(&job.queue) {
        return Err(Problem::field(
            ProblemKind::Forbidden,
            "id",
            "the token may not act on this job's queue",
        ));
    }
    Ok(job)
}

/// Cancel a job that has not finished (a running attempt loses its lease).
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(
        ("id" = i64, Path, description = "Job id"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer"),
    ),
    responses(
        (status = 200, description = "Cancelled, or already finished", body = CancelResponse),
        (status = 403, description = "Refused (recorded in the audit log); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job (recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let route = format!("POST /api/v1/jobs/{id}/cancel");
    let work = async {
        let parsed = job_id(&id);
        let target = AuditTarget::Jobs(parsed.iter().copied().collect());
        let (ctx, id) = checked(&state, &caller, AuditAction::Cancel, &target, async {
            caller.require(Scope::Operate)?;
            let id = parsed.clone()?;
            visible_job(&state, &caller, id).await?;
            Ok(id)
        })
        .await?;
        let cancelled = state.store.cancel(&ctx, id, SystemClock.now()).await;
        let cancelled = cancelled.map_err(|e| match e {
            // Deleted since the check: the store recorded the refusal.
            jobmesh::store::StoreError::NotFound(_) => {
                Problem::field(ProblemKind::NotFound, "id", format!("job {id} not found"))
            }
            e => e.into(),
        })?;
        let (outcome, now_state) = match cancelled {
            CancelOutcome::Cancelled => {
                (CancelResult::Cancelled, jobmesh::job::JobState::Cancelled)
            }
            CancelOutcome::AlreadyFinished(s) => (CancelResult::AlreadyFinished, s),
        };
        json(
            StatusCode::OK,
            &CancelResponse {
                id: id.0,
                outcome,
                state: now_state.into(),
            },
        )
    };
    answer_once(&state, &caller, &headers, &route, &[0; 32], work).await
}
