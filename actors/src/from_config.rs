//! [`NodeOptions`] and [`MeshOptions`] from a [`Config`]: the one place where settings
//! become what a [`Node`](crate::Node) starts with, for the CLI and any other program
//! that starts nodes from a config file. The config holds typed values already (see
//! [`jobmesh::config`]); what is left here is choosing which of them each part takes.

use std::sync::Arc;

use jobmesh::clock::Clock;
use jobmesh::config::{AdmissionError, Config};
use jobmesh::handler::Registry;
use jobmesh::job::NodeId;
use jobmesh::store::SharedStore;
use libp2p::identity::Keypair;

use crate::mesh::MeshConfig;
use crate::node::{MeshOptions, NodeOptions};

impl NodeOptions {
    /// A node named `node.name`, with the `[workers]` pool, the `[retry]` policy, the
    /// live models of `[predict]` and the `[retention]` it enforces when it holds the
    /// maintenance lease, over `store`, running `registry`'s handlers (see
    /// [`Config::registry`]) on `clock`.
    pub fn from_config(
        config: &Config,
        store: SharedStore,
        registry: Registry,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            node_id: NodeId(config.node.name.clone()),
            workers: config.workers.clone(),
            retry: config.retry.clone(),
            store,
            registry,
            clock,
            retention: Some(config.retention.clone()),
            predict: config.predict.clone(),
        }
    }
}

impl MeshOptions {
    /// The `[mesh]` of a node whose identity is `keypair` (loaded from
    /// [`Config::key_path`]): its listen and join addresses, and the membership it is
    /// admitted to, by `mesh.members` or by its join certificate. `join_certificate` is
    /// what the `mesh.join_certificate` file holds, read by the caller (`None` when the
    /// key is unset). `seed` drives the protocol's randomness..
    pub fn from_config(
        config: &Config,
        keypair: Keypair,
        join_certificate: Option<&str>,
        seed: u64,
    ) -> Result<Self, AdmissionError> {
        let me = keypair.public().to_peer_id();
        let join = join_certificate
            .map(|text| config.mesh.join_certificate_of(text, me))
            .transpose()?;
        let membership = config.mesh.membership(me, join.as_ref())?;
        Ok(Self {
            keypair,
            mesh: MeshConfig {
                listen: config.mesh.listen.clone(),
                bootstrap: config.mesh.join.clone(),
                ..MeshConfig::default()
            },
            membership,
            seed,
            join,
        })
    }
}
