//! The attempts running on this node, by worker slot: what the lease keeper extends,
//! what a supervisor fails when a worker crashes, and what cancellation interrupts.

use std::sync::{Arc, Mutex, MutexGuard};

use jobmesh::clock::Millis;
use jobmesh::handler::progress::ProgressCell;
use jobmesh::job::{Job, JobId, Lease, ProgressReport};
use jobmesh::metrics::JobTag;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One running attempt.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its lease (the fencing token that finishes it).
    pub lease: Lease,
    /// The job's kind, for crash reports.
    pub kind: String,
    /// Its metric labels.
    pub tag: JobTag,
    /// The job's attempt limit, to decide retry or dead-letter when the worker crashes.
    pub max_attempts: u32,
    /// When the worker was handed the job.
    pub started_at: Millis,
    /// Fired when the attempt must stop: lease lost, job cancelled, node stopping.
    pub cancel: CancellationToken,
    /// The progress its handler reported and the progress writer has not yet taken.
    pub progress: Arc<ProgressCell>,
}

/// Running attempts by worker slot, shared by the dispatcher, workers, supervisors and
/// the lease keeper. Critical sections are a few field moves: a std mutex suffices.
#[derive(Debug, Clone)]
pub struct InFlight {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Mutex<Vec<Option<Running>>>,
    emptied: Notify,
}

impl InFlight {
    /// A table with `slots` empty slots.
    pub fn new(slots: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(vec![None; slots]),
                emptied: Notify::new(),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Option<Running>>> {
        // A panic never happens while the lock is held (only moves inside), so a
        // poisoned lock still holds consistent data.
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts an attempt in a slot; returns its cancellation token.
    pub fn start(
        &self,
        slot: usize,
        job: &Job,
        tag: JobTag,
        lease: Lease,
        now: Millis,
    ) -> CancellationToken {
        let cancel = CancellationToken::new();
        self.slots()[slot] = Some(Running {
            lease,
            kind: job.kind.clone(),
            tag,
            max_attempts: job.max_attempts,
            started_at: now,
            cancel: cancel.clone(),
            progress: Arc::new(ProgressCell::new()),
        });
        cancel
    }

    /// The progress cell of the attempt in `slot` (a fresh, unattached one if the slot
    /// is empty).
    pub fn progress_cell(&self, slot: usize) -> Arc<ProgressCell> {
        self.slots()[slot]
            .as_ref()
            .map(|r| r.progress.clone())
            .unwrap_or_default()
    }

    /// For the progress writer: the pending report of every running attempt that has
    /// one, each with its cell, now marked as being written (see [`ProgressCell`]).
    pub fn take_progress(&self) -> Vec<(ProgressReport, Arc<ProgressCell>)> {
        self.slots()
            .iter()
            .flatten()
            .filter_map(|r| {
                let progress = r.progress.take_for_write()?;
                Some((
                    ProgressReport {
                        lease: r.lease.clone(),
                        progress,
                    },
                    r.progress.clone(),
                ))
            })
            .collect()
    }

    /// The cancellation token of the attempt in `slot` (a fresh, never-fired one if the
    /// slot is empty).
    pub fn token(&self, slot: usize) -> CancellationToken {
        self.slots()[slot]
            .as_ref()
            .map(|r| r.cancel.clone())
            .unwrap_or_default()
    }

    /// Empties a slot, returning what ran there.
    pub fn take(&self, slot: usize) -> Option<Running> {
        let mut slots = self.slots();
        let taken = slots[slot].take();
        if taken.is_some() && slots.iter().all(Option::is_none) {
            self.inner.emptied.notify_waiters();
        }
        taken
    }

    /// Number of running attempts.
    pub fn busy(&self) -> usize {
        self.slots().iter().filter(|s| s.is_some()).count()
    }

    /// Per slot, the job running there and when its worker was handed it (the node's
    /// presence row says what each worker runs).
    pub fn by_slot(&self) -> Vec<Option<(JobId, Millis)>> {
        self.slots()
            .iter()
            .map(|s| s.as_ref().map(|r| (r.lease.job, r.started_at)))
            .collect()
    }

    /// The leases of every running attempt.
    pub fn leases(&self) -> Vec<Lease> {
        self.slots()
            .iter()
            .flatten()
            .map(|r| r.lease.clone())
            .collect()
    }

    /// Interrupts the attempt of `job` if it runs here (its lease `token` when given,
    /// so a newer attempt of the same job is left alone); whether one was interrupted.
    pub fn interrupt(&self, job: JobId, token: Option<jobmesh::job::LeaseToken>) -> bool {
        let slots = self.slots();
        let mut hit = false;
        for r in slots.iter().flatten() {
            if r.lease.job == job && token.is_none_or(|t| t == r.lease.token) {
                r.cancel.cancel();
                hit = true;
            }
        }
        hit
    }

    /// Resolves once no attempt is running.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.inner.emptied.notified();
            if self.busy() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobmesh::job::{LeaseToken, NodeId, WorkerId};

    fn lease(job: i64, token: i64) -> Lease {
        Lease {
            job: JobId(job),
            token: LeaseToken(token),
            worker: WorkerId("w".into()),
            node: NodeId("n".into()),
            attempt: 1,
            expires_at: Millis(0),
        }
    }

    #[tokio::test]
    async fn interrupt_hits_only_the_current_token_and_wait_empty_wakes() {
        let t = InFlight::new(2);
        let job = Job {
            id: JobId(1),
            queue: "default".into(),
            kind: "noop".into(),
            payload: serde_json::json!({}),
            priority: 0,
            state: jobmesh::job::JobState::Running,
            attempt: 1,
            max_attempts: 3,
            run_at: Millis(0),
            created_at: Millis(0),
            finished_at: None,
            timeout: None,
            unique_key: None,
            lease_token: LeaseToken(5),
            lease_owner: None,
            lease_node: None,
            lease_expires_at: None,
            last_error: None,
            output: None,
            depends_on: vec![],
            on_parent_failure: Default::default(),
            progress: None,
            snoozes: 0,
        };
        let tag = jobmesh::metrics::Metrics::new().tag("default", "noop");
        let a = t.start(0, &job, tag.clone(), lease(1, 5), Millis(0));
        let b = t.start(1, &job, tag, lease(2, 1), Millis(0));
        assert!(!t.interrupt(JobId(1), Some(LeaseToken(4))));
        assert!(!a.is_cancelled());
        assert!(t.interrupt(JobId(1), Some(LeaseToken(5))));
        assert!(a.is_cancelled() && !b.is_cancelled());
        assert_eq!(t.leases().len(), 2);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait_empty().await }
        });
        assert_eq!(t.take(0).unwrap().lease.job, JobId(1));
        assert!(t.take(0).is_none());
        t.take(1);
        waiter.await.unwrap();
        assert_eq!(t.busy(), 0);
    }
}
