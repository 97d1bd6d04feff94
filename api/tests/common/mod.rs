//! The API suite, run against real servers on every backend (`api_sqlite.rs`,
//! `api_postgres.rs`, `api_redis_postgres.rs`): a real node claims and finishes what
//! the API enqueues, and every request goes over HTTP on loopback.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::{ApiSection, Config, WorkersSection};
use jobmesh::job::{JobId, JobState, NewJob, NodeId};
use jobmesh::store::tokens::{NewApiToken, Scope, TokenId, TokenSecret};
use jobmesh::store::{AuditContext, SharedStore};
use jobmesh_api::ApiServer;
use serde_json::{Value, json};

/// Bounds a failure only: jobs here finish within milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);

/// Everything logged by the process, unredacted, at every level of the API's crates:
/// the token-leak test reads it.
pub fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,jobmesh_api=trace,tower_http=trace",
            ))
            .with_writer(move || Capture(sink.clone()))
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A node with an API in front of it.
pub struct Harness {
    pub store: SharedStore,
    pub node: Option<jobmesh_actors::Node>,
    pub api: Option<ApiServer>,
    pub base: String,
    pub http: reqwest::Client,
}

impl Harness {
    /// An API on `store` (with `tweak` applied to the `[api]` settings) and, with
    /// `workers`, a node with two workers on `default` polling every 50 ms.
    pub async fn start(
        store: SharedStore,
        workers: bool,
        tweak: impl FnOnce(&mut ApiSection),
    ) -> Harness {
        captured_log();
        let config = Config::default();
        let registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
        let node = if workers {
            Some(
                jobmesh_actors::Node::start(jobmesh_actors::NodeOptions {
                    node_id: NodeId("api-test".into()),
                    workers: WorkersSection {
                        concurrency: 2,
                        poll_interval: Duration::from_millis(50),
                        ..WorkersSection::default()
                    },
                    retry: config.retry.clone(),
                    store: store.clone(),
                    registry: registry.clone(),
                    clock: Arc::new(SystemClock),
                    retention: None,
                    predict: Default::default(),
                })
                .await
                .unwrap(),
            )
        } else {
            None
        };
        let mut api = ApiSection {
            listen: Some("127.0.0.1:0".parse().expect("address")),
            // The tests read counts right after changing them.
            counts_max_age: Duration::ZERO,
            ..ApiSection::default()
        };
        tweak(&mut api);
        let server = ApiServer::start(store.clone(), Arc::new(registry), api, None)
            .await
            .unwrap();
        Harness {
            base: format!("http://{}", server.local_addr()),
            store,
            node,
            api: Some(server),
            http: reqwest::Client::new(),
        }
    }

    /// Creates a token in the store (as `jobmesh token create` does); returns its
    /// id and text.
    pub async fn token(&self, scopes: &[Scope], queues: &[&str]) -> (TokenId, String) {
        let secret = TokenSecret::generate();
        let id = self
            .store
            .create_token(
                &AuditContext::system(),
                &NewApiToken {
                    name: format!("test-{}", scopes[0]),
                    scopes: scopes.to_vec(),
                    queues: queues.iter().map(|q| q.to_string()).collect(),
                },
                &secret.hash(),
                SystemClock.now(),
            )
            .await
            .unwrap();
        (id, secret.text(id))
    }

    /// A request to `path` with `token` (if any).
    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// GET with a token: status and JSON body.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path, Some(token))).await
    }

    /// POST JSON with a token: status and JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::POST, path, Some(token))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// Jobs in the store.
    pub async fn job_count(&self) -> usize {
        self.store
            .list_jobs(&jobmesh::store::JobFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    }

    /// Polls the store until job `id` is in `state`.
    pub async fn wait_state(&self, id: i64, state: JobState) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let job = self.store.get_job(JobId(id)).await.unwrap().unwrap();
            if job.state == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} is {:?}, not {state:?}",
                job.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(api) = self.api.take() {
            api.shutdown(Duration::from_secs(5)).await;
        }
        if let Some(node) = self.node.take() {
            node.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

/// Sends and reads the status and JSON body (`null` for an empty one).
pub async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

/// Reads server-sent events from `resp` until `done` says so (bounded by [`WAIT`]);
/// returns them as (id, event, data).
pub async fn read_sse(
    mut resp: reqwest::Response,
    mut done: impl FnMut(&[(i64, String, Value)]) -> bool,
) -> Vec<(i64, String, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&events) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("the events did not arrive in time")
            .unwrap()
            .expect("the stream ended early");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line
                    .strip_prefix("id: ")
                    .or_else(|| line.strip_prefix("id:"))
                {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line
                    .strip_prefix("event: ")
                    .or_else(|| line.strip_prefix("event:"))
                {
                    event = v.trim().to_string();
                } else if let Some(v) = line
                    .strip_prefix("data: ")
                    .or_else(|| line.strip_prefix("data:"))
                {
                    data.push_str(v);
                }
            }
            if let Some(id) = id {
                events.push((id, event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

/// Expands to one test per suite case, each on a fresh store from `$make`.
#[macro_export]
macro_rules! api_suite {
    ($make:path) => {
        $crate::api_suite!(@cases $make;
            enqueue_claim_finish_seen_through_get_and_sse, access_control, limits,
            filters_treat_metacharacters_as_data, idempotent_retries, batches_and_workflows,
            cancel_and_redrive, openapi_lists_every_route, tokens_stay_out_of_the_log,
            startup_rules_and_anonymous_loopback_read, filters_and_cursors_over_10k_jobs,
            bulk_cancel_by_filter_over_10k_jobs, bulk_actions_respect_scopes_and_queues,
            bad_filters_are_refused_naming_the_field);
        $crate::api_suite!(@grouped $make; concurrent_single_enqueues_answer_each_request);
        $crate::api_suite!(@audit $make;
            audit_rows_for_every_mutating_call, refusals_are_audited_and_change_nothing,
            unauthenticated_calls_write_no_audit_row, audit_parameters_are_checked,
            retention_purges_old_audit_rows);
        $crate::api_suite!(@periodic $make;
            periodic_create_checks_every_field, periodic_schedules_run_pause_trigger_delete);
    };
    (@periodic $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::periodic::$case($make().await).await;
            }
        )*
    };
    (@grouped $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::grouped::$case($make().await).await;
            }
        )*
    };
    (@audit $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::audit::$case($make().await).await;
            }
        )*
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::suite::$case($make().await).await;
            }
        )*
    };
}

pub mod audit;
pub mod bulk;
pub mod grouped;
pub mod history;
pub mod periodic;
pub mod predictions;
pub mod presence;
pub mod session;
pub mod suite;
pub mod views;

/// A job of `kind` as the API takes it.
pub fn job(kind: &str, payload: Value) -> Value {
    json!({"kind": kind, "payload": payload})
}

/// Enqueues directly into the store (for setting up).
pub async fn seed(store: &SharedStore, jobs: Vec<NewJob>) -> Vec<i64> {
    store
        .enqueue(jobs, SystemClock.now())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id().0)
        .collect()
}
