//! What the `node.evicted` event says about an eviction this node applied: the
//! certificate and its signers, and the jobs this node's revocation of the evicted
//! node's leases re-queued (or dead-lettered, out of attempts).
//!
//! The event is written after the revocation, so the jobs it names are the ones this
//! node took back. Every member applies the certificate and revokes; the store's
//! fencing makes the first revocation take the jobs and the later ones take none, so
//! across the members' `node.evicted` events each job is named once.

use jobmesh::job::JobState;
use jobmesh::store::RescuedJob;
use serde_json::{Value, json};

/// Job ids listed per event, at most; the counts are complete.
pub(crate) const MAX_LISTED: usize = 100;

/// `detail` (incarnation, signers, certificate) with what the revocation did:
/// `requeued` (ids of the jobs made available again, the first [`MAX_LISTED`]) and
/// `requeued_count`, `discarded` (out of attempts) and `discarded_count`; with
/// `revocation_failed` instead when the store refused (lease expiry rescues them then).
pub(crate) fn event_detail(mut detail: Value, rescued: Result<&[RescuedJob], String>) -> Value {
    let Some(map) = detail.as_object_mut() else {
        return detail;
    };
    match rescued {
        Ok(rescued) => {
            let ids = |available: bool| {
                rescued
                    .iter()
                    .filter(move |r| (r.state == JobState::Available) == available)
                    .map(|r| r.id.0)
            };
            map.insert(
                "requeued".into(),
                json!(ids(true).take(MAX_LISTED).collect::<Vec<_>>()),
            );
            map.insert("requeued_count".into(), json!(ids(true).count()));
            map.insert(
                "discarded".into(),
                json!(ids(false).take(MAX_LISTED).collect::<Vec<_>>()),
            );
            map.insert("discarded_count".into(), json!(ids(false).count()));
        }
        Err(e) => {
            map.insert("revocation_failed".into(), json!(e));
        }
    }
    detail
}

#[cfg(test)]
mod tests {
    use jobmesh::job::JobId;

    use super::*;

    fn job(id: i64, state: JobState) -> RescuedJob {
        RescuedJob {
            id: JobId(id),
            attempt: 1,
            state,
        }
    }

    #[test]
    fn lists_requeued_and_discarded_jobs_capped() {
        let mut rescued: Vec<RescuedJob> = (0..150).map(|i| job(i, JobState::Available)).collect();
        rescued.push(job(999, JobState::Discarded));
        let d = event_detail(json!({"incarnation": 3}), Ok(&rescued));
        assert_eq!(d["incarnation"], 3);
        assert_eq!(d["requeued"].as_array().unwrap().len(), MAX_LISTED);
        assert_eq!(d["requeued"][0], 0);
        assert_eq!(d["requeued_count"], 150);
        assert_eq!(d["discarded"], json!([999]));
        assert_eq!(d["discarded_count"], 1);
    }

    #[test]
    fn a_failed_revocation_says_so() {
        let d = event_detail(json!({"incarnation": 3}), Err("store down".into()));
        assert_eq!(d["revocation_failed"], "store down");
        assert!(d.get("requeued").is_none());
    }
}
