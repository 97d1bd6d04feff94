//! Lost leases: taking back running jobs whose lease expired, or whose node was
//! evicted or restarted, and applying what they become ([`RescuePlan`]).

use super::discard::{cascade_discard, dead_letter};
use super::events::events;
use super::{SqliteStore, Tx};
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::columns;
use crate::store::rules::{lease_expired_detail, lease_expired_error, lease_revoked_error};
use crate::store::{RescuePlan, RescuedJob, StoreError};

/// The start of the statement that takes lost leases back, shared by expiry and
/// revocation: the token is bumped (so the old holder can finish nothing), and the job
/// runs again at once (`?1` is now) or, out of attempts, is discarded. Callers name the
/// partial index that finds their leases (see the `sqlite` module's notes on indexes named in statements), and add
/// `last_error` and which leases.
macro_rules! take_back {
    ($index:literal) => {
        concat!(
            "UPDATE jobs INDEXED BY ",
            $index,
            " SET lease_token = lease_token + 1, lease_expires_at = NULL,
             state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'discarded' END,
             run_at = CASE WHEN attempt < max_attempts THEN ?1 ELSE run_at END,
             finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?1 END, "
        )
    };
}

/// Takes back the running jobs whose lease expired before `?1`.
pub(super) const TAKE_BACK_EXPIRED: &str = concat!(
    take_back!("jobs_lease_expiry"),
    "last_error = ",
    lease_expired_error!(),
    "
     WHERE state = 'running' AND lease_expires_at < ?1
     RETURNING id, attempt, state"
);

/// Takes back the running jobs of node `?2` (`?1` is now).
pub(super) const TAKE_BACK_REVOKED: &str = concat!(
    take_back!("jobs_lease_node"),
    "last_error = ",
    lease_revoked_error!("?2"),
    "
     WHERE state = 'running' AND lease_node = ?2
     RETURNING id, attempt, state"
);

/// Applies what a set of lost leases became ([`RescuePlan`]); shared by expiry rescue
/// and node revocation. One process, so there is no one to wake.
async fn after_rescue(
    tx: &mut Tx,
    rescued: Vec<(i64, i64, String)>,
    now: Millis,
    detail: serde_json::Value,
) -> Result<Vec<RescuedJob>, StoreError> {
    let rows = rescued
        .into_iter()
        .map(|(id, attempt, state)| Ok((columns::rescued(id, attempt, &state)?, String::new())))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let plan = RescuePlan::new(rows, now, detail);
    events(tx, &plan.events).await?;
    if !plan.discarded.is_empty() {
        dead_letter(tx, &plan.discarded, now).await?;
        cascade_discard(tx, plan.discarded, now).await?;
    }
    Ok(plan.rescued)
}

impl SqliteStore {
    /// See [`crate::store::JobQueue::rescue_expired`].
    pub(super) async fn rescue_expired_leases(
        &self,
        now: Millis,
    ) -> Result<Vec<RescuedJob>, StoreError> {
        let mut tx = self.begin().await?;
        let rescued: Vec<(i64, i64, String)> = sqlx::query_as(TAKE_BACK_EXPIRED)
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
        let mut tx = self.begin().await?;
        let rescued: Vec<(i64, i64, String)> = sqlx::query_as(TAKE_BACK_REVOKED)
            .bind(now.0)
            .bind(&node.0)
            .fetch_all(&mut *tx)
            .await?;
        let out = after_rescue(&mut tx, rescued, now, detail).await?;
        tx.commit().await?;
        Ok(out)
    }
}
