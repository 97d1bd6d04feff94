//! Taking ready jobs without leasing them in Redis, for a dispatcher whose leases and
//! fencing tokens live in the system of record (see [`crate::store::redis_postgres`]).

use super::RedisDispatch;
use super::index::check_name;
use super::scripts::{self, SCRIPTS};
use crate::clock::Millis;
use crate::job::JobId;
use crate::store::StoreError;

/// What [`RedisDispatch::take`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The jobs taken, best first (priority, then push order).
    pub ids: Vec<JobId>,
    /// Whether the generation marker was present: `false` means Redis lost its data (or
    /// was never built), so an empty answer says nothing about the system of record.
    pub has_generation: bool,
}

impl RedisDispatch {
    /// Takes up to `limit` ready jobs from `queues` in one atomic call, best first across
    /// the queues (due delayed jobs are promoted first), and forgets them: no lease is
    /// kept in Redis and the job's record is deleted, so pushing the job again later
    /// queues it again. The caller confirms the jobs in the system of record, which
    /// alone decides whether each may run; a job the caller cannot confirm must be
    /// pushed back (or rebuilt) to be dispatched again.
    pub async fn take(
        &self,
        queues: &[impl AsRef<str>],
        limit: u32,
        now: Millis,
    ) -> Result<Taken, StoreError> {
        if queues.is_empty() {
            return Err(StoreError::Invalid("take from no queue".into()));
        }
        for q in queues {
            check_name("queue", q.as_ref())?;
        }
        let mut cmd = self.job_call(&SCRIPTS.take, now);
        cmd.arg(limit).arg(self.keys.generation());
        for q in queues {
            cmd.arg(q.as_ref());
        }
        let reply: Vec<i64> = scripts::run(&mut self.conn(), &SCRIPTS.take, &cmd).await?;
        let (&generation, ids) = reply
            .split_first()
            .ok_or_else(|| StoreError::Corrupt("empty take reply".into()))?;
        Ok(Taken {
            ids: ids.iter().copied().map(JobId).collect(),
            has_generation: generation == 1,
        })
    }
}
