//! The dispatcher: claims jobs for idle workers and hands them out.
//!
//! One claim is in flight at a time, run as a task so hand-outs go on meanwhile. It asks
//! for the free workers plus a prefetch sized by the measured run time ([`Prefetch`]): a
//! stream of tiny jobs is claimed in big batches (each claim is a store transaction: few
//! big ones drain far faster than many small ones), while long jobs are claimed only for
//! workers that can start them now, so they stay `available` for other nodes with idle
//! workers (and a node that dies holds only what it was running). A claimed job that
//! waited longer than [`HOLD_LIMIT`] for a worker (the run time changed under the
//! estimate) is given back to the store for any node to take. Jobs still buffered when
//! the node stops are released too (their attempt is given back). Wakes: a local submit,
//! a worker going idle, maintenance promoting or rescuing jobs, store wake-ups, and a
//! poll fallback for jobs submitted by other processes.
//!
//! The claim gate (`crate::claim_gate`) closes claims while the node should not take
//! work (no quorum heard, a high failure score): the dispatcher then claims nothing,
//! gives back at once what it claimed but did not start (a claim in flight too, when
//! it returns) and lets running attempts finish; it claims again when the gate opens.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmesh::job::{ClaimRequest, ClaimedJob, Job};
use jobmesh::metrics::JobTag;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::{Counters, Ctx};
use crate::prefetch::Prefetch;
use crate::worker::{WorkerMsg, WorkerReport};

/// How long a claimed job may wait here for a worker before it is given back to the
/// store: ten times the prefetch span, so only a wrong run-time estimate triggers it.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_millis(200);

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
    /// The claim gate closed: stop claiming until it opens, release the jobs claimed
    /// but not handed out (and those of a claim in flight, once it returns), and reply
    /// with how many were released.
    GateClosed(RpcReplyPort<usize>),
    /// The claim gate opened: claim again.
    GateOpened,
}

impl From<WorkerReport> for DispatchMsg {
    fn from(report: WorkerReport) -> Self {
        match report {
            WorkerReport::Idle(slot) => DispatchMsg::Idle(slot),
        }
    }
}

impl TryFrom<DispatchMsg> for WorkerReport {
    type Error = DispatchMsg;

    /// Gives back a report that could not be delivered (as ractor's derived references
    /// need to).
    fn try_from(msg: DispatchMsg) -> Result<Self, DispatchMsg> {
        match msg {
            DispatchMsg::Idle(slot) => Ok(WorkerReport::Idle(slot)),
            other => Err(other),
        }
    }
}

/// The dispatcher actor.
pub(crate) struct Dispatcher;

/// The dispatcher's state.
pub(crate) struct DispatchState {
    ctx: Arc<Ctx>,
    workers: Vec<Option<ActorRef<WorkerMsg>>>,
    idle: Vec<usize>,
    /// When each slot was handed its running attempt (for the run-time estimate).
    started: Vec<Option<Instant>>,
    /// Claimed jobs not handed out yet, with when they were claimed.
    buffer: VecDeque<(Instant, ClaimedJob)>,
    claiming: bool,
    /// A wake arrived while a claim was in flight: new jobs may have been enqueued after
    /// the claim read the queue, so claim again when it returns, even if it came back
    /// short (otherwise they wait for the next poll).
    woken_while_claiming: bool,
    draining: bool,
    drain_reply: Option<(RpcReplyPort<usize>, usize)>,
    /// The claim gate is closed: claim nothing, hold nothing unstarted.
    gated: bool,
    /// The gate closed while a claim was in flight: answered when it returns, with
    /// the jobs released at the closing.
    gate_reply: Option<(RpcReplyPort<usize>, usize)>,
    /// The measured run time, which sizes the prefetch.
    prefetch: Prefetch,
    /// The metric labels of the last job handed out, with its queue and kind: jobs come
    /// in runs of one queue and kind, so most hand-outs look nothing up.
    last_tag: Option<(String, String, JobTag)>,
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
            started: vec![None; n],
            buffer: VecDeque::new(),
            claiming: false,
            woken_while_claiming: false,
            draining: false,
            drain_reply: None,
            gated: false,
            gate_reply: None,
            prefetch: Prefetch::default(),
            last_tag: None,
        })
    }

    /// Stopped without a drain (the node is failing): give the buffer back all the same,
    /// so those jobs run again at once instead of after their leases lapse.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let unstarted: Vec<_> = s.buffer.drain(..).map(|(_, j)| j).collect();
        let released = s.release(unstarted).await;
        if released > 0 {
            tracing::info!(
                released,
                "dispatcher stopped: released jobs claimed but not started"
            );
        }
        Ok(())
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
                s.started[slot] = None;
                s.idle.retain(|&i| i != slot);
            }
            DispatchMsg::Idle(slot) => {
                if let Some(at) = s.started[slot].take() {
                    s.prefetch.finished(at.elapsed());
                }
                if s.workers[slot].is_some() && !s.idle.contains(&slot) {
                    s.idle.push(slot);
                }
            }
            DispatchMsg::Wake => {
                if s.claiming {
                    s.woken_while_claiming = true;
                }
                s.give_back_held().await;
            }
            DispatchMsg::Claimed(result, _asked) if s.draining => {
                s.claiming = false;
                let late = result.unwrap_or_default();
                let released = s.release(late).await;
                if let Some((reply, before)) = s.drain_reply.take() {
                    let _ = reply.send(before + released);
                }
                return Ok(());
            }
            DispatchMsg::Claimed(result, _asked) if s.gated => {
                s.claiming = false;
                s.woken_while_claiming = false;
                let late = result.unwrap_or_default();
                let released = s.release(late).await;
                if let Some((reply, before)) = s.gate_reply.take() {
                    let _ = reply.send(before + released);
                }
                return Ok(());
            }
            DispatchMsg::Claimed(result, asked) => {
                s.claiming = false;
                match result {
                    Ok(jobs) => {
                        let full = jobs.len() == asked;
                        let woken = std::mem::take(&mut s.woken_while_claiming);
                        let now = Instant::now();
                        s.buffer.extend(jobs.into_iter().map(|j| (now, j)));
                        s.hand_out();
                        if full || woken {
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
                let unstarted: Vec<_> = s.buffer.drain(..).map(|(_, j)| j).collect();
                let released = s.release(unstarted).await;
                if s.claiming {
                    s.drain_reply = Some((reply, released));
                } else {
                    let _ = reply.send(released);
                }
                return Ok(());
            }
            DispatchMsg::GateClosed(reply) => {
                s.gated = true;
                let unstarted: Vec<_> = s.buffer.drain(..).map(|(_, j)| j).collect();
                let released = s.release(unstarted).await;
                if s.claiming {
                    s.gate_reply = Some((reply, released));
                } else {
                    let _ = reply.send(released);
                }
                return Ok(());
            }
            DispatchMsg::GateOpened => s.gated = false,
        }
        s.hand_out();
        s.maybe_claim(&myself);
        Ok(())
    }
}

impl DispatchState {
    /// Starts a claim for the free workers plus the prefetch, unless one is in flight.
    fn maybe_claim(&mut self, myself: &ActorRef<DispatchMsg>) {
        if self.draining || self.claiming || self.gated {
            return;
        }
        if self.idle.is_empty() {
            return;
        }
        let want = (self.idle.len() + self.prefetch_allowance()).saturating_sub(self.buffer.len());
        if want == 0 {
            return;
        }
        let limit = want.min(self.ctx.workers.claim_batch.max(1) as usize);
        let ctx = &self.ctx;
        let req = ClaimRequest {
            queues: ctx.workers.queues.clone(),
            worker: ctx.pool_id(),
            node: ctx.node.clone(),
            limit: limit as u32,
            lease_for: ctx.lease(),
            now: ctx.now(),
        };
        self.claiming = true;
        self.woken_while_claiming = false;
        let ctx = ctx.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let result = ctx.store.claim(&req).await.map_err(|e| e.to_string());
            // If the dispatcher is gone the node is stopping: give the jobs back (if that
            // fails too, their leases lapse and they are rescued, as after a crash).
            if let Err(ractor::MessagingErr::SendErr(DispatchMsg::Claimed(Ok(jobs), _))) =
                me.cast(DispatchMsg::Claimed(result, limit))
                && !jobs.is_empty()
            {
                let leases: Vec<_> = jobs.into_iter().map(|j| j.lease).collect();
                if let Err(e) = ctx.store.release(&leases, ctx.now()).await {
                    tracing::warn!(error = %e, n = leases.len(), "releasing a late claim failed; its leases will lapse");
                }
            }
        });
    }

    /// How many claimed jobs to keep ready beyond the idle workers (see [`Prefetch`]).
    fn prefetch_allowance(&self) -> usize {
        let w = &self.ctx.workers;
        let now = Instant::now();
        let (n, total) = self
            .started
            .iter()
            .flatten()
            .fold((0u32, Duration::ZERO), |(n, t), at| {
                (n + 1, t + now.saturating_duration_since(*at))
            });
        let running_age = (n > 0).then(|| total / n);
        self.prefetch
            .allowance(w.concurrency as usize, running_age, w.claim_batch as usize)
    }

    /// Gives back to the store the claimed jobs that waited longer than [`HOLD_LIMIT`]
    /// with no worker free here, so a node with idle workers can start them (the store
    /// wakes the others where it can). Only a wrong run-time estimate leaves jobs that
    /// long: e.g. a switch from tiny jobs to long ones within one prefetch.
    async fn give_back_held(&mut self) {
        if self.draining || !self.idle.is_empty() {
            return;
        }
        let now = Instant::now();
        let held = self
            .buffer
            .iter()
            .take_while(|(at, _)| now.saturating_duration_since(*at) >= HOLD_LIMIT)
            .count();
        if held == 0 {
            return;
        }
        let jobs: Vec<_> = self.buffer.drain(..held).map(|(_, j)| j).collect();
        let released = self.release(jobs).await;
        tracing::info!(
            held,
            released,
            "gave back claimed jobs that waited too long for a worker"
        );
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

    /// The metric labels of `job` (see `last_tag`).
    fn tag_of(&mut self, job: &Job) -> JobTag {
        if let Some((q, k, tag)) = &self.last_tag
            && *q == job.queue
            && *k == job.kind
        {
            return tag.clone();
        }
        let tag = self.ctx.metrics.tag(&job.queue, &job.kind);
        self.last_tag = Some((job.queue.clone(), job.kind.clone(), tag.clone()));
        tag
    }

    fn hand_out(&mut self) {
        while !self.buffer.is_empty() {
            let Some(slot) = self.idle.pop() else { return };
            let Some(worker) = self.workers[slot].clone() else {
                continue;
            };
            let Some((claimed_at, job)) = self.buffer.pop_front() else {
                return;
            };
            let tag = self.tag_of(&job.job);
            let now = self.ctx.now();
            self.ctx
                .inflight
                .start(slot, &job.job, tag.clone(), job.lease.clone(), now);
            self.ctx.feed.started(&job.job, now.0);
            Counters::bump(&self.ctx.counters.started);
            self.started[slot] = Some(Instant::now());
            if let Err(e) = worker.cast(WorkerMsg::Run(job, tag)) {
                // The worker died since its last message: take the job back for the next.
                tracing::warn!(slot, "worker gone while handing out a job");
                self.ctx.inflight.take(slot);
                self.workers[slot] = None;
                self.started[slot] = None;
                if let ractor::MessagingErr::SendErr(WorkerMsg::Run(job, _)) = e {
                    self.buffer.push_front((claimed_at, job));
                }
            }
        }
    }
}
