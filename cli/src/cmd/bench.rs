//! `jobmesh bench`: enqueue and drain no-op jobs, then measure pickup latency, the
//! same way the peer scripts in `../shared/peers` measure BullMQ and graphile-worker.
//! The cost curves grow from the same verb: a backlog of finished or waiting jobs
//! beside the measured ones (`--backlog-finished`, `--backlog-available`), several
//! nodes on one store (`--nodes`), many queues (`--queues`), and an open-loop load
//! (`--rate`, `--duration`) reported per window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::event::EventKind;
use jobmesh::handler::Registry;
use jobmesh::job::{JobState, NewJob, NodeId};
use jobmesh::payload::PayloadRules;
use jobmesh::store::{OpenedStore, SharedStore};
use jobmesh_actors::{Node, NodeOptions};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::args::BenchArgs;
use crate::cmd::{bench_api, bench_fill, bench_load};

const ENQUEUE_BATCH: usize = 1000;
const LATENCY_KIND: &str = "bench_latency";
/// The kind of the open-loop jobs: their handler records every pickup.
const LOAD_KIND: &str = "bench_load";
/// The queue of `--backlog-available`: no bench node serves it.
const WAITING_QUEUE: &str = "bench-backlog-waiting";

/// Runs the verb and prints one JSON line like the peer scripts (also appended to
/// `--out` when given).
pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let scratch_dir = if args.scratch {
        Some(tempfile::tempdir().context("creating a scratch directory")?)
    } else {
        None
    };
    let sqlite_path = match &scratch_dir {
        Some(dir) => dir.path().join("bench.db"),
        None => config.sqlite_path(),
    };
    let opened = if args.scratch {
        let mut section = config.store.clone();
        section.backend = jobmesh::config::Backend::Sqlite;
        section.sqlite_path = Some(sqlite_path.clone());
        jobmesh::store::open(&section, &sqlite_path).await?
    } else {
        jobmesh::store::open(&config.store, &sqlite_path).await?
    };
    let store = opened.shared();
    let stamp = SystemClock.now().0;
    let queues: Vec<String> = if args.queues == 1 {
        vec![format!("bench{stamp}")]
    } else {
        (0..args.queues)
            .map(|i| format!("bench{stamp}-{i}"))
            .collect()
    };

    let mut line = json!({
        "system": format!("jobmesh+{}", store.backend()),
        "CONC": args.concurrency,
        "nodes": args.nodes,
        "queues": args.queues,
    });
    backlog(&opened, &sqlite_path, &store, &args, &mut line).await?;

    if let Some(rate) = args.rate {
        open_loop(&config, &args, &store, &queues, rate, &mut line).await?;
    } else {
        closed_loop(&config, &args, &store, &queues, &mut line).await?;
    }
    crate::output::outln!("{line}")?;
    if let Some(path) = &args.out {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening --out {}", path.display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing --out {}", path.display()))?;
    }
    opened.close().await;
    Ok(())
}

/// Writes the backlogs the options ask for and records them in the report.
async fn backlog(
    opened: &OpenedStore,
    sqlite_path: &std::path::Path,
    store: &SharedStore,
    args: &BenchArgs,
    line: &mut Value,
) -> anyhow::Result<()> {
    line["backlog_finished"] = json!(args.backlog_finished);
    line["backlog_available"] = json!(args.backlog_available);
    if args.backlog_finished > 0 {
        let filled = bench_fill::fill_finished(
            opened,
            sqlite_path,
            args.backlog_finished,
            args.backlog_events,
            SystemClock.now().0,
        )
        .await?;
        line["backlog_events"] = json!(filled.events);
        line["backlog_fill_s"] = json!(round3(filled.seconds));
    }
    let mut pending = args.backlog_available;
    while pending > 0 {
        let n = pending.min(ENQUEUE_BATCH as u64) as usize;
        let jobs = (0..n)
            .map(|_| bench_job("noop", json!({}), WAITING_QUEUE))
            .collect();
        store.enqueue(jobs, SystemClock.now()).await?;
        pending -= n as u64;
    }
    Ok(())
}

/// The peer scripts' measure: enqueue `--jobs`, drain them, then probe pickup one job
/// at a time.
async fn closed_loop(
    config: &Config,
    args: &BenchArgs,
    store: &SharedStore,
    queues: &[String],
    line: &mut Value,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut pending = args.jobs as usize;
    let mut turn = 0usize;
    while pending > 0 {
        let n = pending.min(ENQUEUE_BATCH);
        let jobs = (0..n)
            .map(|_| {
                turn += 1;
                bench_job("noop", args.payload.clone(), &queues[turn % queues.len()])
            })
            .collect();
        store.enqueue(jobs, SystemClock.now()).await?;
        pending -= n;
    }
    let enqueue_s = t0.elapsed().as_secs_f64();

    let mut drain_n = args.jobs as u64;
    let via_api = if args.via_api {
        let plan = bench_api::Plan {
            queue: &queues[0],
            batch_jobs: args.jobs,
            batch_size: ENQUEUE_BATCH,
            single_jobs: args.api_singles,
            connections: args.api_connections,
        };
        let rates =
            bench_api::measure(store, Arc::new(config.registry()?), &config.api, &plan).await?;
        // The batches through the API, as many again straight to the store (taken in
        // turn with them), and the singles.
        drain_n += 2 * u64::from(args.jobs) + u64::from(args.api_singles);
        Some(rates)
    } else {
        None
    };

    let (lat_tx, mut lat_rx) = mpsc::channel::<f64>(args.latency_samples.max(1) as usize);
    let nodes = start_nodes(config, args, store, queues, |registry| {
        let lat_tx = lat_tx.clone();
        registry.register_fn(LATENCY_KIND, PayloadRules::default(), move |ctx| {
            let tx = lat_tx.clone();
            async move {
                let _ = tx.try_send(pickup_ms(&ctx.job.payload));
                Ok(None)
            }
        });
    })
    .await?;
    let counter = SuccessCounter::start(&nodes);

    let scraper = args
        .scrape_every
        .map(|every| scrape(nodes[0].metrics(), every));
    let t1 = Instant::now();
    counter.wait_for(store, queues, drain_n).await?;
    let drain_s = t1.elapsed().as_secs_f64();
    let scrapes = match scraper {
        Some(task) => {
            task.abort();
            // The counts survive the abort: the task only ever adds to them.
            Some((
                SCRAPES.load(Ordering::Relaxed),
                SCRAPE_NANOS.load(Ordering::Relaxed),
            ))
        }
        None => None,
    };

    let mut lat = Vec::with_capacity(args.latency_samples as usize);
    for _ in 0..args.latency_samples {
        nodes[0]
            .submit(vec![bench_job(
                LATENCY_KIND,
                json!({"t_us": now_us()}),
                &queues[0],
            )])
            .await?;
        match tokio::time::timeout(Duration::from_secs(5), lat_rx.recv()).await {
            Ok(Some(ms)) => lat.push(ms),
            _ => anyhow::bail!("a latency probe job did not run within 5 s"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    counter.stop();
    for node in nodes {
        node.shutdown(Duration::from_secs(5)).await?;
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| bench_api::percentile(&lat, p);
    let enqueue_per_s = args.jobs as f64 / enqueue_s;
    line["N"] = json!(args.jobs);
    line["enqueue_per_s"] = json!(enqueue_per_s.round());
    line["drain_per_s"] = json!((drain_n as f64 / drain_s).round());
    line["pickup_ms"] =
        json!({ "p50": round3(pct(0.50)), "p99": round3(pct(0.99)), "n": lat.len() });
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
    Ok(())
}

/// `--rate` and `--duration`: offers jobs at a fixed rate to running nodes.
async fn open_loop(
    config: &Config,
    args: &BenchArgs,
    store: &SharedStore,
    queues: &[String],
    rate: u32,
    line: &mut Value,
) -> anyhow::Result<()> {
    let recorder = bench_load::pickups();
    let nodes = start_nodes(config, args, store, queues, |registry| {
        let recorder = recorder.clone();
        registry.register_fn(LOAD_KIND, PayloadRules::default(), move |ctx| {
            let ms = pickup_ms(&ctx.job.payload) as f32;
            recorder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(ms);
            async move { Ok(None) }
        });
    })
    .await?;
    let counter = SuccessCounter::start(&nodes);
    let load = bench_load::Load {
        rate,
        duration: args.duration.unwrap_or(Duration::from_secs(10)),
        window: args.window,
        kind: LOAD_KIND,
        queues,
        payload: &args.payload,
    };
    let report = bench_load::offer(store, &load, &recorder, || counter.seen()).await?;
    counter.stop();
    for node in nodes {
        node.shutdown(Duration::from_secs(5)).await?;
    }
    if let (Value::Object(into), Value::Object(from)) = (line, report) {
        into.extend(from);
    }
    Ok(())
}

/// Starts `--nodes` nodes serving `queues` on `store`, each with `--concurrency`
/// workers; `register` adds the bench's measuring kind to each node's handlers.
async fn start_nodes(
    config: &Config,
    args: &BenchArgs,
    store: &SharedStore,
    queues: &[String],
    register: impl Fn(&mut Registry),
) -> anyhow::Result<Vec<Node>> {
    let mut nodes = Vec::with_capacity(args.nodes as usize);
    for i in 0..args.nodes {
        let mut registry = config.registry()?;
        register(&mut registry);
        let mut workers = config.workers.clone();
        workers.concurrency = args.concurrency;
        workers.queues = queues.to_vec();
        nodes.push(
            Node::start(NodeOptions {
                node_id: NodeId(format!("bench-{}-{i}", std::process::id())),
                workers,
                retry: config.retry.clone(),
                store: store.clone(),
                registry,
                clock: Arc::new(SystemClock),
                retention: None,
                predict: Default::default(),
            })
            .await?,
        );
    }
    Ok(nodes)
}

/// The pickup latency (ms) of a job whose payload carries its send time.
fn pickup_ms(payload: &Value) -> f64 {
    let sent = payload.get("t_us").and_then(|v| v.as_u64()).unwrap_or(0);
    (now_us().saturating_sub(sent)) as f64 / 1000.0
}

/// Counts the nodes' `job.succeeded` events; notes when a node's stream lagged, so the
/// waiter re-reads the store's counts instead.
struct SuccessCounter {
    seen: Arc<AtomicU64>,
    lagged: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SuccessCounter {
    fn start(nodes: &[Node]) -> Self {
        let seen = Arc::new(AtomicU64::new(0));
        let lagged = Arc::new(AtomicBool::new(false));
        let tasks = nodes
            .iter()
            .map(|node| {
                let mut events = node.subscribe();
                let (seen, lagged) = (seen.clone(), lagged.clone());
                tokio::spawn(async move {
                    loop {
                        match events.recv().await {
                            Ok(e) if e.kind == EventKind::JobSucceeded => {
                                seen.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(RecvError::Lagged(_)) => lagged.store(true, Ordering::Relaxed),
                            Err(RecvError::Closed) => return,
                        }
                    }
                })
            })
            .collect();
        Self {
            seen,
            lagged,
            tasks,
        }
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits until `n` jobs of `queues` succeeded: trusts the events while none were
    /// missed, and re-reads the store's counts (at most once a second: with a big
    /// backlog a count is not free) only when a stream lagged or all went quiet.
    async fn wait_for(&self, store: &SharedStore, queues: &[String], n: u64) -> anyhow::Result<()> {
        let mut last_count: Option<Instant> = None;
        let mut last_seen = (self.seen(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.seen();
            if now != last_seen.0 {
                last_seen = (now, Instant::now());
            }
            let quiet = last_seen.1.elapsed() >= Duration::from_secs(1);
            let lagged = self.lagged.load(Ordering::Relaxed);
            if now >= n && !lagged {
                // Every success event was seen, and only bench jobs run here.
                return Ok(());
            }
            let doubt = lagged || quiet;
            let may_count = last_count.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if !(now >= n || (doubt && may_count)) {
                continue;
            }
            last_count = Some(Instant::now());
            let counts = store.counts().await?;
            let done: u64 = queues
                .iter()
                .filter_map(|q| counts.get(q))
                .filter_map(|m| m.get(&JobState::Succeeded))
                .copied()
                .sum();
            if done >= n {
                return Ok(());
            }
            if self.tasks.iter().all(|t| t.is_finished()) {
                anyhow::bail!("every node stopped during the benchmark");
            }
        }
    }

    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Scrapes encoded by `--scrape-every` during the drain.
static SCRAPES: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds those scrapes spent encoding.
static SCRAPE_NANOS: AtomicU64 = AtomicU64::new(0);

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
            SCRAPE_NANOS.fetch_add(took, Ordering::Relaxed);
            SCRAPES.fetch_add(1, Ordering::Relaxed);
        }
    })
}

pub(crate) fn bench_job(kind: &str, payload: serde_json::Value, queue: &str) -> NewJob {
    let mut job = NewJob::new(kind, payload);
    job.queue = queue.to_string();
    job
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
