//! The claim gate's driver: feeds the core's [`ClaimGate`] with what the voter says about
//! the quorum and what the failure predictor says about this node and the nodes it
//! knows ([`DrainVotes`]: a node whose score says drain holds off while half or more of
//! the known nodes would drain too, and says so in its log and in the event of the
//! change), and applies each change: the dispatcher stops claiming and gives back what
//! it claimed but did not start (or claims again), a `node.gate_closed` /
//! `node.gate_opened` event with the reason, and the metrics. The score of each check
//! is kept for the metrics (`jobmesh_node_failure_score`).
//!
//! It runs as one task per node, so changes are applied one at a time, in order: a
//! closing is answered by the dispatcher (with how many jobs it gave back) before the
//! next change is looked at.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::claim_gate::{ClaimGate, DrainVotes, GateChange, GateReason, QuorumSeen};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::predict::FailurePredictor;
use ractor::ActorRef;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::dispatcher::DispatchMsg;

/// How often the failure predictor is asked about this node. Its score moves with
/// attempts and restarts, and its peers' medians are recomputed at most once a second:
/// asking more often would only repeat the answer.
const FAILURE_CHECK_EVERY: Duration = Duration::from_millis(500);

/// How long the driver waits for the dispatcher to give back its claimed jobs (a claim
/// in flight is waited for: its jobs are given back too). Past it the event says
/// nothing of them; their leases lapse as after a crash.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// The claim gate as `Node::claim_gate` and the metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClaimGateStatus {
    /// Whether the node claims jobs.
    pub open: bool,
    /// The reasons that hold it closed now.
    pub reasons: Vec<GateReason>,
    /// Times each reason closed it, by [`GateReason::ALL`] order.
    pub closings: [u64; GateReason::ALL.len()],
    /// Jobs claimed but not started that were given back because the gate closed.
    pub released: u64,
}

/// What the node's parts share with the driver: the voter's reports in, the status out.
pub(crate) struct GateLink {
    /// The voter's latest judgement; `None` while the node has no mesh.
    quorum: watch::Sender<Option<QuorumSeen>>,
    status: Mutex<ClaimGateStatus>,
    /// This node's failure score at the last check (the bits of an `f64`; `u64::MAX`
    /// before the first): the metrics show it.
    score: AtomicU64,
}

impl GateLink {
    /// A link and the receiver of the voter's reports (for [`start`]).
    pub(crate) fn new() -> (Self, watch::Receiver<Option<QuorumSeen>>) {
        let (quorum, rx) = watch::channel(None);
        let status = ClaimGateStatus {
            open: true,
            ..ClaimGateStatus::default()
        };
        let link = Self {
            quorum,
            status: Mutex::new(status),
            score: AtomicU64::new(u64::MAX),
        };
        (link, rx)
    }

    /// The voter's judgement after each of its steps: the driver is woken only when
    /// the quorum or the view's size changed (the live count alone rides along, for
    /// the record).
    pub(crate) fn report_quorum(&self, seen: QuorumSeen) {
        self.quorum.send_if_modified(|current| {
            let changed =
                current.is_none_or(|c| (c.quorum, c.members) != (seen.quorum, seen.members));
            *current = Some(seen);
            changed
        });
    }

    /// This node's failure score as the last check saw it; `None` before the first
    /// (or with the live models off).
    pub(crate) fn failure_score(&self) -> Option<f64> {
        let bits = self.score.load(Ordering::Relaxed);
        (bits != u64::MAX).then(|| f64::from_bits(bits))
    }

    fn set_failure_score(&self, score: f64) {
        if score.is_finite() {
            self.score.store(score.to_bits(), Ordering::Relaxed);
        }
    }

    /// The gate now.
    pub(crate) fn status(&self) -> ClaimGateStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, gate: &ClaimGate, change: &GateChange, released: usize) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.open = gate.is_open();
        s.reasons = gate.reasons();
        if change.holds {
            let i = GateReason::ALL
                .iter()
                .position(|r| *r == change.reason)
                .unwrap_or(0);
            s.closings[i] += 1;
        }
        s.released += released as u64;
    }
}

/// Starts the driver; it ends when `close` fires.
pub(crate) fn start(
    ctx: Arc<Ctx>,
    dispatcher: ActorRef<DispatchMsg>,
    mut quorum: watch::Receiver<Option<QuorumSeen>>,
    close: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut gate = ClaimGate::new();
        let mut check = tokio::time::interval(FAILURE_CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reports = true;
        let mut held_off = false;
        // With the live models off there is no score to ask.
        let scored = ctx.feed.is_on();
        loop {
            let (change, detail) = tokio::select! {
                _ = close.cancelled() => return,
                r = quorum.changed(), if reports => {
                    if r.is_err() {
                        // Nobody reports any more: judge as without a mesh.
                        reports = false;
                    }
                    let seen = if reports { *quorum.borrow_and_update() } else { None };
                    let detail = seen.map_or(json!({}), |s| json!({
                        "live": s.live,
                        "members": s.members,
                    }));
                    (gate.quorum(seen), detail)
                }
                _ = check.tick(), if scored => {
                    let (votes, score) = failure_votes(&ctx);
                    ctx.gate.set_failure_score(score);
                    if votes.held_off() != held_off {
                        held_off = votes.held_off();
                        log_hold_off(&votes, score);
                    }
                    let detail = json!({
                        "score": score,
                        "peers": votes.peers,
                        "peers_draining": votes.peers_draining,
                        "held_off": votes.held_off(),
                    });
                    (gate.failure(votes), detail)
                }
            };
            if let Some(change) = change {
                apply(&ctx, &dispatcher, &gate, change, detail).await;
            }
        }
    })
}

/// What the failure model says now about this node (its drain decision and score) and
/// the nodes it knows (counted only when this one should drain: the count costs a score
/// per node).
fn failure_votes(ctx: &Ctx) -> (DrainVotes, f64) {
    let now = ctx.now().0;
    let me = &ctx.node.0;
    let mut models = ctx.models.lock();
    let f = &mut models.failure;
    let drain = f.should_drain(me, now);
    let votes = DrainVotes {
        drain,
        peers: f.peers_of(me),
        peers_draining: if drain { f.peers_draining(me, now) } else { 0 },
    };
    (votes, f.score(me, now))
}

fn log_hold_off(votes: &DrainVotes, score: f64) {
    if votes.held_off() {
        tracing::warn!(
            score,
            peers_draining = votes.peers_draining,
            known = votes.peers + 1,
            "the failure score says drain, but half or more of the nodes this node knows \
             would drain too: a cluster-wide cause (a bad deploy, a dead dependency); not draining"
        );
    } else {
        tracing::info!(
            score,
            peers_draining = votes.peers_draining,
            "no longer holding off a drain for a cluster-wide cause"
        );
    }
}

/// Carries out one change: the dispatcher, the status and metrics, the event.
async fn apply(
    ctx: &Ctx,
    dispatcher: &ActorRef<DispatchMsg>,
    gate: &ClaimGate,
    change: GateChange,
    mut detail: serde_json::Value,
) {
    let mut released = 0;
    if change.closed_it() {
        let answer = ractor::call_t!(
            dispatcher,
            DispatchMsg::GateClosed,
            RELEASE_WAIT.as_millis() as u64
        );
        match answer {
            Ok(n) => released = n,
            Err(e) => {
                tracing::warn!(error = %e, "claim gate closed; the dispatcher did not say what it gave back")
            }
        }
    } else if change.opened_it() {
        let _ = dispatcher.cast(DispatchMsg::GateOpened);
    }
    ctx.gate.record(gate, &change, released);
    let reasons: Vec<&str> = gate.reasons().into_iter().map(GateReason::as_str).collect();
    if let Some(d) = detail.as_object_mut() {
        d.insert("reason".into(), json!(change.reason.as_str()));
        d.insert("open".into(), json!(change.is_open));
        d.insert("reasons".into(), json!(reasons));
        if change.holds {
            d.insert("released".into(), json!(released));
        }
    }
    let kind = if change.holds {
        tracing::warn!(reason = %change.reason, released, ?reasons, "claim gate closed: this node claims nothing until it opens");
        EventKind::NodeGateClosed
    } else {
        tracing::info!(reason = %change.reason, open = change.is_open, %detail, "claim gate: reason cleared");
        EventKind::NodeGateOpened
    };
    let event = LifecycleEvent::new(kind, ctx.now())
        .node(ctx.node.clone())
        .detail(detail);
    ctx.events.emit(event).await;
}
