//! Lost leases: expired ones rescued, and those of a node revoked.

use super::{PostgresStore, Tx, cascade_discard, dead_letter, events, wake};
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::columns;
use crate::store::rules::{lease_expired_detail, lease_expired_error, lease_revoked_error};
use crate::store::{RescuePlan, RescuedJob, StoreError};

/// The start of the statement that takes lost leases back, shared by expiry and
/// revocation: the token is bumped (so the old holder can finish nothing), and the job
/// runs again at once (`$1` is now) or, out of attempts, is discarded. Callers add
/// `last_error` and which leases.
macro_rules! take_back {
    () => {
        "UPDATE jobs SET lease_token = lease_token + 1, lease_expires_at = NULL,
                 state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
                 run_at = CASE WHEN attempt < max_attempts THEN $1 ELSE run_at END,
                 finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE $1 END,
                 "
    };
}

/// Applies what a set of lost leases became ([`RescuePlan`]); shared by expiry rescue
/// and node revocation.
async fn after_rescue(
    tx: &mut Tx,
    rescued: Vec<(i64, i32, String, String)>,
    now: Millis,
    detail: serde_json::Value,
) -> Result<Vec<RescuedJob>, StoreError> {
    let rows = rescued
        .into_iter()
        .map(|(id, attempt, state, queue)| {
            Ok((columns::rescued(id, attempt.into(), &state)?, queue))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let plan = RescuePlan::new(rows, now, detail);
    events(tx, &plan.events).await?;
    dead_letter(tx, &plan.discarded, now).await?;
    cascade_discard(tx, &plan.discarded, now).await?;
    wake(tx, plan.queues).await?;
    Ok(plan.rescued)
}

impl PostgresStore {
    /// See [`crate::store::JobQueue::rescue_expired`].
    pub(super) async fn rescue_lapsed(&self, now: Millis) -> Result<Vec<RescuedJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rescued: Vec<(i64, i32, String, String)> = sqlx::query_as(concat!(
            take_back!(),
            "last_error = ",
            lease_expired_error!(),
            "
             WHERE state = 'running' AND lease_expires_at < $1
             RETURNING id, attempt, state, queue"
        ))
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?;
        let out = after_rescue(&mut tx, rescued, now, lease_expired_detail()).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// See [`crate::store::JobQueue::revoke_node`].
    pub(super) async fn revoke_leases_of(
        &self,
        node: &NodeId,
        now: Millis,
        detail: serde_json::Value,
    ) -> Result<Vec<RescuedJob>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rescued: Vec<(i64, i32, String, String)> = sqlx::query_as(concat!(
            take_back!(),
            "last_error = ",
            lease_revoked_error!("$2"),
            "
             WHERE state = 'running' AND lease_expires_at IS NOT NULL AND lease_node = $2
             RETURNING id, attempt, state, queue"
        ))
        .bind(now.0)
        .bind(&node.0)
        .fetch_all(&mut *tx)
        .await?;
        let out = after_rescue(&mut tx, rescued, now, detail).await?;
        tx.commit().await?;
        Ok(out)
    }
}
