//! The Python example client (`examples/python/jobmesh_client.py`, standard library
//! only) against a real node: `jobmesh node --api` on a scratch SQLite store, a token
//! from `jobmesh token create`, and the script's walkthrough (idempotent enqueue, poll,
//! event stream resumed with `Last-Event-ID`) must pass. A missing `python3` fails the
//! test with what to install: the example is part of what CI checks.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobmesh::job::JobState;
use jobmesh::store::JobAdmin;
use jobmesh::store::sqlite::SqliteStore;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the workspace")
        .to_path_buf()
}

/// A port nothing listens on now. Another process could take it before the node binds
/// it; the node then fails to start and the test says so rather than hanging.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The node, killed when the test ends however it ends.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The status line of `GET /healthz`, or None while nothing answers.
fn healthz(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(str::to_string)
}

/// Polls `/healthz` until the node answers 200; fails if the node exits first or the
/// deadline (which only bounds a failure) passes.
fn await_ready(node: &mut Node, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(line) = healthz(addr) {
            assert!(line.contains(" 200 "), "/healthz answered {line:?}");
            return;
        }
        if let Some(status) = node.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = node.0.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            panic!("the node exited ({status}) before its API answered: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the node's API at {addr} did not answer /healthz within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python3() -> Command {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => Command::new("python3"),
        Ok(out) => panic!(
            "`python3 --version` failed ({}): install Python 3.11 or newer (e.g. `apt-get install python3`); this test runs the example client with it",
            out.status
        ),
        Err(e) => panic!(
            "python3 is not on PATH ({e}): install Python 3.11 or newer (e.g. `apt-get install python3`); this test runs the example client with it"
        ),
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_python_example_enqueues_polls_and_follows_the_event_stream() {
    let mut python = python3();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("jobmesh.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"python-client\"\ndata_dir = \"{}\"\n[workers]\nconcurrency = 4\npoll_interval = \"50ms\"\n",
            data.display()
        ),
    )
    .unwrap();
    let jobmesh = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jobmesh"));
        c.arg("--config")
            .arg(&config)
            .args(args)
            .current_dir(dir.path());
        c
    };

    let out = jobmesh(&[
        "token",
        "create",
        "--scope",
        "enqueue,read",
        "--name",
        "python-example",
    ])
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "token create failed: {stderr}");
    let token = stdout.trim().to_string();
    assert!(token.starts_with("jmt_"), "token create printed {stdout:?}");

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut node = Node(
        jobmesh(&["node", "--api", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    await_ready(&mut node, addr);

    let script = repo_root().join("examples/python/jobmesh_client.py");
    let out = python
        .arg(&script)
        .arg("--url")
        .arg(format!("http://{addr}"))
        .env("JOBMESH_TOKEN", &token)
        .env_remove("JOBMESH_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "the example failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for want in [
        "enqueued job 1 (inserted, HTTP 201)",
        "retry with the same key: job 1 again",
        "job 1 succeeded",
        "reconnecting with Last-Event-ID",
        "events of job 1: job.enqueued -> job.claimed -> job.succeeded",
        "ok",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains(&token) && !stderr.contains(&token),
        "the example printed the token"
    );

    // The retried request stored nothing more: one job in the store, succeeded.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let counts: BTreeMap<JobState, u64> = rt.block_on(async {
        let store = SqliteStore::open(&data.join("jobmesh.db")).await.unwrap();
        store
            .counts()
            .await
            .unwrap()
            .remove("default")
            .unwrap_or_default()
    });
    assert_eq!(
        counts,
        BTreeMap::from([(JobState::Succeeded, 1)]),
        "the store after the walkthrough"
    );
}

#[test]
fn the_python_example_reports_a_refused_token_with_the_problem_type() {
    let mut python = python3();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jobmesh.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"python-client\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut node = Node(
        Command::new(env!("CARGO_BIN_EXE_jobmesh"))
            .arg("--config")
            .arg(&config)
            .args(["node", "--api", &addr.to_string()])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    await_ready(&mut node, addr);

    // Shaped like a token, but the store holds no such hash.
    let bogus = format!("jmt_{}", "A".repeat(43));
    let out = python
        .arg(repo_root().join("examples/python/jobmesh_client.py"))
        .env("JOBMESH_URL", format!("http://{addr}"))
        .env("JOBMESH_TOKEN", &bogus)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("urn:jobmesh:problem:unauthorized"),
        "{stderr}"
    );
    assert!(
        !stdout.contains(&bogus) && !stderr.contains(&bogus),
        "the example printed the token"
    );
}
