//! Where everything lives in Redis: one prefix per dispatch instance, so several
//! deployments (or parallel tests) share a server without seeing each other.
//!
//! ```text
//! P:gen                  string  generation marker, set by `rebuild`; gone = Redis lost its data
//! P:origin               string  identity of the SQL store this prefix belongs to (redis_postgres store)
//! P:seq                  string  counter giving ready jobs their FIFO order
//! P:queues               set     queue names ever pushed to
//! P:paused               set     paused queues (a mirror of the SQL store's; `take` skips them)
//! P:q:<queue>:ready      zset    due jobs; score (32767 - priority) * 2^37 + seq, lowest first
//! P:q:<queue>:delayed    zset    jobs waiting for run_at; score run_at (ms)
//! P:q:<queue>:wake       list    wake-up tokens for dispatchers waiting on the queue (bounded)
//! P:job:<id>             hash    q, pri, tok (the SQL lease token pushed with it), st (ready|delayed|done);
//!                                deleted when taken, a done (removed) record expires
//! P:hb:node:<node>       string  last heartbeat (server ms), expires after its ttl
//! P:hb:worker:<worker>   string  same for a worker
//! P:nodes, P:workers     zset    heartbeat registries: member by expiry (server ms)
//! P:state:<id>           hash    current state of a job (`state`), expires per namespace
//! P:events               stream  lifecycle events, trimmed to about `stream_maxlen`
//! P:events:relayed       string  last SQL event seq copied into the stream (redis_postgres store)
//! P:events:relay_lock    string  which redis_postgres store instance relays events now (expires)
//! ```
//!
//! The Lua scripts build the job keys from the prefix the same way (`lua/common.lua`);
//! change both together. Queue names, node ids and worker ids end a key segment before a
//! fixed suffix, so a `:` inside them cannot make two keys collide. Keys are not
//! declared to Redis per script, so this layout needs a single Redis (or a prefix that
//! is a cluster hash tag such as `{jobmesh}`, which puts every key in one slot).

use crate::job::{JobId, NodeId, WorkerId};

/// The key names of one dispatch instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The layout under `prefix` (keys are `prefix:...`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The generation marker.
    pub fn generation(&self) -> String {
        format!("{}:gen", self.prefix)
    }

    /// The identity of the SQL store whose dispatch state lives under this prefix.
    pub fn origin(&self) -> String {
        format!("{}:origin", self.prefix)
    }

    /// The set of known queue names.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// The set of paused queues, which takes skip.
    pub fn paused(&self) -> String {
        format!("{}:paused", self.prefix)
    }

    /// A queue's ready (due) jobs.
    pub fn ready(&self, queue: &str) -> String {
        format!("{}:q:{queue}:ready", self.prefix)
    }

    /// A queue's delayed jobs.
    pub fn delayed(&self, queue: &str) -> String {
        format!("{}:q:{queue}:delayed", self.prefix)
    }

    /// A queue's wake-up list for dispatchers waiting on it.
    pub fn wake(&self, queue: &str) -> String {
        format!("{}:q:{queue}:wake", self.prefix)
    }

    /// A job's dispatch record (queue, priority, token, state).
    pub fn job(&self, id: JobId) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    /// A node's heartbeat key.
    pub fn node_heartbeat(&self, node: &NodeId) -> String {
        format!("{}:hb:node:{node}", self.prefix)
    }

    /// A worker's heartbeat key.
    pub fn worker_heartbeat(&self, worker: &WorkerId) -> String {
        format!("{}:hb:worker:{worker}", self.prefix)
    }

    /// The registry of node heartbeats.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The registry of worker heartbeats.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// A job's current-state hash.
    pub fn state(&self, id: JobId) -> String {
        format!("{}:state:{id}", self.prefix)
    }

    /// The lifecycle event stream.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The last SQL event sequence number relayed into the stream.
    pub fn relay_cursor(&self) -> String {
        format!("{}:events:relayed", self.prefix)
    }

    /// Held (with an expiry) by the one store instance relaying events into the stream.
    pub fn relay_lock(&self) -> String {
        format!("{}:events:relay_lock", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let k = Keys::new("t1");
        assert_eq!(k.ready("default"), "t1:q:default:ready");
        assert_eq!(k.job(JobId(7)), "t1:job:7");
        assert_eq!(k.node_heartbeat(&NodeId("n".into())), "t1:hb:node:n");
        assert_eq!(k.events(), "t1:events");
    }
}
