//! Claims and what a claim hands out: taking available jobs (the best of some queues, or
//! given ones), extending current leases, giving back leases whose attempt never started.

use std::collections::HashSet;

use super::incarnation::{next_token, on_claim_connection};
use super::rows::{self, job_columns};
use super::{PostgresStore, events, wake};
use crate::clock::Millis;
use crate::job::{ClaimRequest, ClaimedJob, JobId, Lease};
use crate::store::rules;
use crate::store::{ClaimOrder, JobQueue, StoreError, Undecodable, grant};

/// A claim in one statement: pick (skipping rows that other claimers hold), lease, log.
/// `$1` worker, `$2` node, `$3` lease expiry, `$4` queue(s), `$5` limit, `$6` now.
macro_rules! claim_sql {
    ($picked:literal) => {
        concat!(
            "WITH picked AS (",
            $picked,
            "), claimed AS (
                 UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = ",
            next_token!(),
            ",
                     lease_owner = $1, lease_node = $2, lease_expires_at = $3
                 FROM picked WHERE id = picked.pick
                 RETURNING ",
            job_columns!(),
            "
             ), ev AS (
                 INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
                 SELECT $6, 'job.claimed', id, attempt, $1, $2 FROM claimed ORDER BY id
             )
             SELECT * FROM claimed"
        )
    };
}

/// One queue: an index scan in dispatch order that stops after `$5` rows, or none at all
/// when the queue is paused or under a limit (each `NOT EXISTS` is evaluated once, before
/// the scan: a per-row test of the job's kind against the kind limits made Postgres sort
/// the whole queue). Limited queues, and every queue while some kind has a limit, are
/// claimed by `limits.rs`; the test here keeps a claimer whose routing cache has not yet
/// seen a new limit from taking jobs past it. (With
/// `queue = ANY (array)` Postgres 15 sorts every available job of the queues instead.)
const CLAIM_ONE_QUEUE: &str = claim_sql!(
    "SELECT id AS pick FROM jobs
     WHERE state = 'available' AND queue = $4
       AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = $4)
       AND NOT EXISTS (SELECT 1 FROM job_limits l WHERE l.queue = $4 OR l.kind IS NOT NULL)
     ORDER BY priority DESC, run_at, id
     LIMIT $5
     FOR UPDATE SKIP LOCKED"
);

/// Several queues: the first `$5` of each queue that is not paused, read without
/// locking, the first `2 * $5` of those in dispatch order as candidates, then the first
/// `$5` candidates still available that no other claimer holds, locked. (Locking in
/// each queue's scan locked up to `$5` rows per queue per claim, every lock a write to
/// the row: with 200 queues the drain halved.) Two candidates per slot leave room for
/// another node's claim of the same first jobs; a claim that finds all of its candidates
/// taken returns none, and [`CLAIM_QUEUES_LOCKING`] is asked at once.
const CLAIM_QUEUES: &str = claim_sql!(
    "SELECT jobs.id AS pick FROM (
         SELECT j.id, j.priority, j.run_at FROM (
             SELECT name FROM unnest($4::text[]) AS u(name)
             WHERE NOT EXISTS (SELECT 1 FROM paused_queues p WHERE p.queue = u.name)
               AND NOT EXISTS (SELECT 1 FROM job_limits l WHERE l.queue = u.name OR l.kind IS NOT NULL)
         ) AS q
         CROSS JOIN LATERAL (
             SELECT id, priority, run_at FROM jobs
             WHERE state = 'available' AND queue = q.name
             ORDER BY priority DESC, run_at, id
             LIMIT $5
         ) AS j
         ORDER BY j.priority DESC, j.run_at, j.id
         LIMIT 2 * $5
     ) AS c
     JOIN jobs ON jobs.id = c.id
     WHERE jobs.state = 'available'
     ORDER BY c.priority DESC, c.run_at, c.id
     LIMIT $5
     FOR UPDATE OF jobs SKIP LOCKED"
);

/// Several queues when [`CLAIM_QUEUES`] found every candidate taken (claimers of other
/// nodes read the same first jobs at the same time): the first `$5` of each queue that
/// no other claimer holds, locked in each queue's scan, then the first `$5` of those.
/// It never comes back empty while a job is free, at the cost of the locks.
const CLAIM_QUEUES_LOCKING: &str = claim_sql!(
    "SELECT j.pick FROM (
         SELECT name FROM unnest($4::text[]) AS u(name)
         WHERE NOT EXISTS (SELECT 1 FROM paused_queues p WHERE p.queue = u.name)
           AND NOT EXISTS (SELECT 1 FROM job_limits l WHERE l.queue = u.name OR l.kind IS NOT NULL)
     ) AS q
     CROSS JOIN LATERAL (
         SELECT id AS pick, priority, run_at FROM jobs
         WHERE state = 'available' AND queue = q.name
         ORDER BY priority DESC, run_at, id
         LIMIT $5
         FOR UPDATE SKIP LOCKED
     ) AS j
     ORDER BY j.priority DESC, j.run_at, j.pick
     LIMIT $5"
);

/// Leases the given jobs that are still `available` in a queue that is not paused and
/// under no limit, with their `job.claimed` events (jobs under a limit are claimed by
/// `limits.rs`; the production store pushes refused ones back to Redis).
/// `$1` worker, `$2` node, `$3` lease expiry, `$4` ids, `$5` now.
///
/// The ids are joined from `unnest` rather than tested with `id = ANY ($4)`: with the
/// latter Postgres ANDs the primary key with the partial `jobs_claim` index, reading
/// every available job per claim (a drain that slows as the backlog grows); the join
/// finds each job by primary key.
const CLAIM_IDS: &str = concat!(
    "WITH claimed AS (
         UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = ",
    next_token!(),
    ",
             lease_owner = $1, lease_node = $2, lease_expires_at = $3
         FROM unnest($4::bigint[]) AS t(pick)
         WHERE jobs.id = t.pick AND jobs.state = 'available'
           AND NOT EXISTS (SELECT 1 FROM paused_queues p WHERE p.queue = jobs.queue)
           AND NOT EXISTS (SELECT 1 FROM job_limits l WHERE l.kind IS NOT NULL)
           AND jobs.queue NOT IN (SELECT queue FROM job_limits WHERE queue IS NOT NULL)
         RETURNING has_children, ",
    job_columns!(),
    "
     ), ev AS (
         INSERT INTO lifecycle_events (at, kind, job, attempt, worker, node)
         SELECT $5, 'job.claimed', id, attempt, $1, $2 FROM claimed ORDER BY id
     )
     SELECT * FROM claimed"
);

/// What a claim of given jobs leased ([`PostgresStore::claim_by_ids`]).
#[derive(Debug, Default)]
pub(crate) struct ClaimedIds {
    /// The jobs leased, in no particular order.
    pub claimed: Vec<ClaimedJob>,
    /// Those of them that have children (whose success may release some).
    pub parents: Vec<JobId>,
}

impl PostgresStore {
    /// See [`crate::store::JobQueue::claim`].
    pub(super) async fn claim_available(
        &self,
        req: &ClaimRequest,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if req.limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        let expires = req.now.plus(req.lease_for);
        let mut queues = req.queues.clone();
        queues.sort_unstable();
        queues.dedup();
        let routing = self.routing().await?;
        if queues.iter().any(|q| routing.limited(q)) {
            let (mut jobs, bad) = self.claim_limited(req, &queues).await?;
            self.discard_undecodable(req, &bad).await;
            jobs.sort_by_key(ClaimOrder::of);
            return Ok(jobs.into_iter().map(|job| grant(job, req)).collect());
        }
        let one = queues.len() == 1;
        let mut rows = self
            .claim_statement(
                req,
                &queues,
                expires,
                if one { CLAIM_ONE_QUEUE } else { CLAIM_QUEUES },
            )
            .await?;
        if rows.is_empty() && !one {
            rows = self
                .claim_statement(req, &queues, expires, CLAIM_QUEUES_LOCKING)
                .await?;
        }
        let mut jobs = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for row in &rows {
            match rows::claimed(row)? {
                Ok(job) => jobs.push(job),
                Err(u) => bad.push(u),
            }
        }
        self.discard_undecodable(req, &bad).await;
        jobs.sort_by_key(ClaimOrder::of);
        Ok(jobs.into_iter().map(|job| grant(job, req)).collect())
    }

    /// Runs one of the claim statements on `queues` (one queue: bound as text, else as
    /// an array).
    async fn claim_statement(
        &self,
        req: &ClaimRequest,
        queues: &[String],
        expires: Millis,
        statement: &'static str,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        on_claim_connection!(self, |conn| {
            let query = sqlx::query(statement)
                .bind(&req.worker.0)
                .bind(&req.node.0)
                .bind(expires.0);
            let query = if let [queue] = queues {
                query.bind(queue)
            } else {
                query.bind(queues)
            };
            query
                .bind(i64::from(req.limit))
                .bind(req.now.0)
                .fetch_all(conn)
                .await
                .map_err(StoreError::from)
        })
    }

    /// See [`crate::store::JobQueue::extend_leases`].
    pub(super) async fn extend_current(
        &self,
        leases: &[Lease],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let extended: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = $1
             FROM unnest($2::bigint[], $3::bigint[]) AS l(id, tok)
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.lease_token",
        )
        .bind(until.0)
        .bind(leases.iter().map(|l| l.job.0).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.token.0).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        let extended: HashSet<(i64, i64)> = extended.into_iter().collect();
        Ok(leases
            .iter()
            .map(|l| extended.contains(&(l.job.0, l.token.0)))
            .collect())
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
        let mut tx = self.pool.begin().await?;
        let released: Vec<(i64, i32, String)> = sqlx::query_as(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1,
                 lease_token = lease_token + 1, lease_expires_at = NULL, run_at = $1
             FROM unnest($2::bigint[], $3::bigint[]) AS l(id, tok)
             WHERE jobs.id = l.id AND jobs.lease_token = l.tok AND jobs.state = 'running'
             RETURNING jobs.id, jobs.attempt, jobs.queue",
        )
        .bind(now.0)
        .bind(leases.iter().map(|l| l.job.0).collect::<Vec<_>>())
        .bind(leases.iter().map(|l| l.token.0).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let evs: Vec<_> = released
            .iter()
            .map(|(id, attempt, _)| {
                rules::released_unstarted(JobId(*id), (*attempt).max(0) as u32, now)
            })
            .collect();
        events(&mut tx, &evs).await?;
        wake(
            &mut tx,
            released.iter().map(|(_, _, q)| q.clone()).collect(),
        )
        .await?;
        tx.commit().await?;
        let ids: HashSet<i64> = released.iter().map(|(id, _, _)| *id).collect();
        Ok(leases.iter().map(|l| ids.contains(&l.job.0)).collect())
    }

    /// Leases those of `ids` (picked by an index outside Postgres) that are still
    /// `available`, as a claim by `req` does; ids that are not (cancelled, already
    /// running, finished) are left out. One statement for the batch.
    pub(crate) async fn claim_by_ids(
        &self,
        req: &ClaimRequest,
        ids: &[JobId],
    ) -> Result<ClaimedIds, StoreError> {
        let expires = req.now.plus(req.lease_for);
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        let found = on_claim_connection!(self, |conn| {
            sqlx::query(CLAIM_IDS)
                .bind(&req.worker.0)
                .bind(&req.node.0)
                .bind(expires.0)
                .bind(&ids)
                .bind(req.now.0)
                .fetch_all(conn)
                .await
                .map_err(StoreError::from)
        })?;
        let mut out = ClaimedIds {
            claimed: Vec::with_capacity(found.len()),
            parents: Vec::new(),
        };
        let mut bad = Vec::new();
        for row in &found {
            let job = match rows::claimed(row)? {
                Ok(job) => job,
                Err(u) => {
                    bad.push(u);
                    continue;
                }
            };
            if rows::has_children(row)? {
                out.parents.push(job.id);
            }
            out.claimed.push(grant(job, req));
        }
        self.discard_undecodable(req, &bad).await;
        Ok(out)
    }

    /// Those of `ids` that have children (one query).
    pub(crate) async fn parents_among(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        let parents: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE id = ANY ($1) AND has_children")
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(parents.into_iter().map(JobId).collect())
    }

    /// Dead-letters claimed jobs whose rows cannot be decoded (see [`Undecodable`]),
    /// under the leases the claim gave them. Best-effort: the claim has committed and its
    /// other jobs must run; if this fails, the leases lapse and a later claim (after the
    /// rescue) tries again.
    async fn discard_undecodable(&self, req: &ClaimRequest, bad: &[Undecodable]) {
        if bad.is_empty() {
            return;
        }
        for u in bad {
            tracing::warn!(job = %u.id, reason = %u.reason, "dead-lettering a job whose row cannot be decoded");
        }
        let batch = bad.iter().map(|u| u.completion(req)).collect();
        if let Err(e) = self.complete(batch).await {
            tracing::warn!(error = %e, "dead-lettering undecodable jobs failed; their leases will lapse");
        }
    }
}
