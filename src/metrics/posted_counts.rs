//! The queue counts the maintenance leader posts in the store, which every API process
//! (and every dashboard behind one) serves instead of counting the jobs table itself.
//!
//! The leader reads them at each of its counts rounds for its metrics (every 5-15 s)
//! and posts them under [`COUNTS_KEY`]. A reader that wants them fresher (an API
//! process with dashboards open wants them within `api.counts_max_age`) posts a
//! [`wish`]; while a wish is younger than [`WISH_TTL`] the leader re-reads them every
//! [`fresh_every`]: twice per wished age, but never more often than every ten reads'
//! time, so counting a big table never takes more than a tenth of the leader's store
//! time. A post says how old the leader lets them get
//! ([`PostedCounts::fresh_within_ms`]); a reader takes a post younger than that or than
//! its own limit, and counts the table itself only when no leader posts (no node
//! running, or the leader stopped and no other node has taken its lease yet).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::QueueSnapshot;
use super::finished_window::FinishedWindow;
use crate::clock::Millis;
use crate::store::{Counts, Store, StoreError};

/// The key of the leader's counts.
pub const COUNTS_KEY: &str = "queue_counts";
/// The key of a reader's wish for fresher counts.
pub const WISH_KEY: &str = "queue_counts.wish";
/// How long a wish holds: a reader renews it at a third of this while it reads.
pub const WISH_TTL: Duration = Duration::from_secs(30);
/// The window of [`PostedCounts::finished`]: the last minute.
pub const FINISHED_WINDOW: Duration = Duration::from_secs(60);
/// The least time between two re-reads for a wish.
const FASTEST: Duration = Duration::from_millis(250);

/// The counts as the leader read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostedCounts {
    /// Counts per queue and state and each queue's oldest available job.
    pub snapshot: QueueSnapshot,
    /// Per queue and final state, the jobs finished in the `window_ms` before
    /// `snapshot.taken_at`.
    pub finished: Counts,
    /// The window of `finished` (ms).
    pub window_ms: u64,
    /// How old the leader lets posts get while a reader wishes for them (ms): a post
    /// younger than this is the latest the leader means to have.
    pub fresh_within_ms: u64,
}

impl PostedCounts {
    /// Reads the counts from `store` as of `now`: the snapshot, then the finishes of
    /// the `window` before it, all of them (a reader with no leader to serve it).
    pub async fn read(
        store: &dyn Store,
        now: Millis,
        window: Duration,
    ) -> Result<Self, StoreError> {
        Self::read_with(store, now, &mut FinishedWindow::recount(window)).await
    }

    /// Reads the counts from `store` as of `now`: the snapshot, then the finishes of
    /// `finished`'s window, reading only what it has not settled yet (the leader keeps
    /// one across its rounds and posts [`FINISHED_WINDOW`]).
    pub async fn read_with(
        store: &dyn Store,
        now: Millis,
        finished: &mut FinishedWindow,
    ) -> Result<Self, StoreError> {
        let snapshot = QueueSnapshot::read(store, now).await?;
        let counts = finished.read(store, now).await?;
        Ok(Self {
            snapshot,
            finished: counts,
            window_ms: finished.window_ms(),
            fresh_within_ms: 0,
        })
    }

    /// Posts them under [`COUNTS_KEY`].
    pub async fn post(&self, store: &dyn Store) -> Result<(), StoreError> {
        let body = serde_json::to_vec(self)
            .map_err(|e| StoreError::Invalid(format!("encoding the queue counts: {e}")))?;
        store.post(COUNTS_KEY, &body, self.snapshot.taken_at).await
    }

    /// The last post, if any. A post this build cannot read (another version's) counts
    /// as none, with a warning, so the reader counts for itself.
    pub async fn latest(store: &dyn Store) -> Result<Option<Self>, StoreError> {
        let Some((_, body)) = store.posted(COUNTS_KEY).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&body) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::warn!(error = %e, "the posted queue counts are unreadable; counting here");
                Ok(None)
            }
        }
    }

    /// Whether a reader that wants counts within `max_age` takes this post at `now`:
    /// it is younger than `max_age` or than the leader's own bound.
    pub fn serves(&self, max_age: Duration, now: Millis) -> bool {
        let bound = max_age.max(Duration::from_millis(self.fresh_within_ms));
        !max_age.is_zero() && now.since(self.snapshot.taken_at) <= bound
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Wish {
    /// The age the reader wants the counts within (ms).
    max_age_ms: u64,
}

/// Posts a reader's wish for counts within `max_age` (see the module docs).
pub async fn wish(store: &dyn Store, max_age: Duration, now: Millis) -> Result<(), StoreError> {
    let body = serde_json::to_vec(&Wish {
        max_age_ms: max_age.as_millis() as u64,
    })
    .map_err(|e| StoreError::Invalid(format!("encoding the counts wish: {e}")))?;
    store.post(WISH_KEY, &body, now).await
}

/// The age a reader wished the counts within, if a wish was posted in the last
/// [`WISH_TTL`] before `now`.
pub async fn wished(store: &dyn Store, now: Millis) -> Result<Option<Duration>, StoreError> {
    let Some((at, body)) = store.posted(WISH_KEY).await? else {
        return Ok(None);
    };
    if now.since(at) > WISH_TTL {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<Wish>(&body)
        .ok()
        .map(|w| Duration::from_millis(w.max_age_ms)))
}

/// How often the leader re-reads the counts for a wish of `max_age`, when a read takes
/// `read`: twice per `max_age`, but never more often than every ten reads' time nor
/// than every 250 ms.
pub fn fresh_every(max_age: Duration, read: Duration) -> Duration {
    (max_age / 2).max(read * 10).max(FASTEST)
}

/// How old the counts get while the leader re-reads them [`fresh_every`] in rounds
/// `round` apart: the period, a round's wait for it, and the read.
pub fn fresh_within(max_age: Duration, read: Duration, round: Duration) -> Duration {
    fresh_every(max_age, read) + round + read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_count_is_reread_twice_per_wished_age_and_a_slow_one_at_a_tenth_of_the_time() {
        let ms = Duration::from_millis;
        assert_eq!(fresh_every(ms(2000), ms(5)), ms(1000));
        assert_eq!(fresh_every(ms(2000), ms(130)), ms(1300));
        assert_eq!(fresh_every(ms(100), ms(1)), ms(250), "never faster");
        // Quick counts stay within the wished age with the default 500 ms round.
        assert!(fresh_within(ms(2000), ms(130), ms(500)) <= ms(2000));
        assert!(fresh_within(ms(2000), ms(1200), ms(500)) > ms(2000));
    }

    #[test]
    fn a_post_serves_within_the_wished_age_or_the_leaders_bound_and_never_a_zero_wish() {
        let post = |taken, within| PostedCounts {
            snapshot: QueueSnapshot {
                taken_at: Millis(taken),
                counts: Counts::new(),
                oldest_available: Default::default(),
            },
            finished: Counts::new(),
            window_ms: 60_000,
            fresh_within_ms: within,
        };
        let max_age = Duration::from_secs(2);
        assert!(post(10_000, 1_500).serves(max_age, Millis(12_000)));
        assert!(!post(10_000, 1_500).serves(max_age, Millis(12_001)));
        assert!(
            post(10_000, 5_000).serves(max_age, Millis(15_000)),
            "the leader's bound"
        );
        assert!(!post(10_000, 5_000).serves(Duration::ZERO, Millis(10_000)));
    }
}
