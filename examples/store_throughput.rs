//! Raw store throughput on the embedded SQLite backend, without actors:
//! `cargo run --release --example store_throughput -- 100000`.

use jobmesh::store::JobQueue;
use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::{ClaimRequest, Completion, NewJob, NodeId, Outcome, WorkerId};
use jobmesh::store::sqlite::SqliteStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("t.db")).await?;
    let t = Instant::now();
    for _ in 0..n / 1000 {
        let jobs = (0..1000)
            .map(|_| NewJob::new("noop", serde_json::json!({})))
            .collect();
        store.enqueue(jobs, SystemClock.now()).await?;
    }
    let enq = t.elapsed();
    let t = Instant::now();
    let mut pending = Vec::new();
    let mut done = 0;
    let (mut claim_t, mut complete_t) = (Duration::ZERO, Duration::ZERO);
    loop {
        let req = ClaimRequest {
            queues: vec!["default".into()],
            worker: WorkerId("w".into()),
            node: NodeId("n".into()),
            limit: 256,
            lease_for: Duration::from_secs(30),
            now: SystemClock.now(),
        };
        let tc = Instant::now();
        let got = store.claim(&req).await?;
        claim_t += tc.elapsed();
        if got.is_empty() && pending.is_empty() {
            break;
        }
        let now = SystemClock.now();
        pending.extend(got.into_iter().map(|c| Completion {
            lease: c.lease,
            outcome: Outcome::Succeeded { output: None },
            started_at: now,
            finished_at: now,
        }));
        if pending.len() >= 512 || !pending.is_empty() {
            done += pending.len();
            let tc = Instant::now();
            store.complete(std::mem::take(&mut pending)).await?;
            complete_t += tc.elapsed();
        }
    }
    let drain = t.elapsed();
    println!(
        "{{\"jobs\": {done}, \"enqueue_per_s\": {:.0}, \"claim_complete_per_s\": {:.0}, \"end_to_end_per_s\": {:.0}, \"claim_us_per_job\": {:.2}, \"complete_us_per_job\": {:.2}}}",
        n as f64 / enq.as_secs_f64(),
        done as f64 / drain.as_secs_f64(),
        n as f64 / (enq + drain).as_secs_f64(),
        claim_t.as_secs_f64() * 1e6 / done.max(1) as f64,
        complete_t.as_secs_f64() * 1e6 / done.max(1) as f64,
    );
    Ok(())
}
