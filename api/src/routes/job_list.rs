//! `GET /api/v1/jobs`: jobs by filter, a keyset page at a time, and the filter as the
//! API takes it (query parameters here, a JSON object in bulk actions), checked by the
//! core's one validation ([`JobFilter::check`]) and limited to the caller's queues.

use std::sync::Arc;

use axum::extract::State;
use jobmesh::clock::Millis;
use jobmesh::job::JobState;
use jobmesh::store::tokens::Scope;
use jobmesh::store::{Cursor, FilterError, JobFilter, Order, PayloadMatch, TimeRange};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::QueryParams;
use crate::model::{JobPage, State as JobStateView};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// A refused filter as a 400 naming the field.
pub(crate) fn filter_problem(e: FilterError) -> Problem {
    Problem::field(ProblemKind::InvalidField, e.field, e.reason)
}

/// Limits `filter` to the caller's queues: a caller limited to some queues lists only
/// those (all of them when the filter names none), and naming another is refused (403,
/// naming `field`).
pub(crate) fn restrict_queues(
    caller: &Caller,
    filter: &mut JobFilter,
    field: &str,
) -> Result<(), Problem> {
    if caller.queues.is_empty() {
        return Ok(());
    }
    if filter.queues.is_empty() {
        filter.queues = caller.queues.clone();
        return Ok(());
    }
    for q in &filter.queues {
        caller.require_queue(q, field)?;
    }
    Ok(())
}

/// Which jobs to list: every parameter set must hold.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this queue (a token limited to queues lists only its own).
    pub queue: Option<String>,
    /// Only these states, comma-separated (`retryable,discarded`).
    pub state: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only priorities at or above this (-100..=100).
    pub priority_min: Option<i16>,
    /// Only priorities at or below this (-100..=100).
    pub priority_max: Option<i16>,
    /// Only jobs enqueued at or after this time (ms since the epoch).
    pub created_from: Option<i64>,
    /// Only jobs enqueued before this time (ms).
    pub created_to: Option<i64>,
    /// Only jobs finished at or after this time (ms).
    pub finished_from: Option<i64>,
    /// Only jobs finished before this time (ms).
    pub finished_to: Option<i64>,
    /// Only jobs whose payload holds a value: `$.customer.id == "42"` (dotted keys, a
    /// JSON string, number, true, false or null; at most 8 keys and 512 bytes).
    pub payload: Option<String>,
    /// `asc` (the default) or `desc`: by id (the order of enqueueing), or, when
    /// `finished_from` or `finished_to` is set, by finish time then id.
    pub order: Option<String>,
    /// The `next_cursor` of the previous page, unchanged.
    pub cursor: Option<String>,
    /// At most this many (1..=1000, default 100).
    pub limit: Option<u32>,
}

/// The states of a comma-separated list, refused as `field`.
fn parse_states(text: &str, field: &'static str) -> Result<Vec<JobState>, FilterError> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<JobState>()
                .map_err(|reason| FilterError { field, reason })
        })
        .collect()
}

/// A payload match, refused as `payload`.
pub(crate) fn parse_payload(text: Option<&str>) -> Result<Option<PayloadMatch>, FilterError> {
    text.map(PayloadMatch::parse).transpose()
}

fn range(from: Option<i64>, to: Option<i64>) -> TimeRange {
    TimeRange {
        from: from.map(Millis),
        to: to.map(Millis),
    }
}

impl ListParams {
    /// The filter these parameters describe (not yet checked).
    fn into_filter(self) -> Result<JobFilter, FilterError> {
        let order = match self.order.as_deref() {
            None => None,
            Some("asc") => Some(Order::Asc),
            Some("desc") => Some(Order::Desc),
            Some(other) => {
                return Err(FilterError {
                    field: "order",
                    reason: format!("`{}` is neither asc nor desc", other.escape_debug()),
                });
            }
        };
        let cursor = self.cursor.as_deref().map(Cursor::decode).transpose()?;
        if let (Some(c), Some(o)) = (cursor, order)
            && c.order != o
        {
            return Err(FilterError {
                field: "order",
                reason: "differs from the cursor's order (keep the parameters of the first page)"
                    .into(),
            });
        }
        Ok(JobFilter {
            queues: self.queue.into_iter().collect(),
            states: match &self.state {
                Some(s) => parse_states(s, "state")?,
                None => Vec::new(),
            },
            kind: self.kind,
            priority_min: self.priority_min,
            priority_max: self.priority_max,
            created: range(self.created_from, self.created_to),
            finished: range(self.finished_from, self.finished_to),
            payload: parse_payload(self.payload.as_deref())?,
            after: cursor.map(|c| c.after),
            order: cursor.map(|c| c.order).or(order).unwrap_or_default(),
            limit: self.limit.unwrap_or(100),
        })
    }
}

/// Jobs matching a filter, a page at a time, by id (by finish time then id when a
/// finished range is set): keyset pagination (pass `next_cursor` back as `cursor`;
/// pages never repeat or skip a job, and a page costs the same deep in a million jobs
/// as at the start).
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "A bad parameter, named in `field`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_jobs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(p): QueryParams<ListParams>,
) -> Result<axum::Json<JobPage>, Problem> {
    caller.require(Scope::Read)?;
    let mut filter = p.into_filter().map_err(filter_problem)?;
    filter.check().map_err(filter_problem)?;
    restrict_queues(&caller, &mut filter, "queue")?;
    let jobs = state.store.list_jobs(&filter).await?;
    let next_cursor = Cursor::after_page(&filter, &jobs).map(|c| c.encode());
    Ok(axum::Json(JobPage {
        jobs: jobs.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// A filter in a JSON body (bulk actions): every field set must hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    /// Only these queues (a token limited to queues may name only its own; none: all of
    /// its own).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Only these states.
    #[serde(default)]
    pub states: Vec<JobStateView>,
    /// Only this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only priorities at or above this.
    #[serde(default)]
    pub priority_min: Option<i16>,
    /// Only priorities at or below this.
    #[serde(default)]
    pub priority_max: Option<i16>,
    /// Enqueued at or after (ms).
    #[serde(default)]
    pub created_from: Option<i64>,
    /// Enqueued before (ms).
    #[serde(default)]
    pub created_to: Option<i64>,
    /// Finished at or after (ms).
    #[serde(default)]
    pub finished_from: Option<i64>,
    /// Finished before (ms).
    #[serde(default)]
    pub finished_to: Option<i64>,
    /// A payload match, as in the listing (`$.customer.id == "42"`).
    #[serde(default)]
    pub payload: Option<String>,
}

impl FilterBody {
    /// The filter, checked, with fields named as in the body (`filter.payload`), and
    /// limited to the caller's queues.
    pub(crate) fn into_filter(self, caller: &Caller) -> Result<JobFilter, Problem> {
        let named = |e: FilterError| {
            let field = match e.field {
                "queue" => "queues",
                f => f,
            };
            Problem::field(
                ProblemKind::InvalidField,
                format!("filter.{field}"),
                e.reason,
            )
        };
        let mut filter = JobFilter {
            queues: self.queues,
            states: self.states.into_iter().map(Into::into).collect(),
            kind: self.kind,
            priority_min: self.priority_min,
            priority_max: self.priority_max,
            created: range(self.created_from, self.created_to),
            finished: range(self.finished_from, self.finished_to),
            payload: parse_payload(self.payload.as_deref()).map_err(named)?,
            ..JobFilter::default()
        };
        filter.check().map_err(named)?;
        restrict_queues(caller, &mut filter, "filter.queues")?;
        Ok(filter)
    }
}
