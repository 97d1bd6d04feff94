//! The dispatcher: claims jobs for idle workers and hands them out.
//!
//! One claim is in flight at a time, run as a task so hand-outs go on meanwhile; it asks
//! for the free workers plus a prefetch, so workers finishing short jobs find the next one
//! waiting instead of waiting for a store round trip. The prefetch is `concurrency`, or
//! more when jobs are short: as many as were handed out over the last [`PREFETCH_SPAN`]
//! (up to `claim_batch`), so a buffered job waits about that long at most while its lease
//! runs, yet a stream of tiny jobs is claimed in big batches (each claim is a store
//! transaction: few big ones drain far faster than many small ones). Jobs
//! still buffered when the node stops are released (their attempt is given back). Wakes:
//! a local submit, a worker going idle, maintenance promoting due jobs, and a poll
//! fallback for jobs submitted by other processes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmesh::job::{ClaimRequest, ClaimedJob};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::{Counters, Ctx};
use crate::worker::WorkerMsg;

/// How much work the prefetch may hold, in time at the recent hand-out rate; kept far
/// below any lease (at least 100 ms) so buffered jobs start long before theirs lapses.
const PREFETCH_SPAN: Duration = Duration::from_millis(20);

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
    /// A wake arrived while a claim was in flight: new jobs may have been enqueued after
    /// the claim read the queue, so claim again when it returns, even if it came back
    /// short (otherwise they wait for the next poll).
    woken_while_claiming: bool,
    draining: bool,
    drain_reply: Option<(RpcReplyPort<usize>, usize)>,
    /// Hand-outs in the current and the previous [`PREFETCH_SPAN`].
    handed: HandOutRate,
}

/// Hand-outs counted per [`PREFETCH_SPAN`]: the current span and the last full one.
struct HandOutRate {
    since: Instant,
    current: usize,
    previous: usize,
}

impl HandOutRate {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= PREFETCH_SPAN {
            // A span with nothing handed out in between resets the rate.
            self.previous = if elapsed >= 2 * PREFETCH_SPAN {
                0
            } else {
                self.current
            };
            self.current = 0;
            self.since = now;
        }
    }

    fn count(&mut self, now: Instant) {
        self.roll(now);
        self.current += 1;
    }

    /// Hand-outs over about the last span.
    fn recent(&mut self, now: Instant) -> usize {
        self.roll(now);
        self.previous.max(self.current)
    }
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
            woken_while_claiming: false,
            draining: false,
            drain_reply: None,
            handed: HandOutRate::new(),
        })
    }

    /// Stopped without a drain (the node is failing): give the buffer back all the same,
    /// so those jobs run again at once instead of after their leases lapse.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let unstarted: Vec<_> = s.buffer.drain(..).collect();
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
                s.idle.retain(|&i| i != slot);
            }
            DispatchMsg::Idle(slot) => {
                if s.workers[slot].is_some() && !s.idle.contains(&slot) {
                    s.idle.push(slot);
                }
            }
            DispatchMsg::Wake => {
                if s.claiming {
                    s.woken_while_claiming = true;
                }
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
            DispatchMsg::Claimed(result, asked) => {
                s.claiming = false;
                match result {
                    Ok(jobs) => {
                        let full = jobs.len() == asked;
                        let woken = std::mem::take(&mut s.woken_while_claiming);
                        s.buffer.extend(jobs);
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
        let prefetch = self.prefetch();
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

    /// How many claimed jobs to keep ready beyond the idle workers: `concurrency`, or what
    /// the workers took over the last [`PREFETCH_SPAN`] when that is more, up to a claim.
    fn prefetch(&mut self) -> usize {
        let w = &self.ctx.workers;
        let recent = self.handed.recent(Instant::now());
        (w.concurrency as usize).max(recent.min(w.claim_batch as usize))
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
            self.handed.count(Instant::now());
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
