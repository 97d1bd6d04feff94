//! The ready index: push and remove (take is in `take.rs`). Each script call is atomic;
//! batches are split into calls of `script_batch` items and pipelined, so a batch costs
//! one round trip.

use redis::{Cmd, FromRedisValue, Value};

use super::scripts::{self, SCRIPTS};
use super::{ReadyJob, RedisDispatch};
use crate::clock::Millis;
use crate::job::JobId;
use crate::store::StoreError;

impl RedisDispatch {
    /// Queues jobs: those due at `now` go to their queue's ready set (ordered by
    /// priority, then push order), later ones to its delayed set. Idempotent: a job that
    /// is already queued is left alone, as is a removed job whose record holds a newer
    /// token than its [`ReadyJob::epoch`]. Returns, per job, whether it was queued by
    /// this call. Dispatchers waiting on the queues' wake lists are woken.
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

    /// Takes jobs out of dispatch (cancelled, discarded, or finished through another
    /// path): a queued job leaves its queue, and its record keeps its token for
    /// `coordination_ttl` (a later push with an older epoch is refused). `false` where
    /// the job was not queued.
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
