//! What the CLI's test files share: a scratch directory holding a config of its own,
//! and the `jobmesh` binary run in it against that config.

// Each test file uses some of these helpers, never all of them.
#![allow(dead_code)]

pub mod nodes;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jobmesh"))
}

/// A scratch directory with a config that points the node's files into it.
pub struct Sandbox {
    /// The directory (removed when the sandbox is dropped).
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// A config naming the node `name`, its data in the sandbox, followed by `extra`
    /// (more TOML, sections included).
    pub fn with_config(name: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n{extra}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("jobmesh.toml"), config).unwrap();
        Sandbox { dir }
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("jobmesh.toml")
    }

    /// The embedded store's database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("jobmesh.db")
    }

    /// `jobmesh --config <sandbox config> <args>`, run in the sandbox.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    /// Runs `args` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `args`, which must succeed; their standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(self.run(args), args)
    }

    /// Runs `args`, which must fail; their standard error.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "jobmesh {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }
}

/// The standard output of a run of `args` that must have succeeded.
pub fn succeeded(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "jobmesh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
