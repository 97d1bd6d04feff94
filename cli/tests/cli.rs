//! The binary as a user drives it: bad input is refused with a clear message, a node
//! started with no flags works on the embedded store, and a node killed with SIGKILL
//! mid-run loses no job and records none twice.

use jobmesh::store::{EventLog, JobAdmin};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobmesh::event::EventKind;
use jobmesh::job::{JobId, JobState};
use jobmesh::store::sqlite::SqliteStore;

/// The counts of `jobs stats --json` (`{queue: {"paused": bool, "counts": {state: n}}}`)
/// by queue and state.
fn stats_counts(text: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let by_queue: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    by_queue
        .into_iter()
        .map(|(q, v)| (q, serde_json::from_value(v["counts"].clone()).unwrap()))
        .collect()
}

mod common;

use common::{Sandbox, bin};

/// The sandbox of these tests: eight workers polling every 50 ms and fast retries,
/// then `extra`.
fn sandbox(extra: &str) -> Sandbox {
    Sandbox::with_config(
        "cli-test",
        &format!(
            "[workers]\nconcurrency = 8\npoll_interval = \"50ms\"\n[retry]\nunit = \"10ms\"\nexponent = 1\nmax_delay = \"50ms\"\n{extra}"
        ),
    )
}

#[test]
fn bad_payloads_options_and_kinds_are_refused_with_the_reason() {
    let sb = sandbox("");
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
    let sb = sandbox("[workers.restart]\nmax_restart = 3\n");
    let err = sb.err(&["jobs", "list"]);
    assert!(err.contains("unknown field `max_restart`"), "{err}");
    let sb = sandbox("");
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
    for bad in ["0s", "2h", "soon", "-1s", ""] {
        let arg = format!("--scrape-every={bad}");
        let err = sb.err(&["bench", "--scratch", "--jobs", "1", &arg]);
        assert!(err.contains("--scrape-every"), "{bad}: {err}");
    }
}

#[test]
fn bench_refuses_a_payload_a_job_could_not_carry() {
    let sb = sandbox("");
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let deep = format!("{{\"a\": {deep}}}");
    for (payload, why) in [
        (
            big.as_str(),
            "bytes long; a bench payload is at most 65536 bytes",
        ),
        ("[1, 2]", "must be a JSON object"),
        ("{\"a\": ", "not valid JSON"),
        (deep.as_str(), "nested deeper than 64 levels"),
        ("{\"a\": \"\\u0000\"}", "NUL"),
    ] {
        let err = sb.err(&["bench", "--scratch", "--jobs", "1", "--payload", payload]);
        assert!(err.contains("--payload: "), "{err}");
        assert!(err.contains(why), "{why}: {err}");
        // The refusal names the problem without printing the value back.
        assert!(err.len() < 1000, "{} bytes of error", err.len());
    }
    // Nothing was measured: the refusal comes before any store is opened.
    assert!(!sb.db().exists());
}

#[test]
fn errors_never_print_the_credentials_of_a_store_url() {
    // A syntax error's message quotes the offending line of the config file, URL and all.
    let sb = sandbox(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://app:hunter22@db.example/jobs\" x\n",
    );
    let err = sb.err(&["jobs", "list"]);
    assert!(err.contains("postgres://***@db.example/jobs"), "{err}");
    assert!(!err.contains("hunter22"), "{err}");
}

#[test]
fn node_runs_submitted_jobs_retries_and_dead_letters() {
    let sb = sandbox("");
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
        stats_counts(&sb.ok(&["--json", "jobs", "stats"]));
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
    let sb = sandbox("");
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
    let sb = sandbox("");
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
        stats_counts(&sb.ok(&["--json", "jobs", "stats"]));
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
    let sb = sandbox("");
    let id = sb.ok(&["mesh", "id"]);
    assert!(id.trim().starts_with("12D3KooW"), "{id}");
    assert_eq!(
        sb.ok(&["mesh", "id"]),
        id,
        "the key file keeps the identity"
    );
    let err = sb.err(&["node", "--join", "not-an-address"]);
    assert!(
        err.contains("'--join <MULTIADDR>': `not-an-address` is not a multiaddr"),
        "{err}"
    );
    // In a config file, the key is named; nothing is opened or listened on.
    let bad = sandbox("[mesh]\nlisten = [\"nonsense\"]\n");
    let err = bad.err(&["node"]);
    assert!(
        err.contains("mesh.listen[0]: `nonsense` is not a multiaddr"),
        "{err}"
    );
    assert!(!bad.db().exists(), "refused before the store is opened");
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
    let sb = sandbox("");
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
    let other = sandbox(&format!(
        "[mesh]\nmembers = [\"{}\"]\nf = 0\ncluster_key = \"{}\"\njoin_certificate = \"{}\"\n",
        cluster.trim(),
        cluster.trim(),
        cert_arg
    ));
    let err = other.err(&["node", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(err.contains("not this node"), "{err}");
    let bad = sandbox("[mesh]\njoin_certificate = \"x.cert\"\n");
    let err = bad.err(&["node"]);
    assert!(
        err.contains("mesh.join_certificate needs mesh.cluster_key"),
        "{err}"
    );

    let err = sb.err(&["node", "--chaos-control", "faults.json"]);
    assert!(err.contains("--chaos-control injects mesh faults"), "{err}");
}

/// Waits for `child` to exit, killing it and failing the test after `secs`. Polls the
/// process (a separate program: there is nothing to await); the deadline only bounds
/// a failure.
fn wait_exit(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sqlite3(db: &std::path::Path, sql: &str) {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args`, reads one line of its stdout and closes the pipe, as `| head -1` does.
/// The verb must then end quietly: no panic, success (or a clean broken-pipe exit).
fn read_one_line_and_close(sb: &Sandbox, args: &[&str]) {
    use std::io::BufRead;
    let mut child = sb
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "{args:?} printed nothing");
    // The reader is dropped here: the pipe is closed while the verb still writes.
    let status = wait_exit(&mut child, 60, &format!("jobmesh {args:?}"));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(status.success(), "{args:?} exited with {status}: {err}");
}

#[test]
fn verbs_end_quietly_when_their_output_pipe_closes() {
    let sb = sandbox("");
    sb.ok(&["submit", "noop", "--count", "1500"]);
    sb.ok(&[
        "submit",
        "fail",
        r#"{"message": "broken", "retryable": false}"#,
        "--count",
        "300",
    ]);
    sb.ok(&["node", "--exit-when-idle"]);
    // Each prints far more than a pipe buffer (64 KiB), so the write after the reader
    // left fails rather than landing in the buffer.
    read_one_line_and_close(&sb, &["--json", "dlq", "list", "--limit", "300"]);
    read_one_line_and_close(&sb, &["dlq", "list", "--limit", "300"]);
    read_one_line_and_close(&sb, &["jobs", "list", "--limit", "1800"]);
    read_one_line_and_close(&sb, &["events", "--after", "0"]);
    read_one_line_and_close(&sb, &["--json", "events", "--after", "0"]);
}

#[test]
fn a_node_whose_log_pipe_closes_keeps_working() {
    use std::io::BufRead;
    let sb = sandbox("");
    sb.ok(&["submit", "noop", "--count", "200"]);
    let mut node = sb
        .cmd(&["node", "--exit-when-idle"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(node.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The log's reader is gone (as with `2>&1 | head -1`): the node must still run
    // every job and stop when idle.
    let status = wait_exit(&mut node, 60, "node with a closed log pipe");
    assert!(status.success(), "{status}");
    let stats: BTreeMap<String, BTreeMap<String, u64>> =
        stats_counts(&sb.ok(&["--json", "jobs", "stats"]));
    assert_eq!(stats["default"].get("succeeded"), Some(&200), "{stats:?}");
}

#[test]
fn jobs_show_prints_rfc3339_times_and_humantime_durations_json_keeps_millis() {
    let sb = sandbox("");
    sb.ok(&["submit", "noop", "--timeout", "30s", "--delay", "1h"]);
    let shown = sb.ok(&["jobs", "show", "1"]);
    let field = |name: &str| {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in\n{shown}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("timeout"), "30s", "{shown}");
    for t in ["run_at", "created_at"] {
        let text = field(t);
        assert!(
            text.ends_with('Z') && humantime::parse_rfc3339(&text).is_ok(),
            "{t} is not RFC 3339: {text}"
        );
    }
    let run_at = humantime::parse_rfc3339(&field("run_at")).unwrap();
    let ahead = run_at
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((3500..=3600).contains(&ahead), "run_at {ahead} s ahead");
    let table = sb.ok(&["jobs", "list"]);
    assert!(table.contains(&field("run_at")), "{table}");

    let json: serde_json::Value = serde_json::from_str(&sb.ok(&["--json", "jobs", "show", "1"]))
        .expect("--json jobs show is JSON");
    assert_eq!(json["timeout_ms"], 30_000, "{json}");
    assert!(json["run_at"].is_i64(), "times stay milliseconds: {json}");
    assert!(json.get("timeout").is_none(), "{json}");
}

#[test]
fn out_of_range_times_and_timeouts_are_refused_and_stored_ones_print() {
    let sb = sandbox("");
    let err = sb.err(&["submit", "noop", "--delay", "8000y"]);
    assert!(err.contains("--delay") && err.contains("run_at"), "{err}");
    let err = sb.err(&["submit", "noop", "--timeout", "8000y"]);
    assert!(err.contains("timeout must be at most 10 years"), "{err}");
    let err = sb.err(&["submit", "noop", "--timeout", "500000000000y"]);
    assert!(err.contains("timeout must be at most 10 years"), "{err}");
    let err = sb.err(&["submit", "noop", "--timeout", "8000y", "--count", "3"]);
    assert!(err.contains("timeout"), "{err}");
    assert_eq!(
        sb.ok(&["jobs", "list"]).lines().count(),
        1,
        "nothing stored"
    );

    // A row written before these bounds (or by another tool) still prints: out of
    // range times as their raw milliseconds, never a panic.
    sb.ok(&["submit", "noop"]);
    sqlite3(
        &sb.db(),
        "UPDATE jobs SET run_at = 9223372036854775807, created_at = -5, timeout_ms = 9223372036854775807",
    );
    for args in [
        &["jobs", "list"][..],
        &["jobs", "show", "1"],
        &["--json", "jobs", "show", "1"],
        &["events", "--after", "0"],
    ] {
        let out = sb.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    let shown = sb.ok(&["jobs", "show", "1"]);
    assert!(shown.contains("9223372036854775807 ms"), "{shown}");
}

#[test]
fn redriving_a_job_not_in_the_dlq_fails_and_says_why() {
    let sb = sandbox("");
    sb.ok(&["submit", "noop"]);
    let err = sb.err(&["dlq", "redrive", "1"]);
    assert!(
        err.contains("job 1 is available, not dead-lettered"),
        "{err}"
    );
    let err = sb.err(&["dlq", "redrive", "99"]);
    assert!(err.contains("job 99 does not exist"), "{err}");
}

#[test]
fn top_level_help_says_what_jobmesh_is_and_how_to_start() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for want in [
        "runtime for background jobs",
        "jobmesh node",
        "jobmesh submit sleep",
        "jobmesh jobs list",
        "--json",
        "JSON lines",
    ] {
        assert!(help.contains(want), "no `{want}` in\n{help}");
    }
    let out = bin().args(["submit", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("transactions of 1000"), "{help}");
}

#[test]
fn node_log_has_no_colour_when_stderr_is_not_a_terminal() {
    let sb = sandbox("");
    sb.ok(&["submit", "noop"]);
    let out = sb
        .cmd(&["node", "--exit-when-idle"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DEBUG"), "the node logs: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log: {log:?}"
    );
}

#[test]
fn every_verb_honours_or_refuses_json() {
    let sb = sandbox("");
    sb.ok(&["submit", "noop", "--count", "2"]);
    let key = sb.dir.path().join("cluster.key");
    let key = key.to_str().unwrap();
    let cert = sb.dir.path().join("me.cert");
    let cert = cert.to_str().unwrap();
    let me = sb.ok(&["mesh", "id"]);
    let verbs: Vec<Vec<&str>> = vec![
        vec!["submit", "noop"],
        vec!["submit", "noop", "--count", "3"],
        vec!["jobs", "list"],
        vec!["jobs", "show", "1"],
        vec!["jobs", "cancel", "1"],
        vec!["jobs", "stats"],
        vec!["dlq", "list"],
        vec!["dlq", "redrive", "--all"],
        vec!["events", "--after", "0"],
        vec!["periodic", "list"],
        vec!["mesh", "id"],
        vec!["mesh", "cluster-key", "--out", key],
        vec![
            "mesh",
            "issue-join",
            "--cluster-key-file",
            key,
            "--peer",
            me.trim(),
            "--out",
            cert,
        ],
        vec!["chaos", "list"],
        vec![
            "bench",
            "--scratch",
            "--jobs",
            "10",
            "--latency-samples",
            "2",
        ],
        vec!["node", "--exit-when-idle"],
    ];
    for verb in verbs {
        let out = sb.run(&[&["--json"][..], &verb].concat());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert!(
                stderr.contains("--json") && stdout.is_empty(),
                "{verb:?} failed without refusing --json: {stderr}"
            );
            continue;
        }
        // One JSON document, or JSON lines (events).
        let whole = serde_json::from_str::<serde_json::Value>(&stdout).is_ok();
        let lines = !stdout.trim().is_empty()
            && stdout
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok());
        assert!(whole || lines, "{verb:?} printed non-JSON: {stdout}");
    }
    let err = sb.err(&["--json", "node"]);
    assert!(err.contains("has no JSON output"), "{err}");
}

#[test]
fn interrupted_submit_of_an_absurd_count_says_what_it_stored_and_stays_small() {
    let sb = sandbox("");
    sb.ok(&["jobs", "list"]); // create the store, so the test can watch it fill
    let mut child = sb
        .cmd(&["submit", "noop", "--count", "4294967295"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(SqliteStore::open(&sb.db())).unwrap();
    let stored = || rt.block_on(counts(&store)).values().sum::<u64>();
    // Polls the store the submit writes to (another process); the deadline bounds a
    // failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored() < 5000 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("submit exited early ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "submit stored too little");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Streaming keeps memory flat: a few MB, not N jobs' worth.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kb < 200_000, "submit holds {rss_kb} kB");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = wait_exit(&mut child, 60, "the interrupted submit");
    assert!(!exit.success(), "an interrupted submit is a failure");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let n = stored();
    assert_eq!(n % 1000, 0, "whole batches only: {n}");
    assert!(
        err.contains(&format!(
            "interrupted: stored {n} of 4294967295 jobs (ids 1..={n})"
        )),
        "store holds {n}; submit said: {err}"
    );
}

#[test]
fn a_failed_batch_reports_the_jobs_stored_before_it() {
    let sb = sandbox("");
    sb.ok(&["jobs", "list"]);
    // The third batch of 1000 hits a fault injected in the database itself.
    sqlite3(
        &sb.db(),
        "CREATE TRIGGER fail_third_batch BEFORE INSERT ON jobs \
         WHEN (SELECT count(*) FROM jobs) >= 2500 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    );
    let err = sb.err(&["submit", "noop", "--count", "5000"]);
    assert!(
        err.contains("stored 2000 of 5000 jobs (ids 1..=2000); a batch of 1000 failed"),
        "{err}"
    );
    assert!(err.contains("injected failure"), "{err}");
    assert_eq!(
        err.matches("injected failure").count(),
        1,
        "cause said once: {err}"
    );
    sqlite3(&sb.db(), "DROP TRIGGER fail_third_batch");
    let stats: BTreeMap<String, BTreeMap<String, u64>> =
        stats_counts(&sb.ok(&["--json", "jobs", "stats"]));
    assert_eq!(stats["default"].get("available"), Some(&2000), "{stats:?}");
    let out = sb.ok(&["submit", "noop", "--count", "1500"]);
    assert_eq!(out.trim(), "stored 1500 of 1500 jobs (ids 2001..=3500)");
}

#[test]
fn exit_when_idle_ignores_future_jobs_and_other_queues() {
    let sb = sandbox("");
    sb.ok(&["submit", "noop", "--delay", "1h"]);
    sb.ok(&["submit", "noop", "--queue", "elsewhere"]);
    sb.ok(&["submit", "noop"]);
    let mut node = sb
        .cmd(&["node", "--exit-when-idle"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut node, 60, "node --exit-when-idle");
    assert!(status.success());
    let stats: BTreeMap<String, BTreeMap<String, u64>> =
        stats_counts(&sb.ok(&["--json", "jobs", "stats"]));
    assert_eq!(stats["default"].get("succeeded"), Some(&1), "{stats:?}");
    assert_eq!(stats["default"].get("scheduled"), Some(&1), "{stats:?}");
    assert_eq!(stats["elsewhere"].get("available"), Some(&1), "{stats:?}");
}
