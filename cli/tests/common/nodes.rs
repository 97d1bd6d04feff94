//! `jobmesh` processes a test runs at length (nodes, the API): started on free loopback
//! ports with a config of their own, their log in a file, killed when the test ends
//! however it ends.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A port nothing listens on now (another process could take it first; the node then
/// fails to start and the test says so).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process, killed when the test ends however it ends; its log is a file.
pub struct Proc {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl Proc {
    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `jobmesh --config <config> <args>`.
pub fn jobmesh(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jobmesh"));
    c.arg("--config").arg(config).args(args);
    c
}

/// Runs `args`, which must succeed; their standard output, trimmed.
pub fn ok(config: &Path, args: &[&str]) -> String {
    let out = jobmesh(config, args).output().unwrap();
    assert!(
        out.status.success(),
        "jobmesh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `args` in the background, its standard error into the file `log`.
pub fn spawn(config: &Path, args: &[&str], log: PathBuf) -> Proc {
    let child = jobmesh(config, args)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log }
}
