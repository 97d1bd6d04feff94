//! Peer anchor: apalis 1.0 on the same Postgres, or on a SQLite file. Enqueue N no-op
//! jobs in batches of 5000, drain them with CONC concurrency, then measure pickup
//! latency for 500 single jobs at ~200/s (push to handler start), and print one JSON
//! line in the shape of the other peers (`../shared/peers`).
//!
//!   apalis-peer postgres N CONC postgres://postgres@127.0.0.1:5432/apalis_bench
//!   apalis-peer sqlite N CONC /tmp/apalis.db
//!
//! Settings are the crates' documented defaults: `Config::default()`, the event-driven
//! storage each crate's own examples use (LISTEN/NOTIFY on Postgres, SQLite's update
//! hook), `.concurrency(CONC)` and `.parallelize(tokio::spawn)` as in apalis' README.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::SqliteStorage;
use tokio::sync::Notify;

/// Latency probes, and the pause between two of them.
const PROBES: usize = 500;
const PROBE_GAP: Duration = Duration::from_millis(5);
/// Jobs per enqueue call.
const BATCH: usize = 5000;

/// What the handler shares with `main`: drained jobs and pickup samples.
#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    target: AtomicUsize,
    all_done: Notify,
    pickup_ms: Mutex<Vec<f64>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// A job's payload is 0 for a no-op job of the drain, or the time (µs since the epoch)
/// a latency probe was pushed.
async fn handle(sent_us: u64, shared: Data<Arc<Tally>>) -> Result<(), BoxDynError> {
    if sent_us == 0 {
        let done = shared.done.fetch_add(1, Ordering::SeqCst) + 1;
        if done == shared.target.load(Ordering::SeqCst) {
            shared.all_done.notify_one();
        }
    } else {
        let ms = now_us().saturating_sub(sent_us) as f64 / 1000.0;
        shared.pickup_ms.lock().expect("not poisoned").push(ms);
    }
    Ok(())
}

/// Enqueues N jobs through `sink`, starts the worker, waits for the drain, then pushes
/// the latency probes; returns enqueue/s, drain/s and the tally.
async fn bench<B, K>(
    mut sink: B,
    start_worker: impl FnOnce(Arc<Tally>),
    n: usize,
) -> Result<(f64, f64, Arc<Tally>), BoxDynError>
where
    B: TaskSink<u64, K>,
    B::Error: std::fmt::Debug,
{
    let shared = Arc::new(Tally::default());
    shared.target.store(n, Ordering::SeqCst);
    let t0 = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(BATCH);
        sink.push_bulk(vec![0u64; k])
            .await
            .map_err(|e| format!("enqueue: {e:?}"))?;
        left -= k;
    }
    let enqueue = n as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let notified = shared.all_done.notified();
    start_worker(shared.clone());
    // Progress on stderr (peers.sh discards it): a slow drain shows how far it got.
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let done = shared.done.load(Ordering::SeqCst);
                eprintln!("{:.0} s: {done} of {n} drained", t0.elapsed().as_secs_f64());
            }
        })
    };
    notified.await;
    progress.abort();
    let drain = n as f64 / t0.elapsed().as_secs_f64();
    for _ in 0..PROBES {
        sink.push(now_us())
            .await
            .map_err(|e| format!("probe: {e:?}"))?;
        tokio::time::sleep(PROBE_GAP).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok((enqueue, drain, shared))
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: apalis-peer postgres|sqlite N CONC URL-or-PATH";
    let (Some(kind), Some(n), Some(conc), Some(target)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        return Err(usage.into());
    };
    let n: usize = n.parse().map_err(|e| format!("N {n:?}: {e}"))?;
    let conc: usize = conc.parse().map_err(|e| format!("CONC {conc:?}: {e}"))?;
    let (enqueue, drain, shared) = match kind.as_str() {
        "postgres" => {
            let pool = PgPool::connect(target).await?;
            PostgresStorage::setup(&pool).await?;
            let storage = PostgresStorage::<u64>::new(&pool);
            let worker_storage = storage.clone().with_pubsub();
            let start = move |shared: Arc<Tally>| {
                let worker = WorkerBuilder::new("apalis-bench")
                    .backend(worker_storage)
                    .data(shared)
                    .concurrency(conc)
                    .parallelize(tokio::spawn)
                    .build(handle);
                tokio::spawn(worker.run());
            };
            bench(storage, start, n).await?
        }
        "sqlite" => {
            let url = format!("sqlite:{target}?mode=rwc");
            let (pool, listener) = SqliteStorage::connect_with_callback(&url)?;
            SqliteStorage::setup(&pool).await?;
            let storage = SqliteStorage::<u64>::new(&pool);
            let worker_storage = storage.clone().with_callback(listener);
            let start = move |shared: Arc<Tally>| {
                let worker = WorkerBuilder::new("apalis-bench")
                    .backend(worker_storage)
                    .data(shared)
                    .concurrency(conc)
                    .parallelize(tokio::spawn)
                    .build(handle);
                tokio::spawn(worker.run());
            };
            bench(storage, start, n).await?
        }
        other => return Err(format!("unknown backend {other:?}; {usage}").into()),
    };
    let mut lat = shared.pickup_ms.lock().expect("not poisoned").clone();
    lat.sort_by(f64::total_cmp);
    // The peers' percentile: the sample at floor(p * len), clamped.
    let pct = |p: f64| {
        let i = ((p * lat.len() as f64) as usize).min(lat.len().saturating_sub(1));
        lat.get(i).map(|v| (v * 10.0).round() / 10.0)
    };
    let line = serde_json::json!({
        "system": format!("apalis-{kind}"),
        "N": n,
        "CONC": conc,
        "enqueue_per_s": enqueue.round(),
        "drain_per_s": drain.round(),
        "pickup_ms": { "p50": pct(0.5), "p99": pct(0.99), "n": lat.len() },
    });
    println!("{line}");
    // Like the other peers: exit without waiting for the worker to wind down.
    std::process::exit(0)
}
