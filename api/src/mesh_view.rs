//! The JSON of the mesh as the node serving the API sees it (`GET /api/v1/mesh`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One member of the mesh as this node sees it (as `jobmesh mesh peers` shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeshMember {
    /// Its peer id (also its node id in the store).
    pub peer: String,
    /// `self`, `alive`, `suspected` or `evicted`.
    pub state: String,
    /// Its incarnation as last seen.
    pub incarnation: u64,
    /// The suspicion level (phi accrual), if there are samples.
    pub phi: Option<f64>,
    /// The last probe's round trip (ms).
    pub rtt_ms: Option<f64>,
    /// Whether this node ever heard from it.
    pub heard: bool,
    /// Down votes about its current incarnation held here (2f+1 evict).
    pub down_votes: usize,
    /// Signers of its eviction certificate, if it was evicted.
    pub evicted_by: Vec<String>,
    /// The observers whose Down votes about its current incarnation are held here (for
    /// an evicted member, its certificate's signers).
    #[serde(default)]
    pub down_voters: Vec<String>,
    /// The members that observe it in this node's view (at most 32 listed); none once it
    /// is evicted.
    #[serde(default)]
    pub observers: Vec<String>,
    /// How many members observe it (`observers` may list fewer).
    #[serde(default)]
    pub observer_count: usize,
    /// Bytes this node received from it on mesh streams since start.
    #[serde(default)]
    pub bytes_in: u64,
    /// Bytes this node sent to it on mesh streams since start.
    #[serde(default)]
    pub bytes_out: u64,
}

/// The mesh as the node serving the API sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeshView {
    /// This node's peer id.
    pub me: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// The view epoch.
    pub epoch: u64,
    /// Whether it hears a quorum (it only votes Down then).
    pub quorum: bool,
    /// Every member of the view, and evicted ones.
    pub members: Vec<MeshMember>,
    /// Mesh bytes received since start.
    pub bytes_in: u64,
    /// Mesh bytes sent since start.
    pub bytes_out: u64,
    /// Stream bytes received from outsiders since start, all together.
    #[serde(default)]
    pub outsider_bytes_in: u64,
    /// Stream bytes sent to outsiders since start, all together.
    #[serde(default)]
    pub outsider_bytes_out: u64,
    /// Inputs refused by the per-peer budgets and the connection gate since start.
    pub refused_inputs: u64,
    /// Outsiders banned since start.
    pub bans: u64,
    /// Connections with outsiders now.
    pub outsider_connections: u64,
    /// When the view was taken (ms).
    pub at: i64,
}

/// Where the API reads the mesh view from: set by a node that runs a mesh (`jobmesh
/// node --api` with `--listen`/`--join`); `None` answers `/api/v1/mesh` with 404.
pub type MeshSource = Arc<dyn Fn() -> Option<MeshView> + Send + Sync>;
