//! `jobmesh node`: run a node until Ctrl-C / SIGTERM (or until idle).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::{Job, JobState, NodeId};
use jobmesh::store::{After, JobFilter, Store};
use jobmesh_actors::mesh::load_or_create_keypair;
use jobmesh_actors::{MeshOptions, Node, NodeOptions};
use tokio::sync::broadcast::error::RecvError;

use crate::args::NodeArgs;
use crate::setup;

/// How long running jobs may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often `--exit-when-idle` re-checks counts when no event arrived.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// Runs the verb.
pub async fn run(mut config: Config, args: NodeArgs) -> anyhow::Result<()> {
    if let Some(c) = args.concurrency {
        config.workers.concurrency = c;
    }
    if !args.queues.is_empty() {
        config.workers.queues = args.queues.clone();
    }
    if !args.listen.is_empty() {
        config.mesh.listen = args.listen.clone();
    }
    config.mesh.join.extend(args.join.iter().cloned());
    config.mesh.enabled |= !args.listen.is_empty() || !args.join.is_empty();
    if let Some(addr) = &args.api {
        config.api.listen = Some(*addr);
    }
    config
        .validate()
        .map_err(|m| anyhow::anyhow!("invalid options: {m}"))?;
    let chaos = crate::cmd::chaos::node_control(args.chaos_control.clone())?;
    anyhow::ensure!(
        args.chaos_control.is_none() || config.mesh.enabled,
        "--chaos-control injects mesh faults: it needs --listen/--join (or mesh.enabled)"
    );
    let registry = config.registry()?;
    let store = setup::open_store(&config).await?;
    let options = NodeOptions::from_config(
        &config,
        store.clone(),
        registry.clone(),
        Arc::new(SystemClock),
    );
    let node = if config.mesh.enabled {
        let node = chaos.start_meshed(options, mesh_options(&config)?).await?;
        let client = node.mesh().expect("meshed node");
        say(format_args!("peer id {}", client.local_peer_id()));
        for addr in client.listen_addrs().await? {
            say(format_args!("listening on {addr}"));
        }
        node
    } else {
        Node::start(options).await?
    };
    // Checked at load already; checked again against the node's registry. A config
    // without `[[periodic]]` leaves the store's config schedules alone (a worker-only
    // node must not retire another node's schedules).
    // The store holds the limits every claimer enforces; a config with `[[limit]]`
    // replaces them. A config without any leaves them alone (a worker-only node must not
    // lift the limits another node set; `jobmesh limits` shows and clears them).
    if !config.limit.is_empty() {
        if let Err(e) = node.set_limits(config.limits()).await {
            node.shutdown(SHUTDOWN_GRACE).await?;
            return Err(e.into());
        }
        say(format_args!(
            "{} limits in force on every node (see `jobmesh limits`)",
            config.limit.len()
        ));
    }
    // The queues' wait SLOs: breach warnings and admission control (README
    // "Predictors at run time").
    if !config.queues.is_empty()
        && let Err(e) = node.set_queue_policies(config.queues.clone())
    {
        node.shutdown(SHUTDOWN_GRACE).await?;
        return Err(e.into());
    }
    if !config.periodic.is_empty() {
        if let Err(e) = node.set_periodic(config.periodic_jobs()).await {
            node.shutdown(SHUTDOWN_GRACE).await?;
            return Err(e.into());
        }
        say(format_args!(
            "{} periodic schedules: enqueued by whichever node holds the `periodic` lease",
            config.periodic.len()
        ));
    }
    let api = match start_api(&config, &node, registry).await {
        Ok(api) => api,
        Err(e) => {
            node.shutdown(SHUTDOWN_GRACE).await?;
            return Err(e);
        }
    };
    let _status_writer = config
        .mesh
        .enabled
        .then(|| write_mesh_status(&node, config.mesh_status_path()));
    let node_id = node.id().clone();
    let where_ = match config.store.backend {
        jobmesh::config::Backend::Sqlite => format!("sqlite {}", config.sqlite_path().display()),
        other => format!("{other:?}"),
    };
    let mut stop = match StopSignal::listen() {
        Ok(stop) => stop,
        Err(e) => {
            stop_api(api).await;
            node.shutdown(SHUTDOWN_GRACE).await?;
            return Err(e);
        }
    };
    say(format_args!(
        "jobmesh node `{node_id}` running on {where_} with {} workers on queues [{}]; Ctrl-C to stop",
        config.workers.concurrency,
        config.workers.queues.join(", ")
    ));
    if args.exit_when_idle {
        tokio::select! {
            r = wait_idle(&node, &*store, &config.workers.queues, &node_id) => {
                r?;
                say(format_args!("no jobs left to run; stopping"));
            }
            _ = stop.wait() => say(format_args!(
                "stopping before the queues ran dry: waiting up to {SHUTDOWN_GRACE:?} for running jobs"
            )),
            why = node.failed() => return fail(node, api, why).await,
        }
    } else {
        tokio::select! {
            _ = stop.wait() => {}
            why = node.failed() => return fail(node, api, why).await,
        }
        say(format_args!(
            "stopping: waiting up to {SHUTDOWN_GRACE:?} for running jobs"
        ));
    }
    // The handlers stay installed: a second Ctrl-C (or SIGTERM) while the node shuts
    // down stops the process at once, as an operator who presses it twice means.
    tokio::select! {
        r = async {
            stop_api(api).await;
            node.shutdown(SHUTDOWN_GRACE).await
        } => r?,
        _ = stop.wait() => {
            say(format_args!("stopped again: exiting without waiting for running jobs (their leases lapse and they run again)"));
            std::process::exit(130);
        }
    }
    Ok(())
}

/// Starts the HTTP API when `api.listen` is set, fed the node's own events as hints
/// for its event streams and, in a mesh, the node's view of the mesh.
async fn start_api(
    config: &Config,
    node: &Node,
    registry: jobmesh::handler::Registry,
) -> anyhow::Result<Option<jobmesh_api::ApiServer>> {
    if config.api.listen.is_none() {
        return Ok(None);
    }
    let hint = Arc::new(tokio::sync::Notify::new());
    let mut events = node.subscribe();
    let wake = hint.clone();
    tokio::spawn(async move {
        while !matches!(events.recv().await, Err(RecvError::Closed)) {
            wake.notify_waiters();
        }
    });
    // A node in a mesh serves its view of it, as `mesh peers` shows it.
    let mesh = node.mesh().is_some().then(|| {
        let status = node.mesh_status_source();
        let source: jobmesh_api::views::MeshSource =
            Arc::new(move || status().map(crate::cmd::mesh::api_view));
        source
    });
    let admission: jobmesh_api::state::Admission = Arc::new(node.admission());
    let extras = jobmesh_api::Extras {
        events_hint: Some(hint),
        mesh,
        admission: Some(admission),
    };
    let server = jobmesh_api::ApiServer::start_in_node(
        node.store().clone(),
        Arc::new(registry),
        config.api.clone(),
        extras,
        node.metrics(),
    )
    .await
    .context("starting the API")?;
    say(format_args!(
        "API on http://{addr}/api/v1, dashboard on http://{addr}/",
        addr = server.local_addr()
    ));
    crate::first_token::offer_on_stdout(&**node.store()).await?;
    Ok(Some(server))
}

/// Stops the API first: requests in flight finish while the store is still open.
async fn stop_api(api: Option<jobmesh_api::ApiServer>) {
    if let Some(api) = api {
        api.shutdown(crate::cmd::api::API_GRACE).await;
    }
}

/// One status line on stdout. A closed stdout (`jobmesh node | head -1`) is ignored:
/// the node's work is running jobs, and it must still shut down cleanly.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = crate::output::outln!("{line}");
}

/// The mesh settings from the config (see [`MeshOptions::from_config`]); the node key
/// and the join certificate are read here.
fn mesh_options(config: &Config) -> anyhow::Result<MeshOptions> {
    let key_path = config.key_path();
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let keypair = load_or_create_keypair(&key_path)
        .with_context(|| format!("node key {}", key_path.display()))?;
    let certificate = match &config.mesh.join_certificate {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading join certificate {}", path.display()))?,
        ),
        None => None,
    };
    Ok(MeshOptions::from_config(
        config,
        keypair,
        certificate.as_deref(),
        rand_seed(),
    )?)
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id())
}

/// Writes the node's view of the mesh for `jobmesh mesh peers` every second.
fn write_mesh_status(node: &Node, path: std::path::PathBuf) -> tokio::task::JoinHandle<()> {
    let status = node.mesh_status_source();
    tokio::spawn(async move {
        loop {
            if let Some(s) = status() {
                let tmp = path.with_extension("json.tmp");
                if let Ok(text) = serde_json::to_string_pretty(&s)
                    && std::fs::write(&tmp, text).is_ok()
                {
                    let _ = std::fs::rename(&tmp, &path);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Flushes what a failed node's writers hold, then reports the failure.
async fn fail(node: Node, api: Option<jobmesh_api::ApiServer>, why: String) -> anyhow::Result<()> {
    stop_api(api).await;
    node.shutdown(SHUTDOWN_GRACE).await?;
    anyhow::bail!("node failed: {why}")
}

/// Ctrl-C and SIGTERM, caught from the moment [`StopSignal::listen`] returns: a node
/// listens before it prints "Ctrl-C to stop", so a signal sent on reading that line is
/// never lost to the default action (which would kill the node without its shutdown).
pub(crate) struct StopSignal {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    /// Installs the handlers now.
    pub(crate) fn listen() -> anyhow::Result<StopSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignal {
                int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
                term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignal {})
    }

    /// Resolves at the next Ctrl-C or SIGTERM.
    pub(crate) async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A retry due within this long still keeps `--exit-when-idle` up: it is this node's
/// work in progress (a failed attempt backing off), not work planned for later.
const RETRY_HORIZON: Duration = Duration::from_secs(60);

/// Returns once no job on `queues` can run now (see [`busy`]), seen by two checks in a
/// row. One check reads the store in several statements, so a job that moves between
/// them (a failed attempt becoming a retry, a retry promoted) can be missed by all of
/// them; the transition's event, or the next tick for a promotion, brings a second
/// check that sees where it went.
async fn wait_idle(
    node: &Node,
    store: &dyn Store,
    queues: &[String],
    me: &NodeId,
) -> anyhow::Result<()> {
    let mut events = node.subscribe();
    let mut idle_once = false;
    loop {
        let idle = !busy(store, queues, me, SystemClock.now()).await?;
        if idle && idle_once {
            return Ok(());
        }
        idle_once = idle;
        tokio::select! {
            r = events.recv() => if let Err(RecvError::Closed) = r { anyhow::bail!("node stopped unexpectedly") },
            _ = tokio::time::sleep(IDLE_CHECK) => {}
        }
    }
}

/// Whether a job on `queues` can run now: one is available; one runs under this
/// node's lease, or under an expired lease that a rescue will hand back; a delayed
/// job is due; a retry is due within [`RETRY_HORIZON`]. Jobs delayed further, waiting
/// on parents, running on other live nodes, on other queues, or waiting on a paused
/// queue (no node claims them until it is resumed) do not count.
async fn busy(
    store: &dyn Store,
    queues: &[String],
    me: &NodeId,
    now: Millis,
) -> anyhow::Result<bool> {
    let counts = store.counts().await?;
    let paused: Vec<String> = store
        .paused_queues()
        .await?
        .into_iter()
        .map(|p| p.queue)
        .collect();
    let open = |q: &String| !paused.contains(q);
    let count = |q: &String, s: JobState| {
        counts
            .get(q)
            .and_then(|by_state| by_state.get(&s))
            .copied()
            .unwrap_or(0)
    };
    if queues
        .iter()
        .any(|q| open(q) && count(q, JobState::Available) > 0)
    {
        return Ok(true);
    }
    let mine =
        |j: &Job| j.lease_node.as_ref() == Some(me) || j.lease_expires_at.is_none_or(|t| t <= now);
    let retry_until = now.plus(RETRY_HORIZON);
    // The store's earliest scheduled/retryable time, over all queues: when nothing is
    // due soon, the (possibly many) delayed jobs need not be listed.
    let due_soon = store.next_due().await?.is_some_and(|t| t <= retry_until);
    for q in queues {
        if count(q, JobState::Running) > 0 && any_job(store, q, JobState::Running, &mine).await? {
            return Ok(true);
        }
        if !open(q) {
            continue;
        }
        if due_soon
            && count(q, JobState::Scheduled) > 0
            && any_job(store, q, JobState::Scheduled, &|j| j.run_at <= now).await?
        {
            return Ok(true);
        }
        if due_soon
            && count(q, JobState::Retryable) > 0
            && any_job(store, q, JobState::Retryable, &|j| j.run_at <= retry_until).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a job of `queue` in `state` matches `pred`, paging through them by id.
async fn any_job(
    store: &dyn Store,
    queue: &str,
    state: JobState,
    pred: &dyn Fn(&Job) -> bool,
) -> anyhow::Result<bool> {
    const PAGE: u32 = 1000;
    let mut filter = JobFilter {
        states: vec![state],
        queues: vec![queue.to_string()],
        limit: PAGE,
        ..JobFilter::default()
    };
    loop {
        let page = store.list_jobs(&filter).await?;
        if page.iter().any(pred) {
            return Ok(true);
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => filter.after = Some(After::Id(last.id)),
            _ => return Ok(false),
        }
    }
}
