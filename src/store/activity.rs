//! Recent activity, read from the record: how long a queue's oldest available job has
//! waited, how many jobs each queue finished lately, and the lifecycle of nodes and
//! workers (folded here from their events, the same on every backend, with the live
//! heartbeats where the backend keeps them).
//!
//! Every read is index-backed and bounded (see each method), so an operator's page can
//! ask for it on every refresh without scanning a table of millions of jobs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::presence::CurrentJob;
use super::{Counts, StoreError};
use crate::clock::Millis;
use crate::event::{EventKind, StoredEvent};
use crate::job::{NodeId, WorkerId};

/// Most member events [`fold_members`] is given by the API: the newest this many node
/// and worker events (a node restarting every minute for a week is 10k events of its
/// workers; older history than that says nothing about its state now).
pub const MEMBER_EVENTS: u32 = 10_000;

/// The event kinds of nodes and workers, as the SQL predicate of the partial index that
/// finds them (`lifecycle_events_members`, sqlite migration 0008, postgres 0009). A
/// query must repeat it word for word for SQLite to use that index.
macro_rules! member_kinds_sql {
    () => {
        "kind IN ('node.joined', 'node.suspected', 'node.evicted', 'node.left', \
         'worker.started', 'worker.crashed', 'worker.restarted', 'worker.stopped')"
    };
}
pub(crate) use member_kinds_sql;

/// The jobs finished in one slice of a range, by queue and final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedSlice {
    /// The slice's start: `from + k * slice_ms`.
    pub start: Millis,
    /// Its finishes per queue and final state.
    pub counts: Counts,
}

/// Refuses a range of [`Activity::finished_slices`] that no read could mean: a slice
/// that is not positive or a range that ends before it starts.
pub(crate) fn check_slices(from: Millis, to: Millis, slice_ms: i64) -> Result<(), StoreError> {
    if slice_ms <= 0 {
        return Err(StoreError::Invalid(format!(
            "finished slices of {slice_ms} ms; they must be positive"
        )));
    }
    if to.0 < from.0 {
        return Err(StoreError::Invalid(format!(
            "finished range ends ({}) before it starts ({})",
            to.0, from.0
        )));
    }
    Ok(())
}

/// Rows `(slice index from `from`, queue, state, count)` as [`FinishedSlice`]s in time
/// order; a row whose state this version cannot read is skipped (with a warning).
pub(crate) fn finished_slices(
    rows: impl IntoIterator<Item = (i64, String, String, i64)>,
    from: Millis,
    slice_ms: i64,
) -> Vec<FinishedSlice> {
    let mut by: BTreeMap<i64, Vec<(String, String, i64)>> = BTreeMap::new();
    for (index, queue, state, n) in rows {
        by.entry(index).or_default().push((queue, state, n));
    }
    by.into_iter()
        .map(|(index, rows)| FinishedSlice {
            start: Millis(from.0.saturating_add(index.saturating_mul(slice_ms))),
            counts: super::columns::counts(rows),
        })
        .collect()
}

/// What the record says about queues, nodes and workers lately. Every backend has it,
/// so [`super::Store`] requires it.
#[async_trait]
pub trait Activity: Send + Sync + 'static {
    /// The `run_at` of the available job of `queue` that has waited longest (its age is
    /// `now - run_at`), or `None` when none is available. Read from the claim index: the
    /// first entry of each priority present, so its cost grows with the number of
    /// distinct priorities (at most 201), not with the number of jobs.
    async fn oldest_available(&self, queue: &str) -> Result<Option<Millis>, StoreError>;

    /// Jobs that finished (succeeded, discarded, cancelled) in `[from, to)`, by queue and
    /// final state, in slices of `slice_ms` from `from`: only slices with some, in time
    /// order. Read from the finished-jobs indexes the retention purge uses, so its cost
    /// grows with the jobs finished in the range, not with the table. A failed attempt
    /// that will be retried is not a finish. A range that ends before it starts, or a
    /// slice that is not positive, is [`StoreError::Invalid`].
    async fn finished_slices(
        &self,
        from: Millis,
        to: Millis,
        slice_ms: i64,
    ) -> Result<Vec<FinishedSlice>, StoreError>;

    /// The newest `limit` node and worker events (kinds `node.*` and `worker.*`), oldest
    /// first, from their own partial index.
    async fn member_events(&self, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
}

/// The members whose heartbeat has not expired, with when it expires (the backend's
/// clock), from [`super::Heartbeats::live_members`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMembers {
    /// Live nodes.
    pub nodes: Vec<(NodeId, Millis)>,
    /// Live workers.
    pub workers: Vec<(WorkerId, Millis)>,
}

/// Where a node is in its life, as its latest event (or heartbeat) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Joined, and not suspected, evicted or gone since; or heard after a suspicion.
    Up,
    /// An observer suspects it failed (no later sign of life).
    Suspected,
    /// Evicted by a certificate of votes (until it joins again).
    Evicted,
    /// Left cleanly.
    Left,
    /// Its presence row lapsed while the record says it is up: it stopped refreshing
    /// without leaving (killed, hung, or cut off from the store). See
    /// [`super::presence::with_presence`].
    Lost,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Started or restarted.
    Running,
    /// Crashed and not restarted (yet).
    Crashed,
    /// Stopped for good.
    Stopped,
}

/// A worker as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Its id (`<node>/w<slot>`).
    pub worker: WorkerId,
    /// Its state after its latest event (`running` for a worker known only by its
    /// heartbeat).
    pub state: WorkerState,
    /// Restarts in the events read.
    pub restarts: u32,
    /// Crashes in the events read.
    pub crashes: u32,
    /// Its latest event.
    pub last_event_at: Option<Millis>,
    /// When its live heartbeat expires, where the backend keeps heartbeats.
    pub heartbeat_until: Option<Millis>,
    /// The job its slot ran at its node's last presence refresh, while it still runs
    /// (see [`super::presence::with_presence`]).
    pub current_job: Option<CurrentJob>,
}

impl WorkerRecord {
    /// A worker with no events read yet: running, nothing counted.
    pub fn new(id: WorkerId) -> Self {
        WorkerRecord {
            worker: id,
            state: WorkerState::Running,
            restarts: 0,
            crashes: 0,
            last_event_at: None,
            heartbeat_until: None,
            current_job: None,
        }
    }
}

/// A node as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id (its peer id in a mesh).
    pub node: NodeId,
    /// Its state.
    pub state: NodeState,
    /// The latest sign of life: an event it wrote or one reporting it joined.
    pub last_seen: Option<Millis>,
    /// When its live heartbeat expires, where the backend keeps heartbeats.
    pub heartbeat_until: Option<Millis>,
    /// Its workers, by id.
    pub workers: Vec<WorkerRecord>,
    /// The queues it serves, from its presence row (empty without one).
    pub queues: Vec<String>,
    /// Its worker slots, from its presence row.
    pub slots: Option<u32>,
    /// Its last heartbeat: when it last wrote its presence row.
    pub seen_at: Option<Millis>,
    /// Until when that row is fresh; past it the node is [`NodeState::Lost`] unless it
    /// left or was evicted.
    pub fresh_until: Option<Millis>,
    /// Jobs running under its leases now.
    pub running: u32,
}

impl NodeRecord {
    /// A node with nothing read yet: up, no workers.
    pub fn new(id: NodeId) -> Self {
        NodeRecord {
            node: id,
            state: NodeState::Up,
            last_seen: None,
            heartbeat_until: None,
            workers: Vec::new(),
            queues: Vec::new(),
            slots: None,
            seen_at: None,
            fresh_until: None,
            running: 0,
        }
    }
}

/// The node a worker id names (`<node>/w<slot>`), for workers known only by their
/// heartbeat.
fn node_of_worker(worker: &WorkerId) -> NodeId {
    NodeId(
        worker
            .0
            .rsplit_once('/')
            .map_or(worker.0.as_str(), |(n, _)| n)
            .to_owned(),
    )
}

fn entry<'a>(nodes: &'a mut BTreeMap<NodeId, NodeRecord>, id: &NodeId) -> &'a mut NodeRecord {
    nodes
        .entry(id.clone())
        .or_insert_with(|| NodeRecord::new(id.clone()))
}

fn new_worker(id: &WorkerId) -> WorkerRecord {
    WorkerRecord::new(id.clone())
}

/// Nodes and workers as `events` (oldest first) and `live` heartbeats show them, by id.
///
/// The rules, made once here for every backend: a node's state is that of its latest
/// node event (`joined` up, `suspected`, `evicted`, `left`), except that a sign of life
/// later than a suspicion (an event of its own, a live heartbeat) makes it up again; an
/// eviction holds until it joins again. A worker's state is that of its latest worker
/// event; `restarted` and `crashed` are counted. Events naming no node are left out.
pub fn fold_members(events: &[StoredEvent], live: Option<&LiveMembers>) -> Vec<NodeRecord> {
    let mut nodes: BTreeMap<NodeId, NodeRecord> = BTreeMap::new();
    let mut workers: BTreeMap<WorkerId, (NodeId, WorkerRecord)> = BTreeMap::new();
    for e in events {
        let ev = &e.event;
        let node = match (&ev.node, &ev.worker) {
            (Some(n), _) => n.clone(),
            (None, Some(w)) => node_of_worker(w),
            (None, None) => continue,
        };
        let rec = entry(&mut nodes, &node);
        let seen = match ev.kind {
            EventKind::NodeJoined => {
                rec.state = NodeState::Up;
                true
            }
            EventKind::NodeSuspected => {
                if rec.state == NodeState::Up {
                    rec.state = NodeState::Suspected;
                }
                false
            }
            EventKind::NodeEvicted => {
                rec.state = NodeState::Evicted;
                false
            }
            EventKind::NodeLeft => {
                rec.state = NodeState::Left;
                true
            }
            EventKind::WorkerStarted
            | EventKind::WorkerCrashed
            | EventKind::WorkerRestarted
            | EventKind::WorkerStopped => {
                if rec.state == NodeState::Suspected {
                    rec.state = NodeState::Up;
                }
                true
            }
            _ => false,
        };
        if seen {
            rec.last_seen = rec.last_seen.max(Some(ev.at));
        }
        let Some(worker) = &ev.worker else { continue };
        let (_, w) = workers
            .entry(worker.clone())
            .or_insert_with(|| (node.clone(), new_worker(worker)));
        match ev.kind {
            EventKind::WorkerStarted => w.state = WorkerState::Running,
            EventKind::WorkerRestarted => {
                w.state = WorkerState::Running;
                w.restarts += 1;
            }
            EventKind::WorkerCrashed => {
                w.state = WorkerState::Crashed;
                w.crashes += 1;
            }
            EventKind::WorkerStopped => w.state = WorkerState::Stopped,
            _ => {}
        }
        w.last_event_at = w.last_event_at.max(Some(ev.at));
    }
    if let Some(live) = live {
        for (id, until) in &live.nodes {
            let rec = entry(&mut nodes, id);
            rec.heartbeat_until = Some(*until);
            if rec.state == NodeState::Suspected {
                rec.state = NodeState::Up;
            }
        }
        for (id, until) in &live.workers {
            let node = node_of_worker(id);
            entry(&mut nodes, &node);
            let (_, w) = workers
                .entry(id.clone())
                .or_insert_with(|| (node, new_worker(id)));
            w.heartbeat_until = Some(*until);
        }
    }
    for (_, (node, w)) in workers {
        if let Some(rec) = nodes.get_mut(&node) {
            rec.workers.push(w);
        }
    }
    nodes.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LifecycleEvent;

    fn ev(seq: i64, e: LifecycleEvent) -> StoredEvent {
        StoredEvent { seq, event: e }
    }

    fn n(id: &str) -> NodeId {
        NodeId(id.into())
    }

    fn w(id: &str) -> WorkerId {
        WorkerId(id.into())
    }

    #[test]
    fn nodes_and_workers_follow_their_latest_events() {
        let at = |ms| Millis(ms);
        let events = [
            ev(
                1,
                LifecycleEvent::new(EventKind::NodeJoined, at(10)).node(n("a")),
            ),
            ev(
                2,
                LifecycleEvent::new(EventKind::WorkerStarted, at(11))
                    .worker(w("a/w0"))
                    .node(n("a")),
            ),
            ev(
                3,
                LifecycleEvent::new(EventKind::WorkerCrashed, at(12))
                    .worker(w("a/w0"))
                    .node(n("a")),
            ),
            ev(
                4,
                LifecycleEvent::new(EventKind::WorkerRestarted, at(13))
                    .worker(w("a/w0"))
                    .node(n("a")),
            ),
            ev(
                5,
                LifecycleEvent::new(EventKind::NodeJoined, at(14)).node(n("b")),
            ),
            ev(
                6,
                LifecycleEvent::new(EventKind::NodeSuspected, at(20)).node(n("b")),
            ),
            ev(
                7,
                LifecycleEvent::new(EventKind::NodeEvicted, at(21)).node(n("b")),
            ),
            ev(
                8,
                LifecycleEvent::new(EventKind::NodeJoined, at(22)).node(n("c")),
            ),
            ev(
                9,
                LifecycleEvent::new(EventKind::NodeSuspected, at(23)).node(n("c")),
            ),
            ev(
                10,
                LifecycleEvent::new(EventKind::WorkerStarted, at(24))
                    .worker(w("c/w0"))
                    .node(n("c")),
            ),
            // A worker event with no node names it through the worker id.
            ev(
                11,
                LifecycleEvent::new(EventKind::WorkerStopped, at(25)).worker(w("d/w1")),
            ),
            // An event naming nobody is left out.
            ev(12, LifecycleEvent::new(EventKind::NodeLeft, at(26))),
        ];
        let nodes = fold_members(&events, None);
        let ids: Vec<&str> = nodes.iter().map(|r| r.node.0.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(nodes[0].state, NodeState::Up);
        assert_eq!(nodes[0].last_seen, Some(at(13)));
        let a0 = &nodes[0].workers[0];
        assert_eq!(
            (a0.state, a0.restarts, a0.crashes),
            (WorkerState::Running, 1, 1)
        );
        assert_eq!(nodes[1].state, NodeState::Evicted, "eviction holds");
        assert_eq!(
            nodes[1].last_seen,
            Some(at(14)),
            "a suspicion is not a sign of life"
        );
        assert_eq!(nodes[2].state, NodeState::Up, "heard after the suspicion");
        assert_eq!(nodes[3].workers[0].state, WorkerState::Stopped);
    }

    #[test]
    fn heartbeats_add_members_and_lift_suspicions_but_not_evictions() {
        let events = [
            ev(
                1,
                LifecycleEvent::new(EventKind::NodeSuspected, Millis(5)).node(n("a")),
            ),
            ev(
                2,
                LifecycleEvent::new(EventKind::NodeEvicted, Millis(6)).node(n("b")),
            ),
        ];
        let live = LiveMembers {
            nodes: vec![
                (n("a"), Millis(100)),
                (n("b"), Millis(100)),
                (n("c"), Millis(90)),
            ],
            workers: vec![(w("c/w3"), Millis(90))],
        };
        let nodes = fold_members(&events, Some(&live));
        assert_eq!(nodes[0].state, NodeState::Up);
        assert_eq!(nodes[0].heartbeat_until, Some(Millis(100)));
        assert_eq!(nodes[1].state, NodeState::Evicted);
        assert_eq!(nodes[2].node, n("c"));
        assert_eq!(nodes[2].workers[0].worker, w("c/w3"));
        assert_eq!(nodes[2].workers[0].heartbeat_until, Some(Millis(90)));
    }
}
