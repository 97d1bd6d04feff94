//! LISTEN/NOTIFY wake-ups: the store's `NOTIFY`s, filtered to some queues, feed a
//! [`Wakeups`]. Postgres drops notifications while the listening connection is down;
//! the receiver is then told [`Wakeup::Lagged`].

use std::collections::HashSet;

use sqlx::postgres::{PgListener, PgPool};

use crate::store::StoreError;
use crate::store::wakeup::{Backoff, Wakeup, WakeupSender, Wakeups};

/// Starts listening on `channel` with a connection of its own from `pool` (which the
/// listener owns for its whole life), forwarding notifications for `queues` (all
/// queues when empty). Returns once `LISTEN` is in effect, so anything committed
/// afterwards is seen.
pub(super) async fn start(
    pool: PgPool,
    channel: &str,
    queues: &[String],
) -> Result<Wakeups, StoreError> {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    let queues: HashSet<String> = queues.iter().cloned().collect();
    Ok(Wakeups::spawn(move |out| forward(listener, queues, out)))
}

async fn forward(mut listener: PgListener, queues: HashSet<String>, mut out: WakeupSender) {
    let mut backoff = Backoff::new();
    loop {
        let next = tokio::select! {
            _ = out.closed() => return,
            next = listener.try_recv() => next,
        };
        let keep_going = match next {
            Ok(Some(n)) => {
                backoff.reset();
                if queues.is_empty() || queues.contains(n.payload()) {
                    out.deliver(Wakeup::Queue(n.payload().to_owned()))
                } else {
                    true
                }
            }
            // The connection dropped and was re-established: whatever was notified in
            // between is lost.
            Ok(None) => out.deliver(Wakeup::Lagged),
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                backoff.failed("postgres listener", &e).await;
                out.deliver(Wakeup::Lagged)
            }
        };
        if !keep_going {
            return;
        }
    }
}
