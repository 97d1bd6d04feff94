//! What a node adds to its [`Metrics`] registry: collectors read at scrape time from
//! state the node keeps anyway (its running attempts and counters, its voter's view of
//! the mesh), so the hot path records nothing for them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use jobmesh::claim_gate::GateReason;
use jobmesh::metrics::Metrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::context::Ctx;
use crate::voter::MeshStatus;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GateLabels {
    node: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// The node's running attempts, worker slots and worker restarts and crashes.
struct NodeCollector {
    /// Weak: the registry lives in the context, which must not keep itself alive.
    ctx: Weak<Ctx>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(ctx) = self.ctx.upgrade() else {
            return Ok(());
        };
        let node = NodeLabel {
            node: ctx.node.0.clone(),
        };
        let gauge = |encoder: &mut DescriptorEncoder, name, help, v: i64| {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(family.encode_family(&node)?)
        };
        gauge(
            &mut encoder,
            "jobmesh_jobs_running",
            "Attempts running on this node's workers",
            ctx.inflight.busy() as i64,
        )?;
        gauge(
            &mut encoder,
            "jobmesh_worker_slots",
            "Worker slots of this node (workers.concurrency)",
            i64::from(ctx.workers.concurrency),
        )?;
        let c = &ctx.counters;
        for (name, help, v) in [
            (
                "jobmesh_worker_restarts",
                "Workers restarted after a crash",
                c.restarts.load(Ordering::Relaxed),
            ),
            (
                "jobmesh_worker_crashes",
                "Worker crashes (a handler panicked)",
                c.crashes.load(Ordering::Relaxed),
            ),
            (
                "jobmesh_voter_restarts",
                "Voter restarts after a crash (mesh mode)",
                c.voter_restarts.load(Ordering::Relaxed),
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(family.encode_family(&node)?)?;
        }
        if let Some(score) = ctx.gate.failure_score() {
            let mut family = encoder.encode_descriptor(
                "jobmesh_node_failure_score",
                "This node's failure score at the claim gate's last check (0 is healthy; \
                 above the entry threshold and confirmed, the node drains)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(score).encode(family.encode_family(&node)?)?;
        }
        encode_gate(&mut encoder, &ctx)
    }
}

/// The claim gate: whether each reason holds it closed now, how often each closed it,
/// and the jobs it made the dispatcher give back.
fn encode_gate(encoder: &mut DescriptorEncoder, ctx: &Ctx) -> Result<(), std::fmt::Error> {
    let gate = ctx.gate.status();
    let labels = |reason: GateReason| GateLabels {
        node: ctx.node.0.clone(),
        reason: reason.label(),
    };
    let mut family = encoder.encode_descriptor(
        "jobmesh_claim_gate_closed",
        "1 while this reason holds the node's claim gate closed (it claims nothing)",
        None,
        MetricType::Gauge,
    )?;
    for reason in GateReason::ALL {
        let closed = i64::from(gate.reasons.contains(&reason));
        ConstGauge::new(closed).encode(family.encode_family(&labels(reason))?)?;
    }
    let mut family = encoder.encode_descriptor(
        "jobmesh_claim_gate_closings",
        "Times this reason closed the node's claim gate",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in GateReason::ALL.into_iter().zip(gate.closings) {
        ConstCounter::new(n).encode(family.encode_family(&labels(reason))?)?;
    }
    let mut family = encoder.encode_descriptor(
        "jobmesh_claim_gate_released_jobs",
        "Jobs claimed but not started that the node gave back when its claim gate closed",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(gate.released).encode(family.encode_family(&NodeLabel {
        node: ctx.node.0.clone(),
    })?)?;
    Ok(())
}

/// Registers the node's collector.
pub(crate) fn register_node(ctx: &Arc<Ctx>) {
    let collector = NodeCollector {
        ctx: Arc::downgrade(ctx),
    };
    ctx.metrics
        .with_registry(|r| r.register_collector(Box::new(collector)));
}

/// Members by state, each member's phi, and whether a quorum is seen, from the voter's
/// last status snapshot. Peer ids as labels are bounded by the mesh's size.
#[derive(Debug)]
struct MeshCollector {
    status: Arc<Mutex<MeshStatus>>,
}

impl Collector for MeshCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut by_state: std::collections::BTreeMap<&str, i64> =
            ["self", "alive", "suspected", "evicted"]
                .into_iter()
                .map(|s| (s, 0))
                .collect();
        for m in &status.members {
            *by_state.entry(m.state.as_str()).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "jobmesh_mesh_members",
            "Members of the mesh by state, as this node sees them",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in by_state {
            let labels = StateLabel {
                state: state.to_string(),
            };
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "jobmesh_mesh_phi",
            "Suspicion level (phi accrual) of each member this node watches",
            None,
            MetricType::Gauge,
        )?;
        for m in &status.members {
            if let Some(phi) = m.phi {
                let labels = PeerLabel {
                    peer: m.peer.clone(),
                };
                ConstGauge::new(phi).encode(family.encode_family(&labels)?)?;
            }
        }
        ConstGauge::new(i64::from(status.quorum)).encode(encoder.encode_descriptor(
            "jobmesh_mesh_quorum",
            "1 if this node sees a quorum of its view alive (it votes Down only then)",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

/// Registers the collector of the voter's `status`.
pub(crate) fn register_mesh(metrics: &Metrics, status: Arc<Mutex<MeshStatus>>) {
    metrics.with_registry(|r| r.register_collector(Box::new(MeshCollector { status })));
}
