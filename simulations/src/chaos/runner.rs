//! One chaos run: start the cluster, run the workload while the schedule's faults are
//! applied, heal, drain, stop, read the store, check, report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jobmesh::config::{Backend, StoreSection};
use jobmesh::job::JobState;
use jobmesh::store::{SharedStore, Store};
use tokio::time::Instant;

use super::ChaosError;
use super::checker::{CheckConfig, check};
use super::cluster::{Cluster, NodeState, now_ms};
use super::control::Controls;
use super::history::{AppliedFault, History, NodeInfo, read_store};
use super::plan::{self, Fault, Plan};
use super::report::{self, Report, svg, table};
use super::stores::{REDIS_PREFIX, Stores};
use super::windows::{FaultWindow, WindowLog};
use super::workload::{self, Attempts, Workload};

/// Marks a directory as a chaos run's, so a later run may replace it.
const MARKER: &str = ".jobmesh-chaos";
/// How long the cluster may take to finish every job once the faults healed.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// Sleep jobs per node submitted after the heal, so that every node gets work.
const BURST_PER_NODE: u64 = 12;
/// How long one progress poll of the store may take while faults are applied: during
/// a store outage it fails or hangs, and the schedule must go on.
const POLL_DEADLINE: Duration = Duration::from_millis(500);
/// The same during the drain, when every fault has healed and only a slow answer from
/// a loaded store is to be waited out.
const DRAIN_POLL_DEADLINE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenario name.
    pub scenario: String,
    /// Nodes.
    pub nodes: usize,
    /// Byzantine members; `None`: f for Byzantine scenarios, else 0.
    pub byzantine: Option<usize>,
    /// Jobs the steady workload submits.
    pub jobs: u64,
    /// Seed of the schedule and the job mix.
    pub seed: u64,
    /// Length of the fault phase (the workload runs as long).
    pub duration: Duration,
    /// Output directory (cluster files, report.json, history.json, timeline.svg).
    pub out: PathBuf,
    /// The `jobmesh` binary to run nodes with.
    pub bin: PathBuf,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// Self-test: delete one acknowledged job from the store; the run must fail.
    pub sabotage: bool,
    /// Submit `http` jobs that POST to this loopback URL (a fenced receiver counting
    /// the effects it applies) instead of `sleep` jobs; the nodes may call it.
    pub http_receiver: Option<String>,
}

impl Options {
    /// The Byzantine members this run has.
    pub fn liars(&self) -> Result<usize, ChaosError> {
        let s = plan::find(&self.scenario)?;
        Ok(self.byzantine.unwrap_or(if s.byzantine {
            plan::tolerated(self.nodes).max(1)
        } else {
            0
        }))
    }

    /// The command that replays this run.
    pub fn replay(&self) -> String {
        format!(
            "jobmesh chaos --scenario {} --nodes {} --byzantine {} --jobs {} --seed {} --duration {}s",
            self.scenario,
            self.nodes,
            self.liars().unwrap_or(0),
            self.jobs,
            self.seed,
            self.duration.as_secs()
        ) + &self
            .http_receiver
            .as_ref()
            .map(|u| format!(" --http-receiver {u}"))
            .unwrap_or_default()
    }
}

/// Runs a scenario; the report says whether every invariant held.
pub async fn run(opts: &Options) -> Result<Report, ChaosError> {
    let s = plan::find(&opts.scenario)?;
    let liars = opts.liars()?;
    if opts.jobs == 0 {
        return Err(ChaosError::Options {
            message: "--jobs must be at least 1".into(),
        });
    }
    let plan = plan::plan(s, opts.nodes, liars, opts.duration, opts.seed)?;
    // Nodes get a control file only when the plan has faults for it: the others run
    // as production nodes do, without a fault injector.
    let control = plan.needs_control();
    if opts.sabotage && s.production {
        return Err(ChaosError::Unsupported(
            "--sabotage-lose-job edits the SQLite file: use it with a SQLite scenario".into(),
        ));
    }
    let receiver_host = match &opts.http_receiver {
        Some(url) => Some(workload::receiver_host(url)?),
        None => None,
    };
    prepare_dir(&opts.out)?;
    let f = plan::tolerated(opts.nodes);
    // Production scenarios get servers of their own, dropped (stopped) with the run.
    let stores = if s.production {
        Some(Stores::start(&opts.out.join("servers"), plan.needs_proxy()).await?)
    } else {
        None
    };
    let mut section = stores.as_ref().map(Stores::node_section);
    if let Some(host) = &receiver_host {
        // The receiver is on loopback, which `http` refuses unless opened up.
        let store = section.take().unwrap_or_default();
        section = Some(format!("{store}[http]\nallow_private = [\"{host}\"]\n"));
    }
    let mut cluster = Cluster::create(
        &opts.bin,
        &opts.out.join("cluster"),
        opts.nodes,
        f,
        control,
        section.as_deref(),
    )
    .await?;
    let section = match &stores {
        Some(st) => StoreSection {
            backend: Backend::RedisPostgres,
            postgres_url: Some(st.postgres_url().to_string()),
            redis_url: Some(st.redis_url().to_string()),
            redis_prefix: Some(REDIS_PREFIX.to_string()),
            // The nodes relay events to the stream; the runner only submits.
            redis_event_stream: Some(false),
            ..StoreSection::default()
        },
        None => StoreSection::default(),
    };
    // The runner opens the cluster's store as a client would; the record it reads the
    // history from is Postgres on redis_postgres.
    let store = jobmesh::store::open(&section, &cluster.sqlite_path()).await?;
    cluster.start_all().await?;
    let result = drive(
        opts,
        &plan,
        liars,
        f,
        &mut cluster,
        store.shared(),
        stores.as_ref(),
    )
    .await;
    cluster.stop().await;
    let mut history = result?;
    let (jobs, events) = read_store(store.record()).await?;
    store.close().await;
    if let Some(st) = &stores {
        st.keep_logs();
    }
    history.jobs = jobs;
    history.events = events;
    let verdict = check(&history, &CheckConfig::default());
    let rel = |ms: i64| ms - history.start_ms;
    let report = Report {
        scenario: s.name.to_string(),
        nodes: opts.nodes,
        byzantine: liars,
        f,
        jobs: opts.jobs,
        seed: opts.seed,
        duration_ms: opts.duration.as_millis() as u64,
        store: if s.production {
            "redis_postgres"
        } else {
            "sqlite"
        }
        .to_string(),
        replay: opts.replay(),
        plan,
        cluster: history.nodes.clone(),
        applied: history
            .applied
            .iter()
            .map(|a| AppliedFault {
                at_ms: rel(a.at_ms),
                fault: a.fault.clone(),
            })
            .collect(),
        windows: history
            .windows
            .iter()
            .map(|w| FaultWindow {
                from_ms: rel(w.from_ms),
                to_ms: w.to_ms.map(rel),
                ..w.clone()
            })
            .collect(),
        heal_ms: rel(history.heal_ms),
        end_ms: rel(history.end_ms),
        start_ms: history.start_ms,
        passed: verdict.passed(),
        verdict,
    };
    write_json(&opts.out.join("report.json"), &report)?;
    write_json(&opts.out.join("history.json"), &history)?;
    std::fs::write(opts.out.join("timeline.svg"), svg(&report))
        .map_err(|e| ChaosError::io("writing timeline.svg", e))?;
    std::fs::write(opts.out.join("report.txt"), table(&report))
        .map_err(|e| ChaosError::io("writing report.txt", e))?;
    Ok(report)
}

/// The part of the run with the cluster up: workload, faults, heal, drain.
async fn drive(
    opts: &Options,
    plan: &Plan,
    liars: usize,
    f: usize,
    cluster: &mut Cluster,
    store: SharedStore,
    stores: Option<&Stores>,
) -> Result<History, ChaosError> {
    let mut history = History {
        nodes: cluster
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                peer_id: n.peer_id.clone(),
            })
            .collect(),
        f,
        liars: plan.liars.clone(),
        ..History::default()
    };
    debug_assert_eq!(plan.liars.len(), liars);
    let mut controls = Controls::new(history.nodes.iter().map(|n| n.peer_id.clone()).collect());
    let mut windows = WindowLog::default();
    let mut workload = Workload::new(store.clone(), opts.seed, plan.panic_share)
        .with_http_receiver(opts.http_receiver.clone());
    let attempts = workload.attempts();
    let start = Instant::now();
    history.start_ms = now_ms();
    let (jobs, duration) = (opts.jobs, opts.duration);
    let submitter = tokio::spawn(async move {
        workload.run(jobs, duration).await;
        workload
    });
    let mut progress = Progress::new(opts, start, attempts.clone());
    // What runs under each limit, sampled from the store for the whole run.
    let (sampler, samples) = super::limits::start_sampler(store.clone());
    for step in &plan.steps {
        progress
            .wait_until(start + step.at, cluster, &*store)
            .await?;
        apply(&step.fault, cluster, &mut controls).await?;
        if let Some(st) = stores {
            st.apply(&step.fault).await?;
        } else if step.fault.is_store() {
            return Err(ChaosError::Unsupported(format!(
                "`{}` needs the production-mode stores",
                step.fault.label()
            )));
        }
        let at = now_ms();
        windows.apply(&step.fault, at);
        if step.fault == Fault::HealAll {
            history.heal_ms = at;
        }
        history.applied.push(AppliedFault {
            at_ms: at,
            fault: step.fault.clone(),
        });
        progress.faults += 1;
    }
    progress
        .wait_until(start + opts.duration, cluster, &*store)
        .await?;
    let mut workload = submitter
        .await
        .map_err(|e| ChaosError::Cluster(format!("the workload task failed: {e}")))?;
    workload
        .burst(BURST_PER_NODE * opts.nodes as u64, 200)
        .await;
    if opts.sabotage {
        workload.sabotage_lose_one(&cluster.sqlite_path()).await?;
    }
    let drained = progress.drain(cluster, &*store).await;
    sampler.abort();
    drained?;
    progress.finish();
    history.limit_samples = std::mem::take(&mut *samples.lock().expect("samples lock"));
    history.limits = store
        .limits()
        .await?
        .into_iter()
        .filter_map(|l| {
            Some(super::limits::LimitBound {
                limit: l.name(),
                max_running: u64::from(l.max_running?),
            })
        })
        .collect();
    history.end_ms = now_ms();
    history.survivors = cluster.running();
    history.windows = windows.windows().to_vec();
    history.attempts = attempts.lock().expect("attempts lock").clone();
    history.exits = progress.exits;
    Ok(history)
}

/// Applies one fault to the cluster.
async fn apply(
    fault: &Fault,
    cluster: &mut Cluster,
    controls: &mut Controls,
) -> Result<(), ChaosError> {
    for i in controls.apply(fault) {
        cluster.set_control(i, controls.control(i))?;
    }
    match fault {
        Fault::Kill { node } => cluster.kill(*node).await?,
        Fault::Restart { node } => cluster.restart(*node)?,
        Fault::Pause { node } => cluster.pause(*node)?,
        Fault::Resume { node } => cluster.resume(*node)?,
        Fault::HealAll => {
            for i in 0..cluster.nodes.len() {
                cluster.resume(i)?;
            }
            for i in 0..cluster.nodes.len() {
                if cluster.nodes[i].state == NodeState::Down {
                    cluster.restart(i)?;
                }
            }
        }
        Fault::Partition { .. }
        | Fault::OneWay { .. }
        | Fault::Lossy { .. }
        | Fault::Byzantine { .. } => {}
        // The stores' part is applied by `Stores::apply`.
        Fault::PostgresStop
        | Fault::PostgresStart
        | Fault::RedisKill
        | Fault::RedisRestart
        | Fault::RedisFlush
        | Fault::SlowStores { .. }
        | Fault::FastStores => {}
    }
    Ok(())
}

/// Refuses to replace a directory that is not a previous run's: `--out` might point
/// anywhere.
fn prepare_dir(dir: &Path) -> Result<(), ChaosError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| ChaosError::io(format!("reading {}", dir.display()), e))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(ChaosError::Options {
                message: format!(
                    "--out {} exists and is not a chaos run directory; give a new or empty one",
                    dir.display()
                ),
            });
        }
        std::fs::remove_dir_all(dir)
            .map_err(|e| ChaosError::io(format!("clearing {}", dir.display()), e))?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ChaosError::io(format!("creating {}", dir.display()), e))?;
    std::fs::write(dir.join(MARKER), "")
        .map_err(|e| ChaosError::io(format!("writing {}", dir.display()), e))
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ChaosError> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other);
    text.and_then(|t| std::fs::write(path, t))
        .map_err(|e| ChaosError::io(format!("writing {}", path.display()), e))
}

/// Watches the run: prints the progress line, notices nodes that exit on their own,
/// waits for the drain.
struct Progress {
    show: bool,
    tty: bool,
    start: Instant,
    total: Duration,
    jobs: u64,
    attempts: Attempts,
    faults: usize,
    last_print: Option<Instant>,
    /// Nodes that exited without being killed.
    exits: Vec<String>,
}

impl Progress {
    fn new(opts: &Options, start: Instant, attempts: Attempts) -> Self {
        Self {
            show: opts.progress,
            tty: std::io::stderr().is_terminal(),
            start,
            total: opts.duration,
            jobs: opts.jobs,
            attempts,
            faults: 0,
            last_print: None,
            exits: Vec::new(),
        }
    }

    /// Ticks until `deadline`.
    async fn wait_until(
        &mut self,
        deadline: Instant,
        cluster: &mut Cluster,
        store: &dyn Store,
    ) -> Result<(), ChaosError> {
        loop {
            self.tick(cluster, store, POLL_DEADLINE).await?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(250))).await;
        }
    }

    /// Polls the store (another process writes it: nothing to await) until no job is
    /// left to run, or the deadline; what is left then is reported lost.
    async fn drain(&mut self, cluster: &mut Cluster, store: &dyn Store) -> Result<(), ChaosError> {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        loop {
            if self.tick(cluster, store, DRAIN_POLL_DEADLINE).await? == 0
                || Instant::now() > deadline
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Notes exits, prints, and returns how many jobs are still to run.
    async fn tick(
        &mut self,
        cluster: &mut Cluster,
        store: &dyn Store,
        poll_deadline: Duration,
    ) -> Result<u64, ChaosError> {
        for i in cluster.crashed() {
            self.exits.push(format!(
                "{} exited on its own at +{:.1}s (see {})",
                cluster.nodes[i].name,
                self.start.elapsed().as_secs_f64(),
                cluster.nodes[i].log.display()
            ));
        }
        // Another process owns the store's state: a failed or slow poll (an outage
        // is a scheduled fault) counts as "not drained yet".
        let counts = match tokio::time::timeout(poll_deadline, store.counts()).await {
            Ok(Ok(counts)) => counts,
            Ok(Err(_)) | Err(_) => return Ok(u64::MAX),
        };
        let (mut active, mut done) = (0, 0);
        for (state, n) in counts.values().flat_map(|by| by.iter()) {
            match state {
                JobState::Succeeded | JobState::Discarded | JobState::Cancelled => done += n,
                _ => active += n,
            }
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        if self.show && self.last_print.is_none_or(|t| t.elapsed() >= every) {
            self.last_print = Some(Instant::now());
            let submitted = self.attempts.lock().expect("attempts lock").len() as u64;
            let line = report::Progress {
                elapsed: self.start.elapsed(),
                total: self.total,
                submitted,
                jobs: self.jobs,
                finished: done,
                up: cluster.running().len(),
                nodes: cluster.nodes.len(),
                faults: self.faults,
            }
            .line();
            let mut err = std::io::stderr().lock();
            let _ = if self.tty {
                write!(err, "\r{line}\x1b[K")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
        }
        Ok(active)
    }

    fn finish(&self) {
        if self.show && self.tty {
            eprintln!();
        }
    }
}
