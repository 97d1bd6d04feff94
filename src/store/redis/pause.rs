//! The paused-queue mirror: a set of queue names that [`RedisDispatch::take`] skips, so
//! a paused queue's jobs stay in its ready set instead of being taken and refused by the
//! system of record on every claim. The system of record owns the pause; this copy is
//! set after each pause or resume commits and replaced whole by every reconcile.

use super::RedisDispatch;
use super::index::check_name;
use crate::store::StoreError;

impl RedisDispatch {
    /// Marks `queue` paused: takes skip it from now on.
    pub async fn pause(&self, queue: &str) -> Result<(), StoreError> {
        check_name("queue", queue)?;
        redis::cmd("SADD")
            .arg(self.keys.paused())
            .arg(queue)
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Marks `queue` running again and leaves one wake token on its wake list, so a
    /// dispatcher blocked on it claims at once (one woken claimer that finds more work
    /// claims again before it waits).
    pub async fn resume(&self, queue: &str) -> Result<(), StoreError> {
        check_name("queue", queue)?;
        redis::pipe()
            .atomic()
            .cmd("SREM")
            .arg(self.keys.paused())
            .arg(queue)
            .ignore()
            .cmd("LPUSH")
            .arg(self.keys.wake(queue))
            .arg("1")
            .ignore()
            .cmd("LTRIM")
            .arg(self.keys.wake(queue))
            .arg(0)
            .arg(WAKE_CAP - 1)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Replaces the set of paused queues with `queues` in one atomic step (a reconcile
    /// copying the system of record's).
    pub async fn set_paused(&self, queues: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(self.keys.paused()).ignore();
        if !queues.is_empty() {
            pipe.cmd("SADD")
                .arg(self.keys.paused())
                .arg(queues)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }

    /// The queues marked paused here.
    pub async fn paused(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.paused())
            .query_async(&mut self.conn())
            .await?;
        names.sort_unstable();
        Ok(names)
    }
}

/// As `WAKE_CAP` in `lua/common.lua`: a wake list never holds more tokens.
const WAKE_CAP: isize = 1024;
