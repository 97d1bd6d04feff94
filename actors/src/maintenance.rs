//! Maintenance: every poll interval it promotes due scheduled/retryable jobs, rescues
//! jobs whose lease lapsed (a crashed node's), and every third of a lease it extends the
//! leases of attempts running here, interrupting those whose lease was lost (cancelled,
//! revoked, rescued).

use std::sync::Arc;

use jobmesh::clock::Millis;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::context::Ctx;
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
    last_extend: Millis,
    next_purge: Millis,
}

/// Leader-lease role of the node that purges.
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
        let every = ctx.workers.poll_interval.min(ctx.workers.lease / 3);
        myself.send_interval(every, || MaintenanceMsg::Tick);
        myself.cast(MaintenanceMsg::Tick)?;
        Ok(MaintenanceState {
            last_extend: ctx.now(),
            next_purge: ctx.now(),
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
        let mut wake = false;
        match ctx.store.promote_due(now).await {
            Ok(n) => wake |= n > 0,
            Err(e) => tracing::warn!(error = %e, "promoting due jobs failed"),
        }
        match ctx.store.rescue_expired(now).await {
            Ok(rescued) if !rescued.is_empty() => {
                tracing::info!(n = rescued.len(), "rescued jobs whose lease lapsed");
                wake = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rescuing expired leases failed"),
        }
        if wake {
            s.dispatcher.cast(DispatchMsg::Wake).ok();
        }
        let lease_ms = ctx.workers.lease.as_millis() as i64;
        if now.0 - s.last_extend.0 >= lease_ms / 3 {
            s.last_extend = now;
            extend(ctx, now).await;
        }
        if let Some(retention) = &ctx.retention
            && now >= s.next_purge
        {
            s.next_purge = now.plus(retention.interval);
            purge(ctx, retention, now).await;
        }
        Ok(())
    }
}

async fn extend(ctx: &Ctx, now: Millis) {
    let leases = ctx.inflight.leases();
    if leases.is_empty() {
        return;
    }
    match ctx
        .store
        .extend_leases(&leases, now.plus(ctx.workers.lease))
        .await
    {
        Ok(kept) => {
            for (lease, kept) in leases.iter().zip(kept) {
                if !kept {
                    ctx.inflight.interrupt(lease.job, Some(lease.token));
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "extending leases failed; will retry"),
    }
}

/// Purges expired work if this node holds (or takes) the maintenance leader lease,
/// so one node at a time does it. The lease outlives a few intervals so a leader that
/// dies is replaced within three of them.
async fn purge(ctx: &Ctx, retention: &jobmesh::store::retention::Retention, now: Millis) {
    let ttl = retention.interval * 3;
    match ctx.store.try_lead(PURGE_ROLE, &ctx.node, ttl, now).await {
        Ok(true) => match ctx.store.purge(retention, now).await {
            Ok(p) if p != Default::default() => tracing::info!(?p, "purged expired work"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
        },
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "leader lease check failed"),
    }
}
