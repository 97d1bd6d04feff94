//! The built-in handlers against real processes and a real local HTTP server.
//!
//! Nothing here waits for a fixed time: waits are for a condition (a process shows up,
//! a process is gone) with a generous deadline that only bounds a failing test.
//!
//! The test server listens on loopback, which the `http` kind refuses by default: the
//! registries here open `127.0.0.1` with `http.allow_private` explicitly, except where a
//! test checks that refusal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jobmesh::clock::Millis;
use jobmesh::config::{AddressPolicy, ExecSection, HttpSection};
use jobmesh::handler::{HandlerError, HandlerOutput, JobContext, Registry, builtin};
use jobmesh::job::{Job, JobId, JobState, LeaseToken, NewJob, ParentFailurePolicy};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Bounds every condition wait; a healthy run needs milliseconds.
const DEADLINE: Duration = Duration::from_secs(20);

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Built-in kinds allowing the programs `allow`, the hosts `hosts`, and loopback
/// (`127.0.0.1`, where the test server runs) opened as an internal target.
fn registry_with(allow: &[&str], max_output_bytes: usize, hosts: &[&str]) -> Registry {
    builtin::registry(
        &ExecSection {
            allow: strings(allow),
            env_allow: strings(&["APP_GREETING"]),
            max_output_bytes,
            ..ExecSection::default()
        },
        &HttpSection {
            allow_hosts: strings(hosts),
            allow_private: AddressPolicy::parse(&["127.0.0.1"]).unwrap(),
            max_response_bytes: 64,
            ..HttpSection::default()
        },
    )
}

/// Built-in kinds with `http` configured as given and `exec` off.
fn http_registry(http: HttpSection) -> Registry {
    builtin::registry(&ExecSection::default(), &http)
}

fn exec_registry(allow: &[&str]) -> Registry {
    registry_with(allow, 64 * 1024, &[])
}

fn job(kind: &str, payload: Value, attempt: u32) -> JobContext {
    JobContext {
        job: Job {
            id: JobId(1),
            queue: "default".into(),
            kind: kind.into(),
            payload,
            priority: 0,
            state: JobState::Running,
            attempt,
            max_attempts: 25,
            run_at: Millis(0),
            created_at: Millis(0),
            finished_at: None,
            timeout: None,
            unique_key: None,
            lease_token: LeaseToken(attempt as i64),
            lease_owner: None,
            lease_node: None,
            lease_expires_at: None,
            last_error: None,
            output: None,
            depends_on: Vec::new(),
            on_parent_failure: ParentFailurePolicy::Discard,
            progress: None,
            snoozes: 0,
        },
        timeout: Duration::from_secs(30),
        cancel: tokio_util::sync::CancellationToken::new(),
        progress: jobmesh::handler::progress::ProgressReporter::detached(),
    }
}

/// Validates like a submit would, then runs attempt `attempt`.
async fn run_at(
    r: &Registry,
    kind: &str,
    payload: Value,
    attempt: u32,
) -> Result<HandlerOutput, HandlerError> {
    r.validate(&NewJob::new(kind, payload.clone()))
        .unwrap_or_else(|e| panic!("payload refused at submit: {e}"));
    r.get(kind)
        .unwrap()
        .handler
        .run(job(kind, payload, attempt))
        .await
}

async fn run(r: &Registry, kind: &str, payload: Value) -> Result<HandlerOutput, HandlerError> {
    run_at(r, kind, payload, 1).await
}

/// The submit-time refusal message for `payload`.
fn refusal(r: &Registry, kind: &str, payload: Value) -> String {
    r.validate(&NewJob::new(kind, payload))
        .expect_err("payload should be refused")
        .to_string()
}

// ---------------------------------------------------------------- payload validation

#[test]
fn malformed_payloads_are_refused_naming_the_field() {
    let r = registry_with(&["echo"], 1024, &[]);
    let cases = [
        ("noop", json!([]), "payload: expected object, got array"),
        (
            "sleep",
            json!({"ms": "x"}),
            "payload.ms: expected integer, got string",
        ),
        ("sleep", json!({}), "payload: missing required field `ms`"),
        (
            "sleep",
            json!({"ms": 1.5}),
            "payload.ms: expected integer, got number",
        ),
        (
            "sleep",
            json!({"ms": -1}),
            "payload.ms: must be at least 0, got -1",
        ),
        (
            "sleep",
            json!({"ms": 3_600_001}),
            "payload.ms: must be at most 3600000, got 3600001",
        ),
        (
            "sleep",
            json!({"ms": 1, "extra": true}),
            "payload: unknown field `extra` (allowed: ms)",
        ),
        (
            "fail",
            json!({"retryable": "no"}),
            "payload.retryable: expected boolean, got string",
        ),
        (
            "fail",
            json!({"times": -2}),
            "payload.times: must be at least 0, got -2",
        ),
        (
            "fail",
            json!({"message": 7}),
            "payload.message: expected string, got integer",
        ),
        (
            "panic",
            json!({"retryable": true}),
            "payload: unknown field `retryable` (allowed: message, times)",
        ),
        (
            "exec",
            json!({}),
            "payload: missing required field `command`",
        ),
        (
            "exec",
            json!({"command": "echo", "args": "hi"}),
            "payload.args: expected array, got string",
        ),
        (
            "exec",
            json!({"command": "echo", "args": ["a", 2]}),
            "payload.args[1]: expected string, got integer",
        ),
        (
            "exec",
            json!({"command": "echo", "env": {"A": 1}}),
            "payload.env.A: expected string, got integer",
        ),
        (
            "exec",
            json!({"command": "echo", "stdin": ["x"]}),
            "payload.stdin: expected string, got array",
        ),
        (
            "exec",
            json!({"command": "echo", "shell": true}),
            "payload: unknown field `shell` (allowed: args, command, cwd, env, stdin)",
        ),
        ("http", json!({}), "payload: missing required field `url`"),
        (
            "http",
            json!({"url": "http://x/", "method": "PATCH"}),
            "payload.method: must be one of \"POST\", \"PUT\", \"GET\", \"DELETE\"",
        ),
        (
            "http",
            json!({"url": "not a url"}),
            "payload.url: `not a url`: relative URL without a base",
        ),
        (
            "http",
            json!({"url": "ftp://x/"}),
            "payload.url: scheme `ftp` is not allowed (only http and https)",
        ),
        (
            "http",
            json!({"url": "http://x/", "headers": {"X-A": true}}),
            "payload.headers.X-A: expected string, got boolean",
        ),
    ];
    for (kind, payload, want) in cases {
        let got = refusal(&r, kind, payload.clone());
        assert_eq!(
            got,
            format!("invalid payload for kind `{kind}`: {want}"),
            "{kind} {payload}"
        );
    }
}

#[test]
fn well_formed_payloads_pass() {
    let r = registry_with(&["echo", "/bin/cat"], 1024, &[]);
    let cases = [
        ("noop", json!({})),
        ("noop", json!({"bench": 17})),
        ("sleep", json!({"ms": 0})),
        ("fail", json!({})),
        (
            "fail",
            json!({"message": "m", "retryable": false, "times": 2}),
        ),
        ("panic", json!({"times": 1})),
        (
            "exec",
            json!({"command": "echo", "args": ["a"], "env": {"APP_GREETING": "b"}, "stdin": "", "cwd": "/"}),
        ),
        ("exec", json!({"command": "/bin/cat"})),
        (
            "http",
            json!({"url": "https://example.com/hook", "body": [1, {"a": null}]}),
        ),
        (
            "http",
            json!({"url": "http://x/", "method": "GET", "headers": {"X-A": "1"}}),
        ),
    ];
    for (kind, payload) in cases {
        let v = r.validate(&NewJob::new(kind, payload.clone()));
        assert!(v.is_ok(), "{kind} {payload}: {}", v.unwrap_err());
    }
}

// ---------------------------------------------------------------- noop, sleep, fail, panic

#[tokio::test]
async fn noop_succeeds_without_output() {
    let r = exec_registry(&[]);
    assert_eq!(run(&r, "noop", json!({})).await, Ok(None));
}

#[tokio::test]
async fn sleep_waits_at_least_ms() {
    let r = exec_registry(&[]);
    let start = Instant::now();
    assert_eq!(run(&r, "sleep", json!({"ms": 30})).await, Ok(None));
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn fail_fails_retryably_by_default_and_permanently_on_request() {
    let r = exec_registry(&[]);
    let e = run(&r, "fail", json!({"message": "boom"}))
        .await
        .unwrap_err();
    assert_eq!(e, HandlerError::Retryable("boom".into()));
    let e = run(&r, "fail", json!({"retryable": false}))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("attempt 1"), "{e}");
}

#[tokio::test]
async fn fail_with_times_recovers_after_n_attempts() {
    let r = exec_registry(&[]);
    let p = json!({"times": 2});
    assert!(run_at(&r, "fail", p.clone(), 1).await.is_err());
    assert!(run_at(&r, "fail", p.clone(), 2).await.is_err());
    assert_eq!(run_at(&r, "fail", p.clone(), 3).await, Ok(None));
    assert_eq!(run_at(&r, "fail", json!({"times": 0}), 1).await, Ok(None));
}

#[tokio::test]
async fn panic_panics_until_times_is_used_up() {
    let r = exec_registry(&[]);
    let handler = r.get("panic").unwrap().handler.clone();
    let p = json!({"message": "kaboom", "times": 1});
    let h = handler.clone();
    let ctx = job("panic", p.clone(), 1);
    let joined = tokio::spawn(async move { h.run(ctx).await }).await;
    let err = joined.expect_err("attempt 1 must panic");
    assert!(err.is_panic());
    let msg = err.into_panic();
    let msg = msg
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| msg.downcast_ref::<&str>().copied());
    assert_eq!(msg, Some("kaboom"));
    assert_eq!(handler.run(job("panic", p, 2)).await, Ok(None));
}

// ---------------------------------------------------------------- exec

fn exec_output(out: HandlerOutput) -> (i64, String, String, bool) {
    let v = out.expect("exec returns output");
    (
        v["exit_code"].as_i64().unwrap(),
        v["stdout"].as_str().unwrap().to_string(),
        v["stderr"].as_str().unwrap().to_string(),
        v["truncated"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn exec_runs_a_program_and_captures_its_output() {
    let r = exec_registry(&["/bin/echo"]);
    let out = run(
        &r,
        "exec",
        json!({"command": "/bin/echo", "args": ["hello", "world"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        Some(json!({"exit_code": 0, "stdout": "hello world\n", "stderr": "", "truncated": false}))
    );
}

#[tokio::test]
async fn exec_passes_arguments_literally_without_a_shell() {
    let r = exec_registry(&["echo"]);
    let args = [
        "a; touch /tmp/jobmesh-pwned",
        "$(id)",
        "`id`",
        "*",
        "x | y",
        "'q'",
    ];
    let (code, stdout, _, _) = exec_output(
        run(&r, "exec", json!({"command": "echo", "args": args}))
            .await
            .unwrap(),
    );
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("{}\n", args.join(" ")));
}

#[tokio::test]
async fn exec_feeds_stdin() {
    let r = exec_registry(&["cat"]);
    let input = "line one\nline two with ünïcödé\n";
    let (_, stdout, _, _) = exec_output(
        run(&r, "exec", json!({"command": "cat", "stdin": input}))
            .await
            .unwrap(),
    );
    assert_eq!(stdout, input);
}

#[tokio::test]
async fn exec_without_stdin_gives_the_program_an_empty_one() {
    // `cat` with no input must see EOF at once rather than hang on an inherited stdin.
    let r = exec_registry(&["cat"]);
    let (_, stdout, _, _) = exec_output(run(&r, "exec", json!({"command": "cat"})).await.unwrap());
    assert_eq!(stdout, "");
}

#[tokio::test]
async fn exec_sets_env_and_cwd_and_withholds_the_workers_environment() {
    let r = exec_registry(&["printenv", "pwd"]);
    let (_, stdout, _, _) = exec_output(
        run(
            &r,
            "exec",
            json!({"command": "printenv", "args": ["APP_GREETING"], "env": {"APP_GREETING": "hi there"}}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(stdout, "hi there\n");

    // Cargo sets this for the test process; a job must not see the worker's variables.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let e = run(
        &r,
        "exec",
        json!({"command": "printenv", "args": ["CARGO_MANIFEST_DIR"]}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");

    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let (_, stdout, _, _) = exec_output(
        run(
            &r,
            "exec",
            json!({"command": "pwd", "cwd": cwd.to_str().unwrap()}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(stdout.trim_end(), cwd.to_str().unwrap());
}

#[tokio::test]
async fn exec_non_zero_exit_is_retryable_and_quotes_stderr() {
    let r = exec_registry(&["false", "/bin/sh"]);
    let e = run(&r, "exec", json!({"command": "false"}))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("exit status: 1"), "{e}");

    let script = "echo progress; echo 'disk full on /data' >&2; exit 3";
    let e = run(
        &r,
        "exec",
        json!({"command": "/bin/sh", "args": ["-c", script]}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.ends_with("disk full on /data"), "{msg}");
}

/// Progress lines on stdout are reported as they come (the newest pending one is
/// what the node would record), exit code 75 snoozes for the last `JOBMESH_SNOOZE`
/// delay (60 s without one), and a malformed delay fails the run saying why.
#[tokio::test]
async fn exec_reports_progress_lines_and_snoozes_on_exit_75() {
    use jobmesh::handler::builtin::exec_control::{DEFAULT_SNOOZE, SNOOZE_EXIT_CODE};
    use jobmesh::handler::progress::{ProgressCell, ProgressReporter};
    use std::sync::Arc;

    let r = exec_registry(&["/bin/sh"]);
    let sh = |script: &str| json!({"command": "/bin/sh", "args": ["-c", script]});
    let cell = Arc::new(ProgressCell::new());
    let mut ctx = job(
        "exec",
        sh(
            "echo 'JOBMESH_PROGRESS 0.25 reading'; echo 'JOBMESH_PROGRESS 0.75 writing token=abcd1234'; echo ok",
        ),
        1,
    );
    ctx.progress = ProgressReporter::new(
        cell.clone(),
        Arc::new(jobmesh::clock::SystemClock),
        ctx.cancel.clone(),
    );
    let out = r
        .get("exec")
        .unwrap()
        .handler
        .run(ctx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out["exit_code"], 0);
    assert!(out["stdout"].as_str().unwrap().ends_with("ok\n"), "{out}");
    let p = cell.take_for_write().expect("a progress report");
    assert_eq!(p.fraction, 0.75);
    assert_eq!(p.message, "writing token=***");

    let e = run(
        &r,
        "exec",
        sh("echo 'JOBMESH_SNOOZE 1m'; echo 'JOBMESH_SNOOZE 90s'; exit 75"),
    )
    .await
    .unwrap_err();
    assert_eq!(e, HandlerError::Snooze(Duration::from_secs(90)));
    let e = run(&r, "exec", sh(&format!("exit {SNOOZE_EXIT_CODE}")))
        .await
        .unwrap_err();
    assert_eq!(e, HandlerError::Snooze(DEFAULT_SNOOZE));
    let e = run(&r, "exec", sh("echo 'JOBMESH_SNOOZE later'; exit 75"))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        e.to_string()
            .contains("exited 75 to snooze, but bad `JOBMESH_SNOOZE later` line"),
        "{e}"
    );
}

#[tokio::test]
async fn exec_missing_program_is_permanent() {
    let r = exec_registry(&["jobmesh-no-such-program", "/nonexistent/tool"]);
    for command in ["jobmesh-no-such-program", "/nonexistent/tool"] {
        let e = run(&r, "exec", json!({"command": command}))
            .await
            .unwrap_err();
        assert!(!e.is_retryable(), "{command}: {e:?}");
        assert!(e.to_string().contains(command), "{e}");
    }
}

#[tokio::test]
async fn exec_missing_cwd_is_permanent() {
    let r = exec_registry(&["echo"]);
    let e = run(
        &r,
        "exec",
        json!({"command": "echo", "cwd": "/nonexistent/dir"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        HandlerError::Permanent("cwd `/nonexistent/dir` is not a directory".into())
    );
}

#[tokio::test]
async fn exec_truncates_output_and_still_drains_the_program() {
    // `seq` writes ~590 KB, far more than a pipe buffer: the program only finishes if
    // the handler keeps reading past the limit.
    let r = registry_with(&["seq"], 1000, &[]);
    let (code, stdout, stderr, truncated) = exec_output(
        run(
            &r,
            "exec",
            json!({"command": "seq", "args": ["1", "100000"]}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(code, 0);
    assert!(truncated);
    assert_eq!(stdout.len(), 1000);
    assert!(stdout.starts_with("1\n2\n3\n"), "{stdout}");
    assert_eq!(stderr, "");

    let (_, stdout, _, truncated) = exec_output(
        run(&r, "exec", json!({"command": "seq", "args": ["1", "3"]}))
            .await
            .unwrap(),
    );
    assert_eq!((stdout.as_str(), truncated), ("1\n2\n3\n", false));
}

#[tokio::test]
async fn exec_refuses_commands_off_the_allowlist_at_submit_and_at_run_time() {
    let r = exec_registry(&["echo"]);
    assert_eq!(
        refusal(&r, "exec", json!({"command": "rm", "args": ["-rf", "/"]})),
        "invalid payload for kind `exec`: payload.command: command `rm` is not in exec.allow (allowed: echo)"
    );
    // The allowlist names exact programs: another path to the same name is refused.
    assert!(
        refusal(&r, "exec", json!({"command": "/tmp/echo"}))
            .contains("command `/tmp/echo` is not in exec.allow")
    );
    assert!(
        refusal(&exec_registry(&[]), "exec", json!({"command": "echo"}))
            .contains("exec.allow is empty")
    );

    // A job stored under an older, wider allowlist is refused when it runs.
    let e = r
        .get("exec")
        .unwrap()
        .handler
        .run(job("exec", json!({"command": "rm", "args": ["x"]}), 1))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("not in exec.allow"), "{e}");
}

#[tokio::test]
async fn exec_allowlist_survives_config_rules_replacing_the_schema() {
    let mut r = exec_registry(&["echo"]);
    r.set_rules("exec", Default::default()).unwrap();
    assert!(refusal(&r, "exec", json!({"command": "rm"})).contains("not in exec.allow"));
}

/// The pid of a live `sleep` process whose first argument is `arg`, if any.
fn find_sleep(arg: &str) -> Option<u32> {
    let want = format!("sleep\0{arg}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.ends_with(&want) && alive(pid)).then_some(pid)
    })
}

/// Whether `pid` is a running (not exited, not zombie) process.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

#[tokio::test]
async fn exec_timeout_kills_the_child() {
    let r = exec_registry(&["sleep"]);
    // A duration no other process on the machine is sleeping, so /proc finds ours.
    let arg = format!(
        "{}.{:09}",
        600 + std::process::id() % 1000,
        std::process::id()
    );
    let run = run(&r, "exec", json!({"command": "sleep", "args": [arg]}));
    let seen = async {
        let start = Instant::now();
        loop {
            if let Some(pid) = find_sleep(&arg) {
                return pid;
            }
            assert!(start.elapsed() < DEADLINE, "the child never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // The worker enforces a job's timeout by dropping the handler's future; losing the
    // race here drops it the same way, once the child is known to be running.
    let pid = tokio::select! {
        r = run => panic!("sleep finished early: {r:?}"),
        pid = seen => pid,
    };
    let start = Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < DEADLINE, "child {pid} outlived its job");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // And through a real tokio timeout, as the worker applies it.
    let r2 = exec_registry(&["sleep"]);
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_millis(200),
        self::run(&r2, "exec", json!({"command": "sleep", "args": ["30"]})),
    )
    .await;
    assert!(res.is_err(), "must time out: {res:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---------------------------------------------------------------- http

/// A request as the test server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 server on 127.0.0.1:0. The path picks the answer: `/status/N`
/// answers N, `/big` answers 1000 bytes, `/to/URL` redirects (302) to URL, `/echo/N`
/// answers N with the request's `authorization` header as the body, anything else 200
/// `ok`. Every request is reported on the channel.
async fn server() -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap().split(' ');
                let method = first.next().unwrap().to_string();
                let path = first.next().unwrap().to_string();
                let headers: BTreeMap<String, String> = lines
                    .filter_map(|l| l.split_once(": "))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..head_end + len].to_vec();
                let mut location = String::new();
                let (status, reply) = if let Some(code) = path.strip_prefix("/status/") {
                    (code.parse::<u16>().unwrap(), format!("status {code} body"))
                } else if let Some(code) = path.strip_prefix("/echo/") {
                    let auth = headers.get("authorization").cloned().unwrap_or_default();
                    (code.parse::<u16>().unwrap(), format!("you sent {auth}"))
                } else if let Some(to) = path.strip_prefix("/to/") {
                    location = format!("location: {to}\r\n");
                    (302, String::new())
                } else if path == "/big" {
                    (200, "x".repeat(1000))
                } else {
                    (200, "ok".to_string())
                };
                tx.send(Seen {
                    method,
                    path,
                    headers,
                    body,
                })
                .await
                .unwrap();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\n{location}content-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    (base, rx)
}

#[tokio::test]
async fn http_posts_the_json_body_with_headers() {
    let (base, mut seen) = server().await;
    let r = exec_registry(&[]);
    let body = json!({"event": "done", "n": [1, 2, 3]});
    let out = run(
        &r,
        "http",
        json!({"url": format!("{base}/hook"), "headers": {"X-Token": "abc"}, "body": body}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        Some(json!({"status": 200, "body": "ok", "truncated": false}))
    );
    let req = seen.recv().await.unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook");
    assert_eq!(req.headers.get("x-token").map(String::as_str), Some("abc"));
    assert_eq!(
        req.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(serde_json::from_slice::<Value>(&req.body).unwrap(), body);
}

#[tokio::test]
async fn http_uses_the_requested_method() {
    let (base, mut seen) = server().await;
    let r = exec_registry(&[]);
    for method in ["GET", "PUT", "DELETE"] {
        run(
            &r,
            "http",
            json!({"url": format!("{base}/m"), "method": method}),
        )
        .await
        .unwrap();
        let req = seen.recv().await.unwrap();
        assert_eq!(req.method, method);
        assert!(req.body.is_empty());
    }
}

#[tokio::test]
async fn http_status_classes() {
    let (base, _seen) = server().await;
    let r = exec_registry(&[]);
    for (code, retryable) in [
        (500, true),
        (503, true),
        (429, true),
        (404, false),
        (400, false),
    ] {
        let e = run(&r, "http", json!({"url": format!("{base}/status/{code}")}))
            .await
            .unwrap_err();
        assert_eq!(e.is_retryable(), retryable, "{code}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("returned {code}")), "{msg}");
        assert!(msg.ends_with(&format!("status {code} body")), "{msg}");
    }
}

#[tokio::test]
async fn http_truncates_the_response_body() {
    let (base, _seen) = server().await;
    // registry_with keeps 64 bytes of a response.
    let r = exec_registry(&[]);
    let out = run(
        &r,
        "http",
        json!({"url": format!("{base}/big"), "method": "GET"}),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out["body"], json!("x".repeat(64)));
    assert_eq!(out["truncated"], json!(true));
}

#[tokio::test]
async fn http_unreachable_port_is_retryable() {
    // Bind then drop: the port was free a moment ago and nothing listens on it now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = exec_registry(&[]);
    let e = run(
        &r,
        "http",
        json!({"url": format!("http://127.0.0.1:{port}/")}),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn http_allow_hosts_refuses_other_hosts_at_submit_and_at_run_time() {
    let (base, mut seen) = server().await;
    let r = registry_with(&[], 1024, &["hooks.example.com"]);
    let url = format!("{base}/hook");
    assert_eq!(
        refusal(&r, "http", json!({"url": url})),
        "invalid payload for kind `http`: payload.url: host `127.0.0.1` is not in http.allow_hosts (allowed: hooks.example.com)"
    );
    let e = r
        .get("http")
        .unwrap()
        .handler
        .run(job("http", json!({"url": url}), 1))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("not in http.allow_hosts"), "{e}");
    assert!(
        seen.try_recv().is_err(),
        "the refused call must not be made"
    );

    // Allowed by host (any port) it goes through.
    let r = registry_with(&[], 1024, &["127.0.0.1"]);
    run(&r, "http", json!({"url": url})).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().path, "/hook");
}

// ---------------------------------------------------------------- http: internal targets

/// Runs the handler directly (as a job stored under an older configuration would run),
/// skipping the submit-time check.
async fn run_unchecked(
    r: &Registry,
    kind: &str,
    payload: Value,
) -> Result<HandlerOutput, HandlerError> {
    r.get(kind)
        .unwrap()
        .handler
        .run(job(kind, payload, 1))
        .await
}

#[tokio::test]
async fn http_refuses_loopback_by_default_in_every_spelling() {
    let (base, mut seen) = server().await;
    let port = base.rsplit(':').next().unwrap();
    let r = http_registry(HttpSection::default());
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "0",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "localhost",
        "localhost.",
        "LocalHost",
    ] {
        let url = format!("http://{host}:{port}/hook");
        let refused = refusal(&r, "http", json!({"url": url}));
        assert!(
            refused.starts_with("invalid payload for kind `http`: payload.url: ")
                && refused.contains("refused (http.allow_private opens internal targets)"),
            "{host}: {refused}"
        );
        // And at run time, for a job stored before the rule existed.
        let e = run_unchecked(&r, "http", json!({"url": url}))
            .await
            .unwrap_err();
        assert!(!e.is_retryable(), "{host}: {e:?}");
        assert!(e.to_string().contains("refused"), "{host}: {e}");
    }
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
    ] {
        assert!(
            refusal(&r, "http", json!({"url": url})).contains("refused"),
            "{url}"
        );
    }
    assert!(
        seen.try_recv().is_err(),
        "no refused call may reach the server"
    );
}

#[tokio::test]
async fn http_checks_the_addresses_a_name_resolves_to_when_connecting() {
    // `127.0.0.2` opened: names of the local machine pass the early check, so the
    // resolver alone stands between `localhost` (127.0.0.1 and ::1) and the server.
    let (base, mut seen) = server().await;
    let port = base.rsplit(':').next().unwrap();
    let r = http_registry(HttpSection {
        allow_private: AddressPolicy::parse(&["127.0.0.2"]).unwrap(),
        ..HttpSection::default()
    });
    let url = format!("http://localhost:{port}/hook");
    let e = run(&r, "http", json!({"url": url})).await.unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("`localhost` resolves to"), "{msg}");
    assert!(msg.contains("is a loopback address: refused"), "{msg}");
    assert!(
        seen.try_recv().is_err(),
        "the refused call must not be made"
    );

    // Opened by name, the same URL goes through.
    let r = http_registry(HttpSection {
        allow_private: AddressPolicy::parse(&["localhost"]).unwrap(),
        ..HttpSection::default()
    });
    run(&r, "http", json!({"url": url})).await.unwrap();
    assert_eq!(seen.recv().await.unwrap().path, "/hook");
}

#[tokio::test]
async fn http_opt_in_opens_exactly_what_it_names() {
    let (base, mut seen) = server().await;
    let port = base.rsplit(':').next().unwrap();
    let opened = |entries: &[&str]| {
        http_registry(HttpSection {
            allow_private: AddressPolicy::parse(entries).unwrap(),
            ..HttpSection::default()
        })
    };
    for entries in [&["127.0.0.1"][..], &["127.0.0.0/8"], &["::ffff:127.0.0.1"]] {
        let r = opened(entries);
        run(
            &r,
            "http",
            json!({"url": format!("http://127.0.0.1:{port}/in")}),
        )
        .await
        .unwrap_or_else(|e| panic!("{entries:?}: {e}"));
        assert_eq!(seen.recv().await.unwrap().path, "/in");
    }
    // Another internal network opens nothing here.
    let r = opened(&["10.0.0.0/8"]);
    assert!(
        refusal(
            &r,
            "http",
            json!({"url": format!("http://127.0.0.1:{port}/")})
        )
        .contains("loopback")
    );
}

#[tokio::test]
async fn http_redirects_are_capped_and_stay_on_the_opened_host() {
    let (base, mut seen) = server().await;
    let port = base.rsplit(':').next().unwrap();
    let r = exec_registry(&[]); // 127.0.0.1 opened
    // On the same host: followed.
    let out = run(
        &r,
        "http",
        json!({"url": format!("{base}/to/{base}/landed"), "method": "GET"}),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out["status"], json!(200));
    assert_eq!(
        seen.recv().await.unwrap().path,
        format!("/to/{base}/landed")
    );
    assert_eq!(seen.recv().await.unwrap().path, "/landed");

    // From the opened server to a forbidden address or another host: refused, the
    // target never contacted.
    for to in [
        format!("http://localhost:{port}/x"),
        format!("http://[::1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://127.0.0.2:{port}/x"),
    ] {
        let e = run(
            &r,
            "http",
            json!({"url": format!("{base}/to/{to}"), "method": "GET"}),
        )
        .await
        .unwrap_err();
        assert!(!e.is_retryable(), "{to}: {e:?}");
        assert!(e.to_string().contains("refused"), "{to}: {e}");
        assert!(seen.recv().await.unwrap().path.starts_with("/to/"));
        assert!(seen.try_recv().is_err(), "{to} must not be called");
    }

    // A loop gives up after the cap.
    let hop = |n: usize| (0..n).fold("/landed".to_string(), |to, _| format!("/to/{base}{to}"));
    let e = run(
        &r,
        "http",
        json!({"url": format!("{base}{}", hop(5)), "method": "GET"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("more than 3 redirects"), "{e}");
}

#[tokio::test]
async fn http_refuses_host_hop_by_hop_and_metadata_headers() {
    let r = exec_registry(&[]);
    for name in [
        "Host",
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Metadata-Flavor",
        "X-aws-ec2-metadata-token",
    ] {
        let got = refusal(
            &r,
            "http",
            json!({"url": "https://example.com/", "headers": {name: "x"}}),
        );
        assert!(
            got.starts_with(&format!(
                "invalid payload for kind `http`: payload.headers.{name}: may not be set: "
            )),
            "{got}"
        );
    }
}

/// Set in the child process of `http_never_uses_a_proxy_from_the_environment`.
const PROXY_CHILD: &str = "JOBMESH_TEST_PROXY_CHILD";

#[tokio::test]
async fn http_never_uses_a_proxy_from_the_environment() {
    // A proxy would connect on the node's behalf to addresses the resolver never sees.
    // The environment is set by starting this test again in a child process (changing
    // it here would race the other tests' threads).
    let Ok(proxy) = std::env::var(PROXY_CHILD) else {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", proxy.local_addr().unwrap());
        let (tx, mut used) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = proxy.accept().await {
                tx.send(()).await.unwrap();
                let reply =
                    "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied";
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        let child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "http_never_uses_a_proxy_from_the_environment",
                "--exact",
                "--nocapture",
            ])
            .env(PROXY_CHILD, &addr)
            .env("HTTP_PROXY", &addr)
            .env("http_proxy", &addr)
            .env("ALL_PROXY", &addr)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&child.stdout);
        assert!(
            child.status.success(),
            "child failed:\n{out}\n{}",
            String::from_utf8_lossy(&child.stderr)
        );
        assert!(out.contains("1 passed"), "the child ran no test:\n{out}");
        assert!(used.try_recv().is_err(), "the proxy was used");
        return;
    };
    assert_eq!(std::env::var("HTTP_PROXY").unwrap(), proxy);
    let r = exec_registry(&[]);
    // Through the proxy this would succeed ("proxied"); directly, the name does not exist.
    let e = run(
        &r,
        "http",
        json!({"url": "http://no-such-host.invalid/", "method": "GET"}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn http_errors_and_output_never_quote_credentials() {
    let (base, _seen) = server().await;
    let with_user = base.replace("http://", "http://alice:secretpw@");
    let r = http_registry(HttpSection {
        allow_private: AddressPolicy::parse(&["127.0.0.1"]).unwrap(),
        secret_headers: strings(&["X-Api-Key"]),
        max_response_bytes: 1024,
        ..HttpSection::default()
    });
    let headers = json!({"Authorization": "Bearer secretpw-token", "X-Api-Key": "secretpw-key"});
    // A failing call whose response body echoes the Authorization header back.
    let e = run(
        &r,
        "http",
        json!({"url": format!("{with_user}/echo/500"), "headers": headers}),
    )
    .await
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("returned 500"), "{msg}");
    assert!(msg.contains("http://127.0.0.1"), "{msg}");
    assert!(!msg.contains("secretpw") && !msg.contains("alice"), "{msg}");
    // A succeeding one: the output is part of the record too.
    let out = run(
        &r,
        "http",
        json!({"url": format!("{with_user}/echo/200"), "headers": headers}),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out["body"], json!("you sent ***"));
    // A connection error names the URL without its credentials.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = run(
        &r,
        "http",
        json!({"url": format!("http://alice:secretpw@127.0.0.1:{port}/")}),
    )
    .await
    .unwrap_err();
    assert!(!e.to_string().contains("secretpw"), "{e}");
}

// ---------------------------------------------------------------- exec: environment

fn env_registry(allow: &[&str], env_allow: &[&str], env_secret: &[&str]) -> Registry {
    builtin::registry(
        &ExecSection {
            allow: strings(allow),
            env_allow: strings(env_allow),
            env_secret: strings(env_secret),
            ..ExecSection::default()
        },
        &HttpSection::default(),
    )
}

fn env_lines(out: HandlerOutput) -> Vec<String> {
    let (_, stdout, _, _) = exec_output(out);
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    // Every program gets its attempt's fence (job 1, attempt 1 here); the rest is what
    // each test checks.
    for fence in FENCE_ENV {
        assert!(
            lines.iter().any(|l| l == fence),
            "{fence} missing: {lines:?}"
        );
    }
    lines.retain(|l| !FENCE_ENV.contains(&l.as_str()));
    lines.sort();
    lines
}

const FENCE_ENV: [&str; 4] = [
    "JOBMESH_ATTEMPT=1",
    "JOBMESH_IDEMPOTENCY_KEY=job-1",
    "JOBMESH_JOB_ID=1",
    "JOBMESH_LEASE_TOKEN=1",
];

#[tokio::test]
async fn exec_gives_programs_only_the_fixed_environment_and_the_allowlist() {
    // Cargo sets these for the test process, as a node's environment holds its store
    // URLs and tokens.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let r = env_registry(&["env"], &[], &[]);
    let out = run(&r, "exec", json!({"command": "env"})).await.unwrap();
    assert_eq!(env_lines(out), ["LANG=C.UTF-8", "PATH=/usr/bin:/bin"]);

    // A name on exec.env_allow passes through from the node; a job may set it too.
    let r = env_registry(&["env"], &["CARGO_PKG_NAME"], &[]);
    let out = run(&r, "exec", json!({"command": "env"})).await.unwrap();
    assert_eq!(
        env_lines(out),
        [
            "CARGO_PKG_NAME=jobmesh",
            "LANG=C.UTF-8",
            "PATH=/usr/bin:/bin"
        ]
    );
    let out = run(
        &r,
        "exec",
        json!({"command": "env", "env": {"CARGO_PKG_NAME": "mine"}}),
    )
    .await
    .unwrap();
    assert_eq!(
        env_lines(out),
        ["CARGO_PKG_NAME=mine", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"]
    );
}

#[tokio::test]
async fn exec_refuses_exported_shell_functions_and_loader_variables() {
    // A bash script on the allowlist that calls `date`: an exported function named
    // `date` in its environment would run instead.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("stamp.sh");
    std::fs::write(&script, "#!/bin/bash\ndate +%Y >/dev/null\necho stamped\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = script.to_str().unwrap();
    let r = env_registry(&[script], &["TZ"], &[]);
    let out = run(&r, "exec", json!({"command": script})).await.unwrap();
    assert_eq!(exec_output(out).1, "stamped\n");
    for (name, value) in [
        ("BASH_FUNC_date%%", "() { echo PWNED; }"),
        ("BASH_FUNC_date()", "() { echo PWNED; }"),
        ("BASH_ENV", "/tmp/evil"),
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("PATH", "/tmp"),
    ] {
        let payload = json!({"command": script, "env": {name: value}});
        let got = refusal(&r, "exec", payload.clone());
        assert!(
            got.starts_with(&format!(
                "invalid payload for kind `exec`: payload.env.{name}: "
            )),
            "{got}"
        );
        // At run time too (a job stored under an older configuration).
        let e = run_unchecked(&r, "exec", payload).await.unwrap_err();
        assert!(!e.is_retryable(), "{name}: {e:?}");
        assert!(!e.to_string().contains("PWNED"), "{e}");
    }
}

#[tokio::test]
async fn exec_masks_secret_environment_values_in_errors_and_output() {
    let r = env_registry(&["printenv", "/bin/sh"], &["APP_TOKEN"], &["APP_TOKEN"]);
    let env = json!({"APP_TOKEN": "secretpw-1234"});
    let out = run(
        &r,
        "exec",
        json!({"command": "printenv", "args": ["APP_TOKEN"], "env": env}),
    )
    .await
    .unwrap();
    assert_eq!(exec_output(out).1, "***\n");
    let e = run(
        &r,
        "exec",
        json!({"command": "/bin/sh", "args": ["-c", "echo \"bad token $APP_TOKEN\" >&2; exit 1"], "env": env}),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().ends_with("bad token ***"), "{e}");
}

// ---------------------------------------------------------------- fencing and cancellation

#[tokio::test]
async fn exec_gets_the_attempts_fence_in_its_environment() {
    let r = exec_registry(&["printenv"]);
    let (_, stdout, _, _) = exec_output(
        run_at(
            &r,
            "exec",
            json!({"command": "printenv", "args": ["JOBMESH_IDEMPOTENCY_KEY", "JOBMESH_JOB_ID",
                "JOBMESH_ATTEMPT", "JOBMESH_LEASE_TOKEN"]}),
            3,
        )
        .await
        .unwrap(),
    );
    // `job()` gives the job id 1 and the attempt's number as its lease token.
    assert_eq!(stdout, "job-1\n1\n3\n3\n");
}

#[tokio::test]
async fn payloads_may_not_set_the_fence() {
    let r = registry_with(&["printenv"], 1024, &[]);
    let e = refusal(
        &r,
        "exec",
        json!({"command": "printenv", "env": {"JOBMESH_LEASE_TOKEN": "999"}}),
    );
    assert!(
        e.contains("payload.env.JOBMESH_LEASE_TOKEN") && e.contains("set by the node"),
        "{e}"
    );
    let e = refusal(
        &r,
        "http",
        json!({"url": "http://127.0.0.1:9/x", "headers": {"Jobmesh-Lease-Token": "999"}}),
    );
    assert!(
        e.contains("payload.headers.Jobmesh-Lease-Token") && e.contains("set by the node"),
        "{e}"
    );
}

#[tokio::test]
async fn http_sends_the_idempotency_key_and_lease_token() {
    let (base, mut seen) = server().await;
    let r = exec_registry(&[]);
    run_at(&r, "http", json!({"url": format!("{base}/hook")}), 2)
        .await
        .unwrap();
    let req = seen.recv().await.unwrap();
    let h = |n: &str| req.headers.get(n).map(String::as_str);
    assert_eq!(h("idempotency-key"), Some("job-1"));
    assert_eq!(h("jobmesh-job-id"), Some("1"));
    assert_eq!(h("jobmesh-attempt"), Some("2"));
    assert_eq!(h("jobmesh-lease-token"), Some("2"));

    // A payload's own idempotency key is kept: it is as stable as the job.
    run(
        &r,
        "http",
        json!({"url": format!("{base}/hook"), "headers": {"Idempotency-Key": "order-17"}}),
    )
    .await
    .unwrap();
    let req = seen.recv().await.unwrap();
    assert_eq!(
        req.headers.get("idempotency-key").map(String::as_str),
        Some("order-17")
    );
    assert_eq!(
        req.headers.get("jobmesh-lease-token").map(String::as_str),
        Some("1")
    );
}

#[tokio::test]
async fn exec_is_asked_to_stop_when_its_attempt_is_cancelled() {
    let r = exec_registry(&["sh"]);
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("terminated");
    let ready = dir.path().join("ready");
    // The program records SIGTERM and exits 0; without it, it would sleep 30 s. It says
    // it is ready once its trap is set.
    let script = format!(
        "trap 'kill $!; echo term > {m}; exit 0' TERM; : > {r}; sleep 30 >/dev/null 2>&1 & wait",
        m = mark.display(),
        r = ready.display()
    );
    let payload = json!({"command": "sh", "args": ["-c", script]});
    r.validate(&NewJob::new("exec", payload.clone())).unwrap();
    let ctx = job("exec", payload, 1);
    let cancel = ctx.cancel.clone();
    let handler = r.get("exec").unwrap().handler.clone();
    let run = tokio::spawn(async move { handler.run(ctx).await });
    let start = Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < DEADLINE, "the shell never set its trap");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let out = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the program stopped on SIGTERM, well before its 30 s sleep")
        .unwrap();
    assert!(out.is_ok(), "the trap exits 0: {out:?}");
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "term\n");
}
