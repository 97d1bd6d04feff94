//! Store throughput and pickup latency on the Postgres backend, without actors, beside
//! the peer anchors in `../shared/peers/` (graphile-worker with a local queue):
//!
//! `cargo run --release -p jobmesh --example postgres_throughput -- N CONC [SLOTS]`
//!
//! 1. Enqueue N no-op jobs in batches of 1000.
//! 2. Drain them with CONC concurrent loops; each claims a batch sized to its free
//!    slots (SLOTS, default 100; no-op jobs finish at once) and completes the batch in
//!    one round trip, in the background while it claims the next batch (at most one
//!    completion batch in flight per loop).
//! 3. Pickup latency, 200 samples: enqueue one job, time until a claimer woken by
//!    LISTEN/NOTIFY holds its lease (the claimer also polls every 250 ms, as real
//!    workers do, in case a wake-up is lost).
//!
//! Prints one JSON line. Postgres URL from `JOBMESH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; runs in a fresh schema it drops after.

use jobmesh::store::JobQueue;
use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::{ClaimRequest, Completion, CompletionResult, NewJob, NodeId, Outcome, WorkerId};
use jobmesh::store::postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::mpsc;

const ENQUEUE_BATCH: usize = 1000;
const PICKUP_SAMPLES: usize = 200;
const POLL_FALLBACK: Duration = Duration::from_millis(250);

fn request(worker: String, limit: u32) -> ClaimRequest {
    ClaimRequest {
        queues: vec!["default".into()],
        worker: WorkerId(worker),
        node: NodeId("bench".into()),
        limit,
        lease_for: Duration::from_secs(60),
        now: SystemClock.now(),
    }
}

fn succeeded(c: jobmesh::job::ClaimedJob) -> Completion {
    let now = SystemClock.now();
    Completion {
        lease: c.lease,
        outcome: Outcome::Succeeded { output: None },
        started_at: now,
        finished_at: now,
    }
}

fn arg(i: usize, default: usize) -> anyhow::Result<usize> {
    Ok(std::env::args()
        .nth(i)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(default))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = arg(1, 100_000)?;
    let conc = arg(2, 10)?.max(1);
    let slots = arg(3, 100)?.max(1) as u32;
    let url = std::env::var("JOBMESH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("jm_bench_{:016x}", rand::random::<u64>());
    let options: PgConnectOptions = url.parse()?;
    let store = PostgresStore::connect_with(options, Some(&schema), conc as u32 + 4).await?;

    // 1. Enqueue.
    let t = Instant::now();
    for start in (0..n).step_by(ENQUEUE_BATCH) {
        let jobs = (start..n.min(start + ENQUEUE_BATCH))
            .map(|_| NewJob::new("noop", serde_json::json!({})))
            .collect();
        store.enqueue(jobs, SystemClock.now()).await?;
    }
    let enqueue = t.elapsed();

    // 2. Drain.
    let t = Instant::now();
    let mut loops = Vec::new();
    for w in 0..conc {
        let store = store.clone();
        loops.push(tokio::spawn(async move {
            let mut done = 0usize;
            // Completions are flushed in the background, as a worker's completion batcher
            // does, so the next claim overlaps the previous batch's commit; at most one
            // batch per loop is in flight.
            let mut in_flight: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
            loop {
                let got = store.claim(&request(format!("bench/w{w}"), slots)).await?;
                if got.is_empty() {
                    match in_flight.take() {
                        Some(flush) => {
                            flush.await??;
                            continue;
                        }
                        None => return anyhow::Ok(done),
                    }
                }
                done += got.len();
                let batch: Vec<Completion> = got.into_iter().map(succeeded).collect();
                if let Some(flush) = in_flight.take() {
                    flush.await??;
                }
                let store = store.clone();
                in_flight = Some(tokio::spawn(async move {
                    let results = store.complete(batch).await?;
                    anyhow::ensure!(
                        results.iter().all(|r| *r == CompletionResult::Applied),
                        "a completion was refused"
                    );
                    Ok(())
                }));
            }
        }));
    }
    let mut drained = 0;
    for l in loops {
        drained += l.await??;
    }
    let drain = t.elapsed();
    anyhow::ensure!(drained == n, "drained {drained} of {n} jobs");

    // 3. Pickup latency: one claimer woken by LISTEN, one job at a time.
    let mut wakeups = store.listen(&["default".into()]).await?;
    let (picked_tx, mut picked_rx) = mpsc::channel::<Instant>(1);
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(POLL_FALLBACK, wakeups.recv()).await;
                // Fold wake-ups that arrived meanwhile into this claim.
                while wakeups.try_recv().is_some() {}
                let got = store.claim(&request("bench/pickup".into(), slots)).await?;
                if got.is_empty() {
                    continue;
                }
                let at = Instant::now();
                store
                    .complete(got.into_iter().map(succeeded).collect())
                    .await?;
                if picked_tx.send(at).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        })
    };
    let mut samples = Vec::with_capacity(PICKUP_SAMPLES);
    for _ in 0..PICKUP_SAMPLES {
        let t = Instant::now();
        store
            .enqueue(
                vec![NewJob::new("noop", serde_json::json!({}))],
                SystemClock.now(),
            )
            .await?;
        let picked = tokio::time::timeout(Duration::from_secs(10), picked_rx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("pickup claimer stopped"))?;
        samples.push(picked.duration_since(t));
    }
    claimer.abort();
    samples.sort();

    println!(
        "{}",
        serde_json::json!({
            "system": "jobmesh+postgres",
            "N": n,
            "CONC": conc,
            "SLOTS": slots,
            "enqueue_per_s": (n as f64 / enqueue.as_secs_f64()).round(),
            "drain_per_s": (n as f64 / drain.as_secs_f64()).round(),
            "pickup_ms": {
                "p50": percentile(&samples, 0.50),
                "p99": percentile(&samples, 0.99),
                "n": samples.len(),
            },
        })
    );

    // Identifiers cannot be bound; the name was generated above from hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await?;
    store.close().await;
    Ok(())
}
