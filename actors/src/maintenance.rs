//! Maintenance: every third of a lease (the configured or learned length, see
//! [`LeaseLength`](jobmesh::predict::policy::duration::LeaseLength)) it extends the leases of attempts running here,
//! interrupting those whose lease was lost (cancelled, revoked, rescued); every poll
//! interval it promotes due scheduled/retryable jobs and rescues jobs whose lease lapsed
//! (a crashed node's). Own leases are renewed first, a failed renewal is retried on the
//! next round, and after a store outage rescues wait out a grace ([`RescueGate`]), so
//! leases that ran out while nobody could renew them are not taken from live holders.
//! Every round also warns of predicted breaches of the queues' wait SLOs, after telling
//! the congestion model how many jobs wait on each queue (every
//! [`BACKLOG_EVERY`](crate::models::BACKLOG_EVERY)).

use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::Millis;
use jobmesh::job::RescueGate;
use jobmesh::metrics::finished_window::FinishedWindow;
use jobmesh::metrics::posted_counts::{self, PostedCounts};
use jobmesh::store::StoreError;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::batch::MAX_RETRY_DELAY;
use crate::context::Ctx;
use crate::counts_rounds::CountsRounds;
use crate::dispatcher::DispatchMsg;

/// Messages to the maintenance actor.
pub enum MaintenanceMsg {
    /// Do a round.
    Tick,
}

/// The maintenance actor.
pub(crate) struct Maintenance;

/// Its state.
pub(crate) struct MaintenanceState {
    ctx: Arc<Ctx>,
    dispatcher: ActorRef<DispatchMsg>,
    /// When this node's leases were last renewed (or the node started).
    last_extend: Millis,
    next_purge: Millis,
    /// When queue-counts rounds are due (see [`queue_stats`]).
    counts: CountsRounds,
    /// The last minute's finishes, read a few seconds at a time while this node leads.
    finished: FinishedWindow,
    rescue: RescueGate,
    /// When the jobs waiting on the queues are next read for the congestion model.
    next_backlog: Millis,
}

/// Leader-lease role of the node that purges and counts the queues for the metrics.
const PURGE_ROLE: &str = "maintenance";

impl Actor for Maintenance {
    type Msg = MaintenanceMsg;
    type State = MaintenanceState;
    type Arguments = (Arc<Ctx>, ActorRef<DispatchMsg>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (ctx, dispatcher): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = round_interval(&ctx);
        myself.send_interval(every, || MaintenanceMsg::Tick);
        myself.cast(MaintenanceMsg::Tick)?;
        Ok(MaintenanceState {
            last_extend: ctx.now(),
            next_purge: ctx.now(),
            counts: CountsRounds::new(counts_interval(&ctx), every, ctx.now()),
            finished: FinishedWindow::new(posted_counts::FINISHED_WINDOW),
            rescue: RescueGate::new(rescue_grace(longest_lease(&ctx)), silence(every), ctx.now()),
            next_backlog: ctx.now(),
            ctx,
            dispatcher,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _msg: Self::Msg,
        s: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ctx = &s.ctx;
        let now = ctx.now();
        ctx.learn_lease(round_interval(ctx), now);
        let renew_ms = ctx.renew_every(now).as_millis() as i64;
        if now.0 - s.last_extend.0 >= renew_ms {
            match extend(ctx, now).await {
                Ok(asked_store) => {
                    s.last_extend = now;
                    if asked_store {
                        s.rescue.store_answered(ctx.now());
                    }
                }
                // Not marking `last_extend`: the next round tries again.
                Err(e) => seen_failure(&mut s.rescue, &e),
            }
        }
        let mut wake = false;
        match ctx.store.promote_due(now).await {
            Ok(n) => {
                s.rescue.store_answered(ctx.now());
                wake |= n > 0;
            }
            Err(e) => {
                seen_failure(&mut s.rescue, &e);
                tracing::warn!(error = %e, "promoting due jobs failed");
            }
        }
        let now = ctx.now();
        if s.rescue.may_rescue(now) {
            match ctx.store.rescue_expired(now).await {
                Ok(rescued) if !rescued.is_empty() => {
                    tracing::info!(n = rescued.len(), "rescued jobs whose lease lapsed");
                    wake = true;
                }
                Ok(_) => {}
                Err(e) => {
                    seen_failure(&mut s.rescue, &e);
                    tracing::warn!(error = %e, "rescuing expired leases failed");
                }
            }
        }
        if wake {
            s.dispatcher.cast(DispatchMsg::Wake).ok();
        }
        heartbeat(ctx).await;
        if now >= s.next_backlog {
            let took = crate::models::read_backlogs(ctx).await;
            s.next_backlog = now.plus(crate::models::BACKLOG_EVERY.max(took * 10));
        }
        ctx.warn_breaches().await;
        if let Some(retention) = &ctx.retention
            && now >= s.next_purge
        {
            s.next_purge = now.plus(retention.interval);
            purge(ctx, retention, now).await;
        }
        if s.counts.look_for_wish(now) {
            match posted_counts::wished(&*ctx.store, now).await {
                Ok(wish) => s.counts.wish_seen(wish),
                Err(e) => tracing::debug!(error = %e, "reading the counts wish failed"),
            }
        }
        if s.counts.due(now) {
            s.counts.started(now);
            queue_stats(ctx, &mut s.counts, &mut s.finished, now).await;
        }
        Ok(())
    }
}

/// Tells the store this node and its worker slots are alive for a few rounds (where the
/// backend keeps a registry: Redis in `redis_postgres`). Workers are named per slot,
/// `<node>/w<slot>`, as in their lifecycle events; every slot is reported, a slot being
/// restarted is still one of the node's workers. Best-effort: nothing in the node
/// depends on it, so a failure is only logged.
async fn heartbeat(ctx: &Ctx) {
    let Some(registry) = ctx.store.heartbeats() else {
        return;
    };
    let workers: Vec<_> = (0..ctx.workers.concurrency as usize)
        .map(|slot| ctx.worker_id(slot))
        .collect();
    let ttl = heartbeat_ttl(round_interval(ctx));
    if let Err(e) = registry.heartbeat(&ctx.node, &workers, ttl).await {
        tracing::debug!(error = %e, "recording the node's heartbeat failed");
    }
}

/// The longest lease a node with these settings may grant: leases of other nodes may be
/// as long, so rescues after an outage wait that long.
fn longest_lease(ctx: &Ctx) -> Duration {
    let learned = &ctx.workers.learned;
    if learned.lease {
        ctx.workers.lease.max(learned.max_lease)
    } else {
        ctx.workers.lease
    }
}

/// The interval between maintenance rounds.
fn round_interval(ctx: &Ctx) -> Duration {
    ctx.workers.poll_interval.min(ctx.workers.lease / 3)
}

/// How long a heartbeat lasts: three rounds, so one slow or failed round does not make
/// the node look gone, but at least a second.
fn heartbeat_ttl(round: Duration) -> Duration {
    (round * 3).max(Duration::from_secs(1))
}

/// How long rescues wait after this node saw the store come back: a full lease, so every
/// live holder gets one to renew, and never less than two of the completer's longest
/// retry pauses, so outcomes finished during the outage are recorded first.
fn rescue_grace(lease: Duration) -> Duration {
    lease.max(2 * MAX_RETRY_DELAY)
}

/// How long without a store answer counts as an outage, given the round interval
/// `every` (at most a third of a lease): two rounds, but at least a second, so that a
/// busy machine's slow round is not taken for one. Silence is measured between answers,
/// which normally come a round apart. A lease can only lapse unrenewed during an outage
/// of two thirds of a lease or more, and two rounds are never longer than that.
fn silence(every: Duration) -> Duration {
    (2 * every).max(Duration::from_secs(1))
}

/// Reports a failed store call to the gate if it was an outage (not a refused request).
fn seen_failure(gate: &mut RescueGate, e: &StoreError) {
    if e.is_transient() {
        gate.store_failed();
    }
}

/// Renews the leases of the attempts running here, interrupting those that were lost;
/// whether there were any (and so the store was asked).
async fn extend(ctx: &Ctx, now: Millis) -> Result<bool, StoreError> {
    let leases = ctx.inflight.leases();
    if leases.is_empty() {
        return Ok(false);
    }
    let asked = std::time::Instant::now();
    match ctx
        .store
        .extend_leases(&leases, now.plus(ctx.lease()))
        .await
    {
        Ok(kept) => {
            // How long renewals take is one of the node's own failure signals.
            ctx.feed.renewed(asked.elapsed().as_secs_f64() * 1000.0);
            for (lease, kept) in leases.iter().zip(kept) {
                if !kept {
                    ctx.inflight.interrupt(lease.job, Some(lease.token));
                }
            }
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %e, "extending leases failed; will retry");
            Err(e)
        }
    }
}

/// How often the leader reads the queue counts for the metrics: every 30 poll
/// intervals, between 5 s and 15 s (15 s with the default 500 ms poll, a usual scrape
/// interval: fresher counts would not be seen). Every node renews or tries the leader
/// lease that often, a write on SQLite's single writer: not more than every 5 s.
fn counts_interval(ctx: &Ctx) -> Duration {
    (ctx.workers.poll_interval * 30).clamp(Duration::from_secs(5), Duration::from_secs(15))
}

/// The leader lease's time to live: a few rounds of the chore that renews it most
/// rarely, so a leader that dies is replaced within three of them.
fn lead_ttl(ctx: &Ctx) -> Duration {
    let purge = ctx
        .retention
        .as_ref()
        .map(|r| r.interval)
        .unwrap_or_default();
    purge.max(counts_interval(ctx)) * 3
}

/// Reads the job counts per queue and state, the oldest available jobs and the last
/// minute's finishes if this node holds (or takes) the maintenance leader lease: into
/// the metrics, and posted in the store for the HTTP API to serve. A node that does
/// not lead serves none, so a scrape of any node never costs a COUNT.
async fn queue_stats(
    ctx: &Ctx,
    rounds: &mut CountsRounds,
    finished: &mut FinishedWindow,
    now: Millis,
) {
    let stats = &ctx.metrics.queue_stats;
    match ctx
        .store
        .try_lead(PURGE_ROLE, &ctx.node, lead_ttl(ctx), now)
        .await
    {
        Ok(true) => {
            rounds.led(true);
            let started = std::time::Instant::now();
            match PostedCounts::read_with(&*ctx.store, now, finished).await {
                Ok(mut counts) => {
                    rounds.read(now, started.elapsed());
                    counts.fresh_within_ms = rounds.fresh_within().as_millis() as u64;
                    if let Err(e) = counts.post(&*ctx.store).await {
                        tracing::warn!(error = %e, "posting the queue counts failed");
                    }
                    stats.lead(counts.snapshot);
                }
                // Stale counts are worse than none: a dashboard would show a frozen queue.
                Err(e) => {
                    tracing::warn!(error = %e, "reading queue counts for the metrics failed");
                    stats.follow();
                }
            }
        }
        Ok(false) => {
            rounds.led(false);
            stats.follow();
        }
        Err(e) => {
            tracing::warn!(error = %e, "leader lease check failed");
            rounds.led(false);
            stats.follow();
        }
    }
}

/// Purges expired work if this node holds (or takes) the maintenance leader lease,
/// so one node at a time does it.
async fn purge(ctx: &Ctx, retention: &jobmesh::store::retention::Retention, now: Millis) {
    match ctx
        .store
        .try_lead(PURGE_ROLE, &ctx.node, lead_ttl(ctx), now)
        .await
    {
        Ok(true) => match ctx.store.purge(retention, now).await {
            Ok(p) if p != Default::default() => tracing::info!(?p, "purged expired work"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
        },
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "leader lease check failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the poll interval at or above a third of the lease, rounds come a renewal
    /// period apart: answers that far apart (and a little more, for the round's own
    /// work) must not read as an outage, or rescues would be held back for good.
    #[test]
    fn answers_a_round_apart_never_hold_rescues_back() {
        let lease = Duration::from_secs(30);
        let every = lease / 3;
        let mut gate = RescueGate::new(rescue_grace(lease), silence(every), Millis(0));
        let round = every.as_millis() as i64 + 250;
        for i in 1..=10 {
            let at = Millis(i * round);
            gate.store_answered(at);
            assert!(gate.may_rescue(at), "round {i}");
        }
    }

    #[test]
    fn an_outage_long_enough_to_lapse_a_lease_is_seen_as_one() {
        let lease = Duration::from_secs(30);
        let every = Duration::from_millis(500);
        let mut gate = RescueGate::new(rescue_grace(lease), silence(every), Millis(0));
        // Renewed at 0, the lease lapses at 30 s; the store answers again at 31 s.
        gate.store_answered(Millis(31_000));
        assert!(!gate.may_rescue(Millis(31_000)));
        assert!(gate.may_rescue(Millis(61_000)));
    }
}
