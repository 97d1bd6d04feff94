//! Node presence: what each node says of itself, periodically, in the store (the queues
//! it serves, its slots and what each slot runs), and the jobs running now by node. With
//! them an operator's page can tell which queues no live node serves, which node went
//! silent without leaving (killed with `kill -9`, cut off from the store), and what each
//! worker is doing, on every backend and without a mesh.
//!
//! What the rows mean is decided here, once: when a row is fresh ([`Presence::is_fresh`]),
//! which nodes serve a queue ([`served_by`]), and how rows and running jobs add to the
//! nodes the event record shows ([`with_presence`]). The backends only store and read
//! rows (see [`super::NodePresence`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::activity::{NodeRecord, NodeState, WorkerRecord, WorkerState};
use crate::clock::Millis;
use crate::job::{JobId, NodeId, WorkerId, check_queue_name};

/// A row is fresh while it is at most this many of its own refresh intervals old: one
/// slow or failed refresh does not make a node look lost.
pub const FRESH_INTERVALS: u32 = 3;
/// Rows not refreshed for this long are deleted by the next announcement of any node: a
/// node that was killed and never came back under its name leaves no row forever.
pub const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most rows [`super::NodePresence::presences`] reads.
pub const MAX_PRESENCES: u32 = 10_000;
/// Most running jobs [`super::NodePresence::running_jobs`] reads.
pub const MAX_RUNNING: u32 = 10_000;
/// Most queues a row names.
pub const MAX_QUEUES: usize = 1_000;
/// Most slots a row has.
pub const MAX_SLOTS: u32 = 100_000;
/// Longest refresh interval a row may claim (a longer one would keep a dead node fresh
/// for hours).
pub const MAX_EVERY: Duration = Duration::from_secs(3600);
/// Longest node id a row may carry.
pub const MAX_NODE_ID: usize = 256;

/// What one worker slot runs, as of the row's `seen_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotJob {
    /// The job.
    pub job: JobId,
    /// When the worker was handed it.
    pub at: Millis,
}

/// One node's row: what it serves and when it last said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The node.
    pub node: NodeId,
    /// The queues it claims from.
    pub queues: Vec<String>,
    /// Its worker slots (`workers.concurrency`).
    pub slots: u32,
    /// Per slot (`<node>/w<slot>`), what it runs; at most `slots` entries.
    pub working: Vec<Option<SlotJob>>,
    /// When this run of the node started (a withdrawal names it, so a late one from an
    /// earlier run under the same name leaves the new run's row alone).
    pub started_at: Millis,
    /// When the node last wrote the row (its clock).
    pub seen_at: Millis,
    /// How often it writes the row.
    pub every: Duration,
}

impl Presence {
    /// Refuses a row no node would write: an empty or overlong node id, a bad queue
    /// name, no slots or more than [`MAX_SLOTS`], more slot entries than slots, an
    /// interval of zero or over [`MAX_EVERY`].
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::Invalid(format!("presence: {m}")));
        if self.node.0.is_empty() || self.node.0.len() > MAX_NODE_ID {
            return bad(format!("node id must be 1-{MAX_NODE_ID} bytes"));
        }
        if self.queues.len() > MAX_QUEUES {
            return bad(format!("at most {MAX_QUEUES} queues"));
        }
        for q in &self.queues {
            check_queue_name(q).map_err(|m| StoreError::Invalid(format!("presence: {m}")))?;
        }
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return bad(format!("slots must be 1-{MAX_SLOTS}"));
        }
        if self.working.len() > self.slots as usize {
            return bad("more slot entries than slots".into());
        }
        if self.every.is_zero() || self.every > MAX_EVERY {
            return bad(format!("refresh interval must be 1 ms to {MAX_EVERY:?}"));
        }
        Ok(())
    }

    /// Until when the row is fresh: [`FRESH_INTERVALS`] intervals after `seen_at`.
    pub fn fresh_until(&self) -> Millis {
        self.seen_at.plus(self.every * FRESH_INTERVALS)
    }

    /// Whether the node wrote its row recently enough, as of `now`.
    pub fn is_fresh(&self, now: Millis) -> bool {
        now <= self.fresh_until()
    }
}

/// A job running now, from the jobs table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningJob {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// The node holding its lease.
    pub node: Option<NodeId>,
    /// When its lease expires.
    pub lease_expires_at: Option<Millis>,
}

/// A worker's current job, as the nodes view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentJob {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// When the worker was handed it.
    pub started_at: Millis,
}

/// A `node_presence` row as both backends read it: node, queues (JSON), slots, working
/// (JSON), started_at, seen_at, every_ms.
pub(crate) type PresenceRow = (String, String, i64, String, i64, i64, i64);

/// The columns of [`PresenceRow`], in order (Postgres reads its JSON as text).
macro_rules! presence_columns_sql {
    ($json:literal) => {
        concat!(
            "node, queues",
            $json,
            ", slots, working",
            $json,
            ", started_at, seen_at, every_ms"
        )
    };
}
pub(crate) use presence_columns_sql;

/// A running job's row: id, queue, kind, lease_node, lease_expires_at.
pub(crate) type RunningRow = (i64, String, String, Option<String>, Option<i64>);

/// The JSON a row stores for `queues` and `working`.
pub(crate) fn row_json(p: &Presence) -> (String, String) {
    (
        serde_json::to_string(&p.queues).expect("strings serialize"),
        serde_json::to_string(&p.working).expect("slot jobs serialize"),
    )
}

/// Rows as presences; a row that does not decode (written by hand, or by a newer
/// version) is left out with a warning rather than failing the page.
pub(crate) fn presences_of(rows: Vec<PresenceRow>) -> Vec<Presence> {
    rows.into_iter()
        .filter_map(|(node, queues, slots, working, started_at, seen_at, every_ms)| {
            let decoded = (|| {
                Some(Presence {
                    queues: serde_json::from_str(&queues).ok()?,
                    working: serde_json::from_str(&working).ok()?,
                    slots: u32::try_from(slots).ok()?,
                    started_at: Millis(started_at),
                    seen_at: Millis(seen_at),
                    every: Duration::from_millis(u64::try_from(every_ms).ok()?),
                    node: NodeId(node.clone()),
                })
            })();
            if decoded.is_none() {
                tracing::warn!(node = %node.escape_debug(), "a node_presence row does not decode; left out");
            }
            decoded
        })
        .collect()
}

/// Running rows as running jobs.
pub(crate) fn running_of(rows: Vec<RunningRow>) -> Vec<RunningJob> {
    rows.into_iter()
        .map(|(id, queue, kind, node, expires)| RunningJob {
            id: JobId(id),
            queue,
            kind,
            node: node.map(NodeId),
            lease_expires_at: expires.map(Millis),
        })
        .collect()
}

/// The queues served by a node whose row is fresh at `now`, each with those nodes (by
/// id).
pub fn served_by(presences: &[Presence], now: Millis) -> BTreeMap<String, Vec<NodeId>> {
    let mut out: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for p in presences.iter().filter(|p| p.is_fresh(now)) {
        for q in &p.queues {
            out.entry(q.clone()).or_default().push(p.node.clone());
        }
    }
    for nodes in out.values_mut() {
        nodes.sort();
        nodes.dedup();
    }
    out
}

fn node_entry<'a>(nodes: &'a mut BTreeMap<NodeId, NodeRecord>, id: &NodeId) -> &'a mut NodeRecord {
    nodes
        .entry(id.clone())
        .or_insert_with(|| NodeRecord::new(id.clone()))
}

/// The nodes of [`super::fold_members`] with what the presence rows and the running
/// jobs add, by id:
///
/// - a node with a row gets its queues, slots and last heartbeat (`seen_at`); a fresh
///   row is a sign of life (it lifts a suspicion, as a heartbeat does; an eviction
///   holds); a lapsed row makes a node that the record says is up or suspected
///   [`NodeState::Lost`]; a node known only by its row is added;
/// - each node counts the running jobs whose lease it holds (a node known only by its
///   leases is added);
/// - a worker's current job is the job its slot ran at the row's last refresh, if that
///   job still runs under the node's lease (one that started since shows at the next
///   refresh); a worker known only this way is added, running.
pub fn with_presence(
    members: Vec<NodeRecord>,
    presences: &[Presence],
    running: &[RunningJob],
    now: Millis,
) -> Vec<NodeRecord> {
    let mut nodes: BTreeMap<NodeId, NodeRecord> =
        members.into_iter().map(|n| (n.node.clone(), n)).collect();
    let mut by_id: BTreeMap<JobId, &RunningJob> = BTreeMap::new();
    for job in running {
        by_id.insert(job.id, job);
        if let Some(node) = &job.node {
            node_entry(&mut nodes, node).running += 1;
        }
    }
    for p in presences {
        let rec = node_entry(&mut nodes, &p.node);
        rec.queues = p.queues.clone();
        rec.slots = Some(p.slots);
        rec.seen_at = Some(p.seen_at);
        rec.fresh_until = Some(p.fresh_until());
        if p.is_fresh(now) {
            if rec.state == NodeState::Suspected {
                rec.state = NodeState::Up;
            }
        } else if matches!(rec.state, NodeState::Up | NodeState::Suspected) {
            rec.state = NodeState::Lost;
        }
        for (slot, entry) in p.working.iter().enumerate() {
            let Some(entry) = entry else { continue };
            let Some(job) = by_id.get(&entry.job) else {
                continue;
            };
            if job.node.as_ref() != Some(&p.node) {
                continue;
            }
            let id = WorkerId(format!("{}/w{slot}", p.node.0));
            let current = CurrentJob {
                id: job.id,
                kind: job.kind.clone(),
                queue: job.queue.clone(),
                started_at: entry.at,
            };
            match rec.workers.iter_mut().find(|w| w.worker == id) {
                Some(w) => w.current_job = Some(current),
                None => {
                    let mut w = WorkerRecord::new(id);
                    w.state = WorkerState::Running;
                    w.current_job = Some(current);
                    rec.workers.push(w);
                    rec.workers.sort_by(|a, b| a.worker.cmp(&b.worker));
                }
            }
        }
    }
    nodes.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, queues: &[&str], seen: i64) -> Presence {
        Presence {
            node: NodeId(node.into()),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            slots: 2,
            working: vec![
                None,
                Some(SlotJob {
                    job: JobId(7),
                    at: Millis(5),
                }),
            ],
            started_at: Millis(0),
            seen_at: Millis(seen),
            every: Duration::from_millis(10),
        }
    }

    #[test]
    fn a_row_is_fresh_for_three_intervals() {
        let p = row("a", &["q"], 100);
        assert!(p.is_fresh(Millis(130)));
        assert!(!p.is_fresh(Millis(131)));
    }

    #[test]
    fn only_fresh_rows_serve() {
        let rows = [
            row("b", &["q", "r"], 100),
            row("a", &["q"], 100),
            row("c", &["s"], 0),
        ];
        let served = served_by(&rows, Millis(120));
        assert_eq!(served["q"], [NodeId("a".into()), NodeId("b".into())]);
        assert_eq!(served["r"], [NodeId("b".into())]);
        assert!(!served.contains_key("s"), "c's row lapsed");
    }

    #[test]
    fn lapsed_rows_lose_up_nodes_and_slots_name_current_jobs() {
        let mut up = NodeRecord::new(NodeId("a".into()));
        up.state = NodeState::Up;
        let mut left = NodeRecord::new(NodeId("b".into()));
        left.state = NodeState::Left;
        let running = [
            RunningJob {
                id: JobId(7),
                queue: "q".into(),
                kind: "sleep".into(),
                node: Some(NodeId("c".into())),
                lease_expires_at: None,
            },
            RunningJob {
                id: JobId(8),
                queue: "q".into(),
                kind: "noop".into(),
                node: Some(NodeId("c".into())),
                lease_expires_at: None,
            },
        ];
        let rows = [
            row("a", &["q"], 0),
            row("b", &["q"], 0),
            row("c", &["q"], 100),
        ];
        let nodes = with_presence(vec![up, left], &rows, &running, Millis(120));
        assert_eq!(nodes[0].state, NodeState::Lost);
        assert_eq!(nodes[1].state, NodeState::Left, "a clean leave stays");
        let c = &nodes[2];
        assert_eq!((c.state, c.running, c.slots), (NodeState::Up, 2, Some(2)));
        assert_eq!(c.seen_at, Some(Millis(100)));
        assert_eq!(c.workers.len(), 1);
        assert_eq!(c.workers[0].worker, WorkerId("c/w1".into()));
        let job = c.workers[0].current_job.as_ref().unwrap();
        assert_eq!((job.id, job.kind.as_str()), (JobId(7), "sleep"));
        // Slot 1 of a names job 7 too, but a's node does not hold its lease.
        assert!(nodes[0].workers.is_empty());
    }

    #[test]
    fn bad_rows_are_refused() {
        let ok = row("a", &["q"], 0);
        assert!(ok.check().is_ok());
        let mut p = ok.clone();
        p.queues = vec!["bad name".into()];
        assert!(p.check().is_err());
        let mut p = ok.clone();
        p.slots = 1;
        assert!(p.check().is_err(), "two entries for one slot");
        let mut p = ok.clone();
        p.every = Duration::ZERO;
        assert!(p.check().is_err());
        let mut p = ok;
        p.node = NodeId(String::new());
        assert!(p.check().is_err());
    }
}
