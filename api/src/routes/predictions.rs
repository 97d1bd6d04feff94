//! `GET /api/v1/predictions`: the live predictions of every node, from the models the
//! nodes saved in the store (see [`jobmesh::predict::live::view`] for what each number
//! means). A token limited to queues sees the durations, waits, retries and budgets of
//! its queues' jobs only; node failure scores name no queue and are shown to all.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use jobmesh::predict::live::view;
use jobmesh::store::tokens::Scope;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::QueryParams;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// Longest SLO a request may ask about (a day).
pub const MAX_SLO_MS: u64 = 24 * 3600 * 1000;

/// What to compute.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PredictionParams {
    /// The wait SLO the breach probabilities are about, in ms (1..=86400000, default
    /// 30000).
    pub slo_ms: Option<u64>,
}

/// One node's saved models, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodePrediction {
    /// The node.
    pub node: String,
    /// When it last saved its models (ms since the epoch).
    pub saved_at_ms: i64,
    /// Its failure score (higher is worse; a node drains above 1.6 by default).
    pub failure_score: f64,
    /// Why its models could not be read, when they could not.
    pub unreadable: Option<String>,
}

/// Predicted run time of one kind on one queue, all nodes merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DurationPrediction {
    /// Job kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Runs learned from.
    pub runs: u64,
    /// Median (ms).
    pub p50_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
}

/// Retry outcomes of one kind and error class as one node learned them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryPrediction {
    /// The node.
    pub node: String,
    /// Job kind.
    pub kind: String,
    /// Error class of the failure.
    pub error_class: String,
    /// Probability that the second attempt succeeds when started within 10 s, 10-30 s,
    /// 1-2 min and 10-20 min of the first failure.
    pub p_success: Vec<f64>,
    /// Observations behind each.
    pub observations: Vec<f64>,
}

/// One kind's retry budget on one node over its window (a minute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetPrediction {
    /// The node.
    pub node: String,
    /// Job kind.
    pub kind: String,
    /// First attempts in the window.
    pub first_attempts: f64,
    /// Retries in the window.
    pub retries: f64,
    /// Retries allowed in the window.
    pub allowed: f64,
}

/// One queue's predicted wait as one node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueuePrediction {
    /// The node.
    pub node: String,
    /// The queue.
    pub queue: String,
    /// Predicted wait (ms) of a job enqueued now, in 1, 5 and 15 minutes.
    pub wait_ms: Vec<f64>,
    /// Probability that such a job waits more than the SLO.
    pub breach_probability: Vec<f64>,
    /// Whether the model predicts a breach.
    pub breach: Vec<bool>,
}

/// The live predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PredictionList {
    /// When they were computed (ms since the epoch; shared by callers for 5 s).
    pub at_ms: i64,
    /// The SLO of the breach probabilities (ms).
    pub slo_ms: f64,
    /// Nodes that saved models, newest save first.
    pub nodes: Vec<NodePrediction>,
    /// Run times per kind and queue, all nodes merged.
    pub durations: Vec<DurationPrediction>,
    /// Retry success per node, kind and error class.
    pub retries: Vec<RetryPrediction>,
    /// Retry budgets per node and kind.
    pub budgets: Vec<BudgetPrediction>,
    /// Predicted waits per queue and node.
    pub queues: Vec<QueuePrediction>,
}

impl From<view::Predictions> for PredictionList {
    fn from(p: view::Predictions) -> Self {
        PredictionList {
            at_ms: p.at_ms,
            slo_ms: p.slo_ms,
            nodes: p
                .nodes
                .into_iter()
                .map(|n| NodePrediction {
                    node: n.node,
                    saved_at_ms: n.saved_at_ms,
                    failure_score: n.failure_score,
                    unreadable: n.unreadable,
                })
                .collect(),
            durations: p
                .durations
                .into_iter()
                .map(|d| DurationPrediction {
                    kind: d.kind,
                    queue: d.queue,
                    runs: d.runs,
                    p50_ms: d.p50_ms,
                    p90_ms: d.p90_ms,
                    p99_ms: d.p99_ms,
                })
                .collect(),
            retries: p
                .retries
                .into_iter()
                .map(|r| RetryPrediction {
                    node: r.node,
                    kind: r.kind,
                    error_class: r.error_class,
                    p_success: r.p_success,
                    observations: r.observations,
                })
                .collect(),
            budgets: p
                .budgets
                .into_iter()
                .map(|b| BudgetPrediction {
                    node: b.node,
                    kind: b.kind,
                    first_attempts: b.first_attempts,
                    retries: b.retries,
                    allowed: b.allowed,
                })
                .collect(),
            queues: p
                .queues
                .into_iter()
                .map(|q| QueuePrediction {
                    node: q.node,
                    queue: q.queue,
                    wait_ms: q.wait_ms,
                    breach_probability: q.breach_probability,
                    breach: q.breach,
                })
                .collect(),
        }
    }
}

/// The live predictions of every node: run times per kind and queue (p50/p90/p99),
/// failure score per node, retry success and budget per kind, predicted wait per queue
/// now and in 1, 5 and 15 minutes with the probability of breaching the SLO. Read from
/// the models the nodes save every minute and at shutdown.
#[utoipa::path(
    get,
    path = "/api/v1/predictions",
    tag = "cluster",
    params(PredictionParams),
    responses(
        (status = 200, description = "The predictions", body = PredictionList),
        (status = 400, description = "A bad parameter, named in `field`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn predictions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    QueryParams(params): QueryParams<PredictionParams>,
) -> Result<Json<PredictionList>, Problem> {
    caller.require(Scope::Read)?;
    let slo = params
        .slo_ms
        .unwrap_or(crate::predictions::DEFAULT_SLO_MS as u64);
    if !(1..=MAX_SLO_MS).contains(&slo) {
        return Err(Problem::field(
            ProblemKind::InvalidField,
            "slo_ms",
            format!("must be within 1..={MAX_SLO_MS}, got {slo}"),
        ));
    }
    let shared = state.predictions.get(&*state.store).await?;
    let mut p = (*shared).clone().with_slo(slo as f64);
    p.retain_queues(|q| caller.allows_queue(q));
    Ok(Json(p.into()))
}
