//! Throughput and pickup latency of the Redis dispatch layer, the counterpart of
//! `../shared/peers/bullmq-bench.mjs` (no-op jobs, same Redis):
//! `cargo run --release -p jobmesh --example redis_dispatch_throughput -- N CONC [BATCH] [REDIS_URL]`.
//!
//! Pushes N jobs (pipelined batches of 1000), then drains them with CONC concurrent
//! loops of claim(BATCH) + ack over one shared multiplexed connection. Pickup latency:
//! 500 single jobs at about 200/s, each timed from just before its push until a
//! claimer blocked in `claim_wait` (BLPOP on the wake list, no polling) holds it.
//! Prints one JSON line.

use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::{JobId, NodeId, WorkerId};
use jobmesh::store::redis::{ClaimSpec, ReadyJob, RedisDispatch};

const LEASE: Duration = Duration::from_secs(60);
const PICKUP_SAMPLES: usize = 500;
const PICKUP_CLAIMERS: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let conc: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let batch: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_string());
    let prefix = format!("jmbench:{:016x}", rand::random::<u64>());
    let d = RedisDispatch::connect(&url, &prefix).await?;
    let node = NodeId("bench".into());

    // Push.
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let jobs: Vec<_> = (start..(start + 1000).min(n))
            .map(|i| ReadyJob::new(JobId(i as i64 + 1), "bench", 0, SystemClock.now()))
            .collect();
        d.push(&jobs, SystemClock.now()).await?;
    }
    let push_s = t.elapsed().as_secs_f64();

    // Drain.
    let t = Instant::now();
    let loops: Vec<_> = (0..conc)
        .map(|i| {
            let d = d.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let worker = WorkerId(format!("bench/w{i}"));
                let mut done = 0usize;
                loop {
                    let got = d
                        .claim(&["bench"], batch, &node, &worker, LEASE, SystemClock.now())
                        .await?;
                    if got.is_empty() {
                        return anyhow::Ok(done);
                    }
                    let acked = d.ack(&got).await?;
                    anyhow::ensure!(acked.iter().all(|a| *a), "an ack was refused");
                    done += got.len();
                }
            })
        })
        .collect();
    let mut drained = 0;
    for l in loops {
        drained += l.await??;
    }
    let drain_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(drained == n, "drained {drained} of {n}");

    // Pickup latency.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(JobId, Instant)>(PICKUP_SAMPLES);
    let mut claimers = Vec::new();
    for i in 0..PICKUP_CLAIMERS {
        let mut claimer = d
            .claimer(ClaimSpec {
                queues: vec!["pickup".into()],
                limit: 1,
                node: node.clone(),
                worker: WorkerId(format!("bench/p{i}")),
                lease_for: LEASE,
            })
            .await?;
        let tx = tx.clone();
        let d = d.clone();
        claimers.push(tokio::spawn(async move {
            loop {
                let got = claimer
                    .claim_wait(&SystemClock, Duration::from_secs(5))
                    .await?;
                let at = Instant::now();
                for (id, _) in &got {
                    if tx.send((*id, at)).await.is_err() {
                        return anyhow::Ok(());
                    }
                }
                d.ack(&got).await?;
            }
        }));
    }
    drop(tx);
    // Let the claimers block first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat_ms = Vec::with_capacity(PICKUP_SAMPLES);
    for i in 0..PICKUP_SAMPLES {
        let id = JobId(10_000_000 + i as i64);
        let sent = Instant::now();
        d.push(
            &[ReadyJob::new(id, "pickup", 0, SystemClock.now())],
            SystemClock.now(),
        )
        .await?;
        let (got, at) = rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("claimers stopped"))?;
        anyhow::ensure!(got == id, "picked up {got}, expected {id}");
        lat_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0);
        // About 200 jobs/s, as the BullMQ anchor.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(rx);
    for c in claimers {
        c.abort();
    }
    lat_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| lat_ms[((p * lat_ms.len() as f64) as usize).min(lat_ms.len() - 1)];

    // Clean up this run's keys.
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await?;
    for chunk in keys.chunks(1000) {
        redis::cmd("DEL")
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }

    println!(
        "{}",
        serde_json::json!({
            "system": "jobmesh-redis-dispatch",
            "N": n,
            "CONC": conc,
            "BATCH": batch,
            "push_per_s": (n as f64 / push_s).round(),
            "drain_per_s": (n as f64 / drain_s).round(),
            "pickup_ms": {
                "p50": (pct(0.5) * 1000.0).round() / 1000.0,
                "p99": (pct(0.99) * 1000.0).round() / 1000.0,
                "n": lat_ms.len(),
            },
        })
    );
    Ok(())
}
