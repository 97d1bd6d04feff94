//! [`NodePresence`] on the production store: Postgres keeps the rows and the leases, so
//! each operation is the Postgres store's own (Redis heartbeats stay what they were: a
//! best-effort live registry beside them).

use async_trait::async_trait;

use super::RedisPostgresStore;
use crate::clock::Millis;
use crate::job::NodeId;
use crate::store::presence::{Presence, RunningJob};
use crate::store::{NodePresence, StoreError};

#[async_trait]
impl NodePresence for RedisPostgresStore {
    async fn announce(&self, presence: &Presence) -> Result<(), StoreError> {
        self.shared.pg.announce(presence).await
    }

    async fn withdraw(&self, node: &NodeId, started_at: Millis) -> Result<bool, StoreError> {
        self.shared.pg.withdraw(node, started_at).await
    }

    async fn presences(&self) -> Result<Vec<Presence>, StoreError> {
        self.shared.pg.presences().await
    }

    async fn running_jobs(&self, limit: u32) -> Result<Vec<RunningJob>, StoreError> {
        self.shared.pg.running_jobs(limit).await
    }
}
