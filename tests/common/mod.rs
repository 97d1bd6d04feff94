//! Helpers shared by the integration tests that start servers of their own: panicking
//! fronts to `jobmesh_sim::servers`, the launcher the chaos runner's store scenarios use
//! too (one implementation of "a private redis-server / Postgres cluster on a free
//! port", including Postgres as root through `runuser -u postgres`).
// Each test binary uses the part it needs.
#![allow(dead_code)]

use jobmesh_sim::servers;

pub use jobmesh_sim::servers::StopMode;

/// A port free at the time of asking (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    servers::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A `redis-server` of the test's own, without persistence (a kill loses everything),
/// killed on drop.
pub struct RedisServer(servers::RedisServer);

impl RedisServer {
    /// Starts it on `port` and waits until it answers PING (bounded); a missing binary
    /// fails the test naming the package to install.
    pub fn start(port: u16) -> Self {
        Self(servers::RedisServer::start(port, None).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// SIGKILLs it and waits for it to exit.
    pub fn kill(&mut self) {
        self.0.kill().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs one argument-less command (`FLUSHALL`, ...).
    pub fn cmd(&self, name: &str) {
        self.0.command(name).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A Postgres cluster of the test's own (`initdb` + `pg_ctl` from the newest
/// `/usr/lib/postgresql/*/bin`) in a temporary directory, on a free port; stopped on
/// drop. A missing binary fails the test naming the package to install.
pub struct PgCluster(servers::PgCluster);

impl PgCluster {
    /// Creates and starts it.
    pub fn start() -> Self {
        Self(servers::PgCluster::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Its URL.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Starts the server again after [`PgCluster::stop`].
    pub fn start_server(&mut self) {
        self.0.start_server().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server (`pg_ctl stop -m <mode> -w`).
    pub fn stop(&mut self, mode: StopMode) {
        self.0.stop(mode).unwrap_or_else(|e| panic!("{e}"));
    }
}
