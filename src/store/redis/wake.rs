//! Wake-ups from Redis for a node's dispatcher: every push and nack puts tokens on the
//! queue's wake list (see `common.lua`), and a blocked `BLPOP` on those lists returns as
//! soon as one arrives. Each token wakes one listener (as BullMQ's marker does), and a
//! take that empties a queue clears its list, so idle nodes are not woken for nothing.
//!
//! The task that waits opens its own connection, retrying while Redis is unreachable,
//! so subscribing never fails for an outage: a node started while Redis is down polls
//! meanwhile and gets its wake-ups once Redis is back.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::RedisDispatch;
use crate::store::StoreError;
use crate::store::wakeup::{Backoff, Wakeup, WakeupSender, Wakeups};

/// How long one `BLPOP` blocks: the task notices a dropped receiver at least this often.
const BLOCK: Duration = Duration::from_secs(1);

impl RedisDispatch {
    /// Wake-ups for `queues` (at least one), on a connection of their own that the
    /// feeding task opens (retrying with a backoff, and delivering [`Wakeup::Lagged`]
    /// after each failure, while Redis is unreachable); returns at once. Hints only:
    /// tokens pushed while the connection is down are still there when it returns, but a
    /// flushed Redis loses them, so callers keep a poll fallback.
    pub fn wakeups(&self, queues: &[String]) -> Result<Wakeups, StoreError> {
        if queues.is_empty() {
            return Err(StoreError::Invalid("wake-ups for no queue".into()));
        }
        let keys: Vec<(String, String)> = queues
            .iter()
            .map(|q| (self.keys.wake(q), q.clone()))
            .collect();
        let redis = self.clone();
        Ok(Wakeups::spawn(move |out| forward(redis, keys, out)))
    }
}

async fn forward(redis: RedisDispatch, keys: Vec<(String, String)>, mut out: WakeupSender) {
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut conn = None;
    let mut backoff = Backoff::new();
    while !out.is_closed() {
        let delivered = match pop(&redis, &mut conn, &names).await {
            Ok(Some(key)) => {
                backoff.reset();
                let queue = keys.iter().find(|(k, _)| *k == key).map(|(_, q)| q.clone());
                out.deliver(queue.map_or(Wakeup::Lagged, Wakeup::Queue))
            }
            Ok(None) => true,
            Err(e) => {
                backoff.failed("waiting on Redis wake lists", &e).await;
                out.deliver(Wakeup::Lagged)
            }
        };
        if !delivered {
            return;
        }
    }
}

/// One `BLPOP` on the wake lists `names`, connecting first while `conn` is still
/// unopened (once open, the connection manager reconnects by itself). The key of the
/// list that yielded a token; `None` when none arrived within [`BLOCK`].
async fn pop(
    redis: &RedisDispatch,
    conn: &mut Option<ConnectionManager>,
    names: &[&str],
) -> Result<Option<String>, StoreError> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(redis.dedicated_connection().await?),
    };
    let popped: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(names)
        .arg(BLOCK.as_secs_f64())
        .query_async(conn)
        .await?;
    Ok(popped.map(|(key, _)| key))
}
