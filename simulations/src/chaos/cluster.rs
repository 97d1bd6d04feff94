//! A real local cluster: N processes of the `jobmesh` binary on loopback, each with its
//! own config, key and data directory, all sharing one SQLite file (as
//! `config/local-mesh.sh` sets them up), plus the process faults: kill -9, restart,
//! SIGSTOP and SIGCONT.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use jobmesh_actors::chaos::Faults;

use super::ChaosError;
use super::plan::NodeIx;

/// Worker settings of the chaos nodes: few workers and small claim batches so that
/// work spreads over every node, short leases so that the lease backstop (for nodes
/// that are not evicted) acts within the run, and fast retries. The nodes also work the
/// queue under a limit (see `limits.rs`).
const NODE_SETTINGS: &str = r#"[workers]
concurrency = 4
queues = ["default", "limited"]
claim_batch = 4
lease = "4s"
poll_interval = "100ms"
[retry]
unit = "100ms"
exponent = 1
max_delay = "1s"
jitter = 0.1
"#;

/// How long a node may take to start listening or to see the whole mesh.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stopped node may take to exit before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// What a node process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running.
    Running,
    /// Frozen by SIGSTOP.
    Paused,
    /// Killed (or not started).
    Down,
}

/// One node of the cluster.
#[derive(Debug)]
pub struct ClusterNode {
    /// `n1`, `n2`, ...
    pub name: String,
    /// Its peer id.
    pub peer_id: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory (key, mesh status).
    pub data_dir: PathBuf,
    /// Its control file.
    pub control: PathBuf,
    /// Its log (stdout and stderr of every life, appended).
    pub log: PathBuf,
    /// Its loopback TCP port.
    pub port: u16,
    /// Its state.
    pub state: NodeState,
    child: Option<Child>,
}

impl ClusterNode {
    fn addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.peer_id)
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    control: bool,
    /// The nodes, by index.
    pub nodes: Vec<ClusterNode>,
}

impl Cluster {
    /// Writes the configs of `n` nodes tolerating `f` liars under `dir` and reads their
    /// peer ids; `control` passes each node its `--chaos-control` file; `store` is the
    /// nodes' `[store]` section (`None`, or sections without `[store]`: one SQLite file
    /// shared by all), with any other sections the run needs.
    pub async fn create(
        bin: &Path,
        dir: &Path,
        n: usize,
        f: usize,
        control: bool,
        store: Option<&str>,
    ) -> Result<Self, ChaosError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ChaosError::io(format!("creating {}", dir.display()), e))?;
        let shared = dir.join("shared.db");
        let ports = crate::servers::free_ports(n)?;
        let mut nodes = Vec::with_capacity(n);
        for (i, port) in ports.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let config = dir.join(format!("{name}.toml"));
            let data_dir = dir.join(&name);
            let sqlite = format!("[store]\nsqlite_path = \"{}\"\n", shared.display());
            let store = match store {
                Some(section) if section.contains("[store]") => section.to_string(),
                // Other sections only (the `[http]` of a receiver run): the shared file.
                Some(section) => format!("{sqlite}{section}"),
                None => sqlite,
            };
            let text = format!(
                "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n{store}{NODE_SETTINGS}{}",
                data_dir.display(),
                super::limits::node_limits(n),
            );
            write(&config, &text)?;
            let out = Command::new(bin)
                .arg("--config")
                .arg(&config)
                .args(["mesh", "id"])
                .output()
                .await
                .map_err(|e| ChaosError::io("running jobmesh mesh id", e))?;
            if !out.status.success() {
                return Err(ChaosError::Cluster(format!(
                    "`jobmesh mesh id` failed for {name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let peer_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            nodes.push(ClusterNode {
                control: dir.join(format!("{name}.control.json")),
                log: dir.join(format!("{name}.log")),
                name,
                peer_id,
                config,
                data_dir,
                port,
                state: NodeState::Down,
                child: None,
            });
        }
        let members: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.peer_id)).collect();
        let mesh = format!("[mesh]\nf = {f}\nmembers = [{}]\n", members.join(", "));
        for node in &nodes {
            let mut text = std::fs::read_to_string(&node.config)
                .map_err(|e| ChaosError::io(format!("reading {}", node.config.display()), e))?;
            text.push_str(&mesh);
            write(&node.config, &text)?;
            if control {
                Faults::default()
                    .write(&node.control)
                    .map_err(|e| ChaosError::io("writing a control file", e))?;
            }
        }
        Ok(Self {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            control,
            nodes,
        })
    }

    /// The shared SQLite file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("shared.db")
    }

    /// Starts every node (the first, then the others joining it) and waits until each
    /// sees every member alive.
    pub async fn start_all(&mut self) -> Result<(), ChaosError> {
        self.spawn(0, &[])?;
        self.wait_listening(0).await?;
        let first = self.nodes[0].addr();
        for i in 1..self.nodes.len() {
            self.spawn(i, std::slice::from_ref(&first))?;
        }
        let since = now_ms();
        for i in 0..self.nodes.len() {
            self.wait_mesh(i, since).await?;
        }
        Ok(())
    }

    fn spawn(&mut self, i: NodeIx, join: &[String]) -> Result<(), ChaosError> {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| ChaosError::io(format!("opening {}", node.log.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| ChaosError::io("cloning a log handle", e))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&node.config)
            .arg("node")
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", node.port)]);
        for j in join {
            cmd.args(["--join", j]);
        }
        if self.control {
            cmd.arg("--chaos-control").arg(&node.control);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            // A runner that fails or is interrupted must not leave nodes behind.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::io(format!("starting {}", node.name), e))?;
        let node = &mut self.nodes[i];
        node.child = Some(child);
        node.state = NodeState::Running;
        Ok(())
    }

    /// Polls until the node accepts TCP connections (another process: nothing to await).
    async fn wait_listening(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        let deadline = Instant::now() + START_DEADLINE;
        let port = self.nodes[i].port;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            self.check_alive(i)?;
            if Instant::now() > deadline {
                return Err(self.start_failed(i, "did not start listening"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the node's mesh status file until it is newer than `since` and shows every
    /// member alive.
    async fn wait_mesh(&mut self, i: NodeIx, since: i64) -> Result<(), ChaosError> {
        let deadline = Instant::now() + START_DEADLINE;
        let path = self.nodes[i].data_dir.join("mesh-status.json");
        let n = self.nodes.len();
        loop {
            if let Some(v) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            {
                let fresh = v["at_ms"].as_i64().unwrap_or(0) >= since;
                let alive = v["members"].as_array().map_or(0, |m| {
                    m.iter()
                        .filter(|p| {
                            p["state"] == "self" || (p["state"] == "alive" && p["heard"] == true)
                        })
                        .count()
                });
                if fresh && alive == n {
                    return Ok(());
                }
            }
            self.check_alive(i)?;
            if Instant::now() > deadline {
                return Err(self.start_failed(i, "did not see every member alive"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_alive(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        let exited = self.nodes[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        match exited {
            Some(status) => Err(self.start_failed(i, &format!("exited ({status})"))),
            None => Ok(()),
        }
    }

    fn start_failed(&self, i: NodeIx, what: &str) -> ChaosError {
        let node = &self.nodes[i];
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        ChaosError::Cluster(format!(
            "node {} {what}; last lines of {}:\n{}",
            node.name,
            node.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }

    /// kill -9.
    pub async fn kill(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child
                .start_kill()
                .map_err(|e| ChaosError::io("SIGKILL", e))?;
            child
                .wait()
                .await
                .map_err(|e| ChaosError::io("waiting for a killed node", e))?;
        }
        self.nodes[i].state = NodeState::Down;
        Ok(())
    }

    /// Starts a killed node again, joining through every other running node.
    pub fn restart(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        if self.nodes[i].state != NodeState::Down {
            return Ok(());
        }
        let join: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i && n.state == NodeState::Running)
            .map(|(_, n)| n.addr())
            .collect();
        self.spawn(i, &join)
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        if self.nodes[i].state == NodeState::Running {
            self.signal(i, Signal::SIGSTOP)?;
            self.nodes[i].state = NodeState::Paused;
        }
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        if self.nodes[i].state == NodeState::Paused {
            self.signal(i, Signal::SIGCONT)?;
            self.nodes[i].state = NodeState::Running;
        }
        Ok(())
    }

    fn signal(&self, i: NodeIx, sig: Signal) -> Result<(), ChaosError> {
        let pid = self.nodes[i]
            .child
            .as_ref()
            .and_then(|c| c.id())
            .ok_or_else(|| ChaosError::Cluster(format!("{} has no process", self.nodes[i].name)))?;
        let pid = i32::try_from(pid)
            .map_err(|_| ChaosError::Cluster(format!("pid {pid} out of range")))?;
        kill(Pid::from_raw(pid), sig)
            .map_err(|e| ChaosError::io(format!("{sig} to {}", self.nodes[i].name), e.into()))
    }

    /// Writes a node's control file.
    pub fn set_control(&self, i: NodeIx, control: &Faults) -> Result<(), ChaosError> {
        control
            .write(&self.nodes[i].control)
            .map_err(|e| ChaosError::io("writing a control file", e))
    }

    /// Whether a node's process exited on its own (a crash, not one of our kills).
    pub fn crashed(&mut self) -> Vec<NodeIx> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(child) = node.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                node.child = None;
                node.state = NodeState::Down;
                out.push(i);
            }
        }
        out
    }

    /// Nodes running now.
    pub fn running(&self) -> Vec<NodeIx> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].state == NodeState::Running)
            .collect()
    }

    /// Stops every node: SIGCONT to paused ones, SIGTERM, and SIGKILL after a deadline.
    pub async fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.resume(i);
            if self.nodes[i].child.is_some() {
                let _ = self.signal(i, Signal::SIGTERM);
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take()
                && tokio::time::timeout(STOP_DEADLINE, child.wait())
                    .await
                    .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            node.state = NodeState::Down;
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), ChaosError> {
    std::fs::write(path, text).map_err(|e| ChaosError::io(format!("writing {}", path.display()), e))
}

/// Milliseconds since the Unix epoch, the store's time base.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
