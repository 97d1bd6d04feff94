//! Single-job enqueues from concurrent requests share store transactions.
//!
//! One `POST /api/v1/jobs` is one job; stored one per transaction, concurrent requests
//! queue behind the store's writer (SQLite has one, Postgres commits one by one) and
//! the rate stops at what one commit per job allows. Here they are collected while the
//! previous transaction runs and stored together, each request still getting its own
//! outcome: group commit, as the completion path does for finished attempts. Nothing
//! waits for company: a request that finds the writer idle is stored at once.
//!
//! A transaction fails as a whole (a job naming an unknown parent fails its batch), so
//! a failed group is stored again one job at a time: each request gets the answer it
//! would have got alone, and one bad job never fails another's request.

use tokio::sync::{mpsc, oneshot};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::NewJob;
use jobmesh::store::{BackendError, EnqueueOutcome, SharedStore, StoreError};

/// Requests waiting for the writer, at most this many per group of the largest size.
const QUEUED_GROUPS: usize = 4;

struct Pending {
    job: NewJob,
    reply: oneshot::Sender<Result<EnqueueOutcome, StoreError>>,
}

/// The entry point: hands a job to the writer task and awaits its outcome.
#[derive(Debug, Clone)]
pub struct Coalescer {
    tx: mpsc::Sender<Pending>,
}

impl Coalescer {
    /// Starts the writer task, which stores up to `max_group` jobs per transaction and
    /// ends when the last handle is dropped.
    pub fn start(store: SharedStore, max_group: usize) -> Self {
        let max_group = max_group.max(1);
        let (tx, rx) = mpsc::channel(max_group * QUEUED_GROUPS);
        tokio::spawn(write_groups(store, rx, max_group));
        Self { tx }
    }

    /// Stores `job` (in a group with whatever else is waiting) and returns its outcome.
    pub async fn enqueue(&self, job: NewJob) -> Result<EnqueueOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { job, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable(BackendError::new(
        "the API's enqueue writer",
        std::io::Error::other("the API is shutting down"),
    ))
}

async fn write_groups(store: SharedStore, mut rx: mpsc::Receiver<Pending>, max_group: usize) {
    let mut group = Vec::with_capacity(max_group);
    // `recv_many` waits for the first and takes what else is already there.
    while rx.recv_many(&mut group, max_group).await > 0 {
        let (jobs, replies): (Vec<_>, Vec<_>) = group.drain(..).map(|p| (p.job, p.reply)).unzip();
        store_group(&store, jobs, replies).await;
    }
}

async fn store_group(
    store: &SharedStore,
    jobs: Vec<NewJob>,
    replies: Vec<oneshot::Sender<Result<EnqueueOutcome, StoreError>>>,
) {
    let alone = jobs.len() == 1;
    let retry = (!alone).then(|| jobs.clone());
    match store.enqueue(jobs, SystemClock.now()).await {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(outcomes) => {
            let why = format!(
                "the store answered {} outcomes for {} jobs",
                outcomes.len(),
                replies.len()
            );
            for reply in replies {
                let _ = reply.send(Err(StoreError::Corrupt(why.clone())));
            }
        }
        Err(e) => match retry {
            None => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Some(jobs) => {
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let outcome =
                        store
                            .enqueue(vec![job], SystemClock.now())
                            .await
                            .and_then(|mut o| {
                                o.pop().ok_or_else(|| {
                                    StoreError::Corrupt("the store answered no outcome".into())
                                })
                            });
                    let _ = reply.send(outcome);
                }
            }
        },
    }
}
