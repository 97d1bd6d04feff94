//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jobmesh::job::JobState;
use jobmesh_actors::mesh::Multiaddr;

/// jobmesh: a runtime for background jobs. Nodes claim jobs from a shared store
/// (embedded SQLite, Postgres, or Postgres with Redis), run them with retries, a
/// dead-letter queue and workflows, and (with --listen/--join) watch each other as a
/// Byzantine-tolerant mesh.
#[derive(Debug, Parser)]
#[command(
    name = "jobmesh",
    version,
    propagate_version = true,
    after_help = "Start here:\n  \
        jobmesh node                              run a node on ./data/jobmesh.db (Ctrl-C stops it)\n  \
        jobmesh submit sleep '{\"ms\": 200}'        submit a job (from another terminal)\n  \
        jobmesh jobs list                         see what ran\n  \
        jobmesh dlq list                          jobs that ran out of attempts\n  \
        jobmesh events --follow                   watch lifecycle events\n\n\
        `jobmesh help VERB` shows a verb's options."
)]
pub struct Cli {
    /// Config file (TOML). Without one, built-in defaults apply; JOBMESH__SECTION__KEY
    /// environment variables override either.
    #[arg(long, short, global = true, env = "JOBMESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables: times as milliseconds since the
    /// Unix epoch, durations as milliseconds (`timeout_ms`); `events` prints JSON lines
    /// (one event per line). `node` refuses it; `bench` always prints JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Start a node: workers, scheduler and (with --listen) the mesh.
    Node(NodeArgs),
    /// Submit one job (or --count copies, or a workflow file).
    Submit(SubmitArgs),
    /// Inspect and cancel jobs.
    #[command(subcommand)]
    Jobs(JobsVerb),
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqVerb),
    /// Queues: list them with counts, pause and resume them.
    #[command(subcommand)]
    Queue(QueueVerb),
    /// Periodic schedules (`[[periodic]]` and the API's): list with next run times,
    /// pause, resume, trigger, delete.
    #[command(subcommand)]
    Periodic(PeriodicVerb),
    /// Cluster-wide limits in force (`[[limit]]`, as the store holds them) and what
    /// runs under each, per key.
    Limits,
    /// Print lifecycle events (with --json: JSON lines); --follow keeps watching.
    Events(EventsArgs),
    /// Benchmark: enqueue and drain no-op jobs on the configured store.
    Bench(BenchArgs),
    /// Draw curves (SVG) from the JSON lines of `bench --out`.
    Plot(PlotArgs),
    /// The mesh: this node's identity, the members a running node sees.
    #[command(subcommand)]
    Mesh(MeshVerb),
    /// Chaos: run a real local cluster under a workload and injected faults, then check
    /// that no job was lost or recorded twice (`jobmesh chaos list` shows the scenarios).
    Chaos(ChaosArgs),
    /// Serve the HTTP API (`[api]` settings) without running workers.
    Api(ApiArgs),
    /// HTTP API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenVerb),
    /// The audit log of operator actions (API and CLI), newest first.
    Audit(AuditArgs),
    /// Traces (one JSON line per attempt): generate seeded synthetic ones, or export
    /// what the configured store recorded.
    #[command(subcommand)]
    Trace(TraceVerb),
    /// The predictors: evaluate them against their baselines on a trace, or show the
    /// live predictions the nodes saved.
    #[command(subcommand)]
    Predict(PredictVerb),
}

/// `jobmesh trace ...`
#[derive(Debug, Subcommand)]
pub enum TraceVerb {
    /// Write a seeded synthetic trace (stable, bimodal, heavy-tailed and drifting
    /// durations, a ten-minute dependency outage, permanent failures, daily cycles and
    /// bursts, nodes that degrade before they die).
    Generate {
        /// Seed (the same seed gives the same trace).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated time (at most 14 days).
        #[arg(long, default_value = "4h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Period of the arrival cycle (a compressed day).
        #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
        cycle: Duration,
        /// Nodes of the simulated cluster (4-1000).
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Where to write the trace (refuses to overwrite an existing file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the configured store's jobs as a trace (oldest jobs first).
    Export {
        /// Where to write the trace (refuses to overwrite an existing file).
        #[arg(long)]
        out: PathBuf,
        /// Only jobs created at or after this time (RFC 3339, e.g. 2026-01-01T00:00:00Z).
        #[arg(long, value_parser = parse_time)]
        since: Option<jobmesh::clock::Millis>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 1_000_000)]
        max_jobs: usize,
    },
}

/// `jobmesh predict ...`
#[derive(Debug, Subcommand)]
pub enum PredictVerb {
    /// Replay a trace in time order (models learn only from the past) and print each
    /// predictor's metrics next to its baselines, with the winner.
    Eval {
        /// The trace (JSON lines, see README "Predictors").
        #[arg(long)]
        trace: PathBuf,
        /// Share of the trace's time span used only for learning (0.05-0.95).
        #[arg(long, default_value_t = 0.7)]
        split: f64,
        /// The wait SLO of every queue, for congestion alarms.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        slo: Duration,
        /// Length of the arrivals' cycle for the congestion model to learn (off unless
        /// given, as on a live node): a day for a store's export, the `--cycle` of a
        /// generated trace (the file does not say it).
        #[arg(long, value_parser = humantime::parse_duration)]
        season: Option<Duration>,
        /// Also write an SVG of predicted against actual here.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// The live predictions of every node, from the models they saved in the configured
    /// store (every minute and at shutdown): durations per kind and queue, failure
    /// score per node, retry success and budget per kind, predicted wait per queue.
    Show {
        /// The wait SLO the breach probabilities are about.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        slo: Duration,
    },
}

/// `jobmesh audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this action (cancel, retry, redrive, delete, pause, resume, token.create,
    /// token.revoke, periodic.create, periodic.pause, periodic.resume, periodic.delete,
    /// periodic.trigger).
    #[arg(long)]
    pub action: Option<jobmesh::store::audit::AuditAction>,
    /// Only this actor: a token's name, or `cli@user@host`.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only rows older than this audit id (the last id of the previous page).
    #[arg(long)]
    pub before: Option<i64>,
    /// At most this many rows (1-1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `jobmesh api`
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to serve on (overrides api.listen; default 127.0.0.1:7780).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// `jobmesh token ...`
#[derive(Debug, Subcommand)]
pub enum TokenVerb {
    /// Create a token and print it (once: the store keeps only its hash).
    Create {
        /// What it may do: read, enqueue, operate (includes read), admin (everything);
        /// repeatable or comma-separated.
        #[arg(long, required = true, value_delimiter = ',')]
        scope: Vec<jobmesh::store::tokens::Scope>,
        /// Limit it to these queues (repeatable or comma-separated; default: all).
        #[arg(long, value_delimiter = ',')]
        queue: Vec<String>,
        /// Who holds it (shown by `token list`).
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token: requests with it are refused from now on.
    Revoke {
        /// Token id (from `token list`).
        id: i64,
    },
}

/// `jobmesh chaos`: `run` and `list`, or the short forms `jobmesh chaos --scenario ...`
/// and `jobmesh chaos --list`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChaosArgs {
    /// Run or list.
    #[command(subcommand)]
    pub verb: Option<ChaosVerb>,
    /// List the scenarios (same as `jobmesh chaos list`).
    #[arg(long, conflicts_with = "scenario")]
    pub list: bool,
    /// The run options (same as `jobmesh chaos run`).
    #[command(flatten)]
    pub run: ChaosRunArgs,
}

/// `jobmesh chaos ...`
#[derive(Debug, Subcommand)]
pub enum ChaosVerb {
    /// Run one scenario.
    Run(ChaosRunArgs),
    /// List the scenarios.
    List,
}

/// `jobmesh chaos run`
#[derive(Debug, Args)]
pub struct ChaosRunArgs {
    /// Scenario (`jobmesh chaos list` shows them).
    #[arg(long, short)]
    pub scenario: Option<String>,
    /// Nodes in the cluster (f = (nodes - 1) / 3 Byzantine members are tolerated).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Byzantine members (default: f for the Byzantine scenarios, else 0).
    #[arg(long)]
    pub byzantine: Option<usize>,
    /// Jobs the workload submits at a steady rate over the run.
    #[arg(long, default_value_t = 300)]
    pub jobs: u64,
    /// Seed of the fault schedule and the job mix (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Length of the fault phase (faults in the first 70%, heal at 75%).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Directory for the cluster's files and the reports (default
    /// `chaos-runs/<scenario>-n<nodes>-s<seed>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Self-test of the checker: delete one acknowledged job from the store behind
    /// the cluster's back; the run must then fail.
    #[arg(long, hide = true)]
    pub sabotage_lose_job: bool,
    /// Submit `http` jobs that POST `{"ms": n}` to this loopback URL instead of
    /// `sleep` jobs: a receiver that applies each effect once (README "Fencing").
    #[arg(long, value_name = "URL")]
    pub http_receiver: Option<String>,
}

/// `jobmesh mesh ...`
#[derive(Debug, Subcommand)]
pub enum MeshVerb {
    /// Print this node's peer id (creating its key file if needed), for `mesh.members`.
    Id,
    /// Members as the running node sees them: state, incarnation, phi, evictions.
    Peers,
    /// Create a cluster key (ed25519) that signs join certificates, and print its id
    /// for `mesh.cluster_key`. Refuses to overwrite an existing file.
    ClusterKey {
        /// Where to write the key (keep it secret; only the issuer needs it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a join certificate admitting a peer id (printed by `jobmesh mesh id` on the
    /// joiner) and write it for the joiner's `mesh.join_certificate`.
    IssueJoin {
        /// The cluster key file (`jobmesh mesh cluster-key --out ...`).
        #[arg(long)]
        cluster_key_file: PathBuf,
        /// The peer id to admit.
        #[arg(long)]
        peer: String,
        /// How long the certificate admits, e.g. 30d, 12h, 90m.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        valid_for: Duration,
        /// Where to write the certificate (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `jobmesh node`
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Worker actors (overrides workers.concurrency).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Queues to work (comma-separated; overrides workers.queues).
    #[arg(long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Exit once no job on this node's queues can run now: none available, none due,
    /// none running here, no retry due within a minute. Jobs delayed into the future,
    /// waiting on parents, or on other queues do not keep it up.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Join the mesh listening on this multiaddr (repeatable; overrides mesh.listen).
    #[arg(long, value_name = "MULTIADDR", value_parser = jobmesh::config::parse_multiaddr)]
    pub listen: Vec<Multiaddr>,
    /// Join the mesh through this member's multiaddr (repeatable; adds to mesh.join).
    #[arg(long, value_name = "MULTIADDR", value_parser = jobmesh::config::parse_multiaddr)]
    pub join: Vec<Multiaddr>,
    /// Serve the HTTP API on this address too (overrides api.listen), e.g. 127.0.0.1:7780.
    #[arg(long, value_name = "ADDR")]
    pub api: Option<std::net::SocketAddr>,
    /// Chaos runs: watch this JSON file for injected faults (drop_from, delay_ms, loss,
    /// byzantine); see `jobmesh chaos`. Never use in production.
    #[arg(long)]
    pub chaos_control: Option<PathBuf>,
}

/// `jobmesh submit`
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Job kind (`noop`, `sleep`, `fail`, `panic`, `exec`, `http`, ...). Not used with --workflow.
    #[arg(required_unless_present = "workflow")]
    pub kind: Option<String>,
    /// JSON payload (default `{}`); `-` reads it from stdin.
    pub payload: Option<String>,
    /// Queue.
    #[arg(long, short, default_value = jobmesh::job::DEFAULT_QUEUE)]
    pub queue: String,
    /// Priority, -100..=100; higher runs first.
    #[arg(long, short, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i16,
    /// Run no earlier than this long from now (e.g. `30s`, `5m`; at most 10 years).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Attempts before the job is dead-lettered.
    #[arg(long, default_value_t = jobmesh::job::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Timeout of each attempt (e.g. `30s`; at most 10 years).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// At most one unfinished job with this key.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// Run only after these jobs succeeded (repeatable).
    #[arg(long = "after", value_name = "JOB_ID")]
    pub after: Vec<i64>,
    /// Keep waiting (instead of being discarded) if a parent is dead-lettered.
    #[arg(long)]
    pub hold_on_parent_failure: bool,
    /// Submit this many copies. They are streamed to the store in transactions of 1000
    /// (memory stays flat for any N): each batch is stored whole or not at all, the set
    /// is not one transaction. Whatever happens (done, a failed batch, Ctrl-C), it
    /// prints how many were stored and their id range.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Submit a workflow (TOML file of named steps with `after` lists) instead of one job.
    #[arg(long, conflicts_with_all = ["kind", "payload", "count"])]
    pub workflow: Option<PathBuf>,
}

/// Which jobs: every flag given must hold (`jobs list`, and the bulk verbs without ids).
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only these states (repeatable or comma-separated).
    #[arg(long, short, value_delimiter = ',')]
    pub state: Vec<JobState>,
    /// Only these queues (repeatable).
    #[arg(long, short)]
    pub queue: Vec<String>,
    /// Only this kind.
    #[arg(long, short)]
    pub kind: Option<String>,
    /// Only priorities at or above this.
    #[arg(long, allow_hyphen_values = true)]
    pub priority_min: Option<i16>,
    /// Only priorities at or below this.
    #[arg(long, allow_hyphen_values = true)]
    pub priority_max: Option<i16>,
    /// Only jobs enqueued at or after this time (RFC 3339, e.g. 2026-12-06T09:00:00Z,
    /// or ms since the Unix epoch).
    #[arg(long, value_parser = parse_time)]
    pub created_from: Option<jobmesh::clock::Millis>,
    /// Only jobs enqueued before this time.
    #[arg(long, value_parser = parse_time)]
    pub created_to: Option<jobmesh::clock::Millis>,
    /// Only jobs finished at or after this time.
    #[arg(long, value_parser = parse_time)]
    pub finished_from: Option<jobmesh::clock::Millis>,
    /// Only jobs finished before this time.
    #[arg(long, value_parser = parse_time)]
    pub finished_to: Option<jobmesh::clock::Millis>,
    /// Only jobs whose payload holds a value: '$.customer.id == "42"' (dotted keys; a
    /// JSON string, number, true, false or null).
    #[arg(long, value_name = "MATCH")]
    pub payload: Option<String>,
}

impl FilterArgs {
    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
            && self.queue.is_empty()
            && self.kind.is_none()
            && self.priority_min.is_none()
            && self.priority_max.is_none()
            && self.created_from.is_none()
            && self.created_to.is_none()
            && self.finished_from.is_none()
            && self.finished_to.is_none()
            && self.payload.is_none()
    }
}

/// A time as RFC 3339 or as milliseconds since the Unix epoch.
fn parse_time(text: &str) -> Result<jobmesh::clock::Millis, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(jobmesh::clock::Millis(ms));
    }
    let t = humantime::parse_rfc3339_weak(text).map_err(|e| {
        format!("expected RFC 3339 (2026-12-06T09:00:00Z) or ms since the epoch: {e}")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970".to_string())?
        .as_millis();
    i64::try_from(ms)
        .map(jobmesh::clock::Millis)
        .map_err(|_| "too far in the future".to_string())
}

/// The jobs a bulk verb acts on: ids, or every job matching the filter flags.
#[derive(Debug, Clone, Args)]
pub struct BulkArgs {
    /// These jobs (without ids: every job matching the filter flags).
    pub ids: Vec<i64>,
    /// Which jobs, without ids.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// With no ids and no filter flag: every job (the action's own states still apply).
    #[arg(long)]
    pub all: bool,
}

/// `jobmesh jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsVerb {
    /// List jobs matching the filter flags, a page at a time by id, or by finish time
    /// then id with --finished-from/--finished-to (keyset: pass the printed cursor to
    /// --cursor for the next page).
    List {
        /// Which jobs.
        #[command(flatten)]
        filter: FilterArgs,
        /// Newest first (the last enqueued, or the last finished with a finished range).
        #[arg(long)]
        desc: bool,
        /// Start after this page (the cursor printed with the previous one).
        #[arg(long)]
        cursor: Option<String>,
        /// At most this many (1..=1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one job.
    Show {
        /// Job id.
        id: i64,
    },
    /// Cancel unfinished jobs, by ids or by filter (every match, in transactions of
    /// 1000 jobs); a running attempt loses its lease.
    Cancel(BulkArgs),
    /// Retry scheduled and retryable jobs now, by ids or by filter (discarded jobs are
    /// redriven instead, cancelled ones stay cancelled).
    Retry(BulkArgs),
    /// Send discarded jobs back with fresh attempts, by ids or by filter.
    Redrive(BulkArgs),
    /// Delete finished jobs (succeeded, discarded, cancelled) with their attempts,
    /// links and events, by ids or by filter.
    Delete(BulkArgs),
    /// Counts by queue and state.
    Stats,
}

/// `jobmesh dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqVerb {
    /// List dead-lettered jobs.
    List {
        /// Only this queue.
        #[arg(long, short)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send dead-lettered jobs back to their queues with fresh attempts.
    Redrive {
        /// These jobs.
        ids: Vec<i64>,
        /// Every dead-lettered job.
        #[arg(long, conflicts_with_all = ["ids", "queue"])]
        all: bool,
        /// Every dead-lettered job of this queue.
        #[arg(long, short, conflicts_with = "ids")]
        queue: Option<String>,
    },
}

/// `jobmesh queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueVerb {
    /// Pause a queue: no node claims from it until it is resumed; enqueues still
    /// succeed and jobs already running finish. Kept in the store, so it survives restarts.
    Pause {
        /// The queue.
        name: String,
    },
    /// Resume a paused queue; waiting nodes claim from it at once.
    Resume {
        /// The queue.
        name: String,
    },
    /// Queues with their job counts by state and whether each is paused.
    List,
}

/// `jobmesh periodic ...`
#[derive(Debug, Subcommand)]
pub enum PeriodicVerb {
    /// The store's schedules (from configs and the API) and this config's not yet
    /// stored, with the last tick the cluster handled (and its job) and the next run.
    List,
    /// Pause a schedule: no job for its ticks until it is resumed (kept in the store,
    /// for every node; recorded in the audit log).
    Pause {
        /// The schedule.
        name: String,
    },
    /// Resume a paused schedule; the ticks of the pause are passed over.
    Resume {
        /// The schedule.
        name: String,
    },
    /// Enqueue one job of the schedule now, outside its ticks.
    Trigger {
        /// The schedule.
        name: String,
    },
    /// Delete a schedule (its jobs stay). One declared in a config is deleted only
    /// when this config no longer declares it.
    Delete {
        /// The schedule.
        name: String,
    },
}

/// `jobmesh events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep watching for new events.
    #[arg(long, short)]
    pub follow: bool,
    /// Start after this sequence number (default: the last 20 events).
    #[arg(long)]
    pub after: Option<i64>,
}

/// `jobmesh bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Jobs to enqueue and drain.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u32,
    /// Worker actors.
    #[arg(long, default_value_t = 50)]
    pub concurrency: u32,
    /// Single jobs submitted one at a time afterwards to measure pickup latency.
    #[arg(long, default_value_t = 500)]
    pub latency_samples: u32,
    /// Use a fresh SQLite file in a temporary directory instead of the configured store.
    #[arg(long)]
    pub scratch: bool,
    /// Also enqueue through the HTTP API (served in this process on a loopback port):
    /// `--jobs` more in batches through `POST /api/v1/jobs/batch`, each followed by a
    /// batch of the same size straight to the store (the paired rate), then
    /// `--api-singles` one per `POST /api/v1/jobs`; all are drained with the rest.
    #[arg(long)]
    pub via_api: bool,
    /// With `--via-api`: jobs sent one per request.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub api_singles: u32,
    /// With `--via-api`: keep-alive connections sending the single requests at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub api_connections: u32,
    /// The payload of every drained job, a JSON object: `{}` by default; a payload with
    /// a few keys measures what indexing payloads costs an enqueue.
    #[arg(long, default_value = "{}", value_parser = BenchPayload)]
    pub payload: serde_json::Value,
    /// Encode the node's metrics this often during the drain, as a Prometheus scrape of
    /// `/metrics` would (100ms to 1h), to measure what scraping costs the drain.
    #[arg(long, value_name = "DURATION", value_parser = parse_scrape_every)]
    pub scrape_every: Option<Duration>,
    /// Spread the jobs over this many queues (all served by every bench node).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub queues: u32,
    /// Nodes started in this process on the one store, each with `--concurrency` workers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub nodes: u32,
    /// Finished jobs (with one execution each) written into the store before measuring,
    /// on a queue no bench node serves: the backlog cost curve.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub backlog_finished: u64,
    /// With `--backlog-finished`: also write three lifecycle events per finished job.
    #[arg(long, requires = "backlog_finished")]
    pub backlog_events: bool,
    /// Available jobs left waiting on a queue no bench node serves while measuring.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub backlog_available: u64,
    /// Open loop: offer this many jobs per second for `--duration` (instead of enqueueing
    /// `--jobs` and draining them), measuring every job's pickup.
    #[arg(long, requires = "duration", conflicts_with = "via_api",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: Option<u32>,
    /// With `--rate`: how long to offer the load (1s to 24h).
    #[arg(long, value_name = "DURATION", requires = "rate", value_parser = parse_bench_duration)]
    pub duration: Option<Duration>,
    /// With `--rate`: report pickup, throughput and memory per window of this length.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_bench_window)]
    pub window: Duration,
    /// Also append the JSON line to this file (the input of `jobmesh plot`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `jobmesh plot`
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// JSON-lines files (as `bench --out` writes them).
    #[arg(required = true, num_args = 1..=64)]
    pub files: Vec<PathBuf>,
    /// The field on the x axis: a dotted path (`backlog_finished`), or through an array
    /// (`windows[].t_s`).
    #[arg(long)]
    pub x: String,
    /// Fields on the y axis, one panel each (comma-separated or repeated).
    #[arg(long, required = true, value_delimiter = ',', num_args = 1..=16)]
    pub y: Vec<String>,
    /// One series per value of this field (e.g. `system`).
    #[arg(long)]
    pub series: Option<String>,
    /// Title put before each panel's field name.
    #[arg(long)]
    pub title: Option<String>,
    /// The SVG file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// `--duration`: 1 s to 24 h.
fn parse_bench_duration(text: &str) -> Result<Duration, String> {
    parse_duration_between(
        text,
        Duration::from_secs(1),
        Duration::from_secs(24 * 3600),
        "1s and 24h",
    )
}

/// `--window`: 1 s to 1 h.
fn parse_bench_window(text: &str) -> Result<Duration, String> {
    parse_duration_between(
        text,
        Duration::from_secs(1),
        Duration::from_secs(3600),
        "1s and 1h",
    )
}

fn parse_duration_between(
    text: &str,
    lo: Duration,
    hi: Duration,
    says: &str,
) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(lo..=hi).contains(&d) {
        return Err(format!("must be between {says}, got {text}"));
    }
    Ok(d)
}

/// Largest `bench --payload`, in bytes: every job of an enqueue batch (1000) holds a
/// copy, so 64 MB a batch; beyond that a bench measures the allocator rather than the
/// store. Below a job's own limit ([`jobmesh::payload::DEFAULT_MAX_PAYLOAD_BYTES`]),
/// and below what one argument of a command line may hold on Linux (128 KiB).
pub const MAX_BENCH_PAYLOAD_BYTES: usize = 64 * 1024;

/// `--payload`: a JSON object of at most [`MAX_BENCH_PAYLOAD_BYTES`] that a job's
/// payload may be (the default rules of a kind: nesting bounded, no NUL), so that the
/// bench never stores what an enqueue would refuse. Its size is checked before it is
/// parsed, and a refusal does not repeat the value (clap's own message would print
/// all of it).
#[derive(Debug, Clone, Copy)]
struct BenchPayload;

impl clap::builder::TypedValueParser for BenchPayload {
    type Value = serde_json::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<serde_json::Value, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--payload: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("is not valid UTF-8".into()))?;
        parse_bench_payload(text).map_err(refuse)
    }
}

/// The payload `text` holds, or why it cannot be a bench job's.
fn parse_bench_payload(text: &str) -> Result<serde_json::Value, String> {
    if text.len() > MAX_BENCH_PAYLOAD_BYTES {
        return Err(format!(
            "is {} bytes long; a bench payload is at most {MAX_BENCH_PAYLOAD_BYTES} bytes",
            text.len()
        ));
    }
    let v = jobmesh::payload::parse(text).map_err(|e| e.to_string())?;
    if !v.is_object() {
        return Err("must be a JSON object".into());
    }
    jobmesh::payload::PayloadRules::default()
        .validate(&v)
        .map_err(|e| e.to_string())?;
    Ok(v)
}

/// `--scrape-every`: a duration from 100 ms to an hour.
fn parse_scrape_every(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        return Err(format!("must be between 100ms and 1h, got {text}"));
    }
    Ok(d)
}
