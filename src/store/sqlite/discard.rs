//! Discarding: the dead-letter queue and the parent-failure cascade, applied by every
//! transition that discards a job (a failed attempt, a cancel, a rescue out of attempts,
//! an enqueue under a failed parent). What a discarded parent does to its children is
//! each child's [`ParentFailurePolicy`](crate::job::ParentFailurePolicy).

use super::Tx;
use super::events::events;
use super::rows::to_json;
use crate::clock::Millis;
use crate::job::JobId;
use crate::store::StoreError;
use crate::store::rules::{Start, discarded_with_parent};

/// Puts `ids` (just discarded) in the dead-letter queue, with their `last_error` as the
/// reason.
pub(super) async fn dead_letter(tx: &mut Tx, ids: &[i64], now: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR REPLACE INTO dead_letter_queue (job, queue, reason, discarded_at)
         SELECT id, queue, coalesce(last_error, 'discarded'), ?1 FROM jobs WHERE id IN (SELECT value FROM json_each(?2))",
    )
    .bind(now.0)
    .bind(to_json(&ids))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies the parent-failure policy of the waiting children of `parents`, transitively:
/// `discard` children are dead-lettered (and their own children considered in turn),
/// `hold` children keep waiting.
pub(super) async fn cascade_discard(
    tx: &mut Tx,
    parents: Vec<i64>,
    now: Millis,
) -> Result<(), StoreError> {
    let mut frontier = parents;
    while !frontier.is_empty() {
        let discarded: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = 'discarded', finished_at = ?1, last_error = ?3
             WHERE state = 'waiting' AND on_parent_failure = 'discard'
               AND id IN (SELECT child FROM job_dependencies WHERE parent IN (SELECT value FROM json_each(?2)))
             RETURNING id, attempt",
        )
        .bind(now.0)
        .bind(to_json(&frontier))
        .bind(Start::PARENT_FAILED)
        .fetch_all(&mut **tx)
        .await?;
        let ids: Vec<i64> = discarded.iter().map(|(id, _)| *id).collect();
        dead_letter(tx, &ids, now).await?;
        let evs: Vec<_> = discarded
            .iter()
            .map(|&(id, attempt)| discarded_with_parent(JobId(id), attempt as u32, now))
            .collect();
        events(tx, &evs).await?;
        frontier = ids;
    }
    Ok(())
}
