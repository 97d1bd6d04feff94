//! Dispatch: push, claim, ack, nack, extend, lease expiry, node revocation and removal.
//! Each script call is atomic; batches are split into calls of `script_batch` items and
//! pipelined, so a batch costs one round trip.

use std::time::Duration;

use redis::{Cmd, FromRedisValue, Value};

use super::scripts::{self, SCRIPTS};
use super::{ReadyJob, RedisDispatch};
use crate::clock::Millis;
use crate::job::{JobId, LeaseToken, NodeId, WorkerId};
use crate::store::StoreError;

impl RedisDispatch {
    /// Queues jobs: those due at `now` go to their queue's ready set (ordered by
    /// priority, then push order), later ones to its delayed set. Idempotent: a job that
    /// is already queued or leased is left alone, as is a finished job whose record holds
    /// a newer token than its [`ReadyJob::epoch`]. Returns, per job, whether it was
    /// queued by this call. Blocked claimers of the queues are woken.
    pub async fn push(&self, jobs: &[ReadyJob], now: Millis) -> Result<Vec<bool>, StoreError> {
        for job in jobs {
            check_name("queue", &job.queue)?;
        }
        let calls = jobs
            .chunks(self.config.script_batch)
            .map(|chunk| {
                let mut cmd = self.job_call(&SCRIPTS.push, now);
                for j in chunk {
                    cmd.arg(j.id.0)
                        .arg(&j.queue)
                        .arg(j.priority)
                        .arg(j.run_at.0)
                        .arg(j.epoch.0);
                }
                cmd
            })
            .collect::<Vec<_>>();
        self.flags(&SCRIPTS.push, &calls, jobs.len()).await
    }

    /// Leases up to `limit` jobs from `queues` in one atomic call: delayed jobs that are
    /// due at `now` are promoted first, then the highest-priority (then oldest-pushed)
    /// ready jobs across all the queues are taken. Each gets a lease for
    /// `node`/`worker` until `now + lease_for` with a new fencing token, strictly
    /// greater than any token the job had before.
    pub async fn claim(
        &self,
        queues: &[impl AsRef<str>],
        limit: u32,
        node: &NodeId,
        worker: &WorkerId,
        lease_for: Duration,
        now: Millis,
    ) -> Result<Vec<(JobId, LeaseToken)>, StoreError> {
        Ok(self
            .claim_inner(queues, limit, node, worker, lease_for, now)
            .await?
            .0)
    }

    /// [`RedisDispatch::claim`], also returning the earliest `run_at` still delayed in
    /// the queues (for a claimer deciding how long to wait).
    pub(crate) async fn claim_inner(
        &self,
        queues: &[impl AsRef<str>],
        limit: u32,
        node: &NodeId,
        worker: &WorkerId,
        lease_for: Duration,
        now: Millis,
    ) -> Result<(Vec<(JobId, LeaseToken)>, Option<Millis>), StoreError> {
        if queues.is_empty() {
            return Err(StoreError::Invalid("claim from no queue".into()));
        }
        for q in queues {
            check_name("queue", q.as_ref())?;
        }
        check_name("node id", &node.0)?;
        let mut cmd = self.job_call(&SCRIPTS.claim, now);
        cmd.arg(limit)
            .arg(&node.0)
            .arg(&worker.0)
            .arg(now.plus(lease_for).0);
        for q in queues {
            cmd.arg(q.as_ref());
        }
        let reply: Vec<i64> = scripts::run(&mut self.conn(), &SCRIPTS.claim, &cmd).await?;
        let (&next_due, rest) = reply
            .split_first()
            .ok_or_else(|| StoreError::Corrupt("empty claim reply".into()))?;
        let claimed = pairs(rest)?;
        Ok((claimed, (next_due >= 0).then_some(Millis(next_due))))
    }

    /// Finishes attempts: each lease whose token is still current is released and the
    /// job leaves Redis (its record, with the last token, expires after
    /// `coordination_ttl`). `false` where the token is stale or unknown; nothing changed
    /// for that job.
    pub async fn ack(&self, leases: &[(JobId, LeaseToken)]) -> Result<Vec<bool>, StoreError> {
        let calls = leases
            .chunks(self.config.script_batch)
            .map(|chunk| {
                let mut cmd = self.job_call(&SCRIPTS.ack, Millis(0));
                for (id, tok) in chunk {
                    cmd.arg(id.0).arg(tok.0);
                }
                cmd
            })
            .collect::<Vec<_>>();
        self.flags(&SCRIPTS.ack, &calls, leases.len()).await
    }

    /// Gives jobs back: each lease whose token is still current is released and the job
    /// queued again to run at its `run_at` (ready at once if that is not after `now`).
    /// `false` where the token is stale; nothing changed for that job.
    pub async fn nack(
        &self,
        leases: &[(JobId, LeaseToken, Millis)],
        now: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        let calls = leases
            .chunks(self.config.script_batch)
            .map(|chunk| {
                let mut cmd = self.job_call(&SCRIPTS.nack, now);
                for (id, tok, run_at) in chunk {
                    cmd.arg(id.0).arg(tok.0).arg(run_at.0);
                }
                cmd
            })
            .collect::<Vec<_>>();
        self.flags(&SCRIPTS.nack, &calls, leases.len()).await
    }

    /// Moves the expiry of leases that are still current to `until`; `false` where the
    /// lease was lost (the worker should abandon the job).
    pub async fn extend(
        &self,
        leases: &[(JobId, LeaseToken)],
        until: Millis,
    ) -> Result<Vec<bool>, StoreError> {
        let calls = leases
            .chunks(self.config.script_batch)
            .map(|chunk| {
                let mut cmd = self.job_call(&SCRIPTS.extend, Millis(0));
                cmd.arg(until.0);
                for (id, tok) in chunk {
                    cmd.arg(id.0).arg(tok.0);
                }
                cmd
            })
            .collect::<Vec<_>>();
        self.flags(&SCRIPTS.extend, &calls, leases.len()).await
    }

    /// Takes back up to `limit` leases that expired before `now`: each token is bumped
    /// (the old holder is fenced off) and the job is ready again at once. Returns the
    /// jobs with the tokens of the leases that lapsed.
    pub async fn expired(
        &self,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<(JobId, LeaseToken)>, StoreError> {
        let mut cmd = self.job_call(&SCRIPTS.expired, now);
        cmd.arg(limit);
        let reply: Vec<i64> = scripts::run(&mut self.conn(), &SCRIPTS.expired, &cmd).await?;
        pairs(&reply)
    }

    /// Takes back every lease held by `node` (evicted, or restarted after a crash): tokens
    /// are bumped, so the node's later acks, nacks and extensions are refused, and the
    /// jobs are ready again at once. Returns the jobs.
    pub async fn revoke_node(&self, node: &NodeId, now: Millis) -> Result<Vec<JobId>, StoreError> {
        check_name("node id", &node.0)?;
        let mut cmd = self.job_call(&SCRIPTS.revoke, now);
        cmd.arg(&node.0);
        let reply: Vec<i64> = scripts::run(&mut self.conn(), &SCRIPTS.revoke, &cmd).await?;
        Ok(reply.into_iter().map(JobId).collect())
    }

    /// Takes jobs out of dispatch (cancelled, discarded, or finished through another
    /// path): a queued job leaves its queue, a leased one loses its lease (token
    /// bumped). `false` where the job was neither queued nor leased.
    pub async fn remove(&self, ids: &[JobId]) -> Result<Vec<bool>, StoreError> {
        let calls = ids
            .chunks(self.config.script_batch)
            .map(|chunk| {
                let mut cmd = self.job_call(&SCRIPTS.remove, Millis(0));
                for id in chunk {
                    cmd.arg(id.0);
                }
                cmd
            })
            .collect::<Vec<_>>();
        self.flags(&SCRIPTS.remove, &calls, ids.len()).await
    }

    /// Runs pipelined calls that each answer one 0/1 per item; checks the count.
    pub(crate) async fn flags(
        &self,
        script: &redis::Script,
        calls: &[Cmd],
        expected: usize,
    ) -> Result<Vec<bool>, StoreError> {
        let replies = scripts::run_pipelined(&mut self.conn(), script, calls).await?;
        let mut out = Vec::with_capacity(expected);
        for reply in replies {
            let flags: Vec<i64> = decode(reply)?;
            out.extend(flags.into_iter().map(|f| f == 1));
        }
        if out.len() != expected {
            return Err(StoreError::Corrupt(format!(
                "script answered {} results for {expected} items",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// `[id, token, id, token, ...]` as pairs.
fn pairs(flat: &[i64]) -> Result<Vec<(JobId, LeaseToken)>, StoreError> {
    if !flat.len().is_multiple_of(2) {
        return Err(StoreError::Corrupt("odd id/token reply".into()));
    }
    Ok(flat
        .chunks_exact(2)
        .map(|p| (JobId(p[0]), LeaseToken(p[1])))
        .collect())
}

fn decode<T: FromRedisValue>(v: Value) -> Result<T, StoreError> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Names become key segments and script arguments: refuse the empty name.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::Invalid(format!("empty {what}")));
    }
    Ok(())
}
