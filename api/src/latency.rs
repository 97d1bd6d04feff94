//! Queue wait and run time per minute over the last hour, cluster-wide: read from the
//! store's record of finished jobs ([`jobmesh::store::insights`]), not from one node's
//! histograms, and shared by every caller through [`crate::shared_read`].
//!
//! A minute that ended a while ago no longer changes, so a re-read reads again only the
//! minutes still open (the current one and those that ended less than [`SETTLED_MS`]
//! ago: completions are recorded in batches, and a node's clock may run behind): a
//! refresh costs one or two statements, the first read of an hour sixty.

use jobmesh::clock::Millis;
use jobmesh::store::insights::{LatencySummary, window_latency};
use jobmesh::store::{Store, StoreError};

/// Minutes shown (the current one included).
pub const MINUTES: i64 = 60;
/// A minute.
pub const MINUTE_MS: i64 = 60_000;
/// A minute that ended this long before a read is read no more.
pub const SETTLED_MS: i64 = 30_000;
/// Slices per minute, each read up to [`PER_SLICE`] jobs: a busy minute is sampled
/// across its whole length (10 s slices), not at its start.
pub const SLICES: u32 = 6;
/// Jobs read per slice at most.
pub const PER_SLICE: u32 = 100;

/// One minute's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// Its start.
    pub start: Millis,
    /// The summary of the jobs that finished in it.
    pub summary: LatencySummary,
    /// Whether it was read after it settled (it is not read again).
    pub settled: bool,
}

/// The minutes of the hour up to `now`, oldest first: the settled ones of `previous`
/// kept, the others read from `store`.
pub async fn read_hour(
    store: &dyn Store,
    previous: &[Minute],
    now: Millis,
) -> Result<Vec<Minute>, StoreError> {
    let current = now.0.div_euclid(MINUTE_MS) * MINUTE_MS;
    let mut out = Vec::with_capacity(MINUTES as usize);
    for i in (0..MINUTES).rev() {
        let start = Millis(current - i * MINUTE_MS);
        if let Some(kept) = previous.iter().find(|m| m.start == start && m.settled) {
            out.push(kept.clone());
            continue;
        }
        let end = Millis(start.0 + MINUTE_MS);
        let summary = window_latency(store, start, end, SLICES, PER_SLICE).await?;
        out.push(Minute {
            start,
            summary,
            settled: now.0 >= end.0 + SETTLED_MS,
        });
    }
    Ok(out)
}
