//! [`Node`]: one process's job runtime. It starts the supervision tree, takes
//! submissions, streams lifecycle events and stops gracefully.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::Clock;
use jobmesh::config::{PredictSection, WorkersSection};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::handler::Registry;
use jobmesh::job::{Completion, JobId, NewJob, NodeId, Outcome, ProgressReport, RetryPolicy};
use jobmesh::metrics::{MeteredStore, Metrics};
use jobmesh::predict::SharedModels;
use jobmesh::store::{CancelOutcome, EnqueueOutcome, SharedStore};
use ractor::{Actor, ActorRef};
use serde_json::json;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::claim_gate::{self, ClaimGateStatus, GateLink};
use crate::completer;
use crate::context::{Counters, Ctx, Finished, NodeStats};
use crate::dispatcher::DispatchMsg;
use crate::error::NodeError;
use crate::event_sink::EventSink;
use crate::inflight::InFlight;
use crate::mesh::{Client, MeshConfig, spawn_mesh};
use crate::node_supervisor::{CurrentVoter, NodeMsg, NodeSupervisor};
use crate::periodic;

#[path = "node_periodic.rs"]
mod node_periodic;
use crate::voter::{Interceptor, MeshStatus, Untouched, VoterSpec, pump};
use crate::wakeups;
use jobmesh::membership::{JoinCertificate, MEMBERSHIP_TOPIC, Membership, MembershipConfig};

/// How long background writers get to flush at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node needs to start.
pub struct NodeOptions {
    /// The node's name; leases it holds carry it.
    pub node_id: NodeId,
    /// Workers, queues, leases, batching and restart policy.
    pub workers: WorkersSection,
    /// Retry backoff for failed attempts.
    pub retry: RetryPolicy,
    /// Where jobs live.
    pub store: SharedStore,
    /// Handlers by kind (also validates submissions).
    pub registry: Registry,
    /// The clock (a manual one in tests).
    pub clock: Arc<dyn Clock>,
    /// Retention enforced by whichever node holds the maintenance leader lease;
    /// `None`: this node never purges.
    pub retention: Option<jobmesh::store::retention::Retention>,
    /// The live models: on or off, and how often they are saved and the other nodes'
    /// read (`[predict]`).
    pub predict: PredictSection,
}

/// What a node needs to join a mesh.
pub struct MeshOptions {
    /// The node's identity; its peer id becomes its node id (leases carry it).
    pub keypair: libp2p::identity::Keypair,
    /// Listen and bootstrap addresses and gossip tuning; the membership topic is added.
    pub mesh: MeshConfig,
    /// Members (allowlist), f and the detector's timings.
    pub membership: MembershipConfig,
    /// Seed of the protocol's randomness (probe order, jitter).
    pub seed: u64,
    /// Join certificate signed by the cluster key, for a node admitted that way rather
    /// than by the allowlist (`membership.cluster_key` must be set).
    pub join: Option<JoinCertificate>,
}

/// The mesh side of a node.
struct MeshParts {
    client: Client,
    /// The voter running now (the node supervisor restarts it after a crash).
    voter: CurrentVoter,
    status: Arc<Mutex<MeshStatus>>,
    /// The event loop and the pump from the mesh to the voter.
    tasks: Vec<JoinHandle<()>>,
}

/// A running node.
pub struct Node {
    mesh: Option<MeshParts>,
    ctx: Arc<Ctx>,
    supervisor: ActorRef<NodeMsg>,
    supervisor_task: Mutex<Option<JoinHandle<()>>>,
    dispatcher: ActorRef<DispatchMsg>,
    close: CancellationToken,
    /// Tasks that end when `close` fires (the event sink and completer flush first; the
    /// wake-up forwarder just stops); shutdown waits for them.
    writers: Mutex<Vec<JoinHandle<()>>>,
    fatal: watch::Receiver<Option<String>>,
    /// Wakes this node's periodic task when the node changed the store's schedules.
    periodic: Arc<Notify>,
    /// Fired when the node stops claiming at shutdown: the presence writer deletes the
    /// node's row then (a child of `close`).
    serving: CancellationToken,
}

impl Node {
    /// Starts a node: revokes leases left by an earlier run under the same name (it
    /// crashed: those attempts are dead), then starts the supervision tree.
    pub async fn start(opts: NodeOptions) -> Result<Node, NodeError> {
        if opts.workers.concurrency == 0 {
            return Err(NodeError::Options(
                "workers.concurrency must be at least 1".into(),
            ));
        }
        if opts.workers.queues.is_empty() {
            return Err(NodeError::Options(
                "workers.queues must name a queue".into(),
            ));
        }
        if opts.predict.save_interval.is_zero() {
            return Err(NodeError::Options(
                "predict.save_interval must be greater than zero".into(),
            ));
        }
        // Everything the node does to the store passes the meter; callers that want
        // their own calls counted too (the API in `node --api`) use `Node::store`.
        let metrics = Metrics::new();
        let store = MeteredStore::wrap(opts.store, metrics.clone());
        let now = opts.clock.now();
        let revoked = store
            .revoke_node(
                &opts.node_id,
                now,
                json!({ "reason": "node restarted; its previous run's leases are void" }),
            )
            .await?;
        if !revoked.is_empty() {
            tracing::info!(
                n = revoked.len(),
                "rescued jobs left running by this node's last run"
            );
        }
        // One set of models per node, resumed from what this node saved last.
        let feed =
            crate::models::resume(&store, &opts.node_id.0, &opts.predict, &opts.retry, now.0).await;
        let close = CancellationToken::new();
        let (events, sink_task) = EventSink::start(store.clone(), close.clone());
        let (completions, completions_rx) =
            mpsc::channel(4 * opts.workers.complete_batch.max(1) as usize);
        let (gate, quorum_reports) = GateLink::new();
        let ctx = Arc::new(Ctx {
            inflight: InFlight::new(opts.workers.concurrency as usize),
            lease: std::sync::Mutex::new(jobmesh::predict::policy::duration::LeaseLength::new(
                opts.workers.lease,
            )),
            node: opts.node_id,
            store,
            registry: Arc::new(opts.registry),
            clock: opts.clock,
            retry: opts.retry,
            completions,
            events,
            counters: Counters::default(),
            retention: opts.retention,
            slo: crate::decide::QueueSlo::new(&metrics),
            metrics,
            models: feed.models().clone(),
            gate,
            feed,
            workers: opts.workers,
            predict: opts.predict,
        });
        crate::metrics::register_node(&ctx);
        let completer_task = completer::start(ctx.clone(), completions_rx, close.clone());
        ctx.events
            .emit(
                LifecycleEvent::new(EventKind::NodeJoined, now)
                    .node(ctx.node.clone())
                    .detail(json!({
                        "backend": ctx.store.backend(),
                        "concurrency": ctx.workers.concurrency,
                        "queues": ctx.workers.queues,
                        "revoked": revoked.len(),
                    })),
            )
            .await;
        let (fatal_tx, fatal) = watch::channel(None);
        let (supervisor, task) = Actor::spawn(None, NodeSupervisor, (ctx.clone(), fatal_tx))
            .await
            .map_err(|e| NodeError::Actor(e.to_string()))?;
        let dispatcher = ractor::call!(supervisor, NodeMsg::Dispatcher)
            .map_err(|e| NodeError::Actor(e.to_string()))?;
        let periodic = Arc::new(Notify::new());
        let periodic_task = periodic::start(
            ctx.clone(),
            dispatcher.clone(),
            periodic.clone(),
            close.clone(),
        );
        let progress_task = crate::progress::start(ctx.clone(), close.clone());
        let gate_task = claim_gate::start(
            ctx.clone(),
            dispatcher.clone(),
            quorum_reports,
            close.clone(),
        );
        let models_task = crate::models::start(ctx.clone(), close.clone());
        // The row goes in before `start` returns, so a caller sees this node serve its
        // queues at once.
        crate::presence::announce(&ctx, now).await;
        let serving = close.child_token();
        let presence_task = crate::presence::start(ctx.clone(), now, serving.clone());
        let mut writers = vec![
            sink_task,
            completer_task,
            periodic_task,
            progress_task,
            gate_task,
            models_task,
            presence_task,
        ];
        writers.extend(
            wakeups::start(
                &ctx.store,
                &ctx.workers.queues,
                dispatcher.clone(),
                close.clone(),
            )
            .await,
        );
        Ok(Node {
            mesh: None,
            ctx,
            supervisor,
            supervisor_task: Mutex::new(Some(task)),
            dispatcher,
            close,
            writers: Mutex::new(writers),
            fatal,
            periodic,
            serving,
        })
    }

    /// Starts a node that joins a libp2p mesh: its node id is its peer id, it gossips
    /// heartbeats and votes on the membership topic, and when a certificate evicts a
    /// member it revokes that member's leases so its jobs run again at once.
    pub async fn start_meshed(opts: NodeOptions, mesh: MeshOptions) -> Result<Node, NodeError> {
        Node::start_meshed_with(opts, mesh, |_, _| Untouched).await
    }

    /// [`Node::start_meshed`] with the voter's traffic passing the interceptor `make`
    /// builds from the mesh client and the node key (a chaos build's fault injector;
    /// production passes [`Untouched`]).
    pub(crate) async fn start_meshed_with<I: Interceptor>(
        mut opts: NodeOptions,
        mesh: MeshOptions,
        make: impl FnOnce(&Client, &libp2p::identity::Keypair) -> I,
    ) -> Result<Node, NodeError> {
        let me = mesh.keypair.public().to_peer_id();
        opts.node_id = NodeId(me.to_string());
        // Refuse bad membership settings (and a key that is not a member) before anything
        // starts; the voter builds its own core.
        Membership::new(
            mesh.membership.clone(),
            mesh.keypair.clone(),
            mesh.join.clone(),
            mesh.seed,
            opts.clock.now(),
        )
        .map_err(|e| NodeError::Options(format!("membership: {e}")))?;
        let mut node = Node::start(opts).await?;
        let mut config = mesh.mesh;
        if !config.topics.iter().any(|t| t == MEMBERSHIP_TOPIC) {
            config.topics.push(MEMBERSHIP_TOPIC.to_string());
        }
        config.probe_timeout = mesh.membership.probe_timeout;
        config.metrics = Some(node.ctx.metrics.clone());
        let (client, events, loop_task) = match spawn_mesh(mesh.keypair.clone(), config) {
            Ok(m) => m,
            Err(e) => {
                let _ = node.shutdown(Duration::from_secs(1)).await;
                return Err(NodeError::Options(format!("mesh: {e}")));
            }
        };
        let interceptor = Arc::new(make(&client, &mesh.keypair));
        let events = interceptor.incoming(events);
        let status = Arc::new(Mutex::new(MeshStatus::default()));
        crate::metrics::register_mesh(&node.ctx.metrics, status.clone());
        let spec = VoterSpec {
            config: mesh.membership,
            keypair: mesh.keypair,
            join: mesh.join,
            seed: mesh.seed,
            client: client.clone(),
            interceptor,
            ctx: node.ctx.clone(),
            status: status.clone(),
        };
        let started = ractor::call!(node.supervisor, NodeMsg::StartVoter, Box::new(spec))
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let voter = match started {
            Ok(v) => v,
            Err(e) => {
                loop_task.abort();
                let _ = node.shutdown(Duration::from_secs(1)).await;
                return Err(NodeError::Actor(format!("voter: {e}")));
            }
        };
        let pump = pump(events, voter.clone(), client.clone());
        node.mesh = Some(MeshParts {
            client,
            voter,
            status,
            tasks: vec![loop_task, pump],
        });
        Ok(node)
    }

    /// The mesh client, when the node joined a mesh.
    pub fn mesh(&self) -> Option<&Client> {
        self.mesh.as_ref().map(|m| &m.client)
    }

    /// The membership as this node sees it, when it joined a mesh.
    pub fn mesh_status(&self) -> Option<MeshStatus> {
        self.mesh
            .as_ref()
            .map(|m| m.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// A snapshot source of the membership view that outlives borrows of the node (for
    /// a task that publishes it, such as the binary's status file).
    pub fn mesh_status_source(&self) -> impl Fn() -> Option<MeshStatus> + Send + 'static {
        let status = self.mesh.as_ref().map(|m| m.status.clone());
        move || {
            status
                .as_ref()
                .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
        }
    }

    /// The claim gate: whether this node claims jobs now, and what holds it closed
    /// (no quorum heard in its mesh, its own failure score).
    pub fn claim_gate(&self) -> ClaimGateStatus {
        self.ctx.gate.status()
    }

    /// The node's name.
    pub fn id(&self) -> &NodeId {
        &self.ctx.node
    }

    /// The store the node runs on, wrapped so that calls through it are counted in
    /// [`Node::metrics`].
    pub fn store(&self) -> &SharedStore {
        &self.ctx.store
    }

    /// The node's metrics (serve them with [`Metrics::encode`], e.g. on the HTTP API's
    /// `/metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.ctx.metrics.clone()
    }

    /// The node's live models (duration, failure, retry, congestion): the one set the
    /// node feeds from its own lifecycle and saves in the store; clone it into
    /// whatever asks them, and hold [`SharedModels::lock`] only for a prediction.
    pub fn models(&self) -> SharedModels {
        self.ctx.models.clone()
    }

    /// Saves the node's models in the store now (the node also saves them every
    /// `[predict] save_interval` and at graceful shutdown), merges the other nodes'
    /// saved durations into its view and adopts their failure states. With the live
    /// models off (`[predict] feed = false`) it saves nothing.
    pub async fn save_models(&self) -> Result<(), NodeError> {
        crate::models::save(&self.ctx).await?;
        Ok(())
    }

    /// Validates every job against the registry (kind, payload, options), stores the
    /// batch in one transaction and wakes the dispatcher. One invalid job refuses the
    /// whole batch, naming it.
    ///
    /// Admission control (see [`Node::set_queue_policies`]) may give low-priority jobs
    /// of an overloaded queue a later `run_at`, or refuse the batch
    /// ([`NodeError::Overloaded`]).
    pub async fn submit(&self, mut jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>, NodeError> {
        for (index, job) in jobs.iter().enumerate() {
            self.ctx
                .registry
                .validate(job)
                .map_err(|error| NodeError::Refused { index, error })?;
        }
        self.ctx
            .admit(&mut jobs)
            .map_err(|(index, reason)| NodeError::Overloaded { index, reason })?;
        let out = self.ctx.store.enqueue(jobs, self.ctx.now()).await?;
        self.dispatcher.cast(DispatchMsg::Wake).ok();
        Ok(out)
    }

    /// Sets the queues' wait SLOs (`[queues.NAME]`): each maintenance round warns of a
    /// predicted breach (a `queue.breach_predicted` event and metrics, at most once
    /// per queue per minute), and [`Node::submit`] applies their admission control.
    /// Each policy is checked first; a bad one refuses the whole set, naming it.
    pub fn set_queue_policies(
        &self,
        policies: std::collections::BTreeMap<
            String,
            jobmesh::predict::policy::congestion::QueuePolicy,
        >,
    ) -> Result<(), NodeError> {
        for (name, policy) in &policies {
            policy.validate(name).map_err(NodeError::Options)?;
        }
        self.ctx.slo.set(policies);
        Ok(())
    }

    /// The node's admission control, for another way in than [`Node::submit`] (the
    /// HTTP API): defers or refuses jobs as `submit` does, `Err((index, reason))`.
    pub fn admission(
        &self,
    ) -> impl Fn(&mut [NewJob]) -> Result<(), (usize, String)> + Send + Sync + 'static {
        let ctx = self.ctx.clone();
        move |jobs: &mut [NewJob]| ctx.admit(jobs)
    }

    /// Replaces the cluster-wide limits on claims (see [`jobmesh::limits`]) with
    /// `limits`, in the store, so every claimer of every node enforces them from its
    /// next claim; one bad limit refuses the whole set, naming it, and the limits in
    /// force stay. Every node of a cluster should be given the same set (the binary
    /// writes its `[[limit]]` set at start): the last one written holds.
    pub async fn set_limits(&self, limits: Vec<jobmesh::limits::Limit>) -> Result<(), NodeError> {
        jobmesh::limits::check_limits(&limits).map_err(|e| NodeError::Options(e.to_string()))?;
        self.ctx.store.set_limits(&limits, self.ctx.now()).await?;
        // Jobs a removed or raised limit held back may run now.
        self.dispatcher.cast(DispatchMsg::Wake).ok();
        Ok(())
    }

    /// Cancels a job on behalf of `ctx` (recorded in the audit log); if it runs on this
    /// node its attempt is interrupted at once (elsewhere, at that node's next lease
    /// extension).
    pub async fn cancel(
        &self,
        ctx: &jobmesh::store::AuditContext,
        id: JobId,
    ) -> Result<CancelOutcome, NodeError> {
        let out = self.ctx.store.cancel(ctx, id, self.ctx.now()).await?;
        if out == CancelOutcome::Cancelled {
            self.ctx.inflight.interrupt(id, None);
        }
        Ok(out)
    }

    /// Live lifecycle events of this node (job outcomes, worker and node events).
    /// A slow receiver sees `Lagged` and can re-read the store's event log.
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.ctx.events.subscribe()
    }

    /// The node's counters.
    pub fn stats(&self) -> NodeStats {
        self.ctx.stats()
    }

    /// Resolves when the node fails for good (its supervision tree gave up), with why.
    pub async fn failed(&self) -> String {
        let mut rx = self.fatal.clone();
        match rx.wait_for(|f| f.is_some()).await {
            Ok(f) => f.clone().unwrap_or_default(),
            Err(_) => "node supervisor gone".into(),
        }
    }

    /// Stops gracefully: stops claiming, hands back jobs claimed but not started, lets
    /// running attempts finish for up to `grace` (then fails them as retryable so they
    /// run again at once), stops the actors and flushes completions and events.
    pub async fn shutdown(self, grace: Duration) -> Result<(), NodeError> {
        // No longer a server of its queues: its presence row goes now, not after the grace.
        self.serving.cancel();
        let released = ractor::call_t!(self.dispatcher, DispatchMsg::Drain, 10_000).unwrap_or(0);
        if released > 0 {
            tracing::info!(released, "released jobs claimed but not started");
        }
        if tokio::time::timeout(grace, self.ctx.inflight.wait_empty())
            .await
            .is_err()
        {
            self.hand_back_running().await;
        }
        if let Some(m) = &self.mesh {
            let voter = m.voter.borrow().clone();
            if let Some(v) = voter {
                v.stop(Some("node shutdown".into()));
            }
            let _ = m.client.shutdown().await;
        }
        let task = self.supervisor_task.lock().unwrap().take();
        self.supervisor.stop(Some("node shutdown".into()));
        if let Some(task) = task {
            let _ = task.await;
        }
        let now = self.ctx.now();
        for slot in 0..self.ctx.workers.concurrency as usize {
            self.ctx
                .events
                .emit(
                    LifecycleEvent::new(EventKind::WorkerStopped, now)
                        .worker(self.ctx.worker_id(slot))
                        .node(self.ctx.node.clone()),
                )
                .await;
        }
        self.ctx
            .events
            .emit(LifecycleEvent::new(EventKind::NodeLeft, now).node(self.ctx.node.clone()))
            .await;
        self.close.cancel();
        let writers = std::mem::take(&mut *self.writers.lock().unwrap());
        for w in writers {
            if tokio::time::timeout(FLUSH_TIMEOUT, w).await.is_err() {
                tracing::warn!("a writer did not flush within {FLUSH_TIMEOUT:?}");
            }
        }
        // Last, once the completer applied (and fed) every completion.
        if let Err(e) = crate::models::save(&self.ctx).await {
            tracing::warn!(error = %e, "saving the models at shutdown failed");
        }
        Ok(())
    }

    /// Stops at once with no clean-up, as a crash would: leases stay with this node
    /// until they lapse or the node restarts under the same name.
    pub fn abort(self) {
        if let Some(m) = &self.mesh {
            let voter = m.voter.borrow().clone();
            if let Some(v) = voter {
                v.kill();
            }
            for t in &m.tasks {
                t.abort();
            }
        }
        self.supervisor.kill();
        for w in self.writers.lock().unwrap().drain(..) {
            w.abort();
        }
    }

    async fn hand_back_running(&self) {
        let now = self.ctx.now();
        for slot in 0..self.ctx.workers.concurrency as usize {
            if let Some(r) = self.ctx.inflight.take(slot) {
                r.cancel.cancel();
                let completion = Completion {
                    lease: r.lease,
                    outcome: Outcome::Retry {
                        error: "interrupted: node shutting down".into(),
                        run_at: now,
                    },
                    started_at: r.started_at,
                    finished_at: now,
                };
                // What its handler reported last goes with the completion.
                let progress = r.progress.close().await.map(|progress| ProgressReport {
                    lease: completion.lease.clone(),
                    progress,
                });
                let finished = Finished {
                    completion,
                    tag: r.tag,
                    progress,
                };
                let _ = self.ctx.completions.send(finished).await;
            }
        }
    }
}
