//! Periodic schedules: the node holding the `periodic` leader lease enqueues their due
//! ticks. Every node runs this task; only the leader does more than renew its claim.
//!
//! The schedules are the store's ([`jobmesh::store::PeriodicSchedules`]): the config's
//! set, written by each node at start, and those created through the API, the CLI or
//! the library on any node. The leader reads them at every round, so a create, pause,
//! resume or delete anywhere takes effect at the leader's next round: at once on the
//! node that made it (it pokes its own task), and elsewhere within one renewal period
//! (a third of the lease, [`lease_ttl`] / 3: at most 10 s, 3.3 s with the default 30 s
//! job lease). A pause or delete is also checked by the store in the transaction of
//! each tick's enqueue, so no tick's job is stored after it committed, whatever the
//! leader read.
//!
//! A round: take or renew the lease, read the schedules and (for new ones, set) their
//! tick marks, enqueue the ticks the policy says are due through the store's guarded
//! enqueue, then sleep until the next tick, the lease's renewal or a poke, whichever
//! comes first: no polling between ticks. A node that is not the leader wakes once a
//! renewal period to see whether the lease lapsed.
//!
//! Exactly once holds whatever the timing: two nodes that both believe they lead (a
//! leader stalled past its lease) both try the tick, and the store's compare-and-set
//! on the mark lets one of them insert. A new leader reads the marks and enqueues the
//! ticks missed during the failover as the schedule's policy says. What is due is
//! decided by the core (`jobmesh::periodic`) from the marks and the injected clock;
//! this task only carries it out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::periodic::PeriodicJob;
use jobmesh::store::{StoreError, TickOutcome};
use ractor::ActorRef;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::dispatcher::DispatchMsg;

/// Leader-lease role of the node that enqueues periodic ticks.
pub(crate) const ROLE: &str = "periodic";

/// How long the periodic lease lasts: a third of the job lease (so a dead leader is
/// replaced well before its running jobs would be rescued), between 1 s and 30 s.
pub(crate) fn lease_ttl(job_lease: Duration) -> Duration {
    (job_lease / 3).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Starts the task; it ends when `close` fires. `poke` makes it run a round at once
/// (this node changed the schedules).
pub(crate) fn start(
    ctx: Arc<Ctx>,
    dispatcher: ActorRef<DispatchMsg>,
    poke: Arc<Notify>,
    close: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(ctx, dispatcher, poke, close))
}

async fn run(
    ctx: Arc<Ctx>,
    dispatcher: ActorRef<DispatchMsg>,
    poke: Arc<Notify>,
    close: CancellationToken,
) {
    let ttl = lease_ttl(ctx.workers.lease);
    let renew = ttl / 3;
    let mut leading = false;
    loop {
        let next = match round(&ctx, ttl, &mut leading).await {
            Ok(Round { enqueued, next }) => {
                if enqueued > 0 {
                    dispatcher.cast(DispatchMsg::Wake).ok();
                }
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, "periodic round failed; will retry");
                None
            }
        };
        let renew_at = ctx.now().plus(renew);
        let wake = next.map_or(renew_at, |n| n.min(renew_at));
        tokio::select! {
            _ = close.cancelled() => return,
            _ = poke.notified() => {}
            _ = tokio::time::sleep(wake.since(ctx.now())) => {}
        }
    }
}

/// What a round did.
struct Round {
    /// Ticks whose job this round stored.
    enqueued: usize,
    /// The earliest next tick of a running schedule, when this node leads.
    next: Option<Millis>,
}

/// One round at the clock's current time (see the module doc).
async fn round(ctx: &Ctx, ttl: Duration, leading: &mut bool) -> Result<Round, StoreError> {
    let now = ctx.now();
    let leads = ctx.store.try_lead(ROLE, &ctx.node, ttl, now).await?;
    if leads != *leading {
        *leading = leads;
        if leads {
            tracing::info!(node = %ctx.node, "took the periodic leader lease");
        } else {
            tracing::info!(node = %ctx.node, "lost the periodic leader lease");
        }
    }
    if !leads {
        return Ok(Round {
            enqueued: 0,
            next: None,
        });
    }
    let set: Vec<PeriodicJob> = ctx
        .store
        .schedules()
        .await?
        .into_iter()
        .filter(|s| s.paused_at.is_none())
        .map(|s| s.job)
        .collect();
    if set.is_empty() {
        return Ok(Round {
            enqueued: 0,
            next: None,
        });
    }
    let names: Vec<String> = set.iter().map(|j| j.name.clone()).collect();
    let marks: HashMap<String, Millis> = ctx
        .store
        .register_schedules(&names, now)
        .await?
        .into_iter()
        .map(|m| (m.schedule, m.last_tick))
        .collect();
    let mut enqueued = 0;
    for job in &set {
        let Some(&mark) = marks.get(&job.name) else {
            continue;
        };
        for tick in job.due(mark, now) {
            let out = ctx
                .store
                .enqueue_tick(&job.name, tick, job.job_for(tick), ctx.now())
                .await?;
            match out {
                TickOutcome::Enqueued { outcome } => {
                    enqueued += 1;
                    tracing::debug!(schedule = %job.name, tick = %tick, job = %outcome.id(), "enqueued a periodic tick");
                }
                TickOutcome::Passed { last_tick } => {
                    tracing::debug!(schedule = %job.name, tick = %tick, last_tick = %last_tick, "periodic tick handled already");
                }
                TickOutcome::Paused | TickOutcome::NoSchedule => {
                    // Paused or deleted since this round read the schedules.
                    tracing::debug!(schedule = %job.name, outcome = ?out, "periodic tick not enqueued");
                    break;
                }
            }
        }
    }
    let next = set.iter().filter_map(|j| j.next_after(now)).min();
    Ok(Round { enqueued, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_a_third_of_the_job_lease_within_bounds() {
        assert_eq!(lease_ttl(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(
            lease_ttl(Duration::from_millis(300)),
            Duration::from_secs(1)
        );
        assert_eq!(
            lease_ttl(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }
}
