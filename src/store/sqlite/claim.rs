//! Leases: claiming available jobs, extending leases that are still current, and
//! giving back those whose attempt never started.

use serde_json::json;

use super::SqliteStore;
use super::counts::move_counts;
use super::events::events;
use super::rows::{self, job_array, to_json};
use crate::clock::Millis;
use crate::job::{ClaimRequest, ClaimedJob, JobId, Lease};
use crate::store::rules;
use crate::store::{ClaimOrder, StoreError, grant};

/// The next `?2` available jobs of the queues `?1` (a JSON array) that are not paused,
/// as a JSON array of ids, and whether any limit could apply to them.
///
/// Each queue's first `?2` are read in order from `jobs_claim` (queue, priority DESC,
/// run_at, id) WHERE state = 'available', which stops after `?2` entries; then at most
/// `?2` per queue are sorted. Named with `INDEXED BY`, because without statistics
/// SQLite takes an equality on `state` for the most selective term and reads every
/// available job through the listing index `jobs_state_id` (state, id), sorting them
/// all per claim: a claim then costs the whole backlog (18 ms at 100,000 jobs).
pub(super) const PICK: &str = "SELECT (SELECT json_group_array(id) FROM (
         SELECT j.id FROM (SELECT DISTINCT value AS queue FROM json_each(?1)) AS q
         JOIN jobs AS j ON j.id IN (
             SELECT id FROM jobs INDEXED BY jobs_claim
             WHERE state = 'available' AND queue = q.queue
             ORDER BY priority DESC, run_at, id LIMIT ?2)
         WHERE q.queue NOT IN (SELECT queue FROM paused_queues)
         ORDER BY j.priority DESC, j.run_at, j.id LIMIT ?2)),
     EXISTS (SELECT 1 FROM job_limits
         WHERE kind IS NOT NULL OR queue IN (SELECT value FROM json_each(?1)))";

impl SqliteStore {
    /// See [`crate::store::JobQueue::claim`].
    pub(super) async fn claim_jobs(
        &self,
        req: &ClaimRequest,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if req.limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        let expires = req.now.plus(req.lease_for);
        let mut tx = self.begin().await?;
        let queues = to_json(&req.queues);
        // Pick, lease, log and read back the batch with one value crossing from SQLite's
        // thread per statement (ids in, one JSON array out), not one row per job. A claim
        // under a limit picks by the limits instead (`limits.rs`); the write lock this
        // transaction holds serialises it against every other claim.
        let (ids, limited): (String, bool) = sqlx::query_as(PICK)
            .bind(&queues)
            .bind(req.limit as i64)
            .fetch_one(&mut *tx)
            .await?;
        let ids = if limited {
            Self::pick_limited(&mut tx, req, &queues).await?
        } else {
            ids
        };
        if ids == "[]" {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // Lease, log and read back in one command. Parameters are positional: each
        // statement takes the next ones in order (numbered ones would not run on).
        let claimed: String = sqlx::query_scalar(concat!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1,
                 lease_owner = ?, lease_node = ?, lease_expires_at = ?
             WHERE id IN (SELECT value FROM json_each(?)) AND state = 'available';",
            move_counts!("available", "running"),
            "
             INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
             SELECT ?, 'job.claimed', id, attempt, lease_owner, lease_node FROM jobs
             WHERE id IN (SELECT value FROM json_each(?));
             SELECT json_group_array(",
            job_array!(),
            ") FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
        ))
        .bind(&req.worker.0)
        .bind(&req.node.0)
        .bind(expires.0)
        .bind(&ids)
        .bind(&ids)
        .bind(&ids)
        .bind(req.now.0)
        .bind(&ids)
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
        let (mut jobs, bad) = rows::jobs_from_array(&claimed)?;
        // Rows this version cannot read are dead-lettered in the claim's own transaction,
        // under the lease it has just given them; the rest of the batch runs.
        for u in &bad {
            tracing::warn!(job = %u.id, reason = %u.reason, "dead-lettering a job whose row cannot be decoded");
            Self::apply_failure(&mut tx, &u.completion(req)).await?;
        }
        tx.commit().await?;
        jobs.sort_by_key(ClaimOrder::of);
        Ok(jobs.into_iter().map(|job| grant(job, req)).collect())
    }

    /// See [`crate::store::JobQueue::extend_leases`].
    pub(super) async fn renew_leases(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = leases
            .iter()
            .map(|l| json!({"id": l.job.0, "tok": l.token.0}))
            .collect();
        let mut tx = self.begin().await?;
        let extended: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = ?1
             FROM (SELECT value->>'id' AS id, value->>'tok' AS tok FROM json_each(?2)) AS l
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id",
        )
        .bind(until.0)
        .bind(to_json(&rows))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(leases.iter().map(|l| extended.contains(&l.job.0)).collect())
    }

    /// See [`crate::store::JobQueue::release`].
    pub(super) async fn release_unstarted(
        &self,
        leases: &[Lease],
        now: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = leases
            .iter()
            .map(|l| json!({"id": l.job.0, "tok": l.token.0}))
            .collect();
        let mut tx = self.begin().await?;
        let released: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1,
                 lease_token = lease_token + 1, lease_expires_at = NULL, run_at = ?1
             FROM (SELECT value->>'id' AS id, value->>'tok' AS tok FROM json_each(?2)) AS l
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.attempt",
        )
        .bind(now.0)
        .bind(to_json(&rows))
        .fetch_all(&mut *tx)
        .await?;
        let evs: Vec<_> = released
            .iter()
            .map(|&(id, attempt)| rules::released_unstarted(JobId(id), attempt as u32, now))
            .collect();
        events(&mut tx, &evs).await?;
        tx.commit().await?;
        Ok(leases
            .iter()
            .map(|l| released.iter().any(|&(id, _)| id == l.job.0))
            .collect())
    }
}
