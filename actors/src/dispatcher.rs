//! The dispatcher: claims jobs for idle workers and hands them out.
//!
//! One claim is in flight at a time, run as a task so hand-outs go on meanwhile; it asks
//! for the free workers plus a prefetch of up to `concurrency` more, so workers finishing
//! short jobs find the next one waiting instead of waiting for a store round trip. Jobs
//! still buffered when the node stops are released (their attempt is given back). Wakes:
//! a local submit, a worker going idle, maintenance promoting due jobs, and a poll
//! fallback for jobs submitted by other processes.

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
    /// A claim came back: the jobs, or why it failed; and how many were asked for.
    Claimed(Result<Vec<ClaimedJob>, String>, usize),
    /// Stop claiming for good, release the jobs claimed but not handed out, and reply
    /// with how many were released.
    Drain(RpcReplyPort<usize>),
}

/// The dispatcher actor.
pub(crate) struct Dispatcher;

/// The dispatcher's state.
pub(crate) struct DispatchState {
    ctx: Arc<Ctx>,
    workers: Vec<Option<ActorRef<WorkerMsg>>>,
    idle: Vec<usize>,
    buffer: VecDeque<ClaimedJob>,
    claiming: bool,
    draining: bool,
    drain_reply: Option<(RpcReplyPort<usize>, usize)>,
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
            claiming: false,
            draining: false,
            drain_reply: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
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
            DispatchMsg::Claimed(result, _asked) if s.draining => {
                s.claiming = false;
                let late = result.unwrap_or_default();
                let released = s.release(late).await;
                if let Some((reply, before)) = s.drain_reply.take() {
                    let _ = reply.send(before + released);
                }
                return Ok(());
            }
            DispatchMsg::Claimed(result, asked) => {
                s.claiming = false;
                tracing::trace!(node = %s.ctx.node, asked, got = ?result.as_ref().map(|j| j.len()), "claimed");
                match result {
                    Ok(jobs) => {
                        let full = jobs.len() == asked;
                        s.buffer.extend(jobs);
                        s.hand_out();
                        if full {
                            s.maybe_claim(&myself);
                        }
                        return Ok(());
                    }
                    // The store is down or busy: keep the node up, retry on the next wake.
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming jobs failed; will retry");
                        return Ok(());
                    }
                }
            }
            DispatchMsg::Drain(reply) => {
                s.draining = true;
                let unstarted: Vec<_> = s.buffer.drain(..).collect();
                let released = s.release(unstarted).await;
                if s.claiming {
                    s.drain_reply = Some((reply, released));
                } else {
                    let _ = reply.send(released);
                }
                return Ok(());
            }
        }
        s.hand_out();
        s.maybe_claim(&myself);
        Ok(())
    }
}

impl DispatchState {
    /// Starts a claim for the free workers plus prefetch, unless one is in flight.
    fn maybe_claim(&mut self, myself: &ActorRef<DispatchMsg>) {
        if self.draining || self.claiming {
            return;
        }
        let prefetch = self.ctx.workers.concurrency as usize;
        let want = (self.idle.len() + prefetch).saturating_sub(self.buffer.len());
        if self.idle.is_empty() || want == 0 {
            return;
        }
        let limit = want.min(self.ctx.workers.claim_batch.max(1) as usize);
        let ctx = &self.ctx;
        let req = ClaimRequest {
            queues: ctx.workers.queues.clone(),
            worker: ctx.pool_id(),
            node: ctx.node.clone(),
            limit: limit as u32,
            lease_for: ctx.workers.lease,
            now: ctx.now(),
        };
        self.claiming = true;
        tracing::trace!(node = %ctx.node, limit, idle = self.idle.len(), "claiming");
        let store = ctx.store.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let result = store.claim(&req).await.map_err(|e| e.to_string());
            // If the dispatcher is gone the node is stopping; the leases lapse and the
            // jobs are rescued, as after a crash.
            let _ = me.cast(DispatchMsg::Claimed(result, limit));
        });
    }

    /// Gives claimed-but-unstarted jobs back to the store; how many were released.
    async fn release(&self, jobs: Vec<ClaimedJob>) -> usize {
        if jobs.is_empty() {
            return 0;
        }
        let leases: Vec<_> = jobs.into_iter().map(|j| j.lease).collect();
        match self.ctx.store.release(&leases, self.ctx.now()).await {
            Ok(r) => r.into_iter().filter(|&b| b).count(),
            Err(e) => {
                tracing::warn!(error = %e, n = leases.len(), "releasing unstarted jobs failed; their leases will lapse");
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
