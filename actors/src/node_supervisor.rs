//! The root of a node's tree: the dispatcher, the worker supervisor, maintenance and, in
//! mesh mode, the voter. A worker pool that exhausted its restart budget is restarted
//! whole (with fresh budgets) a few times; a crashed voter is restarted with a fresh
//! protocol core, within its own budget. Past a budget, or if the dispatcher fails, the
//! node reports itself failed, and the process (or its host) decides what happens next.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::config::RestartSection;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::context::Counters;

use crate::context::Ctx;
use crate::dispatcher::{DispatchMsg, Dispatcher};
use crate::maintenance::{Maintenance, MaintenanceMsg};
use crate::restart::{RestartBudget, RestartDecision};
use crate::voter::{StartVoter, VoterMsg};
use crate::worker_supervisor::{WorkerSupervisor, WorkerSupervisorArgs, WorkerSupervisorMsg};

/// Pool restarts allowed within [`POOL_WINDOW`] before the node gives up.
const POOL_RESTARTS: u32 = 3;
const POOL_WINDOW: Duration = Duration::from_secs(60);
/// Voter restarts allowed within [`VOTER_WINDOW`]: a voter that keeps crashing would
/// keep announcing new incarnations, so past this the node fails instead.
const VOTER_RESTARTS: u32 = 5;
const VOTER_WINDOW: Duration = Duration::from_secs(60);

/// Where the node and the mesh's event pump find the voter running now (`None` while
/// it restarts, and after it stopped).
pub(crate) type CurrentVoter = watch::Receiver<Option<ActorRef<VoterMsg>>>;

/// Messages to the node supervisor.
pub enum NodeMsg {
    /// Reply with the dispatcher.
    Dispatcher(RpcReplyPort<ActorRef<DispatchMsg>>),
    /// Start the voter and keep it running; reply with where to find it, or why it did
    /// not start.
    StartVoter(
        Box<dyn StartVoter>,
        RpcReplyPort<Result<CurrentVoter, String>>,
    ),
}

/// The supervised voter.
struct VoterChild {
    start: Box<dyn StartVoter>,
    actor: ActorRef<VoterMsg>,
    /// Lives started so far (each restart is a fresh core with its own seed).
    lives: u64,
    budget: RestartBudget,
    current: watch::Sender<Option<ActorRef<VoterMsg>>>,
}

/// The node supervisor actor.
pub(crate) struct NodeSupervisor;

/// Its state.
pub(crate) struct NodeSupervisorState {
    ctx: Arc<Ctx>,
    dispatcher: ActorRef<DispatchMsg>,
    pool: ActorRef<WorkerSupervisorMsg>,
    maintenance: ActorRef<MaintenanceMsg>,
    pool_budget: RestartBudget,
    voter: Option<VoterChild>,
    fatal: watch::Sender<Option<String>>,
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeSupervisorState;
    type Arguments = (Arc<Ctx>, watch::Sender<Option<String>>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (ctx, fatal): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cell = myself.get_cell();
        let (dispatcher, _) =
            Actor::spawn_linked(None, Dispatcher, ctx.clone(), cell.clone()).await?;
        let pool = spawn_pool(&ctx, &dispatcher, cell.clone()).await?;
        let (maintenance, _) =
            Actor::spawn_linked(None, Maintenance, (ctx.clone(), dispatcher.clone()), cell).await?;
        Ok(NodeSupervisorState {
            pool_budget: RestartBudget::new(RestartSection {
                max_restarts: POOL_RESTARTS,
                window: POOL_WINDOW,
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
            }),
            ctx,
            dispatcher,
            pool,
            maintenance,
            voter: None,
            fatal,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, None).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Dispatcher(reply) => {
                let _ = reply.send(state.dispatcher.clone());
            }
            NodeMsg::StartVoter(start, reply) => {
                let started = match &state.voter {
                    Some(_) => Err("the voter runs already".to_string()),
                    None => match start.start(myself.get_cell(), 0).await {
                        Ok(actor) => {
                            let (current, found) = watch::channel(Some(actor.clone()));
                            state.voter = Some(VoterChild {
                                start,
                                actor,
                                lives: 1,
                                budget: RestartBudget::new(RestartSection {
                                    max_restarts: VOTER_RESTARTS,
                                    window: VOTER_WINDOW,
                                    backoff_min: Duration::from_millis(100),
                                    backoff_max: Duration::from_secs(2),
                                }),
                                current,
                            });
                            Ok(found)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                };
                let _ = reply.send(started);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, err) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err),
            SupervisionEvent::ActorTerminated(cell, ..) => {
                // A voter stopped on purpose (node shutdown) is not restarted.
                if let Some(v) = s.voter.take_if(|v| v.actor.get_id() == cell.get_id()) {
                    let _ = v.current.send(None);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if s.voter.as_ref().is_some_and(|v| v.actor.get_id() == id) {
            return s.restart_voter(&myself, err.to_string()).await;
        }
        if id == s.pool.get_id() {
            match s.pool_budget.on_failure(s.ctx.now()) {
                RestartDecision::RestartAfter(d) => {
                    tracing::warn!(error = %err, "worker pool failed; restarting it in {d:?}");
                    tokio::time::sleep(d).await;
                    s.pool = spawn_pool(&s.ctx, &s.dispatcher, myself.get_cell()).await?;
                    return Ok(());
                }
                RestartDecision::Escalate => {
                    return s
                        .give_up(&myself, format!("worker pool keeps failing: {err}"))
                        .await;
                }
            }
        }
        if id == s.maintenance.get_id() {
            tracing::warn!(error = %err, "maintenance failed; restarting it");
            let (m, _) = Actor::spawn_linked(
                None,
                Maintenance,
                (s.ctx.clone(), s.dispatcher.clone()),
                myself.get_cell(),
            )
            .await?;
            s.maintenance = m;
            return Ok(());
        }
        if id == s.dispatcher.get_id() {
            return s
                .give_up(&myself, format!("dispatcher failed: {err}"))
                .await;
        }
        Ok(())
    }
}

impl NodeSupervisorState {
    /// Restarts the crashed voter within its budget, or fails the node past it.
    async fn restart_voter(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        err: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(v) = self.voter.as_mut() else {
            return Ok(());
        };
        let _ = v.current.send(None);
        match v.budget.on_failure(self.ctx.now()) {
            RestartDecision::RestartAfter(d) => {
                tracing::warn!(error = %err, "voter failed; restarting it with a fresh core in {d:?}");
                tokio::time::sleep(d).await;
                match v.start.start(myself.get_cell(), v.lives).await {
                    Ok(actor) => {
                        v.lives += 1;
                        v.actor = actor.clone();
                        let _ = v.current.send(Some(actor));
                        Counters::bump(&self.ctx.counters.voter_restarts);
                        Ok(())
                    }
                    Err(e) => {
                        self.give_up(myself, format!("voter does not restart: {e}"))
                            .await
                    }
                }
            }
            RestartDecision::Escalate => {
                self.give_up(myself, format!("voter keeps failing: {err}"))
                    .await
            }
        }
    }

    async fn give_up(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        why: String,
    ) -> Result<(), ActorProcessingErr> {
        tracing::error!("node {} is failing: {why}", self.ctx.node);
        let _ = self.fatal.send(Some(why.clone()));
        myself.stop_children_and_wait(None, None).await;
        Err(why.into())
    }
}

async fn spawn_pool(
    ctx: &Arc<Ctx>,
    dispatcher: &ActorRef<DispatchMsg>,
    supervisor: ActorCell,
) -> Result<ActorRef<WorkerSupervisorMsg>, ActorProcessingErr> {
    let args = WorkerSupervisorArgs {
        ctx: ctx.clone(),
        dispatcher: dispatcher.clone(),
    };
    let (pool, _) = Actor::spawn_linked(None, WorkerSupervisor, args, supervisor).await?;
    Ok(pool)
}
