//! Private Redis and Postgres servers started from the system binaries on free
//! loopback ports, for the chaos runner's store scenarios and the root crate's fault
//! tests (`tests/common`): a fault must never hit the machine's shared servers.
//!
//! - [`RedisServer`]: `redis-server --port P --save "" --appendonly no` (a kill loses
//!   everything, as after a real crash without persistence), killed on drop.
//! - [`PgCluster`]: a cluster of its own made by `initdb` in a temporary directory and
//!   run by `pg_ctl` (binaries from the newest `/usr/lib/postgresql/<v>/bin`). Postgres
//!   refuses to run as root, so as root the directory is given to the `postgres` user
//!   and the tools run through `runuser -u postgres`. Stopped (immediate) on drop.
//!
//! Calls are blocking (they run short tools and poll until the server answers, with a
//! deadline); async callers wrap them in `spawn_blocking`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to answer.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// What went wrong starting or driving a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A server binary is not installed; the message names the package.
    #[error("cannot find {binary}: install it, e.g. `{install}`")]
    Missing {
        /// The binary looked for.
        binary: String,
        /// The command that installs it.
        install: &'static str,
    },
    /// A process or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{what} failed: {stderr}")]
    Failed {
        /// The command.
        what: String,
        /// Its standard error.
        stderr: String,
    },
    /// The server did not answer before the deadline.
    #[error("{0} did not come up within the deadline")]
    NotReady(String),
    /// A command sent to Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A loopback port free at the time of asking (bind to 0, read it, release it).
pub fn free_port() -> Result<u16, ServerError> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct loopback ports free at the time of asking (held together so they
/// differ, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>, ServerError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("reserving loopback ports"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(io("reserving loopback ports"))
}

/// Whether this process runs as root (Postgres then needs another owner).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A `redis-server` of our own without persistence, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    log: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts it on `port` (its output appended to `log`, else discarded) and waits
    /// until it answers PING.
    pub fn start(port: u16, log: Option<&Path>) -> Result<Self, ServerError> {
        let mut s = Self {
            port,
            log: log.map(Path::to_path_buf),
            child: None,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let (out, err) = match &self.log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io(format!("opening {}", path.display())))?;
                let e = f.try_clone().map_err(io("cloning a log handle"))?;
                (Stdio::from(f), Stdio::from(e))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ServerError::Missing {
                    binary: "redis-server".into(),
                    install: "apt-get install -y redis-server",
                },
                _ => ServerError::Io {
                    what: "starting redis-server".into(),
                    source: e,
                },
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it runs (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Polls until it answers PING (another process: nothing to await), or fails at
    /// the deadline or when the process exits (say, the port was taken).
    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_DEADLINE;
        let client = redis::Client::open(self.url())?;
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.child = None;
                return Err(ServerError::NotReady(format!(
                    "redis-server on port {}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs it and waits for it to exit (no-op when it is not running).
    pub fn kill(&mut self) -> Result<(), ServerError> {
        if let Some(mut c) = self.child.take() {
            c.kill().map_err(io("SIGKILL to redis-server"))?;
            c.wait().map_err(io("waiting for redis-server"))?;
        }
        Ok(())
    }

    /// Starts it again on the same port (empty: it has no persistence); no-op when it
    /// runs.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    /// Runs one argument-less command (`FLUSHALL`, ...).
    pub fn command(&self, name: &str) -> Result<(), ServerError> {
        let client = redis::Client::open(self.url())?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(5))?;
        let () = redis::cmd(name).query(&mut c)?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How `pg_ctl stop` shuts the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `-m fast`: roll back open transactions, close connections, checkpoint.
    Fast,
    /// `-m immediate`: abort every process (a crash; recovery on the next start).
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A Postgres cluster of our own in a temporary directory, on a free port.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    root: bool,
    running: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
pub fn pg_bin() -> Result<PathBuf, ServerError> {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    bins.sort();
    bins.pop()
        .map(|(_, b)| b)
        .ok_or_else(|| ServerError::Missing {
            binary: "the Postgres server binaries (/usr/lib/postgresql/*/bin/initdb)".into(),
            install: "apt-get install -y postgresql",
        })
}

impl PgCluster {
    /// Creates the cluster (`initdb`, trust authentication for `postgres` on loopback)
    /// and starts it.
    pub fn start() -> Result<Self, ServerError> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("jobmesh-pg-")
            .tempdir()
            .map_err(io("creating a directory for Postgres"))?;
        let root = is_root();
        if root {
            // Postgres refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let mut s = Self {
            bin,
            dir,
            port: free_port()?,
            root,
            running: false,
        };
        let data = s.data();
        run(&mut s.tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
            ],
        ))?;
        s.start_server()?;
        Ok(s)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Its URL (database `postgres`, user `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn tool(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Command {
        let exe = self.bin.join(tool);
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Starts the server (`pg_ctl -w start`: returns once it accepts connections);
    /// no-op when it runs.
    pub fn start_server(&mut self) -> Result<(), ServerError> {
        if self.running {
            return Ok(());
        }
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (self.data(), self.log_path());
        run(&mut self.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        ))?;
        self.running = true;
        Ok(())
    }

    /// Stops the server (`pg_ctl -w stop`: returns once it is down); no-op when it is
    /// stopped.
    pub fn stop(&mut self, mode: StopMode) -> Result<(), ServerError> {
        if !self.running {
            return Ok(());
        }
        let data = self.data();
        run(&mut self.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_str().as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        ))?;
        self.running = false;
        Ok(())
    }
}

impl PgCluster {
    /// Crashes the server as a power cut would: `SIGKILL` to the postmaster and to every
    /// process it started, so none of them writes anything more (what sits in the WAL
    /// buffers, such as the tail of asynchronous commits, is lost; the next start
    /// recovers from the WAL on disk). The postmaster is stopped (`SIGSTOP`) first, so
    /// that it starts no process while its children are listed.
    pub fn crash(&mut self) -> Result<(), ServerError> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if !self.running {
            return Ok(());
        }
        let postmaster = self.postmaster_pid()?;
        let signal = |pid: i32, sig: Signal| {
            kill(Pid::from_raw(pid), sig).map_err(|e| ServerError::Io {
                what: format!("sending {sig} to postgres process {pid}"),
                source: e.into(),
            })
        };
        signal(postmaster, Signal::SIGSTOP)?;
        let children = children_of(postmaster);
        for &child in &children {
            // A child may have exited meanwhile; what counts is that none survives.
            let _ = signal(child, Signal::SIGKILL);
        }
        signal(postmaster, Signal::SIGKILL)?;
        self.running = false;
        let deadline = Instant::now() + READY_DEADLINE;
        while std::iter::once(postmaster)
            .chain(children.iter().copied())
            .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(p))
        {
            if Instant::now() > deadline {
                return Err(ServerError::NotReady(format!(
                    "the end of the killed postgres processes {postmaster} {children:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Where nothing reaps orphans (a container whose first process does not), the
        // killed postmaster stays a zombie under its pid, which the next postmaster
        // would take for a live server holding the lock files. After a real crash no
        // process has that pid: remove the stale lock files as that start would ignore
        // them.
        for lock in [
            self.data().join("postmaster.pid"),
            self.dir.path().join(format!(".s.PGSQL.{}.lock", self.port)),
        ] {
            if let Err(e) = std::fs::remove_file(&lock)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(io(format!("removing {}", lock.display()))(e));
            }
        }
        Ok(())
    }
}

impl PgCluster {
    /// Stops (`SIGSTOP`) the server's WAL writer, so that asynchronous commits stay in
    /// the WAL buffers until something else flushes them (a synchronous commit, a full
    /// buffer): a crash after this loses them for certain. For crash tests; the next
    /// [`PgCluster::crash`] kills it with the rest.
    pub fn pause_wal_writer(&mut self) -> Result<(), ServerError> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let postmaster = self.postmaster_pid()?;
        let writer = children_of(postmaster)
            .into_iter()
            .find(|&p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("walwriter"))
            })
            .ok_or_else(|| ServerError::Failed {
                what: "finding the WAL writer of the test's Postgres".into(),
                stderr: format!("no child of postmaster {postmaster} is the walwriter"),
            })?;
        kill(Pid::from_raw(writer), Signal::SIGSTOP).map_err(|e| ServerError::Io {
            what: format!("stopping the WAL writer {writer}"),
            source: e.into(),
        })
    }

    fn postmaster_pid(&self) -> Result<i32, ServerError> {
        let pid_file = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(io(format!("reading {}", pid_file.display())))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| ServerError::Failed {
                what: format!("reading {}", pid_file.display()),
                stderr: format!("no pid in {text:?}"),
            })
    }
}

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat_field(pid, 1).and_then(|p| p.parse::<i32>().ok()) == Some(parent))
        .collect()
}

/// Whether `pid` has exited and waits to be reaped.
fn is_zombie(pid: i32) -> bool {
    stat_field(pid, 0).as_deref() == Some("Z")
}

/// Field `n` after the command name of `/proc/<pid>/stat` (0: state, 1: parent pid).
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n).map(str::to_string)
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop(StopMode::Immediate);
    }
}

fn run(cmd: &mut Command) -> Result<(), ServerError> {
    let what = format!("{cmd:?}");
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ServerError::Missing {
            install: match program.as_str() {
                "runuser" => "apt-get install -y util-linux",
                "chown" => "apt-get install -y coreutils",
                _ => "apt-get install -y postgresql",
            },
            binary: program,
        },
        _ => ServerError::Io {
            what: format!("running {what}"),
            source: e,
        },
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServerError::Failed {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_differ() {
        let p = free_ports(8).unwrap();
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), p.len());
    }
}
