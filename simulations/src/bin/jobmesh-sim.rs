//! `jobmesh-sim`: runs the deterministic protocol simulator and prints a table.
//!
//! `cargo run -p jobmesh-sim --release -- --nodes 100,1000 --seed 7 --scenario crash`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use jobmesh::membership::Monitoring;
use jobmesh_sim::sim::{BUILTINS, Report, Scenario, SimConfig, Timing, World, table};

/// Deterministic simulator of the jobmesh membership protocol core.
#[derive(Debug, Parser)]
#[command(name = "jobmesh-sim")]
struct Args {
    /// Cluster sizes, comma-separated (one run per size and scenario).
    #[arg(long, default_value = "100", value_delimiter = ',')]
    nodes: Vec<usize>,
    /// Seed of everything; the same seed gives the same trace hash.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Scenarios, comma-separated (see --list).
    #[arg(long, default_value = "crash", value_delimiter = ',')]
    scenario: Vec<String>,
    /// Tolerated Byzantine members (default: largest up to 3 below 32 nodes, else 3).
    #[arg(long)]
    f: Option<usize>,
    /// Observers per subject; 0 is all-to-all (default: all-to-all below 32 nodes,
    /// else 10).
    #[arg(long)]
    k: Option<usize>,
    /// Seconds before the first fault (the traffic window is [5 s, warm-up)).
    #[arg(long, default_value_t = 25)]
    warmup: u64,
    /// Crashes in the `crash` scenario.
    #[arg(long, default_value_t = 3)]
    crashes: usize,
    /// Seconds between those crashes.
    #[arg(long, default_value_t = 4)]
    crash_gap: u64,
    /// Seconds after the last fault for things to settle.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// Base delivery loss probability (scenarios may change it).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Wire copies per gossip delivery (1 = what the application receives; about
    /// the mesh degree D = 6 estimates gossipsub's eager-push wire cost).
    #[arg(long, default_value_t = 1.0)]
    gossip_amplification: f64,
    /// Write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Append each report as one JSON line here, as each run ends (`jobmesh plot`
    /// reads these: e.g. `--x config.nodes --y metrics.detection.p50_ms`).
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Write the first N trace records (of each run) as JSON lines here.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Trace records to keep with --trace.
    #[arg(long, default_value_t = 10_000)]
    trace_records: usize,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.list {
        for (name, what) in BUILTINS {
            println!("{name:10} {what}");
        }
        return Ok(());
    }
    let timing = Timing {
        warmup: Duration::from_secs(args.warmup),
        crashes: args.crashes,
        crash_gap: Duration::from_secs(args.crash_gap),
        settle: Duration::from_secs(args.settle),
        ..Timing::default()
    };
    let mut reports: Vec<Report> = Vec::new();
    let mut trace_out = String::new();
    let mut violations = Vec::new();
    for &n in &args.nodes {
        for name in &args.scenario {
            let mut config = SimConfig::new(n, args.seed);
            if let Some(f) = args.f {
                config.f = f;
            }
            match args.k {
                Some(0) => config.monitoring = Monitoring::AllToAll,
                Some(k) => config.monitoring = Monitoring::Observers { k },
                None => {}
            }
            config.network.loss = args.loss;
            config.gossip_amplification = args.gossip_amplification;
            if args.trace.is_some() {
                config.keep_trace = args.trace_records;
            }
            eprintln!(
                "running {name} with {n} nodes (seed {}, f {}, {})...",
                args.seed,
                config.f,
                jobmesh_sim::sim::describe_monitoring(config.monitoring)
            );
            let mut world = World::new(config).with_context(|| format!("{n} nodes"))?;
            let scenario = Scenario::builtin(name, &world, timing)?;
            let mut report = world.run(&scenario)?;
            report.replay = format!(
                "cargo run -p jobmesh-sim --release -- --nodes {n} --seed {} --scenario {name} \
                 --f {} --k {} --warmup {} --crashes {} --crash-gap {} --settle {} --loss {} \
                 --gossip-amplification {}",
                args.seed,
                report.config.f,
                match report.config.monitoring {
                    Monitoring::AllToAll => 0,
                    Monitoring::Observers { k } => k,
                },
                args.warmup,
                args.crashes,
                args.crash_gap,
                args.settle,
                args.loss,
                args.gossip_amplification,
            );
            eprintln!(
                "  done in {:.1} s wall (+{:.1} s setup); trace {}; replay: {}",
                report.wall_secs, report.setup_secs, report.trace_hash, report.replay
            );
            let m = &report.metrics;
            if m.false_evictions > 0 {
                violations.push(format!(
                    "{name} N={n}: {} false evictions",
                    m.false_evictions
                ));
            }
            if m.honest_rejects > 0 {
                violations.push(format!(
                    "{name} N={n}: {} honest messages rejected: {:?}",
                    m.honest_rejects, m.reject_samples
                ));
            }
            if m.undetected > 0 {
                violations.push(format!(
                    "{name} N={n}: {} crashes never evicted",
                    m.undetected
                ));
            }
            if let Some(path) = &args.jsonl {
                append_line(path, &serde_json::to_string(&report)?)?;
            }
            if args.trace.is_some() {
                for r in world.trace_records() {
                    trace_out.push_str(&serde_json::to_string(r)?);
                    trace_out.push('\n');
                }
            }
            reports.push(report);
        }
    }
    println!("{}", table::render(&reports));
    println!("{}", table::render_traffic(&reports));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.trace {
        std::fs::write(path, trace_out).with_context(|| format!("writing {}", path.display()))?;
    }
    if !violations.is_empty() {
        for v in &violations {
            eprintln!("VIOLATION: {v}");
        }
        // Non-zero exit without a backtrace: the table above is the report.
        eprintln!("{} invariant violations", violations.len());
        std::process::exit(2);
    }
    Ok(())
}

/// Appends one line to `path` (created if missing): a sweep that stops half way keeps
/// the runs that finished.
fn append_line(path: &std::path::Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))
}
