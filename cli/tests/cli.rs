//! The binary as a user drives it: bad input is refused with a clear message, a node
//! started with no flags works on the embedded store, and a node killed with SIGKILL
//! mid-run loses no job and records none twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jobmesh::event::EventKind;
use jobmesh::job::{JobId, JobState};
use jobmesh::store::Store;
use jobmesh::store::sqlite::SqliteStore;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jobmesh"))
}

/// A scratch directory with a config pointing the node's files into it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[node]\nname = \"cli-test\"\ndata_dir = \"{}\"\n[workers]\nconcurrency = 8\npoll_interval = \"50ms\"\n[retry]\nunit = \"10ms\"\nexponent = 1\nmax_delay = \"50ms\"\n{extra}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("jobmesh.toml"), config).unwrap();
        Sandbox { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("jobmesh.toml")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("jobmesh.db")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "jobmesh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "jobmesh {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
fn bad_payloads_options_and_kinds_are_refused_with_the_reason() {
    let sb = Sandbox::new("");
    let err = sb.err(&["submit", "sleep", r#"{"ms": "soon"}"#]);
    assert!(
        err.contains("payload.ms: expected integer, got string"),
        "{err}"
    );
    let err = sb.err(&["submit", "noop", "{not json"]);
    assert!(err.contains("payload is not valid JSON"), "{err}");
    let err = sb.err(&["submit", "emial", "{}"]);
    assert!(err.contains("unknown job kind `emial`"), "{err}");
    let err = sb.err(&["submit", "noop", "--priority", "1000"]);
    assert!(err.contains("priority must be within -100..=100"), "{err}");
    let err = sb.err(&[
        "submit",
        "exec",
        r#"{"command": "rm", "args": ["-rf", "/"]}"#,
    ]);
    assert!(err.contains("rm"), "{err}");
    // Nothing was stored by any refused submit.
    assert!(!sb.db().exists() || sb.ok(&["jobs", "list"]).lines().count() <= 1);
}

#[test]
fn bad_configs_and_arguments_name_what_is_wrong() {
    let sb = Sandbox::new("[workers.restart]\nmax_restart = 3\n");
    let err = sb.err(&["jobs", "list"]);
    assert!(err.contains("unknown field `max_restart`"), "{err}");
    let sb = Sandbox::new("");
    let err = sb.err(&["jobs", "list", "--state", "runing"]);
    assert!(err.contains("unknown job state `runing`"), "{err}");
    let out = bin()
        .args(["--config", "/nonexistent.toml", "jobs", "list"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read config file /nonexistent.toml")
    );
    let out = sb
        .cmd(&["jobs", "list"])
        .env("JOBMESH__WORKERS__CONCURRENCY", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JOBMESH__WORKERS__CONCURRENCY"));
}

#[test]
fn errors_never_print_the_credentials_of_a_store_url() {
    // A syntax error's message quotes the offending line of the config file, URL and all.
    let sb = Sandbox::new(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://app:hunter22@db.example/jobs\" x\n",
    );
    let err = sb.err(&["jobs", "list"]);
    assert!(err.contains("postgres://***@db.example/jobs"), "{err}");
    assert!(!err.contains("hunter22"), "{err}");
}

#[test]
fn node_runs_submitted_jobs_retries_and_dead_letters() {
    let sb = Sandbox::new("");
    sb.ok(&["submit", "noop", "--count", "50"]);
    sb.ok(&["submit", "fail", r#"{"message": "flaky", "times": 1}"#]);
    sb.ok(&[
        "submit",
        "fail",
        r#"{"message": "broken", "retryable": false}"#,
    ]);
    let out = sb.ok(&["node", "--exit-when-idle"]);
    assert!(out.contains("no jobs left to run"), "{out}");
    let stats: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_str(&sb.ok(&["--json", "jobs", "stats"])).unwrap();
    assert_eq!(stats["default"].get("succeeded"), Some(&51), "{stats:?}");
    assert_eq!(stats["default"].get("discarded"), Some(&1), "{stats:?}");
    let dlq = sb.ok(&["dlq", "list"]);
    assert!(dlq.contains("broken"), "{dlq}");
    let redriven = sb.ok(&["dlq", "redrive", "--all"]);
    assert!(redriven.starts_with("redrove 1 job"), "{redriven}");
    let available = sb.ok(&["jobs", "list", "--state", "available"]);
    assert_eq!(
        available.lines().count(),
        2,
        "header + the redriven job:\n{available}"
    );
}

fn spawn_node(sb: &Sandbox, extra: &[&str]) -> Child {
    sb.cmd(&[&["node"], extra].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn counts(store: &SqliteStore) -> BTreeMap<JobState, u64> {
    store
        .counts()
        .await
        .unwrap()
        .remove("default")
        .unwrap_or_default()
}

async fn wait_until(
    store: &SqliteStore,
    what: &str,
    pred: impl Fn(&BTreeMap<JobState, u64>) -> bool,
) {
    // Polls the store the node writes to: the test watches a separate process, so there
    // is no in-process event to await. The deadline only bounds a failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(store).await;
        if pred(&c) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; counts {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn succeeded_events_per_job(events: &[jobmesh::event::StoredEvent]) -> BTreeMap<JobId, usize> {
    let mut per_job = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.event.kind == EventKind::JobSucceeded)
    {
        *per_job.entry(e.event.job.unwrap()).or_insert(0) += 1;
    }
    per_job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_nothing_and_records_nothing_twice() {
    let sb = Sandbox::new("");
    let total = 300u64;
    sb.ok(&[
        "submit",
        "sleep",
        r#"{"ms": 20}"#,
        "--count",
        &total.to_string(),
    ]);
    let mut node = spawn_node(&sb, &[]);
    let store = SqliteStore::open(&sb.db()).await.unwrap();
    wait_until(&store, "some jobs to finish and some to run", |c| {
        c.get(&JobState::Succeeded).copied().unwrap_or(0) >= 20
            && c.get(&JobState::Running).copied().unwrap_or(0) > 0
    })
    .await;
    node.kill().unwrap(); // SIGKILL: no graceful shutdown, leases left behind
    node.wait().unwrap();
    let running = counts(&store)
        .await
        .get(&JobState::Running)
        .copied()
        .unwrap_or(0);
    assert!(running > 0, "the kill should leave running jobs behind");

    let out = sb.ok(&["node", "--exit-when-idle"]);
    assert!(out.contains("no jobs left to run"), "{out}");
    let c = counts(&store).await;
    assert_eq!(
        c.get(&JobState::Succeeded),
        Some(&total),
        "every job finishes: {c:?}"
    );
    let events = store.events_after(0, 1_000_000).await.unwrap();
    let per_job = succeeded_events_per_job(&events);
    assert_eq!(per_job.len() as u64, total);
    assert!(
        per_job.values().all(|&n| n == 1),
        "a job's success was recorded twice"
    );
    let rescued = events
        .iter()
        .filter(|e| e.event.kind == EventKind::JobRescued)
        .count();
    assert!(
        rescued as u64 >= running,
        "the restarted node rescues the killed node's leases"
    );
}

#[test]
fn tour_1000_jobs_some_failing_some_panicking_end_succeeded_or_dead_lettered() {
    let sb = Sandbox::new("");
    sb.ok(&["submit", "noop", "--count", "900"]);
    sb.ok(&["submit", "fail", r#"{"times": 2}"#, "--count", "40"]);
    sb.ok(&[
        "submit",
        "fail",
        "{}",
        "--max-attempts",
        "2",
        "--count",
        "30",
    ]);
    sb.ok(&["submit", "panic", r#"{"times": 1}"#, "--count", "20"]);
    sb.ok(&[
        "submit",
        "panic",
        "{}",
        "--max-attempts",
        "2",
        "--count",
        "10",
    ]);
    sb.ok(&["node", "--exit-when-idle"]);
    let stats: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_str(&sb.ok(&["--json", "jobs", "stats"])).unwrap();
    let d = &stats["default"];
    assert_eq!(d.get("succeeded"), Some(&960), "{d:?}");
    assert_eq!(d.get("discarded"), Some(&40), "{d:?}");
    assert_eq!(d.values().sum::<u64>(), 1000, "no job lost or stuck: {d:?}");
    let events = sb.ok(&["--json", "events", "--after", "0"]);
    let restarts = events
        .lines()
        .filter(|l| l.contains("\"worker.restarted\""))
        .count();
    let crashes = events
        .lines()
        .filter(|l| l.contains("\"worker.crashed\""))
        .count();
    // One crash per panicking attempt. Each crash is followed by a restart, except
    // that a worker crashing again soon restarts after a backoff, which the node's
    // stop can pre-empt: at most one pending restart per worker (8).
    assert_eq!(crashes, 40, "one crash per panicking attempt");
    assert!(
        restarts <= crashes && restarts + 8 >= crashes,
        "crashes {crashes}, restarts {restarts}"
    );
}

#[test]
fn mesh_identity_is_stable_and_bad_mesh_options_are_refused() {
    let sb = Sandbox::new("");
    let id = sb.ok(&["mesh", "id"]);
    assert!(id.trim().starts_with("12D3KooW"), "{id}");
    assert_eq!(
        sb.ok(&["mesh", "id"]),
        id,
        "the key file keeps the identity"
    );
    let err = sb.err(&["node", "--join", "not-an-address"]);
    assert!(
        err.contains("mesh.join: `not-an-address` is not a multiaddr"),
        "{err}"
    );
    let err = sb.err(&["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(
        err.contains("tolerating f = 1 Byzantine members needs at least 4"),
        "{err}"
    );
    let err = sb.err(&["mesh", "peers"]);
    assert!(err.contains("no mesh status"), "{err}");
}

#[test]
fn join_certificates_are_issued_checked_and_chaos_control_needs_a_mesh() {
    let sb = Sandbox::new("");
    let key = sb.dir.path().join("cluster.key");
    let key_arg = key.to_str().unwrap();
    let cluster = sb.ok(&["mesh", "cluster-key", "--out", key_arg]);
    assert!(cluster.trim().starts_with("12D3KooW"), "{cluster}");
    let err = sb.err(&["mesh", "cluster-key", "--out", key_arg]);
    assert!(err.contains("refusing to overwrite"), "{err}");

    let me = sb.ok(&["mesh", "id"]);
    let cert = sb.dir.path().join("me.cert");
    let cert_arg = cert.to_str().unwrap();
    let common = [
        "mesh",
        "issue-join",
        "--cluster-key-file",
        key_arg,
        "--out",
        cert_arg,
    ];
    let err = sb.err(&[&common[..], &["--peer", "nope"]].concat());
    assert!(err.contains("--peer `nope` is not a peer id"), "{err}");
    let err = sb.err(&[&common[..], &["--peer", me.trim(), "--valid-for", "soon"]].concat());
    assert!(err.contains("--valid-for"), "{err}");
    sb.ok(&[&common[..], &["--peer", me.trim(), "--valid-for", "2h"]].concat());
    let issued: jobmesh::membership::JoinCertificate =
        serde_json::from_slice(&std::fs::read(&cert).unwrap()).unwrap();
    assert_eq!(issued.peer.to_string(), me.trim());
    let cluster_key = jobmesh::membership::public_key_of(&cluster.trim().parse().unwrap()).unwrap();
    let now = jobmesh::clock::Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    );
    assert!(issued.verify(&cluster_key, now));
    assert!(!issued.verify(&cluster_key, now.plus(Duration::from_secs(3 * 3600))));

    // A certificate for another node is refused at start, naming both ids.
    let other = Sandbox::new(&format!(
        "[mesh]\nmembers = [\"{}\"]\nf = 0\ncluster_key = \"{}\"\njoin_certificate = \"{}\"\n",
        cluster.trim(),
        cluster.trim(),
        cert_arg
    ));
    let err = other.err(&["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(err.contains("not this node"), "{err}");
    let bad = Sandbox::new("[mesh]\njoin_certificate = \"x.cert\"\n");
    let err = bad.err(&["node"]);
    assert!(
        err.contains("mesh.join_certificate needs mesh.cluster_key"),
        "{err}"
    );

    let err = sb.err(&["node", "--chaos-control", "faults.json"]);
    assert!(err.contains("--chaos-control injects mesh faults"), "{err}");
}
