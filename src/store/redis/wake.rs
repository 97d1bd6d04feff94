//! Wake-ups from Redis for a node's dispatcher: every push and nack puts tokens on the
//! queue's wake list (see `common.lua`), and a blocked `BLPOP` on those lists returns as
//! soon as one arrives. Each token wakes one listener (as BullMQ's marker does), and a
//! take that empties a queue clears its list, so idle nodes are not woken for nothing.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::RedisDispatch;
use crate::store::StoreError;
use crate::store::wakeup::{Backoff, Wakeup, WakeupSender, Wakeups};

/// How long one `BLPOP` blocks: the task notices a dropped receiver at least this often.
const BLOCK: Duration = Duration::from_secs(1);

impl RedisDispatch {
    /// Wake-ups for `queues` (at least one), on a connection of its own. Hints only:
    /// tokens pushed while the connection is down are still there when it returns, but a
    /// flushed Redis loses them, so callers keep a poll fallback.
    pub async fn wakeups(&self, queues: &[String]) -> Result<Wakeups, StoreError> {
        if queues.is_empty() {
            return Err(StoreError::Invalid("wake-ups for no queue".into()));
        }
        let conn = self.dedicated_connection().await?;
        let keys: Vec<(String, String)> = queues
            .iter()
            .map(|q| (self.keys.wake(q), q.clone()))
            .collect();
        Ok(Wakeups::spawn(move |out| forward(conn, keys, out)))
    }
}

async fn forward(mut conn: ConnectionManager, keys: Vec<(String, String)>, mut out: WakeupSender) {
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut backoff = Backoff::new();
    while !out.is_closed() {
        let popped: Result<Option<(String, String)>, _> = redis::cmd("BLPOP")
            .arg(&names)
            .arg(BLOCK.as_secs_f64())
            .query_async(&mut conn)
            .await;
        let delivered = match popped {
            Ok(Some((key, _))) => {
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
