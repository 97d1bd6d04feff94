//! `/metrics` over real HTTP, on SQLite, Postgres and the production store: a node with
//! the API in front of it (as `jobmesh node --api` runs them: the API on the node's
//! store and metrics) runs a known workload (successes, retries, dead letters, a worker
//! crash, a duplicate unique key through the API), and the scrape is compared with
//! what the store holds. Also: no label carries a payload, an error text or a job id; a
//! token is needed; only the maintenance leader serves queue counts; `jobmesh api`
//! (no node) serves its own.

use std::sync::Arc;
use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::{ApiSection, Config, WorkersSection};
use jobmesh::job::{JobState, NewJob, NodeId, RetryPolicy};
use jobmesh::store::tokens::{NewApiToken, Scope, TokenSecret};
use jobmesh::store::{JobFilter, SharedStore};
use jobmesh_actors::{Node, NodeOptions};
use jobmesh_api::ApiServer;
use serde_json::json;

/// Bounds a failure only: the workload finishes within a second or two.
const WAIT: Duration = Duration::from_secs(30);
/// Written into every payload and error message: it must reach no label.
const MARKER: &str = "marker-7f3a9";

async fn sqlite() -> SharedStore {
    let dir = tempfile::tempdir().unwrap();
    let store = jobmesh::store::sqlite::SqliteStore::open(&dir.path().join("metrics.db"))
        .await
        .unwrap();
    // The file outlives the test's need for it; the OS cleans /tmp.
    std::mem::forget(dir);
    Arc::new(store)
}

fn pg_url() -> String {
    std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn schema() -> String {
    format!(
        "jm_test_{}_{:016x}",
        SystemClock.now().0 / 1000,
        rand::random::<u64>()
    )
}

async fn postgres() -> SharedStore {
    let url = pg_url();
    let store = jobmesh::store::postgres::PostgresStore::connect(&url, Some(&schema()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Postgres at {url} ({e}): start it or set JOBMESH_TEST_POSTGRES_URL"
            )
        });
    Arc::new(store)
}

async fn redis_postgres() -> SharedStore {
    use jobmesh::store::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};
    let pg = pg_url();
    let redis = std::env::var("JOBMESH_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let config = RedisPostgresConfig::new(format!("jmtest:metrics:{:016x}", rand::random::<u64>()));
    let store = RedisPostgresStore::connect(&pg, Some(&schema()), &redis, config)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Postgres at {pg} or Redis at {redis} ({e})"));
    Arc::new(store)
}

/// A node (two workers on `default` and `api`, fast retries) and its API.
struct NodeWithApi {
    node: Option<Node>,
    api: Option<ApiServer>,
    base: String,
    http: reqwest::Client,
}

impl NodeWithApi {
    async fn start(store: SharedStore, name: &str) -> Self {
        let config = Config::default();
        let registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
        let node = Node::start(NodeOptions {
            node_id: NodeId(name.into()),
            workers: WorkersSection {
                concurrency: 2,
                queues: vec!["default".into(), "api".into()],
                poll_interval: Duration::from_millis(50),
                ..WorkersSection::default()
            },
            retry: RetryPolicy {
                exponent: 1,
                unit: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
                jitter: 0.0,
                ..RetryPolicy::default()
            },
            store,
            registry: registry.clone(),
            clock: Arc::new(SystemClock),
            retention: None,
            predict: Default::default(),
        })
        .await
        .unwrap();
        let api = ApiServer::start_in_node(
            node.store().clone(),
            Arc::new(registry),
            loopback(),
            jobmesh_api::Extras::default(),
            node.metrics(),
        )
        .await
        .unwrap();
        Self {
            base: format!("http://{}", api.local_addr()),
            node: Some(node),
            api: Some(api),
            http: reqwest::Client::new(),
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    async fn stop(mut self) {
        if let Some(api) = self.api.take() {
            api.shutdown(Duration::from_secs(5)).await;
        }
        if let Some(node) = self.node.take() {
            node.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

fn loopback() -> ApiSection {
    ApiSection {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ApiSection::default()
    }
}

async fn token(store: &SharedStore, scopes: &[Scope], queues: &[&str]) -> String {
    let secret = TokenSecret::generate();
    let id = store
        .create_token(
            &jobmesh::store::AuditContext::system(),
            &NewApiToken {
                name: format!("metrics-{}", scopes[0]),
                scopes: scopes.to_vec(),
                queues: queues.iter().map(|q| q.to_string()).collect(),
            },
            &secret.hash(),
            SystemClock.now(),
        )
        .await
        .unwrap();
    secret.text(id)
}

/// GETs `/metrics`: the status and text.
async fn scrape(http: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, String) {
    let mut r = http.get(format!("{base}/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    }
    (status, resp.text().await.unwrap())
}

/// One sample of the text: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the OpenMetrics text (label values unescaped).
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "the text ends with # EOF");
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => {
                let (n, v) = line.split_once(' ').unwrap();
                out.push(Sample {
                    name: n.into(),
                    labels: vec![],
                    value: v.parse().unwrap(),
                });
                continue;
            }
        };
        let mut labels = Vec::new();
        let mut chars = rest.chars();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "in {line}");
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => panic!("bad escape in {line}"),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key, value));
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("unexpected {other:?} in {line}"),
            }
        }
        let value: String = chars.collect();
        out.push(Sample {
            name: name.into(),
            labels,
            value: value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("value in {line}")),
        });
    }
    out
}

/// The sum of `name` over the samples whose labels include all of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

fn has(samples: &[Sample], name: &str) -> bool {
    samples.iter().any(|s| s.name == name)
}

/// No label names a job, and none carries the payload marker, an error text or a
/// number other than a status code or a bucket bound.
fn check_labels(samples: &[Sample], text: &str) {
    assert!(
        !text.contains(MARKER),
        "a payload or error text reached the metrics"
    );
    for s in samples {
        for (k, v) in &s.labels {
            assert!(
                !["job", "id", "job_id", "error", "payload"].contains(&k.as_str()),
                "{s:?}"
            );
            if k != "status" && k != "le" {
                assert!(v.parse::<f64>().is_err(), "a number as a label: {s:?}");
            }
        }
    }
}

fn noop(queue: &str) -> NewJob {
    let mut j = NewJob::new("noop", json!({ "note": MARKER }));
    j.queue = queue.into();
    j
}

fn fail(payload: serde_json::Value) -> NewJob {
    NewJob::new("fail", payload)
}

/// Polls `check` on fresh scrapes until it holds.
async fn scrape_until(
    h: &NodeWithApi,
    token: &str,
    what: &str,
    check: impl Fn(&[Sample]) -> bool,
) -> (Vec<Sample>, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, text) = scrape(&h.http, &h.base, Some(token)).await;
        assert_eq!(status, 200, "{text}");
        let samples = parse(&text);
        if check(&samples) {
            return (samples, text);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}; last scrape:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn workload_is_counted_as_the_store_records_it(store: SharedStore) {
    let h = NodeWithApi::start(store.clone(), "metrics-a").await;
    let read = token(&store, &[Scope::Read], &[]).await;
    let enqueue = token(&store, &[Scope::Enqueue], &[]).await;
    let limited = token(&store, &[Scope::Read], &["default"]).await;
    assert_eq!(scrape(&h.http, &h.base, None).await.0, 401, "no token");
    assert_eq!(
        scrape(&h.http, &h.base, Some("jmt_1_nonsense")).await.0,
        401
    );
    assert_eq!(
        scrape(&h.http, &h.base, Some(&enqueue)).await.0,
        403,
        "no read scope"
    );
    assert_eq!(
        scrape(&h.http, &h.base, Some(&limited)).await.0,
        403,
        "limited to a queue"
    );

    let mut jobs: Vec<NewJob> = (0..20).map(|_| noop("default")).collect();
    // Each fails once (a retry), then succeeds.
    jobs.extend((0..5).map(|_| fail(json!({"message": MARKER, "times": 1}))));
    // Dead-lettered at once.
    jobs.extend((0..3).map(|_| fail(json!({"message": MARKER, "retryable": false}))));
    // Crashes its worker once, then succeeds.
    jobs.push(NewJob::new("panic", json!({"message": MARKER, "times": 1})));
    h.node().submit(jobs).await.unwrap();
    let post = |body: serde_json::Value| {
        h.http
            .post(format!("{}/api/v1/jobs", h.base))
            .bearer_auth(&enqueue)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let unique =
        json!({"kind": "noop", "queue": "api", "payload": {"note": MARKER}, "unique_key": MARKER});
    assert_eq!(post(unique.clone()).await.unwrap().status(), 201);
    assert_eq!(post(unique).await.unwrap().status(), 200, "the duplicate");
    let missing = h
        .http
        .get(format!("{}/api/v1/jobs/987654", h.base))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A store call the store refuses is counted by its kind (and only that one).
    let refused = h
        .node()
        .store()
        .pause_queue(
            &jobmesh::store::AuditContext::system(),
            "",
            SystemClock.now(),
        )
        .await;
    assert!(refused.is_err());

    // Every job finished in the store.
    let deadline = tokio::time::Instant::now() + WAIT;
    let all = loop {
        let all = store
            .list_jobs(&JobFilter {
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        if all.len() == 30
            && all
                .iter()
                .all(|j| matches!(j.state, JobState::Succeeded | JobState::Discarded))
        {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs did not finish: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let in_state = |s: JobState| all.iter().filter(|j| j.state == s).count() as f64;
    let attempts: f64 = all.iter().map(|j| f64::from(j.attempt)).sum();
    let retries: f64 = all
        .iter()
        .filter(|j| j.state == JobState::Succeeded)
        .map(|j| f64::from(j.attempt - 1))
        .sum();
    assert_eq!(
        (in_state(JobState::Succeeded), in_state(JobState::Discarded)),
        (27.0, 3.0)
    );
    assert_eq!(retries, 6.0, "five flaky jobs and the crash");

    // The completer records right after the store applied a batch: poll until the last
    // batch is in, and until the leader's cached counts were read after the workload.
    let (m, text) = scrape_until(&h, &read, "finished totals and queue counts", |m| {
        sum(m, "jobmesh_jobs_finished_total", &[]) == attempts
            && sum(m, "jobmesh_queue_jobs", &[("state", "succeeded")]) == 27.0
    })
    .await;
    check_labels(&m, &text);
    assert!(text.contains("jobmesh_build_info{version=\""), "{text}");
    let fin = |outcome| sum(&m, "jobmesh_jobs_finished_total", &[("outcome", outcome)]);
    assert_eq!(fin("succeeded"), in_state(JobState::Succeeded));
    assert_eq!(fin("discarded"), in_state(JobState::Discarded));
    assert_eq!(fin("retried"), retries);
    assert_eq!(
        sum(
            &m,
            "jobmesh_jobs_finished_total",
            &[
                ("queue", "default"),
                ("kind", "fail"),
                ("outcome", "retried")
            ]
        ),
        5.0
    );
    assert_eq!(
        sum(&m, "jobmesh_jobs_enqueued_total", &[]),
        all.len() as f64
    );
    assert_eq!(
        sum(
            &m,
            "jobmesh_jobs_enqueued_total",
            &[("queue", "default"), ("kind", "noop")]
        ),
        20.0
    );
    assert_eq!(
        sum(
            &m,
            "jobmesh_jobs_deduplicated_total",
            &[("queue", "api"), ("kind", "noop")]
        ),
        1.0
    );
    // A claimed job no worker took in time is given back, and its attempt with it.
    let claimed = sum(&m, "jobmesh_jobs_claimed_total", &[]);
    assert_eq!(
        claimed - sum(&m, "jobmesh_jobs_released_total", &[]),
        attempts
    );
    assert_eq!(sum(&m, "jobmesh_job_duration_seconds_count", &[]), attempts);
    assert_eq!(
        sum(&m, "jobmesh_job_duration_seconds_bucket", &[("le", "+Inf")]),
        attempts
    );
    assert_eq!(
        sum(&m, "jobmesh_job_queue_wait_seconds_count", &[]),
        claimed
    );
    assert!(
        sum(
            &m,
            "jobmesh_job_queue_wait_seconds_count",
            &[("kind", "panic")]
        ) >= 2.0
    );
    assert!(sum(&m, "jobmesh_claim_batch_duration_seconds_count", &[]) >= 1.0);
    assert!(sum(&m, "jobmesh_completion_batch_duration_seconds_count", &[]) >= 1.0);
    let node = [("node", "metrics-a")];
    assert_eq!(sum(&m, "jobmesh_worker_crashes_total", &node), 1.0);
    assert_eq!(sum(&m, "jobmesh_worker_restarts_total", &node), 1.0);
    assert_eq!(
        sum(&m, "jobmesh_store_errors_total", &[("kind", "invalid")]),
        1.0,
        "the refused pause"
    );
    assert_eq!(sum(&m, "jobmesh_worker_slots", &node), 2.0);
    assert_eq!(sum(&m, "jobmesh_jobs_running", &node), 0.0);
    assert_eq!(sum(&m, "jobmesh_leases_rescued_total", &[]), 0.0);
    let req = |route, status| {
        sum(
            &m,
            "jobmesh_api_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(req("/api/v1/jobs", "201"), 1.0);
    assert_eq!(req("/api/v1/jobs", "200"), 1.0);
    assert_eq!(
        req("/api/v1/jobs/{id}", "404"),
        1.0,
        "the template, not the path"
    );
    assert!(req("/metrics", "401") >= 2.0);
    assert!(req("/metrics", "403") >= 2.0);
    assert!(!text.contains("987654"), "a raw path reached the metrics");
    // The leader's counts are the store's.
    assert_eq!(sum(&m, "jobmesh_queue_stats_leader", &[]), 1.0);
    for (queue, state) in [
        ("default", "succeeded"),
        ("default", "discarded"),
        ("api", "succeeded"),
    ] {
        let stored = all
            .iter()
            .filter(|j| j.queue == queue && j.state.as_str() == state)
            .count() as f64;
        assert_eq!(
            sum(
                &m,
                "jobmesh_queue_jobs",
                &[("queue", queue), ("state", state)]
            ),
            stored,
            "{queue} {state}"
        );
    }
    h.stop().await;
}

async fn only_the_leader_serves_queue_counts(store: SharedStore) {
    let a = NodeWithApi::start(store.clone(), "leader-a").await;
    let read = token(&store, &[Scope::Read], &[]).await;
    a.node().submit(vec![noop("elsewhere")]).await.unwrap();
    scrape_until(&a, &read, "the first node leads", |m| {
        sum(m, "jobmesh_queue_stats_leader", &[]) == 1.0
            && sum(
                m,
                "jobmesh_queue_jobs",
                &[("queue", "elsewhere"), ("state", "available")],
            ) == 1.0
    })
    .await;
    let b = NodeWithApi::start(store.clone(), "follower-b").await;
    let (m, text) = scrape_until(&b, &read, "the second node's first round", |m| {
        has(m, "jobmesh_queue_stats_leader")
    })
    .await;
    assert_eq!(sum(&m, "jobmesh_queue_stats_leader", &[]), 0.0, "{text}");
    assert!(
        !has(&m, "jobmesh_queue_jobs"),
        "a follower serves no counts:\n{text}"
    );
    assert!(
        !has(&m, "jobmesh_queue_oldest_available_age_seconds"),
        "{text}"
    );
    // The leader still does, with the age of the job nobody runs.
    let (_, text) = scrape(&a.http, &a.base, Some(&read)).await;
    let m = parse(&text);
    assert!(
        has(&m, "jobmesh_queue_oldest_available_age_seconds"),
        "{text}"
    );
    assert!(
        sum(
            &m,
            "jobmesh_queue_oldest_available_age_seconds",
            &[("queue", "elsewhere")]
        ) >= 0.0
    );
    b.stop().await;
    a.stop().await;
}

/// `jobmesh api` (no node): its own metrics, counts read when scraped, and rate limits.
async fn api_alone_reads_counts_when_scraped(store: SharedStore) {
    let config = Config::default();
    let registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
    let api = ApiServer::start(
        store.clone(),
        Arc::new(registry),
        ApiSection {
            rate_per_second: 1,
            burst: 1,
            ..loopback()
        },
        None,
    )
    .await
    .unwrap();
    let base = format!("http://{}", api.local_addr());
    let http = reqwest::Client::new();
    let read = token(&store, &[Scope::Read], &[]).await;
    let busy = token(&store, &[Scope::Enqueue], &[]).await;
    store
        .enqueue(vec![noop("idle"), noop("idle")], SystemClock.now())
        .await
        .unwrap();
    let mut limited = 0;
    for _ in 0..3 {
        let r = http
            .post(format!("{base}/api/v1/jobs"))
            .bearer_auth(&busy)
            .header("content-type", "application/json")
            .body(json!({"kind": "noop", "queue": "idle", "payload": {}}).to_string())
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1, "three requests at a rate of one a second");
    let (status, text) = scrape(&http, &base, Some(&read)).await;
    assert_eq!(status, 200, "{text}");
    let m = parse(&text);
    check_labels(&m, &text);
    let stored = 2.0 + (3 - limited) as f64;
    assert_eq!(
        sum(
            &m,
            "jobmesh_queue_jobs",
            &[("queue", "idle"), ("state", "available")]
        ),
        stored
    );
    assert!(
        !has(&m, "jobmesh_queue_stats_leader"),
        "no node, no leader lease"
    );
    assert_eq!(
        sum(&m, "jobmesh_api_rate_limited_total", &[]),
        limited as f64
    );
    assert_eq!(
        sum(&m, "jobmesh_jobs_enqueued_total", &[("queue", "idle")]),
        (3 - limited) as f64,
        "what the API enqueued (not the store's own seed)"
    );
    api.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_workload_is_counted_as_the_store_records_it() {
    workload_is_counted_as_the_store_records_it(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workload_is_counted_as_the_store_records_it() {
    workload_is_counted_as_the_store_records_it(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_postgres_workload_is_counted_as_the_store_records_it() {
    workload_is_counted_as_the_store_records_it(redis_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_only_the_leader_serves_queue_counts() {
    only_the_leader_serves_queue_counts(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_only_the_leader_serves_queue_counts() {
    only_the_leader_serves_queue_counts(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_api_alone_reads_counts_when_scraped() {
    api_alone_reads_counts_when_scraped(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_api_alone_reads_counts_when_scraped() {
    api_alone_reads_counts_when_scraped(postgres().await).await;
}
