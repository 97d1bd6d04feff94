//! Running jobs under control, end to end: a node in this process runs Rust handlers
//! on an SQLite file that `jobmesh jobs show` (the real binary) and the HTTP API (a real
//! server on loopback) read as well. Progress is seen through all three and the live
//! events; a snoozing handler spends one attempt however often it snoozes; a stale
//! holder's progress is refused and interrupts it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::{ApiSection, Config, WorkersSection};
use jobmesh::event::{EventKind, LifecycleEvent};
use jobmesh::handler::{HandlerError, Registry};
use jobmesh::job::{Job, JobId, JobState, NewJob, NodeId};
use jobmesh::payload::PayloadRules;
use jobmesh::store::sqlite::SqliteStore;
use jobmesh::store::tokens::{NewApiToken, Scope, TokenSecret};
use jobmesh::store::{AuditContext, SharedStore};
use jobmesh_actors::{Node, NodeOptions};
use jobmesh_api::ApiServer;
use tokio::sync::Notify;

/// Bounds a failure only.
const WAIT: Duration = Duration::from_secs(30);

/// A data directory with a config pointing `jobmesh` at its SQLite file.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = format!("[node]\ndata_dir = \"{}\"\n", data.display());
        std::fs::write(dir.path().join("jobmesh.toml"), config).unwrap();
        Sandbox { dir }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("jobmesh.db")
    }

    /// `jobmesh jobs show <id>`, as a user runs it.
    fn jobs_show(&self, id: JobId) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_jobmesh"))
            .arg("--config")
            .arg(self.dir.path().join("jobmesh.toml"))
            .args(["jobs", "show", &id.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

async fn open(db: &Path) -> SharedStore {
    Arc::new(SqliteStore::open(db).await.unwrap())
}

fn workers(f: impl FnOnce(&mut WorkersSection)) -> WorkersSection {
    let mut w = WorkersSection {
        concurrency: 2,
        poll_interval: Duration::from_millis(20),
        progress_interval: Duration::from_millis(50),
        ..WorkersSection::default()
    };
    f(&mut w);
    w
}

async fn start(name: &str, store: &SharedStore, w: WorkersSection, registry: Registry) -> Node {
    Node::start(NodeOptions {
        node_id: NodeId(name.into()),
        workers: w,
        retry: Config::default().retry,
        store: store.clone(),
        registry,
        clock: Arc::new(SystemClock),
        retention: None,
        predict: Default::default(),
    })
    .await
    .unwrap()
}

/// Polls the job until `done` holds (the deadline bounds a failure).
async fn until(store: &SharedStore, id: JobId, what: &str, done: impl Fn(&Job) -> bool) -> Job {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = store.get_job(id).await.unwrap().unwrap();
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; job {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn submit(node: &Node, job: NewJob) -> JobId {
    node.submit(vec![job]).await.unwrap()[0].id()
}

async fn events_of(store: &SharedStore, id: JobId) -> Vec<LifecycleEvent> {
    store
        .job_events(id, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// A handler reports progress from a hot loop, then "halfway" (with a credential in
/// it), then waits to be released and reports "done": `jobs show`, the API and the live
/// events show "halfway" while it runs (masked, the newest report winning), the job
/// keeps "done" after it succeeded (the last report is always recorded), and the hot
/// loop's ten thousand reports made a handful of events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_in_jobs_show_the_api_and_events() {
    let sandbox = Sandbox::new();
    let store = open(&sandbox.db()).await;
    let release = Arc::new(Notify::new());
    let mut registry = Registry::new();
    registry.register_fn("steps", PayloadRules::default(), {
        let release = release.clone();
        move |ctx| {
            let release = release.clone();
            async move {
                for i in 0..10_000 {
                    ctx.progress(f64::from(i) / 40_000.0, "warming up")
                        .map_err(|e| HandlerError::Permanent(e.to_string()))?;
                }
                ctx.progress(0.5, "halfway: GET http://user:s3cret@example.com/x")
                    .map_err(|e| HandlerError::Permanent(e.to_string()))?;
                release.notified().await;
                ctx.progress(1.0, "done")
                    .map_err(|e| HandlerError::Permanent(e.to_string()))?;
                Ok(None)
            }
        }
    });
    let node = start("progress-test", &store, workers(|_| {}), registry.clone()).await;
    let mut live = node.subscribe();
    let api = ApiServer::start(
        store.clone(),
        Arc::new(registry),
        ApiSection {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ApiSection::default()
        },
        None,
    )
    .await
    .unwrap();
    let secret = TokenSecret::generate();
    let token_id = store
        .create_token(
            &AuditContext::system(),
            &NewApiToken {
                name: "reader".into(),
                scopes: vec![Scope::Read],
                queues: vec![],
            },
            &secret.hash(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    let token = secret.text(token_id);

    let id = submit(&node, NewJob::new("steps", serde_json::json!({}))).await;
    let masked = "halfway: GET http://***@example.com/x";
    let job = until(&store, id, "progress 0.5", |j| {
        j.progress.as_ref().is_some_and(|p| p.fraction == 0.5)
    })
    .await;
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.progress.as_ref().unwrap().message, masked);

    let shown = sandbox.jobs_show(id);
    let line = shown
        .lines()
        .find(|l| l.starts_with("progress:"))
        .unwrap_or_else(|| panic!("no progress line in:\n{shown}"));
    assert!(line.contains(&format!("50% {masked} (at ")), "{line}");
    assert!(!shown.contains("s3cret"), "{shown}");

    let text = reqwest::Client::new()
        .get(format!("http://{}/api/v1/jobs/{id}", api.local_addr()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["state"], "running");
    assert_eq!(body["progress"]["fraction"], 0.5);
    assert_eq!(body["progress"]["message"], masked);
    assert!(
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "job.progress" && e["detail"]["fraction"] == 0.5),
        "{body}"
    );

    release.notify_one();
    let job = until(&store, id, "success", |j| j.state == JobState::Succeeded).await;
    let p = job.progress.unwrap();
    assert_eq!((p.fraction, p.message.as_str()), (1.0, "done"));

    let recorded: Vec<f64> = events_of(&store, id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::JobProgress)
        .map(|e| e.detail["fraction"].as_f64().unwrap())
        .collect();
    // At most one per interval (50 ms) while the attempt ran, and the last one.
    let events = events_of(&store, id).await;
    let at = |kind| events.iter().find(|e| e.kind == kind).unwrap().at;
    let ran_ms = at(EventKind::JobSucceeded).0 - at(EventKind::JobClaimed).0;
    assert!(
        recorded.len() >= 2 && recorded.len() as i64 <= ran_ms / 50 + 2,
        "10 002 reports in {ran_ms} ms made {} events: {recorded:?}",
        recorded.len()
    );
    assert_eq!(recorded.last(), Some(&1.0));
    assert!(recorded.contains(&0.5));

    let mut seen_live = Vec::new();
    while let Ok(e) = live.try_recv() {
        if e.kind == EventKind::JobProgress && e.job == Some(id) {
            seen_live.push(e.detail["fraction"].as_f64().unwrap());
        }
    }
    assert_eq!(seen_live, recorded, "live events are the recorded ones");
    api.shutdown(Duration::from_secs(1)).await;
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A polling handler snoozes three times and then succeeds: one attempt of one, three
/// snoozes, three `job.snoozed` events, shown by `jobs show`. A handler that always
/// snoozes is dead-lettered after `workers.max_snoozes`, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snoozing_handler_spends_one_attempt() {
    let sandbox = Sandbox::new();
    let store = open(&sandbox.db()).await;
    let mut registry = Registry::new();
    registry.register_fn("poll", PayloadRules::default(), |ctx| async move {
        if ctx.job.snoozes < 3 {
            return Err(HandlerError::snooze(Duration::from_millis(30)));
        }
        Ok(Some(serde_json::json!({"ready_after": ctx.job.snoozes})))
    });
    registry.register_fn("never", PayloadRules::default(), |_ctx| async move {
        Err(HandlerError::snooze(Duration::from_millis(10)))
    });
    let node = start(
        "snooze-test",
        &store,
        workers(|w| w.max_snoozes = 5),
        registry,
    )
    .await;
    let mut once = NewJob::new("poll", serde_json::json!({}));
    once.max_attempts = 1;
    let id = submit(&node, once).await;
    let never = submit(&node, NewJob::new("never", serde_json::json!({}))).await;

    let job = until(&store, id, "success", |j| j.state.is_final()).await;
    assert_eq!(
        (job.state, job.attempt, job.max_attempts, job.snoozes),
        (JobState::Succeeded, 1, 1, 3)
    );
    let kinds: Vec<EventKind> = events_of(&store, id).await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::JobSnoozed)
            .count(),
        3,
        "{kinds:?}"
    );
    let shown = sandbox.jobs_show(id);
    for line in [
        format!("{:<18} 3", "snoozes:"),
        format!("{:<18} 1/1", "attempt:"),
    ] {
        assert!(shown.lines().any(|l| l == line), "no `{line}` in:\n{shown}");
    }

    let job = until(&store, never, "the snooze cap", |j| j.state.is_final()).await;
    assert_eq!(
        (job.state, job.snoozes, job.attempt),
        (JobState::Discarded, 5, 1)
    );
    let reason = job.last_error.unwrap();
    assert!(reason.contains("snoozed 5 times"), "{reason}");
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The lease of a running attempt is revoked (its node declared gone): the attempt's
/// next progress write is refused, which interrupts it, and nothing it reports after
/// the revocation is recorded; the job runs again and the new attempt's progress is
/// what the job keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holders_progress_is_refused_and_interrupts_it() {
    let sandbox = Sandbox::new();
    let store = open(&sandbox.db()).await;
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut registry = Registry::new();
    registry.register_fn("report", PayloadRules::default(), {
        let interrupted = interrupted.clone();
        move |ctx| {
            let interrupted = interrupted.clone();
            async move {
                if ctx.job.attempt >= 2 {
                    let _ = ctx.progress(0.7, "second attempt");
                    return Ok(None);
                }
                // Reports until told to stop, whatever the answers.
                while !ctx.cancel.is_cancelled() {
                    let _ = ctx.progress(0.3, "first attempt");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                interrupted.store(true, Ordering::SeqCst);
                Ok(None)
            }
        }
    });
    let node = start("stale-test", &store, workers(|_| {}), registry).await;
    let id = submit(&node, NewJob::new("report", serde_json::json!({}))).await;
    until(&store, id, "first progress", |j| j.progress.is_some()).await;

    let rescued = store
        .revoke_node(
            &NodeId("stale-test".into()),
            SystemClock.now(),
            serde_json::json!({"reason": "test"}),
        )
        .await
        .unwrap();
    assert_eq!(rescued.len(), 1);
    let job = until(&store, id, "the second attempt", |j| j.state.is_final()).await;
    assert_eq!((job.state, job.attempt), (JobState::Succeeded, 2));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !interrupted.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused progress did not interrupt the first attempt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let p = job.progress.unwrap();
    assert_eq!((p.fraction, p.message.as_str()), (0.7, "second attempt"));
    let events = events_of(&store, id).await;
    let rescue = events
        .iter()
        .position(|e| e.kind == EventKind::JobRescued)
        .expect("a job.rescued event");
    let after: Vec<Option<u32>> = events[rescue..]
        .iter()
        .filter(|e| e.kind == EventKind::JobProgress)
        .map(|e| e.attempt)
        .collect();
    assert_eq!(
        after,
        [Some(2)],
        "nothing of attempt 1 after its lease was revoked"
    );
    node.shutdown(Duration::from_secs(5)).await.unwrap();
}
