//! `jobmesh bench`: enqueue and drain no-op jobs, then measure pickup latency, the
//! same way the peer scripts in `../shared/peers` measure BullMQ and graphile-worker.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::event::EventKind;
use jobmesh::job::{JobState, NewJob, NodeId};
use jobmesh::payload::PayloadRules;
use jobmesh::store::SharedStore;
use jobmesh::store::sqlite::SqliteStore;
use jobmesh_actors::{Node, NodeOptions};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::args::BenchArgs;
use crate::cmd::bench_api;
use crate::setup;

const ENQUEUE_BATCH: usize = 1000;
const LATENCY_KIND: &str = "bench_latency";

/// Runs the verb and prints one JSON line like the peer scripts.
pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let _scratch_dir;
    let store: SharedStore = if args.scratch {
        let dir = tempfile::tempdir().context("creating a scratch directory")?;
        let store = SqliteStore::open(&dir.path().join("bench.db")).await?;
        _scratch_dir = dir;
        Arc::new(store)
    } else {
        setup::open_store(&config).await?
    };
    let queue = format!("bench{}", SystemClock.now().0);

    let t0 = Instant::now();
    let mut pending = args.jobs as usize;
    while pending > 0 {
        let n = pending.min(ENQUEUE_BATCH);
        let jobs = (0..n)
            .map(|_| bench_job("noop", args.payload.clone(), &queue))
            .collect();
        store.enqueue(jobs, SystemClock.now()).await?;
        pending -= n;
    }
    let enqueue_s = t0.elapsed().as_secs_f64();

    let mut drain_n = args.jobs as u64;
    let via_api = if args.via_api {
        let plan = bench_api::Plan {
            queue: &queue,
            batch_jobs: args.jobs,
            batch_size: ENQUEUE_BATCH,
            single_jobs: args.api_singles,
            connections: args.api_connections,
        };
        let rates =
            bench_api::measure(&store, Arc::new(config.registry()?), &config.api, &plan).await?;
        // The batches through the API, as many again straight to the store (taken in
        // turn with them), and the singles.
        drain_n += 2 * u64::from(args.jobs) + u64::from(args.api_singles);
        Some(rates)
    } else {
        None
    };

    let (lat_tx, mut lat_rx) = mpsc::channel::<f64>(args.latency_samples.max(1) as usize);
    let mut registry = config.registry()?;
    registry.register_fn(LATENCY_KIND, PayloadRules::default(), move |ctx| {
        let tx = lat_tx.clone();
        async move {
            let sent = ctx
                .job
                .payload
                .get("t_us")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let _ = tx.try_send((now_us().saturating_sub(sent)) as f64 / 1000.0);
            Ok(None)
        }
    });
    let mut workers = config.workers.clone();
    workers.concurrency = args.concurrency;
    workers.queues = vec![queue.clone()];
    let node = Node::start(NodeOptions {
        node_id: NodeId(format!("bench-{}", std::process::id())),
        workers,
        retry: config.retry.clone(),
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
        retention: None,
    })
    .await?;

    let scraper = args.scrape_every.map(|every| scrape(node.metrics(), every));
    let t1 = Instant::now();
    wait_drained(&node, &store, &queue, drain_n).await?;
    let drain_s = t1.elapsed().as_secs_f64();
    let scrapes = match scraper {
        Some(task) => {
            task.abort();
            // The counts survive the abort: the task only ever adds to them.
            Some((
                SCRAPES.load(std::sync::atomic::Ordering::Relaxed),
                SCRAPE_NANOS.load(std::sync::atomic::Ordering::Relaxed),
            ))
        }
        None => None,
    };

    let mut lat = Vec::with_capacity(args.latency_samples as usize);
    for _ in 0..args.latency_samples {
        node.submit(vec![bench_job(
            LATENCY_KIND,
            json!({"t_us": now_us()}),
            &queue,
        )])
        .await?;
        match tokio::time::timeout(Duration::from_secs(5), lat_rx.recv()).await {
            Ok(Some(ms)) => lat.push(ms),
            _ => anyhow::bail!("a latency probe job did not run within 5 s"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.shutdown(Duration::from_secs(5)).await?;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| bench_api::percentile(&lat, p);
    let enqueue_per_s = args.jobs as f64 / enqueue_s;
    let mut line = json!({
        "system": format!("jobmesh+{}", store.backend()),
        "N": args.jobs,
        "CONC": args.concurrency,
        "enqueue_per_s": enqueue_per_s.round(),
        "drain_per_s": (drain_n as f64 / drain_s).round(),
        "pickup_ms": { "p50": round3(pct(0.50)), "p99": round3(pct(0.99)), "n": lat.len() },
    });
    if let Some((n, nanos)) = scrapes {
        line["scrapes_during_drain"] = json!(n);
        // What scraping took from the drain: the encoding time (which holds each metric
        // family's lock while it reads it) as a share of the drain's wall time, an upper
        // bound on the drain rate it can cost with one core free for it.
        let ms = nanos as f64 / 1e6;
        line["scrape_ms"] = json!({
            "total": round3(ms),
            "per_scrape": round3(if n == 0 { 0.0 } else { ms / n as f64 }),
            "percent_of_drain": round3(ms / 1000.0 / drain_s * 100.0),
        });
    }
    if let Some(api) = via_api {
        line["api"] = json!({
            "batch_enqueue_per_s": api.batch_per_s.round(),
            "batch_vs_store": round3(api.batch_per_s / enqueue_per_s),
            "paired_store_enqueue_per_s": api.paired_store_per_s.round(),
            "batch_vs_store_paired": round3(api.batch_per_s / api.paired_store_per_s),
            "single_posts_per_s": api.single_per_s.round(),
            "single_ms": { "p50": round3(api.single_ms.0), "p99": round3(api.single_ms.1) },
            "connections": args.api_connections,
            "singles": args.api_singles,
        });
    }
    crate::output::outln!("{line}")?;
    Ok(())
}

/// Scrapes encoded by `--scrape-every` during the drain.
static SCRAPES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Nanoseconds those scrapes spent encoding.
static SCRAPE_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Encodes `metrics` every `every`, as the `/metrics` route does for a scrape (the HTTP
/// round trip aside), until aborted.
fn scrape(metrics: Arc<jobmesh::metrics::Metrics>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let started = Instant::now();
            let text = metrics.encode();
            std::hint::black_box(text.len());
            let took = started.elapsed().as_nanos() as u64;
            SCRAPE_NANOS.fetch_add(took, std::sync::atomic::Ordering::Relaxed);
            SCRAPES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })
}

fn bench_job(kind: &str, payload: serde_json::Value, queue: &str) -> NewJob {
    let mut job = NewJob::new(kind, payload);
    job.queue = queue.to_string();
    job
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Waits until `n` jobs of `queue` succeeded: counts success events, and re-reads the
/// store's counts whenever events were missed or nothing arrived for a while.
async fn wait_drained(node: &Node, store: &SharedStore, queue: &str, n: u64) -> anyhow::Result<()> {
    let mut events = node.subscribe();
    let mut seen = 0u64;
    loop {
        let recount = match tokio::time::timeout(Duration::from_millis(250), events.recv()).await {
            Ok(Ok(e)) => {
                if e.kind == EventKind::JobSucceeded {
                    seen += 1;
                }
                seen >= n
            }
            Ok(Err(RecvError::Lagged(_))) | Err(_) => true,
            Ok(Err(RecvError::Closed)) => anyhow::bail!("node stopped during the benchmark"),
        };
        if recount {
            let counts = store.counts().await?;
            let done = counts
                .get(queue)
                .and_then(|m| m.get(&JobState::Succeeded))
                .copied()
                .unwrap_or(0);
            if done >= n {
                return Ok(());
            }
            seen = done;
        }
    }
}
