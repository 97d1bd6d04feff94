//! Node and worker heartbeats with TTLs, judged by the Redis server clock.
//!
//! Each heartbeat sets a key that expires after its TTL and records the member in a
//! registry ZSET scored by expiry, so listing the live members needs no `SCAN`.

use std::time::Duration;

use redis::Cmd;

use super::scripts::{self, SCRIPTS};
use super::{RedisDispatch, duration_ms};
use crate::clock::Millis;
use crate::job::{NodeId, WorkerId};
use crate::store::{LiveMembers, StoreError};

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

    /// Records that `node` and its `workers` are alive for the next `ttl`, in one
    /// pipeline (one round trip; each member's heartbeat is atomic, the round is not).
    pub async fn heartbeat_members(
        &self,
        node: &NodeId,
        workers: &[WorkerId],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let nodes = self.keys.nodes();
        let registry = self.keys.workers();
        let mut cmds = Vec::with_capacity(workers.len() + 1);
        cmds.push(self.heartbeat_cmd(&self.keys.node_heartbeat(node), &nodes, &node.0, ttl)?);
        for w in workers {
            cmds.push(self.heartbeat_cmd(&self.keys.worker_heartbeat(w), &registry, &w.0, ttl)?);
        }
        scripts::run_pipelined(&mut self.conn(), &SCRIPTS.heartbeat, &cmds).await?;
        Ok(())
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

    /// Nodes and workers whose last heartbeat has not expired, each with its expiry
    /// (server ms), sorted by name.
    pub async fn live_members(&self) -> Result<LiveMembers, StoreError> {
        let mut nodes = self.alive_until(&self.keys.nodes()).await?;
        let mut workers = self.alive_until(&self.keys.workers()).await?;
        nodes.sort();
        workers.sort();
        Ok(LiveMembers {
            nodes: nodes.into_iter().map(|(n, t)| (NodeId(n), t)).collect(),
            workers: workers.into_iter().map(|(w, t)| (WorkerId(w), t)).collect(),
        })
    }

    async fn alive_until(&self, registry: &str) -> Result<Vec<(String, Millis)>, StoreError> {
        let mut cmd = scripts::evalsha(&SCRIPTS.alive, &[registry]);
        cmd.arg("scores");
        // Scores come back as text; an expiry is a whole number of ms below 2^53.
        let flat: Vec<(String, f64)> = scripts::run(&mut self.conn(), &SCRIPTS.alive, &cmd).await?;
        Ok(flat
            .into_iter()
            .map(|(m, score)| (m, Millis(score as i64)))
            .collect())
    }

    async fn heartbeat(
        &self,
        key: &str,
        registry: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let cmd = self.heartbeat_cmd(key, registry, member, ttl)?;
        let _now: i64 = scripts::run(&mut self.conn(), &SCRIPTS.heartbeat, &cmd).await?;
        Ok(())
    }

    /// One heartbeat script call: `member` alive in `registry` (key `key`) for `ttl`.
    fn heartbeat_cmd(
        &self,
        key: &str,
        registry: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<Cmd, StoreError> {
        super::index::check_name("heartbeat member", member)?;
        let mut cmd = scripts::evalsha(&SCRIPTS.heartbeat, &[key, registry]);
        cmd.arg(member)
            .arg(duration_ms(ttl))
            .arg(duration_ms(self.config.coordination_ttl));
        Ok(cmd)
    }

    async fn alive(&self, registry: &str) -> Result<Vec<String>, StoreError> {
        let cmd = scripts::evalsha(&SCRIPTS.alive, &[registry]);
        Ok(scripts::run(&mut self.conn(), &SCRIPTS.alive, &cmd).await?)
    }
}
