//! What every handler shares.

use std::sync::{Arc, OnceLock};

use jobmesh::config::ApiSection;
use jobmesh::handler::Registry;
use jobmesh::metrics::Metrics;
use jobmesh::store::SharedStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::RateLimits;
use crate::coalesce::Coalescer;
use crate::views::MeshSource;

/// Admission control of a node's enqueues: may give jobs a later `run_at` (deferred),
/// or refuse one, `Err((index, reason))` (see `jobmesh::predict::policy::congestion`).
pub type Admission =
    Arc<dyn Fn(&mut [jobmesh::job::NewJob]) -> Result<(), (usize, String)> + Send + Sync>;

/// The server's shared state.
pub struct AppState {
    /// The store (only through its traits: every backend serves).
    pub store: SharedStore,
    /// The handlers' payload rules: enqueues pass the checks `jobmesh submit` applies.
    pub registry: Arc<Registry>,
    /// The `[api]` settings.
    pub config: ApiSection,
    /// Per-token rates.
    pub rates: RateLimits,
    /// The OpenAPI document, serialised once when the router is built.
    pub openapi: OnceLock<String>,
    /// Cancelled when the server stops: open event streams end so shutdown can finish.
    pub stopping: CancellationToken,
    /// Woken when new events may be in the store (a node's own events), so event
    /// streams read at once instead of at their next poll.
    pub events_hint: Arc<Notify>,
    /// Single-job enqueues, stored in groups (see [`crate::coalesce`]).
    pub coalescer: Coalescer,
    /// The mesh view of the node serving the API, if it runs a mesh
    /// (`GET /api/v1/mesh`).
    pub mesh: Option<MeshSource>,
    /// The node's admission control, when a node serves the API.
    pub admission: Option<Admission>,
    /// The process's metrics (a node's own in `node --api`), served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `Some(period)` where no node maintains the queue counts (`jobmesh api`): a scrape
    /// re-reads them when they are older than this.
    pub counts_refresh: Option<std::time::Duration>,
    /// The queue counts `GET /api/v1/queues` serves, shared by every caller.
    pub counts: crate::counts::CountsCache,
    /// The highest event sequence number an event stream found at the end of the log:
    /// where the next stream without a start looks for the end from.
    pub event_tail: std::sync::atomic::AtomicI64,
    /// Queue wait and run time per minute of the last hour (`GET /api/v1/stats/latency`),
    /// shared by every caller.
    pub latency: crate::shared_read::SharedRead<Vec<crate::latency::Minute>>,
    /// Jobs enqueued, succeeded and dead-lettered per 10 s of the last hour, per queue
    /// (`GET /api/v1/stats/throughput`), shared by every caller.
    pub throughput: crate::shared_read::SharedRead<Vec<crate::throughput::Interval>>,
    /// Rescues, worker crashes and restarts and evictions per minute of the last hour
    /// (`GET /api/v1/stats/incidents`), shared by every caller.
    pub incidents: crate::shared_read::SharedRead<Vec<jobmesh::store::incidents::IncidentRow>>,
    /// The dead letters by reason (`GET /api/v1/dlq/groups`), shared by every caller.
    pub dlq_groups: crate::shared_read::SharedRead<jobmesh::store::insights::DeadLetterGroups>,
    /// The live predictions the nodes saved, shared by every caller for a few seconds.
    pub predictions: crate::predictions::PredictionsCache,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .field("config", &self.config)
            .field("mesh", &self.mesh.is_some())
            .finish_non_exhaustive()
    }
}
