//! Starting and stopping the server.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::config::ApiSection;
use jobmesh::handler::Registry;
use jobmesh::metrics::{MeteredStore, Metrics};
use jobmesh::store::{SharedStore, StoreError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::RateLimits;
use crate::coalesce::Coalescer;
use crate::state::AppState;
use crate::views::MeshSource;

/// How long an idempotent answer is kept.
pub const ANSWERS_KEPT: Duration = Duration::from_secs(24 * 3600);
/// How often old answers are purged and idle rate limits forgotten.
const HOUSEKEEPING: Duration = Duration::from_secs(600);

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `api.listen` is unset or not an address.
    #[error("api.listen: {0}")]
    Listen(String),
    /// Serving beyond loopback with no token anyone could use.
    #[error(
        "api.listen = {0} is not a loopback address and the store holds no live token: \
         create one first (`jobmesh token create --scope read --name ...`), or set \
         api.allow_without_tokens = true"
    )]
    NoTokens(SocketAddr),
    /// The store could not say whether tokens exist.
    #[error("reading the API tokens: {0}")]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a process serving the API may add beyond the store: a node's own event hints
/// and mesh view. Each is optional; without them the API still serves every route
/// (event streams poll, `/api/v1/mesh` answers 404).
#[derive(Default)]
pub struct Extras {
    /// Woken when the node writes events of its own, so event streams read at once.
    pub events_hint: Option<Arc<Notify>>,
    /// The node's mesh view, when it runs a mesh.
    pub mesh: Option<MeshSource>,
    /// The node's admission control of enqueues (its queues' wait SLOs).
    pub admission: Option<crate::state::Admission>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("events_hint", &self.events_hint.is_some())
            .field("mesh", &self.mesh.is_some())
            .field("admission", &self.admission.is_some())
            .finish()
    }
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    stopping: CancellationToken,
    serve: JoinHandle<()>,
    housekeeping: JoinHandle<()>,
}

impl ApiServer {
    /// Checks the settings, binds `config.listen` and serves. `events_hint` (a node's
    /// own events) wakes event streams early; without it they poll.
    ///
    /// The server keeps metrics of its own, recording what passes through `store`, and
    /// reads the queue counts when scraped (at most every
    /// [`API_COUNTS_EVERY`](crate::routes::metrics::API_COUNTS_EVERY)): for `jobmesh
    /// api`, where no node runs. Beside a node use [`ApiServer::start_in_node`].
    pub async fn start(
        store: SharedStore,
        registry: Arc<Registry>,
        config: ApiSection,
        events_hint: Option<Arc<Notify>>,
    ) -> Result<ApiServer, StartError> {
        let extras = Extras {
            events_hint,
            ..Extras::default()
        };
        Self::start_with(store, registry, config, extras).await
    }

    /// [`ApiServer::start`] with everything a node can add (see [`Extras`]), and
    /// metrics of its own as [`ApiServer::start`] keeps them.
    pub async fn start_with(
        store: SharedStore,
        registry: Arc<Registry>,
        config: ApiSection,
        extras: Extras,
    ) -> Result<ApiServer, StartError> {
        let metrics = Metrics::new();
        let store = MeteredStore::wrap(store, metrics.clone());
        let refresh = Some(crate::routes::metrics::API_COUNTS_EVERY);
        Self::serve(store, registry, config, extras, metrics, refresh).await
    }

    /// [`ApiServer::start`] in a node: `/metrics` serves the node's `metrics` (whose
    /// queue counts its maintenance keeps), and `store` is the node's, already recording
    /// into them (pass the node's `store()` and `metrics()`).
    pub async fn start_in_node(
        store: SharedStore,
        registry: Arc<Registry>,
        config: ApiSection,
        extras: Extras,
        metrics: Arc<Metrics>,
    ) -> Result<ApiServer, StartError> {
        Self::serve(store, registry, config, extras, metrics, None).await
    }

    async fn serve(
        store: SharedStore,
        registry: Arc<Registry>,
        config: ApiSection,
        extras: Extras,
        metrics: Arc<Metrics>,
        counts_refresh: Option<Duration>,
    ) -> Result<ApiServer, StartError> {
        let addr: SocketAddr = config
            .listen
            .ok_or_else(|| StartError::Listen("not set".into()))?;
        if !addr.ip().is_loopback()
            && !config.allow_without_tokens
            && !store.has_live_tokens().await?
        {
            return Err(StartError::NoTokens(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let stopping = CancellationToken::new();
        let max_group = config.max_batch as usize;
        let state = Arc::new(AppState {
            store: store.clone(),
            registry,
            rates: RateLimits::new(config.rate_per_second, config.burst),
            config,
            openapi: OnceLock::new(),
            stopping: stopping.clone(),
            coalescer: Coalescer::start(store.clone(), max_group),
            events_hint: extras.events_hint.unwrap_or_default(),
            mesh: extras.mesh,
            admission: extras.admission,
            metrics,
            counts_refresh,
            counts: Default::default(),
            event_tail: Default::default(),
            latency: Default::default(),
            dlq_groups: Default::default(),
            throughput: Default::default(),
            incidents: Default::default(),
            predictions: Default::default(),
        });
        let (router, _) = crate::routes::router(state.clone());
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let until = stopping.clone().cancelled_owned();
        let serve = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(until)
                .await
            {
                tracing::error!(error = %e, "the API server failed");
            }
        });
        let housekeeping = tokio::spawn(housekeeping(state));
        tracing::info!(%addr, "API listening");
        Ok(ApiServer {
            addr,
            stopping,
            serve,
            housekeeping,
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends the event streams and waits up to `grace` for requests
    /// in flight; those still running then are cut off.
    pub async fn shutdown(self, grace: Duration) {
        self.stopping.cancel();
        self.housekeeping.abort();
        let mut serve = self.serve;
        if tokio::time::timeout(grace, &mut serve).await.is_err() {
            tracing::warn!("API requests still running after {grace:?}; cutting them off");
            serve.abort();
        }
    }
}

async fn housekeeping(state: Arc<AppState>) {
    loop {
        tokio::time::sleep(HOUSEKEEPING).await;
        state.rates.shrink();
        let before = Millis(
            SystemClock
                .now()
                .0
                .saturating_sub(ANSWERS_KEPT.as_millis() as i64),
        );
        if let Err(e) = state.store.purge_answers(before).await {
            tracing::warn!(error = %e, "purging old idempotent answers failed");
        }
    }
}
