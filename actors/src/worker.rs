//! A worker: runs one attempt at a time. A handler that returns an error fails the
//! attempt (retry or dead-letter by the job's policy); one that snoozes has its job
//! scheduled again without spending the attempt (within `workers.max_snoozes` and
//! `workers.max_snooze`); a handler that panics crashes the worker, and its supervisor
//! fails the attempt and restarts it.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::handler::progress::ProgressReporter;
use jobmesh::handler::{HandlerError, JobContext};
use jobmesh::job::{ClaimedJob, Completion, Outcome, ProgressReport, decide_snooze};
use jobmesh::metrics::JobTag;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};

use crate::context::{Ctx, Finished};

/// Messages to a worker.
pub enum WorkerMsg {
    /// Run this attempt (with its metric labels); the dispatcher already put it in the
    /// worker's in-flight slot.
    Run(ClaimedJob, JobTag),
}

/// What a worker tells whoever hands it work. The worker owns this type and sees its
/// receiver only as a [`DerivedActorRef`], so it does not depend on the dispatcher (the
/// dispatcher converts it into its own message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerReport {
    /// The worker of this slot is done with its attempt (finished or interrupted) and
    /// takes the next one.
    Idle(usize),
}

/// The worker actor.
pub(crate) struct Worker;

/// A worker's fixed wiring.
pub(crate) struct WorkerArgs {
    pub slot: usize,
    pub ctx: Arc<Ctx>,
    /// Where reports go (the dispatcher).
    pub reports: DerivedActorRef<WorkerReport>,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type State = WorkerArgs;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Run(claimed, tag) = msg;
        run_attempt(state, claimed, tag).await;
        Ok(())
    }
}

async fn run_attempt(w: &WorkerArgs, claimed: ClaimedJob, tag: JobTag) {
    let ctx = &w.ctx;
    let ClaimedJob { job, lease } = claimed;
    let started_at = ctx.now();
    let cancel = ctx.inflight.token(w.slot);
    let cell = ctx.inflight.progress_cell(w.slot);
    let timeout = ctx.attempt_timeout(&job);
    let result = match ctx.registry.get(&job.kind) {
        // Another node may know the kind: fail retryably, dead-letter when out of tries.
        None => Err(HandlerError::Retryable(format!(
            "no handler for kind `{}` on node `{}`",
            job.kind, ctx.node
        ))),
        Some(reg) => {
            let run = reg.handler.run(JobContext {
                job: job.clone(),
                timeout,
                cancel: cancel.clone(),
                progress: ProgressReporter::new(cell.clone(), ctx.clock.clone(), cancel.clone()),
            });
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => r,
                _ = tokio::time::sleep(timeout) => Err(HandlerError::Retryable(format!(
                    "timed out after {}", humantime_ms(timeout)
                ))),
                _ = cancel.cancelled() => {
                    // The lease is gone (cancelled, revoked, rescued) or the node is
                    // stopping: the handler saw the same token and may stop cleanly
                    // within the grace; then it is dropped. The store refuses any
                    // completion of a lost lease, so whatever it returns is discarded.
                    let grace = ctx.workers.cancel_grace;
                    let stopped = tokio::time::timeout(grace, &mut run).await.is_ok();
                    tracing::info!(job = %job.id, stopped_within_grace = stopped,
                        "attempt interrupted: lease lost, job cancelled or node stopping");
                    cell.abandon();
                    ctx.inflight.take(w.slot);
                    w.reports.send_message(WorkerReport::Idle(w.slot)).ok();
                    return;
                }
            }
        }
    };
    let now = ctx.now();
    let outcome = match result {
        Ok(output) => Outcome::Succeeded { output },
        Err(HandlerError::Snooze(delay)) => {
            decide_snooze(job.snoozes, delay, &ctx.workers.snooze_limits(), now).unwrap_or_else(
                // A delay past the limit is a handler bug: the attempt fails (and counts).
                |error| ctx.failure_outcome(&job, lease.attempt, error, true, now),
            )
        }
        Err(e) => {
            let retryable = e.is_retryable();
            ctx.failure_outcome(&job, lease.attempt, e.to_string(), retryable, now)
        }
    };
    // After any write of an earlier report has ended, so the last one lands last.
    let progress = cell.close().await.map(|progress| ProgressReport {
        lease: lease.clone(),
        progress,
    });
    let completion = Completion {
        lease,
        outcome,
        started_at,
        finished_at: now,
    };
    // Bounded: a slow store slows the workers instead of growing a queue.
    if ctx
        .completions
        .send(Finished {
            completion,
            tag,
            progress,
        })
        .await
        .is_err()
    {
        tracing::warn!(job = %job.id, "completer closed; the lease will lapse and the job rerun");
    }
    ctx.inflight.take(w.slot);
    w.reports.send_message(WorkerReport::Idle(w.slot)).ok();
}

fn humantime_ms(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
