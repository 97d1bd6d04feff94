//! Rebuilding Redis from the system of record, and the generation marker that tells a
//! reconciler when that is needed.

use super::{ReadyJob, RedisDispatch};
use crate::clock::Millis;
use crate::store::StoreError;

/// Identifies one life of the Redis data set: set by the first [`RedisDispatch::rebuild`]
/// and kept until Redis loses its data. A reconciler that remembers the generation it
/// rebuilt sees a flush (or a failover to an empty replica) as a missing or different
/// marker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Generation(pub String);

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The generation now in force (new if Redis had none).
    pub generation: Generation,
    /// Jobs queued by this call (the others were already queued, or newer).
    pub queued: usize,
}

impl RedisDispatch {
    /// Reconstructs the ready index from the system of record: queues `jobs` (as
    /// [`RedisDispatch::push`]), then sets the generation marker if none is set.
    /// Idempotent and safe to run while Redis is in use: a job already queued is left
    /// alone, so a repeated or overlapping rebuild changes nothing.
    pub async fn rebuild(
        &self,
        jobs: &[ReadyJob],
        now: Millis,
    ) -> Result<RebuildReport, StoreError> {
        let queued = self
            .push(jobs, now)
            .await?
            .into_iter()
            .filter(|q| *q)
            .count();
        let fresh = format!("{:016x}", rand::random::<u64>());
        let (current,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.generation())
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(self.keys.generation())
            .query_async(&mut self.conn())
            .await?;
        Ok(RebuildReport {
            generation: Generation(current),
            queued,
        })
    }

    /// The generation marker, `None` when Redis has none: it was flushed, failed over to
    /// an empty replica, or was never built. Dispatch state is then incomplete until a
    /// [`RedisDispatch::rebuild`].
    pub async fn generation(&self) -> Result<Option<Generation>, StoreError> {
        let g: Option<String> = redis::cmd("GET")
            .arg(self.keys.generation())
            .query_async(&mut self.conn())
            .await?;
        Ok(g.map(Generation))
    }

    /// Whether Redis lacks the generation marker (see [`RedisDispatch::generation`]):
    /// `true` means rebuild before trusting what Redis holds.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.generation().await?.is_none())
    }
}
