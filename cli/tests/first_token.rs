//! The first start of a node with the API on a new store: in a terminal it prints an
//! admin token once, which logs into the API; a second start prints none (a token
//! exists); a start whose output is not a terminal creates nothing and says how to.
//! The terminal is a real pseudo-terminal from util-linux `script`, on which Ctrl-C is
//! typed as an operator types it: once to stop, twice to stop without waiting.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Sandbox;
use common::nodes::free_port;
use serde_json::Value;

/// Bounds a failure only: a node starts within a few seconds.
const WAIT: Duration = Duration::from_secs(60);

/// `GET /api/v1/me` with `token`: status and body.
fn me(addr: SocketAddr, token: &str) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A process whose standard output lines arrive on a channel; killed at the end.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the node (util-linux `script` is needed for a terminal)");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the process to exit; fails with what it printed at the deadline (a
    /// node that ignored the Ctrl-C would otherwise hang the test).
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            // Whatever the node prints on its way out, for the failure message.
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            assert!(
                Instant::now() < deadline,
                "still running {WAIT:?} after Ctrl-C; the output was:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads lines until one satisfies `done`; fails with what was seen at the deadline.
    fn until(&mut self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if done(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no such line; the output was:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_args(sandbox: &Sandbox, port: u16) -> Vec<String> {
    vec![
        "--config".into(),
        sandbox.config().display().to_string(),
        "node".into(),
        "--api".into(),
        format!("127.0.0.1:{port}"),
    ]
}

/// `jobmesh node --api` run by `script` on a pseudo-terminal. `script` runs the line
/// through `$SHELL` (`/bin/sh` when unset, as under CI); `exec` makes the node the
/// terminal's foreground process itself, so Ctrl-C reaches the node and no shell that
/// would die of it.
fn in_terminal(sandbox: &Sandbox, port: u16) -> Command {
    let mut line = format!("exec {}", env!("CARGO_BIN_EXE_jobmesh"));
    for a in node_args(sandbox, port) {
        line.push(' ');
        line.push_str(&format!("'{a}'"));
    }
    let mut c = Command::new("script");
    c.args(["-qfec", &line, "/dev/null"])
        .env_remove("SHELL")
        .current_dir(sandbox.dir.path());
    c
}

/// `jobmesh node --api` with its output on a pipe.
fn on_a_pipe(sandbox: &Sandbox, port: u16) -> Command {
    let mut c = common::bin();
    c.args(node_args(sandbox, port))
        .current_dir(sandbox.dir.path());
    c
}

#[test]
fn a_first_start_in_a_terminal_prints_an_admin_token_that_logs_in_and_only_once() {
    let sandbox = Sandbox::with_config("first", "");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut first = Running::start(in_terminal(&sandbox, port));
    first.until(|l| l.contains(&format!("dashboard on http://127.0.0.1:{port}/")));
    first.until(|l| l.starts_with("first start: an admin token"));
    let token = first.until(|l| l.trim_start().starts_with("jmt_"));
    let token = token.trim();
    first.until(|l| l.contains("Ctrl-C to stop"));

    let (status, who) = me(addr, token);
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["name"], "first-start", "{who}");
    assert_eq!(who["may"]["admin"], true, "{who}");
    let (status, _) = me(addr, "jmt_1_not-the-secret");
    assert_eq!(status, 401, "a wrong token must not log in");
    // Ctrl-C on the terminal stops the node.
    first
        .child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"\x03")
        .unwrap();
    let status = first.exit_status();
    assert!(status.success(), "{status}: {}", first.seen.join("\n"));
    drop(first);

    // A second start, even in a terminal, creates no second token.
    let mut again = Running::start(in_terminal(&sandbox, port));
    again.until(|l| l.contains("Ctrl-C to stop"));
    assert!(
        again.seen.iter().all(|l| !l.contains("jmt_")),
        "{}",
        again.seen.join("\n")
    );
    drop(again);
    let list = common::succeeded(
        sandbox.run(&["--json", "token", "list"]),
        &["token", "list"],
    );
    let tokens: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
}

#[test]
fn a_first_start_without_a_terminal_creates_no_token_and_says_how_to() {
    let sandbox = Sandbox::with_config("piped", "");
    let port = free_port();
    let mut node = Running::start(on_a_pipe(&sandbox, port));
    let hint = node.until(|l| l.starts_with("no API token exists yet"));
    assert!(hint.contains("jobmesh token create"), "{hint}");
    node.until(|l| l.contains("Ctrl-C to stop"));
    assert!(
        node.seen.iter().all(|l| !l.contains("jmt_")),
        "{}",
        node.seen.join("\n")
    );
    drop(node);
    let list = common::succeeded(
        sandbox.run(&["--json", "token", "list"]),
        &["token", "list"],
    );
    assert_eq!(list.trim(), "[]");
}

/// Ctrl-C once lets running jobs finish (up to the grace); Ctrl-C again while the node
/// waits for them stops it at once, exit code 130, saying so. A node that ignored the
/// second Ctrl-C would wait out its grace and exit 0.
#[test]
fn a_second_ctrl_c_while_the_node_waits_for_running_jobs_stops_it_at_once() {
    let sandbox = Sandbox::with_config("twice", "");
    common::succeeded(
        sandbox.run(&["submit", "sleep", r#"{"ms": 600000}"#]),
        &["submit"],
    );
    let port = free_port();
    let mut node = Running::start(in_terminal(&sandbox, port));
    node.until(|l| l.contains("Ctrl-C to stop"));
    // The sleep job runs: the first Ctrl-C then has a job to wait for.
    let deadline = Instant::now() + WAIT;
    loop {
        let running = common::succeeded(
            sandbox.run(&["--json", "jobs", "list", "--state", "running"]),
            &["jobs", "list"],
        );
        let jobs: Value = serde_json::from_str(&running).unwrap();
        if jobs.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the sleep job never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ctrl_c = |node: &mut Running| {
        node.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"\x03")
            .unwrap();
    };
    ctrl_c(&mut node);
    node.until(|l| l.contains("stopping: waiting up to"));
    ctrl_c(&mut node);
    node.until(|l| l.contains("stopped again: exiting"));
    let status = node.exit_status();
    assert_eq!(status.code(), Some(130), "{}", node.seen.join("\n"));
}
