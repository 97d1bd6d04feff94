//! Node and worker heartbeats with TTLs, judged by the Redis server clock.
//!
//! Each heartbeat sets a key that expires after its TTL and records the member in a
//! registry ZSET scored by expiry, so listing the live members needs no `SCAN`.

use std::time::Duration;

use super::scripts::{self, SCRIPTS};
use super::{RedisDispatch, duration_ms};
use crate::job::{NodeId, WorkerId};
use crate::store::StoreError;

impl RedisDispatch {
    /// Records that `node` is alive for the next `ttl`.
    pub async fn heartbeat_node(&self, node: &NodeId, ttl: Duration) -> Result<(), StoreError> {
        self.heartbeat(
            &self.keys.node_heartbeat(node),
            &self.keys.nodes(),
            &node.0,
            ttl,
        )
        .await
    }

    /// Records that `worker` is alive for the next `ttl`.
    pub async fn heartbeat_worker(
        &self,
        worker: &WorkerId,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.heartbeat(
            &self.keys.worker_heartbeat(worker),
            &self.keys.workers(),
            &worker.0,
            ttl,
        )
        .await
    }

    /// Nodes whose last heartbeat has not expired, sorted by name.
    pub async fn alive_nodes(&self) -> Result<Vec<NodeId>, StoreError> {
        let mut names = self.alive(&self.keys.nodes()).await?;
        names.sort();
        Ok(names.into_iter().map(NodeId).collect())
    }

    /// Workers whose last heartbeat has not expired, sorted by name.
    pub async fn alive_workers(&self) -> Result<Vec<WorkerId>, StoreError> {
        let mut names = self.alive(&self.keys.workers()).await?;
        names.sort();
        Ok(names.into_iter().map(WorkerId).collect())
    }

    async fn heartbeat(
        &self,
        key: &str,
        registry: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        super::dispatch::check_name("heartbeat member", member)?;
        let mut cmd = scripts::evalsha(&SCRIPTS.heartbeat, &[key, registry]);
        cmd.arg(member)
            .arg(duration_ms(ttl))
            .arg(duration_ms(self.config.coordination_ttl));
        let _now: i64 = scripts::run(&mut self.conn(), &SCRIPTS.heartbeat, &cmd).await?;
        Ok(())
    }

    async fn alive(&self, registry: &str) -> Result<Vec<String>, StoreError> {
        let cmd = scripts::evalsha(&SCRIPTS.alive, &[registry]);
        Ok(scripts::run(&mut self.conn(), &SCRIPTS.alive, &cmd).await?)
    }
}
