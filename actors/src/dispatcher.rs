//! The dispatcher: claims jobs for idle workers and hands them out. It claims only as
//! many jobs as there are free workers (a claimed job has used an attempt, so it must not
//! sit in a buffer), one claim at a time, and claims again at once while claims come
//! back full. Wakes: a local submit, a worker going idle, the maintenance tick promoting
//! due jobs, and a poll fallback for jobs submitted by other processes.

use std::collections::VecDeque;
use std::sync::Arc;

use jobmesh::job::{ClaimRequest, ClaimedJob};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::{Counters, Ctx};
use crate::worker::WorkerMsg;

/// Messages to the dispatcher.
pub enum DispatchMsg {
    /// A worker (re)started in `slot` and is idle.
    WorkerReady(usize, ActorRef<WorkerMsg>),
    /// The worker in `slot` is gone (crashed or stopped); do not send it work.
    WorkerDown(usize),
    /// The worker in `slot` finished its attempt.
    Idle(usize),
    /// There may be work: claim if a worker is free.
    Wake,
    /// Stop claiming for good; reply with jobs claimed but not yet handed out.
    Drain(RpcReplyPort<Vec<ClaimedJob>>),
}

/// The dispatcher actor.
pub(crate) struct Dispatcher;

/// The dispatcher's state.
pub(crate) struct DispatchState {
    ctx: Arc<Ctx>,
    workers: Vec<Option<ActorRef<WorkerMsg>>>,
    idle: Vec<usize>,
    buffer: VecDeque<ClaimedJob>,
    draining: bool,
}

impl Actor for Dispatcher {
    type Msg = DispatchMsg;
    type State = DispatchState;
    type Arguments = Arc<Ctx>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Arc<Ctx>,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Poll fallback: jobs enqueued by other processes wake nobody here.
        myself.send_interval(ctx.workers.poll_interval, || DispatchMsg::Wake);
        let n = ctx.workers.concurrency as usize;
        Ok(DispatchState {
            ctx,
            workers: vec![None; n],
            idle: Vec::with_capacity(n),
            buffer: VecDeque::new(),
            draining: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DispatchMsg::WorkerReady(slot, worker) => {
                s.workers[slot] = Some(worker);
                if !s.idle.contains(&slot) {
                    s.idle.push(slot);
                }
            }
            DispatchMsg::WorkerDown(slot) => {
                s.workers[slot] = None;
                s.idle.retain(|&i| i != slot);
            }
            DispatchMsg::Idle(slot) => {
                if s.workers[slot].is_some() && !s.idle.contains(&slot) {
                    s.idle.push(slot);
                }
            }
            DispatchMsg::Wake => {}
            DispatchMsg::Drain(reply) => {
                s.draining = true;
                let _ = reply.send(s.buffer.drain(..).collect());
                return Ok(());
            }
        }
        s.hand_out();
        // Claim while there are free workers and claims come back full.
        while !s.draining && s.idle.len() > s.buffer.len() {
            let want = (s.idle.len() - s.buffer.len()).min(s.ctx.workers.claim_batch as usize);
            let got = s.claim(want as u32).await;
            s.hand_out();
            if got < want {
                break;
            }
        }
        Ok(())
    }
}

impl DispatchState {
    async fn claim(&mut self, limit: u32) -> usize {
        let ctx = &self.ctx;
        let req = ClaimRequest {
            queues: ctx.workers.queues.clone(),
            worker: ctx.pool_id(),
            node: ctx.node.clone(),
            limit,
            lease_for: ctx.workers.lease,
            now: ctx.now(),
        };
        match ctx.store.claim(&req).await {
            Ok(jobs) => {
                let n = jobs.len();
                self.buffer.extend(jobs);
                n
            }
            Err(e) => {
                // The store is down or busy: keep the node up, try again on the next wake.
                tracing::warn!(error = %e, "claiming jobs failed; will retry");
                0
            }
        }
    }

    fn hand_out(&mut self) {
        while !self.buffer.is_empty() {
            let Some(slot) = self.idle.pop() else { return };
            let Some(worker) = self.workers[slot].clone() else {
                continue;
            };
            let Some(job) = self.buffer.pop_front() else {
                return;
            };
            self.ctx
                .inflight
                .start(slot, &job.job, job.lease.clone(), self.ctx.now());
            Counters::bump(&self.ctx.counters.started);
            if let Err(e) = worker.cast(WorkerMsg::Run(job)) {
                // The worker died since its last message: take the job back for the next.
                tracing::warn!(slot, "worker gone while handing out a job");
                self.ctx.inflight.take(slot);
                self.workers[slot] = None;
                if let ractor::MessagingErr::SendErr(WorkerMsg::Run(job)) = e {
                    self.buffer.push_front(job);
                }
            }
        }
    }
}
