//! A claimer that waits for work without polling: when a claim finds nothing it blocks
//! on the queues' wake lists (`BLPOP`), which every push and nack feeds, and wakes
//! early for the earliest delayed job. Tokens left in a wake list are kept (bounded),
//! so a push between an empty claim and the `BLPOP` is not missed.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::RedisDispatch;
use crate::clock::{Clock, Millis};
use crate::job::{JobId, LeaseToken, NodeId, WorkerId};
use crate::store::StoreError;

/// What a [`Claimer`] claims, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpec {
    /// Queues to claim from, all at once (priority decides across them).
    pub queues: Vec<String>,
    /// Most jobs per claim.
    pub limit: u32,
    /// The node the leases are for.
    pub node: NodeId,
    /// The worker the leases are for.
    pub worker: WorkerId,
    /// Length of each lease.
    pub lease_for: Duration,
}

/// Claims with waiting, on a connection of its own (a blocked `BLPOP` would stall the
/// shared one). One per waiting loop; not cloneable.
pub struct Claimer {
    dispatch: RedisDispatch,
    conn: ConnectionManager,
    spec: ClaimSpec,
    wake_keys: Vec<String>,
}

impl std::fmt::Debug for Claimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimer")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl RedisDispatch {
    /// A [`Claimer`] for `spec`, with its own connection.
    pub async fn claimer(&self, spec: ClaimSpec) -> Result<Claimer, StoreError> {
        if spec.queues.is_empty() {
            return Err(StoreError::Invalid("claim from no queue".into()));
        }
        let wake_keys = spec.queues.iter().map(|q| self.keys.wake(q)).collect();
        Ok(Claimer {
            dispatch: self.clone(),
            conn: self.dedicated_connection().await?,
            spec,
            wake_keys,
        })
    }
}

impl Claimer {
    /// What this claimer claims.
    pub fn spec(&self) -> &ClaimSpec {
        &self.spec
    }

    /// Claims at once (see [`RedisDispatch::claim`]) without waiting.
    pub async fn claim(&self, now: Millis) -> Result<Vec<(JobId, LeaseToken)>, StoreError> {
        let s = &self.spec;
        self.dispatch
            .claim(&s.queues, s.limit, &s.node, &s.worker, s.lease_for, now)
            .await
    }

    /// Claims, waiting up to `max_wait` for jobs to arrive or come due; empty when none
    /// did. `clock` gives `now` for each claim (and so for lease expiries).
    pub async fn claim_wait(
        &mut self,
        clock: &dyn Clock,
        max_wait: Duration,
    ) -> Result<Vec<(JobId, LeaseToken)>, StoreError> {
        let deadline = Instant::now() + max_wait;
        loop {
            let now = clock.now();
            let s = &self.spec;
            let (claimed, next_due) = self
                .dispatch
                .claim_inner(&s.queues, s.limit, &s.node, &s.worker, s.lease_for, now)
                .await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(claimed);
            }
            let wait = match next_due {
                Some(due) => left.min(due.since(now)),
                None => left,
            };
            // BLPOP takes seconds; 0 would mean forever.
            let secs = wait.as_secs_f64().max(0.001);
            let _: Option<(String, String)> = redis::cmd("BLPOP")
                .arg(&self.wake_keys)
                .arg(secs)
                .query_async(&mut self.conn)
                .await?;
        }
    }
}
