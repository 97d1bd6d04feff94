//! `jobmesh api`: serve the HTTP API without workers, until Ctrl-C / SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jobmesh::config::Config;
use jobmesh_api::ApiServer;

use crate::args::ApiArgs;
use crate::setup;

/// Where `jobmesh api` listens when neither --listen nor api.listen says.
pub const DEFAULT_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 7780),
);
/// How long requests in flight may take to finish after a stop signal.
pub const API_GRACE: Duration = Duration::from_secs(5);

/// Runs the verb.
pub async fn run(mut config: Config, args: ApiArgs) -> anyhow::Result<()> {
    if let Some(l) = args.listen {
        config.api.listen = Some(l);
    }
    config.api.listen.get_or_insert(DEFAULT_LISTEN);
    config
        .validate()
        .map_err(|m| anyhow::anyhow!("invalid options: {m}"))?;
    let registry = Arc::new(config.registry()?);
    let store = setup::open_store(&config).await?;
    let server = ApiServer::start(store.clone(), registry, config.api.clone(), None)
        .await
        .context("starting the API")?;
    let mut stop = crate::cmd::node::StopSignal::listen()?;
    let _ = crate::output::outln!(
        "jobmesh API on http://{addr}/api/v1, dashboard on http://{addr}/ (no workers); Ctrl-C to stop",
        addr = server.local_addr()
    );
    crate::first_token::offer_on_stdout(&*store).await?;
    stop.wait().await;
    server.shutdown(API_GRACE).await;
    Ok(())
}
