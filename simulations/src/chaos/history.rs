//! What happened in a run, as the checker reads it: what the workload attempted and
//! had acknowledged, the jobs and lifecycle events in the store afterwards, and which
//! faults were applied when.

use jobmesh::event::EventKind;
use jobmesh::job::{JobId, JobState};
use jobmesh::store::{After, JobFilter, Store};
use serde::{Deserialize, Serialize};

use super::ChaosError;
use super::limits::{LimitBound, LimitSample};
use super::plan::{Fault, NodeIx};
use super::windows::FaultWindow;

/// One submission by the workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The job's unique key, which identifies it even when the ack was lost.
    pub key: String,
    /// Its kind.
    pub kind: String,
    /// When it was submitted (ms since the Unix epoch).
    pub submitted_ms: i64,
    /// The id the store acknowledged, if it did.
    pub acked: Option<i64>,
    /// Why it was not acknowledged.
    pub error: Option<String>,
}

/// A job row as the store holds it after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Store id.
    pub id: i64,
    /// Unique key (the workload sets one on every job).
    pub unique_key: Option<String>,
    /// Final (or current) state.
    pub state: JobState,
}

/// A lifecycle event, reduced to what the checker needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the store's log.
    pub seq: i64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// What.
    pub kind: EventKind,
    /// The job, if any.
    pub job: Option<i64>,
    /// The node (its name, or its peer id in mesh mode), if any.
    pub node: Option<String>,
    /// For `node.evicted`: the evicted incarnation.
    pub incarnation: Option<u64>,
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name (`n1`, ...).
    pub name: String,
    /// Its peer id (its id in the store in mesh mode).
    pub peer_id: String,
}

/// A fault as it was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedFault {
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
}

/// Everything recorded about a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The nodes, by index.
    pub nodes: Vec<NodeInfo>,
    /// Byzantine members the mesh is configured to tolerate.
    pub f: usize,
    /// The Byzantine members.
    pub liars: Vec<NodeIx>,
    /// When the workload started (ms since the Unix epoch).
    pub start_ms: i64,
    /// When every fault had healed.
    pub heal_ms: i64,
    /// When the run ended (after the drain).
    pub end_ms: i64,
    /// Nodes running at the end: each must have processed jobs after the heal.
    pub survivors: Vec<NodeIx>,
    /// The workload's submissions.
    pub attempts: Vec<Attempt>,
    /// The store's jobs after the run.
    pub jobs: Vec<JobRecord>,
    /// The store's lifecycle events after the run.
    pub events: Vec<EventRecord>,
    /// When each node could rightly be evicted.
    pub windows: Vec<FaultWindow>,
    /// The faults, as applied.
    pub applied: Vec<AppliedFault>,
    /// Nodes that exited on their own (not killed by the runner), in words.
    #[serde(default)]
    pub exits: Vec<String>,
    /// The limits with `max_running` the cluster ran under.
    #[serde(default)]
    pub limits: Vec<LimitBound>,
    /// The store's running counts under them, sampled during the run (the busiest key
    /// of each limit per sample).
    #[serde(default)]
    pub limit_samples: Vec<LimitSample>,
}

impl History {
    /// The index of the node an event names (by peer id or by name).
    pub fn node_ix(&self, id: &str) -> Option<NodeIx> {
        self.nodes
            .iter()
            .position(|n| n.peer_id == id || n.name == id)
    }
}

/// Reads every job and lifecycle event from the store.
pub async fn read_store(
    store: &dyn Store,
) -> Result<(Vec<JobRecord>, Vec<EventRecord>), ChaosError> {
    const PAGE: u32 = 1000;
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let filter = JobFilter {
            after,
            limit: PAGE,
            ..JobFilter::default()
        };
        let page = store.list_jobs(&filter).await?;
        let Some(last) = page.last() else { break };
        after = Some(After::Id(last.id));
        let full = page.len() == PAGE as usize;
        jobs.extend(page.into_iter().map(|j| JobRecord {
            id: j.id.0,
            unique_key: j.unique_key,
            state: j.state,
        }));
        if !full {
            break;
        }
    }
    let mut events = Vec::new();
    let mut seq = 0;
    loop {
        let page = store.events_after(seq, 10_000).await?;
        let Some(last) = page.last() else { break };
        seq = last.seq;
        events.extend(page.into_iter().map(|e| EventRecord {
            seq: e.seq,
            at_ms: e.event.at.0,
            kind: e.event.kind,
            job: e.event.job.map(|JobId(id)| id),
            node: e.event.node.map(|n| n.0),
            incarnation: e.event.detail.get("incarnation").and_then(|v| v.as_u64()),
        }));
    }
    Ok((jobs, events))
}
