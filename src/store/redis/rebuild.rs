//! Rebuilding Redis from the system of record, and the generation marker that tells a
//! reconciler when that is needed.

use super::{ReadyJob, RedisDispatch, RestoredLease};
use crate::clock::Millis;
use crate::store::StoreError;

use super::dispatch::check_name;
use super::scripts::SCRIPTS;

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
    /// Jobs queued by this call (the others were already queued, leased, or newer).
    pub queued: usize,
    /// Leases put back by this call (the others were already known with the same or a
    /// newer token).
    pub restored: usize,
}

impl RedisDispatch {
    /// Reconstructs dispatch state from the system of record: queues `jobs` (as
    /// [`RedisDispatch::push`]) and puts back `leased` jobs with their tokens, holders
    /// and expiries, then sets the generation marker if none is set. Idempotent and safe
    /// to run while Redis is in use: whatever Redis already holds with the same or a
    /// newer token is kept, so a repeated or overlapping rebuild changes nothing.
    pub async fn rebuild(
        &self,
        jobs: &[ReadyJob],
        leased: &[RestoredLease],
        now: Millis,
    ) -> Result<RebuildReport, StoreError> {
        for l in leased {
            check_name("queue", &l.queue)?;
            check_name("node id", &l.node.0)?;
        }
        let queued = self
            .push(jobs, now)
            .await?
            .into_iter()
            .filter(|q| *q)
            .count();
        let calls = leased
            .chunks(self.config.script_batch)
            .map(|chunk| {
                let mut cmd = self.job_call(&SCRIPTS.restore_lease, now);
                for l in chunk {
                    cmd.arg(l.id.0)
                        .arg(&l.queue)
                        .arg(l.priority)
                        .arg(l.token.0)
                        .arg(&l.node.0)
                        .arg(&l.worker.0)
                        .arg(l.expires.0);
                }
                cmd
            })
            .collect::<Vec<_>>();
        let restored = self
            .flags(&SCRIPTS.restore_lease, &calls, leased.len())
            .await?
            .into_iter()
            .filter(|r| *r)
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
            restored,
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
