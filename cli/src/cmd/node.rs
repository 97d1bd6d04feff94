//! `jobmesh node`: run a node until Ctrl-C / SIGTERM (or until idle).

use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::SystemClock;
use jobmesh::config::Config;
use jobmesh::job::{JobState, NodeId};
use jobmesh::store::Store;
use jobmesh_actors::{Node, NodeOptions};
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
    config
        .validate()
        .map_err(|m| anyhow::anyhow!("invalid options: {m}"))?;
    let registry = setup::registry(&config)?;
    let store = setup::open_store(&config).await?;
    let node_id = NodeId(config.node.name.clone());
    let node = Node::start(NodeOptions {
        node_id: node_id.clone(),
        workers: config.workers.clone(),
        retry: config.retry.clone(),
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
    })
    .await?;
    let where_ = match config.store.backend {
        jobmesh::config::Backend::Sqlite => format!("sqlite {}", config.sqlite_path().display()),
        other => format!("{other:?}"),
    };
    println!(
        "jobmesh node `{node_id}` running on {where_} with {} workers on queues [{}]; Ctrl-C to stop",
        config.workers.concurrency,
        config.workers.queues.join(", ")
    );
    if args.exit_when_idle {
        tokio::select! {
            r = wait_idle(&node, &*store) => r?,
            why = node.failed() => return fail(node, why).await,
        }
        println!("no jobs left to run; stopping");
    } else {
        tokio::select! {
            _ = wait_for_signal() => {}
            why = node.failed() => return fail(node, why).await,
        }
        println!("stopping: waiting up to {SHUTDOWN_GRACE:?} for running jobs");
    }
    node.shutdown(SHUTDOWN_GRACE).await?;
    Ok(())
}

/// Flushes what a failed node's writers hold, then reports the failure.
async fn fail(node: Node, why: String) -> anyhow::Result<()> {
    node.shutdown(SHUTDOWN_GRACE).await?;
    anyhow::bail!("node failed: {why}")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Returns once no job is available, running, scheduled or retryable.
async fn wait_idle(node: &Node, store: &dyn Store) -> anyhow::Result<()> {
    let mut events = node.subscribe();
    loop {
        let counts = store.counts().await?;
        let active: u64 = counts
            .values()
            .flat_map(|by_state| by_state.iter())
            .filter(|(s, _)| {
                matches!(
                    s,
                    JobState::Available
                        | JobState::Running
                        | JobState::Scheduled
                        | JobState::Retryable
                )
            })
            .map(|(_, n)| n)
            .sum();
        if active == 0 {
            return Ok(());
        }
        tokio::select! {
            r = events.recv() => if let Err(RecvError::Closed) = r { anyhow::bail!("node stopped unexpectedly") },
            _ = tokio::time::sleep(IDLE_CHECK) => {}
        }
    }
}
