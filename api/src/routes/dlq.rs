//! `POST /api/v1/dlq/redrive`: send dead-lettered jobs back with fresh attempts;
//! `GET /api/v1/dlq/groups`: the dead-letter queue grouped by queue and reason.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::JobId;
use jobmesh::store::Redrive;
use jobmesh::store::audit::{AuditAction, AuditTarget};
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::jobs::visible_job;
use crate::audit::checked;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::idempotency::answer_once;
use crate::model::{RedriveRequest, RedriveResponse};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Redrive by ids, by queue, or all. Ids not in the dead-letter queue are left alone
/// (the answer lists the ids that were sent back).
#[utoipa::path(
    post,
    path = "/api/v1/dlq/redrive",
    tag = "dlq",
    request_body = RedriveRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    responses(
        (status = 200, description = "The jobs sent back", body = RedriveResponse),
        (status = "4XX", description = "Refused; nothing changed (a 403 is recorded in the audit log)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operate"]))
)]
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody<RedriveRequest>,
) -> Response {
    let work = async {
        let r = body.value;
        let which = match (r.ids, r.queue, r.all, r.group) {
            (Some(ids), None, false, None) => {
                if ids.is_empty() {
                    return Err(Problem::field(
                        ProblemKind::InvalidField,
                        "ids",
                        "name at least one job",
                    ));
                }
                if ids.len() > state.config.max_batch as usize {
                    return Err(Problem::field(
                        ProblemKind::BatchTooLarge,
                        "ids",
                        format!(
                            "over the limit of {} (api.max_batch)",
                            state.config.max_batch
                        ),
                    ));
                }
                Redrive::Ids(ids.into_iter().map(JobId).collect())
            }
            (None, Some(q), false, None) => Redrive::Queue(q),
            (None, None, true, None) => Redrive::All,
            (None, None, false, Some(g)) => {
                jobmesh::job::check_queue_name(&g.queue)
                    .map_err(|m| Problem::field(ProblemKind::InvalidField, "group.queue", m))?;
                if g.reason.chars().count() > MAX_SHAPE {
                    return Err(Problem::field(
                        ProblemKind::InvalidField,
                        "group.reason",
                        format!("longer than a reason's shape ({MAX_SHAPE} characters)"),
                    ));
                }
                Redrive::Group {
                    queue: g.queue,
                    reason: g.reason,
                }
            }
            _ => {
                return Err(Problem::new(
                    ProblemKind::InvalidField,
                    "name exactly one of `ids`, `queue`, `group` or `all: true`",
                ));
            }
        };
        let target = AuditTarget::DeadLetters(which.clone());
        let (ctx, ()) = checked(&state, &caller, AuditAction::Redrive, &target, async {
            caller.require(Scope::Operate)?;
            match &which {
                Redrive::Ids(ids) if !caller.queues.is_empty() => {
                    for &id in ids {
                        match visible_job(&state, &caller, id).await {
                            Ok(_) => {}
                            // An unknown id is simply not redriven, as for other tokens.
                            Err(p) if p.status == 404 => {}
                            Err(p) => return Err(p),
                        }
                    }
                }
                Redrive::Ids(_) => {}
                Redrive::Queue(q) => caller.require_queue(q, "queue")?,
                Redrive::Group { queue, .. } => caller.require_queue(queue, "group.queue")?,
                Redrive::All => caller.require_all_queues("redriving every queue")?,
            }
            Ok(())
        })
        .await?;
        let redriven = state.store.redrive(&ctx, which, SystemClock.now()).await?;
        // The groups this node serves change now; other nodes' reads catch up within
        // `api.counts_max_age`.
        state.dlq_groups.invalidate();
        let body = serde_json::to_value(RedriveResponse {
            redriven: redriven.into_iter().map(|id| id.0).collect(),
        })
        .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        Ok((StatusCode::OK, body))
    };
    answer_once(
        &state,
        &caller,
        &headers,
        "POST /api/v1/dlq/redrive",
        &body.digest,
        work,
    )
    .await
}

/// Most characters of a reason's shape (the store cuts shapes there).
const MAX_SHAPE: usize = 200;
/// Groups listed.
pub const GROUPS: u32 = 100;

/// One group of dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterGroupView {
    /// The queue (a redrive of the group names it, with `reason`).
    pub queue: String,
    /// The reasons' shape: every run of digits written `#`, at most 200 characters.
    pub reason: String,
    /// Dead jobs in the group.
    pub jobs: u64,
    /// The oldest discard (ms).
    pub first_at: i64,
    /// The newest discard (ms).
    pub last_at: i64,
    /// The newest job of the group.
    pub sample: i64,
    /// That job's kind (`null` if it is gone).
    pub sample_kind: Option<String>,
}

/// The dead-letter queue by reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterGroupsView {
    /// The largest groups (at most 100), largest first.
    pub groups: Vec<DeadLetterGroupView>,
    /// Groups in all.
    pub total_groups: u64,
    /// Dead jobs in all.
    pub total_jobs: u64,
    /// When the groups were read (ms; shared by every caller for up to
    /// `api.counts_max_age`).
    pub read_at: i64,
}

/// Every dead-lettered job, grouped by queue and the shape of its reason (digits
/// folded, so `timeout after 1200 ms` and `after 87 ms` are one group): the 100
/// largest groups and the totals, read once per `api.counts_max_age` for every caller.
/// A token limited to queues sees its queues' groups (the totals are of those shown).
#[utoipa::path(
    get,
    path = "/api/v1/dlq/groups",
    tag = "dlq",
    responses(
        (status = 200, description = "The groups", body = DeadLetterGroupsView),
        (status = 403, description = "A token without `read`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn groups(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<DeadLetterGroupsView>, Problem> {
    caller.require(Scope::Read)?;
    let store = state.store.clone();
    let read = state
        .dlq_groups
        .get(state.config.counts_max_age, |_, _| async move {
            store.dead_letter_groups(GROUPS).await
        })
        .await?;
    let all = &read.value;
    let shown: Vec<_> = all
        .groups
        .iter()
        .filter(|g| caller.allows_queue(&g.queue))
        .collect();
    let samples: Vec<JobId> = shown.iter().map(|g| g.sample).collect();
    let briefs = state.store.job_briefs(&samples).await?;
    let mut groups = Vec::with_capacity(shown.len());
    for g in &shown {
        let brief = briefs.iter().find(|b| b.id == g.sample);
        groups.push(DeadLetterGroupView {
            queue: g.queue.clone(),
            reason: g.reason.clone(),
            jobs: g.jobs,
            first_at: g.first_at.0,
            last_at: g.last_at.0,
            sample: g.sample.0,
            sample_kind: brief.map(|b| b.kind.clone()),
        });
    }
    let limited = !caller.queues.is_empty();
    Ok(Json(DeadLetterGroupsView {
        total_groups: if limited {
            groups.len() as u64
        } else {
            all.total_groups
        },
        total_jobs: if limited {
            groups.iter().map(|g| g.jobs).sum()
        } else {
            all.total_jobs
        },
        groups,
        read_at: read.read_at.0,
    }))
}
