//! Claims: ids from Redis, confirmed by Postgres in one statement; Postgres alone when
//! Redis cannot answer for the queues.

use std::sync::atomic::Ordering;

use crate::job::{ClaimRequest, ClaimedJob, JobId};
use crate::store::{ClaimOrder, JobQueue, StoreError};

use super::Shared;

/// Most take-and-confirm rounds per claim: later rounds run only when Postgres refused
/// ids Redis handed out (stale entries), so two rounds are rare and three very rare.
const CLAIM_ROUNDS: usize = 3;

impl Shared {
    /// See [`crate::store::Store::claim`] and the module doc of [`super`].
    pub(super) async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedJob>, StoreError> {
        if req.limit == 0 || req.queues.is_empty() {
            return Ok(Vec::new());
        }
        if self.redis_is_down() || self.pg_is_down() {
            return self.fallback(req, req.limit, Vec::new()).await;
        }
        let mut queues = req.queues.clone();
        queues.sort_unstable();
        queues.dedup();
        let mut out: Vec<ClaimedJob> = Vec::new();
        // Queues under a limit are claimed by Postgres, which counts what runs under each
        // limit and ranks keys round robin; Redis' take knows neither.
        let routing = self.pg.routing().await?;
        let (limited, free): (Vec<String>, Vec<String>) =
            queues.into_iter().partition(|q| routing.limited(q));
        if !limited.is_empty() {
            out = self.claim_limited(req, limited).await?;
            if free.is_empty() || out.len() as u32 >= req.limit {
                return Ok(self.finish_claim(out));
            }
        }
        let queues = free;
        for _ in 0..CLAIM_ROUNDS {
            let want = req.limit - out.len() as u32;
            let taken = match self.redis.take(&queues, want, req.now).await {
                Ok(t) => t,
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "Redis unreachable; claiming from Postgres");
                    self.redis_failed(&e);
                    self.mark_dirty();
                    return self.fallback(req, want, out).await;
                }
                Err(e @ StoreError::Corrupt(_)) => {
                    // Something in Redis this version cannot read: Postgres decides, so
                    // one bad entry does not stop the queues.
                    tracing::warn!(error = %e, "Redis answered a take with something unreadable; claiming from Postgres");
                    return self.fallback(req, want, out).await;
                }
                Err(e) => return Err(e),
            };
            if !taken.has_generation {
                // Redis lost its data (or was never built): what it holds says nothing
                // about what Postgres has ready. Rebuild soon; meanwhile Postgres decides.
                self.mark_dirty();
                if taken.ids.is_empty() {
                    return self.fallback(req, want, out).await;
                }
            }
            let got = taken.ids.len();
            match self.confirm(req, &taken.ids).await {
                Ok(confirmed) => {
                    if confirmed.len() < got {
                        // Refused ids: stale entries, or jobs under a limit this node's
                        // routing has not seen yet; those still available go back.
                        let refused: Vec<JobId> = taken
                            .ids
                            .iter()
                            .filter(|id| !confirmed.iter().any(|c| c.job.id == **id))
                            .copied()
                            .collect();
                        self.push_after_commit(&refused, req.now).await;
                    }
                    out.extend(confirmed)
                }
                Err(e) => {
                    // The taken ids left Redis but may still be available in Postgres:
                    // the reconciler puts them back once Postgres answers.
                    self.mark_dirty();
                    self.pg_failed(&e);
                    if out.is_empty() {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "confirming a claim failed; returning the jobs confirmed so far");
                    break;
                }
            }
            if got < want as usize || out.len() as u32 >= req.limit {
                break;
            }
        }
        Ok(self.finish_claim(out))
    }

    /// Claims from limited queues through Postgres (its limited claim), then takes the
    /// claimed ids out of Redis' ready index (best-effort: an entry left behind is
    /// refused by a later confirm like any stale one).
    async fn claim_limited(
        &self,
        req: &ClaimRequest,
        queues: Vec<String>,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let limited = ClaimRequest {
            queues,
            ..req.clone()
        };
        let claimed = self.pg.claim(&limited).await?;
        self.note_parents(&claimed).await;
        if !claimed.is_empty() {
            let ids: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
            if let Err(e) = self.redis.remove(&ids).await {
                tracing::debug!(error = %e, "removing claimed limited jobs from Redis failed; confirms will refuse them");
            }
        }
        Ok(claimed)
    }

    /// Claims `want` more jobs from Postgres alone (`FOR UPDATE SKIP LOCKED`).
    async fn fallback(
        &self,
        req: &ClaimRequest,
        want: u32,
        mut out: Vec<ClaimedJob>,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.fallback_claims.fetch_add(1, Ordering::Relaxed);
        let rest = ClaimRequest {
            limit: want,
            ..req.clone()
        };
        match self.pg.claim(&rest).await {
            Ok(more) => {
                self.note_parents(&more).await;
                out.extend(more);
            }
            Err(e) if out.is_empty() => return Err(e),
            Err(e) => tracing::warn!(error = %e, "claiming from Postgres failed"),
        }
        Ok(self.finish_claim(out))
    }

    /// Remembers which of jobs claimed through the Postgres store have children (it
    /// does not say), so that completing them pushes the children they release. If
    /// this fails, the periodic reconcile pushes those children instead.
    async fn note_parents(&self, claimed: &[ClaimedJob]) {
        if claimed.is_empty() {
            return;
        }
        let ids: Vec<JobId> = claimed.iter().map(|c| c.job.id).collect();
        match self.pg.parents_among(&ids).await {
            Ok(p) if !p.is_empty() => self.parents.lock().expect("parents lock").extend(p),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "looking up parents of claimed jobs failed"),
        }
    }

    /// Leases the taken ids that Postgres still holds as available.
    async fn confirm(
        &self,
        req: &ClaimRequest,
        ids: &[JobId],
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        // Undecodable rows are dead-lettered by the Postgres store: a discard releases no
        // children to push, and the relay sets the state hashes from its events.
        let confirmed = self.pg.claim_by_ids(req, ids).await?;
        if !confirmed.parents.is_empty() {
            self.parents
                .lock()
                .expect("parents lock")
                .extend(confirmed.parents);
        }
        Ok(confirmed.claimed)
    }

    /// Dispatch order, as every backend returns claims.
    fn finish_claim(&self, mut out: Vec<ClaimedJob>) -> Vec<ClaimedJob> {
        out.sort_by_key(|c| ClaimOrder::of(&c.job));
        out
    }
}
