//! The README's quick tour, pasted line by line: every command of its `sh` blocks runs
//! against a node started as the tour says (in a scratch copy of the repository's
//! `config/`), exits 0, and the `exec` job and the workflow it submits succeed rather
//! than being dead-lettered. The README is the script, so a tour edited into something
//! that fails, fails here.

use jobmesh::store::JobAdmin;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jobmesh::job::{Job, JobState};
use jobmesh::store::JobFilter;
use jobmesh::store::sqlite::SqliteStore;

/// What the tour's commands are written with; the test runs the debug binary instead.
const CARGO_RUN: &str = "cargo run --release -- ";

/// The signal Ctrl-C sends.
const SIGINT: i32 = 2;

/// How long one command may take (generous: the machine may be loaded).
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// The API address the tour's node serves; the test serves it on a free port instead.
const TOUR_API: &str = "127.0.0.1:7780";

/// One line of a tour block.
#[derive(Debug)]
enum Step {
    /// `export NAME=value`: applies to the rest of the block (one terminal).
    Export(String, String),
    /// `export NAME=$(cargo run --release -- <rest>)`: the command's standard output,
    /// trimmed, becomes the variable.
    Capture(String, String),
    /// `cargo run --release -- <rest>`: the arguments, quoted as in a shell.
    Run(String),
    /// A `curl` line (a pipeline may follow), run by `sh` as pasted.
    Shell(String),
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `sh` blocks of the README's "Quick tour" section, as lines.
fn tour_blocks() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("\n## Quick tour\n")
        .expect("README has a Quick tour section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), l) => block.push(l.to_string()),
            (None, _) => {}
        }
    }
    blocks
}

/// The steps of one block; anything else than an export or a `cargo run` fails the test,
/// so the tour never holds a command this test silently skips.
fn steps(block: &[String]) -> Vec<Step> {
    block
        .iter()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            if let Some(capture) = l
                .strip_prefix("export ")
                .and_then(|a| a.split_once(&format!("=$({CARGO_RUN}")))
            {
                let rest = capture
                    .1
                    .strip_suffix(')')
                    .expect("export NAME=$(... ) ends with `)`");
                Step::Capture(capture.0.to_string(), rest.to_string())
            } else if l.starts_with("curl ") {
                Step::Shell(l.to_string())
            } else if let Some(assignment) = l.strip_prefix("export ") {
                let assignment = assignment.split(" #").next().unwrap().trim();
                let (name, value) = assignment.split_once('=').expect("export NAME=value");
                Step::Export(name.to_string(), value.to_string())
            } else if let Some(rest) = l.strip_prefix(CARGO_RUN) {
                Step::Run(rest.to_string())
            } else {
                panic!("the quick tour has a line this test cannot run: {l}")
            }
        })
        .collect()
}

/// One terminal: its working directory, exported variables and the API address that
/// replaces the tour's.
struct Terminal {
    dir: PathBuf,
    env: Vec<(String, String)>,
    api: String,
}

impl Terminal {
    /// A line as this test runs it: on the test's API address.
    fn localise(&self, line: &str) -> String {
        line.replace(TOUR_API, &self.api)
            .replace(&format!("localhost:{}", port_of(TOUR_API)), &self.api)
    }

    /// A `curl` line through `sh`, with the terminal's variables.
    fn shell(&self, line: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(self.localise(line))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir);
        c
    }

    /// The command of a tour line, through `sh` so quoting and trailing comments read as
    /// they would when pasted.
    fn command(&self, rest: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "exec \"$JOBMESH_TOUR_BIN\" {}",
                self.localise(rest)
            ))
            .env("JOBMESH_TOUR_BIN", env!("CARGO_BIN_EXE_jobmesh"))
            .env_remove("JOBMESH_CONFIG")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir);
        c
    }
}

/// The port of an `ip:port` address.
fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().1
}

/// A loopback address no one listens on now.
fn free_api_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Runs one command of the second terminal to its end and fails the test unless it
/// exits 0; its standard output.
fn run_to_end(mut command: Command, line: &str) -> String {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, COMMAND_DEADLINE, line);
    assert!(
        out.status.success(),
        "tour line `{line}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Lines of a child's stdout, read on a thread so that waits can have a deadline.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, at most `deadline`.
fn wait_output(child: Child, deadline: Duration, what: &str) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("`{what}` did not finish within {deadline:?}"))
        .unwrap()
}

/// Asks a process to stop as Ctrl-C would.
fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT {}", child.id());
}

/// Kills the node if the test fails half-way.
struct NodeGuard(Option<Child>);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Jobs of `kind`, once none of them is still to run; fails at once on a dead letter.
async fn finished_jobs(store: &SqliteStore, kind: &str, want: usize) -> Vec<Job> {
    let deadline = Instant::now() + COMMAND_DEADLINE;
    loop {
        let jobs = store
            .list_jobs(&JobFilter {
                kind: Some(kind.to_string()),
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        if let Some(dead) = jobs.iter().find(|j| j.state == JobState::Discarded) {
            panic!(
                "the tour's {kind} job {} was dead-lettered: {:?}",
                dead.id, dead.last_error
            );
        }
        if jobs.len() >= want && jobs.iter().all(|j| j.state == JobState::Succeeded) {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} jobs not all succeeded within {COMMAND_DEADLINE:?}: {:?}",
            jobs.iter().map(|j| (j.id, j.state)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_tour_passes_when_pasted_line_by_line() {
    let blocks = tour_blocks();
    assert_eq!(
        blocks.len(),
        2,
        "the tour is two terminals: the node's block and the commands' block"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    for entry in std::fs::read_dir(repo_root().join("config")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), config.join(entry.file_name())).unwrap();
    }

    // First terminal: exports, then the node.
    let api = free_api_address();
    let terminal_api = api.clone();
    let mut node_terminal = Terminal {
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
        api: api.clone(),
    };
    let mut node = NodeGuard(None);
    for step in steps(&blocks[0]) {
        match step {
            Step::Export(k, v) => node_terminal.env.push((k, v)),
            Step::Capture(..) | Step::Shell(_) => {
                panic!("the node's terminal only starts the node")
            }
            Step::Run(rest) => {
                assert!(node.0.is_none(), "one node in the first terminal");
                assert!(
                    rest.starts_with("node"),
                    "the first terminal runs a node: {rest}"
                );
                let child = node_terminal
                    .command(&rest)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                node.0 = Some(child);
            }
        }
    }
    let lines = stdout_lines(node.0.as_mut().expect("the first terminal starts a node"));
    // The node prints where its API listens, then its banner once its workers run.
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.contains("running on sqlite"))
    {
        let line = lines
            .recv_timeout(COMMAND_DEADLINE)
            .unwrap_or_else(|_| panic!("the node did not announce itself; it printed {printed:?}"));
        printed.push(line);
    }
    assert!(
        printed.iter().any(|l| l.contains(&terminal_api)),
        "the node says where its API listens: {printed:?}"
    );

    // Second terminal: every line, in order.
    let mut terminal = Terminal {
        dir: dir.path().to_path_buf(),
        env: Vec::new(),
        api,
    };
    let mut ran = 0;
    let mut curls = Vec::new();
    for step in steps(&blocks[1]) {
        let rest = match step {
            Step::Export(k, v) => {
                terminal.env.push((k, v));
                continue;
            }
            Step::Capture(k, rest) => {
                let out = run_to_end(terminal.command(&rest), &rest);
                terminal.env.push((k, out.trim().to_string()));
                continue;
            }
            Step::Shell(line) => {
                curls.push(run_to_end(terminal.shell(&line), &line));
                continue;
            }
            Step::Run(rest) => rest,
        };
        ran += 1;
        if rest.contains("--follow") {
            // Never ends by itself: wait for the first event, then Ctrl-C.
            let mut child = terminal
                .command(&rest)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let events = stdout_lines(&mut child);
            let first = events.recv_timeout(COMMAND_DEADLINE);
            interrupt(&child);
            let out = wait_output(child, COMMAND_DEADLINE, &rest);
            assert!(
                first.is_ok(),
                "`{rest}` printed no event: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Ctrl-C may land before the verb listens for it: ended by the signal is as
            // good as a clean exit; an error exit is not.
            assert!(
                out.status.success() || out.status.signal() == Some(SIGINT),
                "`{rest}` failed after Ctrl-C ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        run_to_end(terminal.command(&rest), &format!("{CARGO_RUN}{rest}"));
    }
    assert!(ran >= 10, "the tour ran only {ran} commands");
    // The HTTP part: readiness, a job stored through the API, the OpenAPI document and
    // the scrape, each answered as the README shows.
    assert!(curls.len() >= 5, "the tour's API lines ran: {curls:?}");
    assert!(curls[0].contains("ready"), "readyz: {}", curls[0]);
    assert!(
        curls[1].contains("\"id\""),
        "POST /api/v1/jobs: {}",
        curls[1]
    );
    assert!(curls[3].trim().ends_with("routes"), "openapi: {}", curls[3]);
    assert!(
        curls[4].contains("jobmesh_jobs_enqueued_total{queue=\"default\",kind=\"sleep\"} 1"),
        "the scrape counts the job stored through the API: {}",
        curls[4]
    );

    // The node works the exec job and the workflow (whose first step is exec too).
    let store = SqliteStore::open(&dir.path().join("data").join("jobmesh.db"))
        .await
        .unwrap();
    let exec = finished_jobs(&store, "exec", 2).await;
    let echoed: Vec<String> = exec.iter().map(|j| format!("{:?}", j.output)).collect();
    assert!(
        echoed.iter().any(|o| o.contains("hello")) && echoed.iter().any(|o| o.contains("fetching")),
        "the exec job and the workflow's fetch step ran echo: {echoed:?}"
    );
    let report = store
        .list_jobs(&JobFilter {
            kind: Some("noop".into()),
            limit: 2000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.depends_on.len() == 2)
        .expect("the workflow's report step");
    let deadline = Instant::now() + COMMAND_DEADLINE;
    loop {
        let job = store.get_job(report.id).await.unwrap().unwrap();
        match job.state {
            JobState::Succeeded => break,
            JobState::Discarded | JobState::Cancelled => {
                panic!(
                    "the workflow's last step ended {:?}: {:?}",
                    job.state, job.last_error
                )
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the workflow did not finish: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ctrl-C in the first terminal stops the node cleanly.
    let child = node.0.take().unwrap();
    interrupt(&child);
    let out = wait_output(child, COMMAND_DEADLINE, "node");
    assert!(out.status.success(), "the node exited with {}", out.status);
}
