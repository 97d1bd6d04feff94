//! The root of a node's tree: the dispatcher, the worker supervisor and maintenance.
//! A worker pool that exhausted its restart budget is restarted whole (with fresh
//! budgets) a few times; past that, or if the dispatcher fails, the node reports itself
//! failed, and the process (or its host) decides what happens next.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::config::RestartSection;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;

use crate::context::Ctx;
use crate::dispatcher::{DispatchMsg, Dispatcher};
use crate::maintenance::{Maintenance, MaintenanceMsg};
use crate::restart::{RestartBudget, RestartDecision};
use crate::worker_supervisor::{WorkerSupervisor, WorkerSupervisorArgs, WorkerSupervisorMsg};

/// Pool restarts allowed within [`POOL_WINDOW`] before the node gives up.
const POOL_RESTARTS: u32 = 3;
const POOL_WINDOW: Duration = Duration::from_secs(60);

/// Messages to the node supervisor.
pub enum NodeMsg {
    /// Reply with the dispatcher.
    Dispatcher(RpcReplyPort<ActorRef<DispatchMsg>>),
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
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let NodeMsg::Dispatcher(reply) = msg;
        let _ = reply.send(state.dispatcher.clone());
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, err) = evt else {
            return Ok(());
        };
        let id = cell.get_id();
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
