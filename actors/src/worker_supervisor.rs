//! The worker supervisor: starts `concurrency` workers and restarts any that crashes,
//! OTP-style (permanent children, one-for-one, at most `max_restarts` per worker within
//! `window`, backoff between quick successive restarts). The crashed worker's attempt is
//! failed as a retryable error, so the job runs again (or is dead-lettered when out of
//! attempts), never lost. Past the budget it stops its workers and fails upwards.

use std::sync::Arc;
use std::time::Instant;

use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::job::{Completion, ProgressReport};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde_json::json;

use crate::context::{Counters, Ctx, Finished};
use crate::dispatcher::DispatchMsg;
use crate::restart::{RestartBudget, RestartDecision};
use crate::worker::{Worker, WorkerArgs, WorkerMsg};

/// Messages to the worker supervisor.
pub enum WorkerSupervisorMsg {
    /// Restart the worker of `slot` (sent after a backoff delay).
    Restart(usize),
}

/// The worker supervisor actor.
pub(crate) struct WorkerSupervisor;

/// Its wiring.
pub(crate) struct WorkerSupervisorArgs {
    pub ctx: Arc<Ctx>,
    pub dispatcher: ActorRef<DispatchMsg>,
}

/// Its state.
pub(crate) struct WorkerSupervisorState {
    ctx: Arc<Ctx>,
    dispatcher: ActorRef<DispatchMsg>,
    workers: Vec<Option<ActorRef<WorkerMsg>>>,
    budgets: Vec<RestartBudget>,
}

impl Actor for WorkerSupervisor {
    type Msg = WorkerSupervisorMsg;
    type State = WorkerSupervisorState;
    type Arguments = WorkerSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: WorkerSupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let n = args.ctx.workers.concurrency as usize;
        let mut state = WorkerSupervisorState {
            budgets: vec![RestartBudget::new(args.ctx.workers.restart.clone()); n],
            workers: vec![None; n],
            ctx: args.ctx,
            dispatcher: args.dispatcher,
        };
        for slot in 0..n {
            state.spawn(&myself, slot).await?;
            let e = LifecycleEvent::new(EventKind::WorkerStarted, state.ctx.now())
                .worker(state.ctx.worker_id(slot))
                .node(state.ctx.node.clone());
            state.ctx.events.emit(e).await;
        }
        Ok(state)
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
        let WorkerSupervisorMsg::Restart(slot) = msg;
        state.restart(&myself, slot, Instant::now()).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(slot) = state.slot_of(&cell) else {
                    return Ok(());
                };
                let crashed_at = Instant::now();
                state.on_crash(slot, &err.to_string()).await;
                match state.budgets[slot].on_failure(state.ctx.now()) {
                    RestartDecision::RestartAfter(d) if d.is_zero() => {
                        state.restart(&myself, slot, crashed_at).await?;
                    }
                    RestartDecision::RestartAfter(d) => {
                        myself.send_after(d, move || WorkerSupervisorMsg::Restart(slot));
                    }
                    RestartDecision::Escalate => {
                        let why = format!(
                            "worker {} crashed {} times within {:?}; giving up on this pool",
                            state.ctx.worker_id(slot),
                            state.budgets[slot].recent() + 1,
                            state.ctx.workers.restart.window,
                        );
                        tracing::error!("{why}");
                        state.fail_all_running().await;
                        myself.stop_children_and_wait(None, None).await;
                        return Err(why.into());
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(slot) = state.slot_of(&cell) {
                    state.workers[slot] = None;
                    state.dispatcher.cast(DispatchMsg::WorkerDown(slot)).ok();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl WorkerSupervisorState {
    fn slot_of(&self, cell: &ActorCell) -> Option<usize> {
        self.workers
            .iter()
            .position(|w| w.as_ref().is_some_and(|w| w.get_id() == cell.get_id()))
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<WorkerSupervisorMsg>,
        slot: usize,
    ) -> Result<(), ActorProcessingErr> {
        let args = WorkerArgs {
            slot,
            ctx: self.ctx.clone(),
            reports: self.dispatcher.get_derived(),
        };
        let (worker, _) = Actor::spawn_linked(None, Worker, args, myself.get_cell()).await?;
        self.workers[slot] = Some(worker.clone());
        self.dispatcher
            .cast(DispatchMsg::WorkerReady(slot, worker))
            .map_err(|e| format!("dispatcher gone: {e}"))?;
        Ok(())
    }

    async fn restart(
        &mut self,
        myself: &ActorRef<WorkerSupervisorMsg>,
        slot: usize,
        crashed_at: Instant,
    ) -> Result<(), ActorProcessingErr> {
        self.spawn(myself, slot).await?;
        Counters::bump(&self.ctx.counters.restarts);
        self.ctx.feed.restarted(self.ctx.now().0);
        let e = LifecycleEvent::new(EventKind::WorkerRestarted, self.ctx.now())
            .worker(self.ctx.worker_id(slot))
            .node(self.ctx.node.clone())
            .detail(json!({
                "restarts_in_window": self.budgets[slot].recent(),
                "restart_us": crashed_at.elapsed().as_micros() as u64,
            }));
        self.ctx.events.emit(e).await;
        Ok(())
    }

    /// Records the crash and fails the attempt the worker was running.
    async fn on_crash(&mut self, slot: usize, error: &str) {
        self.workers[slot] = None;
        self.dispatcher.cast(DispatchMsg::WorkerDown(slot)).ok();
        Counters::bump(&self.ctx.counters.crashes);
        let running = self.ctx.inflight.take(slot);
        let mut e = LifecycleEvent::new(EventKind::WorkerCrashed, self.ctx.now())
            .worker(self.ctx.worker_id(slot))
            .node(self.ctx.node.clone())
            .detail(json!({ "error": error }));
        if let Some(r) = &running {
            e = e
                .job(r.lease.job, Some(r.lease.attempt))
                .detail(json!({ "error": error, "kind": r.kind }));
        }
        tracing::warn!(worker = %self.ctx.worker_id(slot), error, "worker crashed");
        self.ctx.events.emit(e).await;
        if let Some(r) = running {
            self.fail(r, format!("worker crashed: {error}")).await;
        }
    }

    async fn fail_all_running(&mut self) {
        for slot in 0..self.workers.len() {
            if let Some(r) = self.ctx.inflight.take(slot) {
                r.cancel.cancel();
                self.fail(r, "worker pool stopped after repeated crashes".into())
                    .await;
            }
        }
    }

    async fn fail(&self, r: crate::inflight::Running, error: String) {
        let now = self.ctx.now();
        // The slot keeps no enqueue time: the attempt's start stands in for it.
        let outcome = self.ctx.failure_outcome_of(
            &r.kind,
            r.lease.attempt,
            r.max_attempts,
            r.started_at,
            error,
            true,
            now,
        );
        let completion = Completion {
            lease: r.lease,
            outcome,
            started_at: r.started_at,
            finished_at: now,
        };
        // What the crashed handler reported last is kept too.
        let progress = r.progress.close().await.map(|progress| ProgressReport {
            lease: completion.lease.clone(),
            progress,
        });
        let finished = Finished {
            completion,
            tag: r.tag,
            progress,
        };
        if self.ctx.completions.send(finished).await.is_err() {
            tracing::warn!("completer closed; the crashed attempt's lease will lapse instead");
        }
    }
}
