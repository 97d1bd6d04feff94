//! The dashboard's Jobs page at a million jobs: fills a store with `--jobs N` jobs
//! (default 1,000,000; by SQL, in seconds), serves the API on it, and times the HTTP
//! calls the page makes, as the browser makes them (session identity, keyset pages of
//! 50, newest first), against the 200 ms target of a page:
//!
//! - opening the page: `GET /api/v1/me` and the first page of `GET /api/v1/jobs`;
//! - the next page (by the cursor), and pages filtered by state, queue, kind, priority
//!   and a payload match;
//! - the count behind "all matching" (`POST /api/v1/jobs/bulk/{action}/count`) by
//!   queue or state and by kind, counted by the store up to its cap (`api.counts_max_age`
//!   is 0 here, so the shared counts are never fresh: the worst case);
//! - the Overview's reads: `GET /api/v1/queues` (the counts read afresh each time, the
//!   first read after start timed apart) and the throughput history of the last hour
//!   (`GET /api/v1/stats/throughput`: the first read takes the whole hour, about 360,000
//!   jobs here; each later one only the intervals still open).
//!
//! The jobs are dated so that the last of them was created a second before the fill
//! (one every 10 ms: the last hour holds 360,000 of a million).
//!
//! ```sh
//! cargo bench --profile dev --bench jobs_page -- [--store sqlite|postgres] [--jobs N] [--rounds N]
//! ```
//! (`--profile dev`: a debug build; without it cargo builds the release profile.)
//! Postgres: `JOBMESH_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! schema `jobmesh_jobs_page_bench`, dropped first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::{ApiSection, Config};
use jobmesh::store::tokens::{NewApiToken, Scope, TokenSecret};
use jobmesh::store::{AuditContext, SharedStore};
use jobmesh_api::ApiServer;
use serde_json::{Value, json};

/// Jobs by state as `benches/list_filters/fill.sql` spreads them: 70% succeeded, 10%
/// available, 5% retryable, 5% scheduled, 5% discarded, 3% cancelled, 2% running; 10
/// queues, 20 kinds, priorities -5..=5; one created every 10 ms, finished 500 ms later
/// (`{T0}`: the first one's creation).
const STATE: &str = "CASE WHEN i % 100 < 70 THEN 'succeeded' WHEN i % 100 < 80 THEN 'available'
     WHEN i % 100 < 85 THEN 'retryable' WHEN i % 100 < 90 THEN 'scheduled'
     WHEN i % 100 < 95 THEN 'discarded' WHEN i % 100 < 98 THEN 'cancelled' ELSE 'running' END";
const FINISHED: &str = "CASE WHEN i % 100 < 70 OR (i % 100 >= 90 AND i % 100 < 98)
     THEN {T0} + i * 10 + 500 END";

/// `sql` with the first job's creation time written in.
fn dated(sql: &str, t0: i64) -> String {
    sql.replace("{T0}", &t0.to_string())
}

async fn fill_sqlite(path: &std::path::Path, n: u64, t0: i64) {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("open the bench database");
    let sql = format!(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n})
         INSERT INTO jobs (queue, kind, payload, priority, state, attempt, max_attempts, run_at,
                           created_at, finished_at, lease_token)
         SELECT 'q' || (i % 10), 'k' || (i % 20),
                json_object('customer', json_object('id', CAST(i % 1000 AS TEXT)), 'n', i),
                (i % 11) - 5, {STATE}, 1, 25, {{T0}} + i * 10, {{T0}} + i * 10, {FINISHED}, 1
         FROM c"
    );
    sqlx::query(sqlx::AssertSqlSafe(dated(&sql, t0)))
        .execute(&pool)
        .await
        .expect("fill");
    sqlx::query("ANALYZE")
        .execute(&pool)
        .await
        .expect("analyze");
    pool.close().await;
}

async fn fill_postgres(store: &jobmesh::store::postgres::PostgresStore, n: u64, t0: i64) {
    let sql = format!(
        "INSERT INTO jobs (queue, kind, payload, priority, state, attempt, max_attempts, run_at,
                           created_at, finished_at, lease_token)
         SELECT 'q' || (i % 10), 'k' || (i % 20),
                jsonb_build_object('customer', jsonb_build_object('id', (i % 1000)::text), 'n', i),
                (i % 11) - 5, {STATE}, 1, 25, {{T0}} + i * 10, {{T0}} + i * 10, {FINISHED}, 1
         FROM generate_series(1, {n}) AS i"
    );
    sqlx::query(sqlx::AssertSqlSafe(dated(&sql, t0)))
        .execute(store.pool())
        .await
        .expect("fill");
    sqlx::query("VACUUM ANALYZE jobs")
        .execute(store.pool())
        .await
        .expect("vacuum");
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// One call; its time in ms and its body.
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (f64, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(&Value::Null).to_string()),
        }
        .header("cookie", format!("jobmesh_session={}", self.token))
        .header("sec-fetch-site", "same-origin");
        let started = Instant::now();
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let value: Value =
            serde_json::from_slice(&resp.bytes().await.expect("a body")).expect("JSON");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        (ms, value)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let jobs: u64 = arg("--jobs").map_or(1_000_000, |v| v.parse().expect("--jobs N"));
    let rounds: usize = arg("--rounds").map_or(30, |v| v.parse().expect("--rounds N"));
    let backend = arg("--store").unwrap_or_else(|| "sqlite".into());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let filled = Instant::now();
    let t0 = SystemClock.now().0 - 1000 - jobs as i64 * 10;
    let store: SharedStore = match backend.as_str() {
        "sqlite" => {
            let path = dir.path().join("jobs-page.db");
            drop(
                jobmesh::store::sqlite::SqliteStore::open(&path)
                    .await
                    .expect("migrate"),
            );
            fill_sqlite(&path, jobs, t0).await;
            Arc::new(
                jobmesh::store::sqlite::SqliteStore::open(&path)
                    .await
                    .expect("open"),
            )
        }
        "postgres" => {
            let url = std::env::var("JOBMESH_BENCH_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let schema = "jobmesh_jobs_page_bench";
            let admin = sqlx::PgPool::connect(&url).await.expect("Postgres");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&admin)
            .await
            .expect("drop the bench schema");
            let pg = jobmesh::store::postgres::PostgresStore::connect(&url, Some(schema))
                .await
                .expect("connect");
            fill_postgres(&pg, jobs, t0).await;
            Arc::new(pg)
        }
        other => panic!("--store sqlite|postgres, not {other}"),
    };
    println!(
        "{backend}: {jobs} jobs filled in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let config = Config::default();
    let registry = jobmesh::handler::builtin::registry(&config.exec, &config.http);
    let api = ApiSection {
        listen: Some("127.0.0.1:0".parse().expect("address")),
        counts_max_age: Duration::ZERO,
        rate_per_second: 1_000_000,
        burst: 1_000_000,
        ..ApiSection::default()
    };
    let server = ApiServer::start(store.clone(), Arc::new(registry), api, None)
        .await
        .expect("the API");
    let secret = TokenSecret::generate();
    let id = store
        .create_token(
            &AuditContext::system(),
            &NewApiToken {
                name: "bench".into(),
                scopes: vec![Scope::Read],
                queues: Vec::new(),
            },
            &secret.hash(),
            SystemClock.now(),
        )
        .await
        .expect("a token");
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.local_addr()),
        token: secret.text(id),
    };

    // The Overview's first reads after start: the counts (a grouped count of the
    // table, or the kept counts) and the whole hour of throughput.
    let (queues_first, _) = client.call("GET", "/api/v1/queues", None).await;
    let (hour_first, hour) = client.call("GET", "/api/v1/stats/throughput", None).await;
    let in_hour: u64 = hour["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .map(|i| i["enqueued"].as_u64().unwrap_or(0))
        .sum();
    println!(
        "first GET /api/v1/queues after start: {queues_first:.1} ms; first GET /api/v1/stats/throughput: {hour_first:.1} ms ({in_hour} jobs enqueued in the hour)"
    );
    let first = client
        .call("GET", "/api/v1/jobs?order=desc&limit=50", None)
        .await
        .1;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let pages: Vec<(&str, String)> = vec![
        (
            "next page",
            format!("/api/v1/jobs?order=desc&limit=50&cursor={cursor}"),
        ),
        (
            "state=retryable",
            "/api/v1/jobs?order=desc&limit=50&state=retryable".into(),
        ),
        (
            "queue=q3&state=available",
            "/api/v1/jobs?order=desc&limit=50&queue=q3&state=available".into(),
        ),
        ("kind=k7", "/api/v1/jobs?order=desc&limit=50&kind=k7".into()),
        (
            "priority_min=4&queue=q2",
            "/api/v1/jobs?order=desc&limit=50&priority_min=4&queue=q2".into(),
        ),
        (
            "payload $.customer.id == \"42\" (1 in 1000)",
            "/api/v1/jobs?order=desc&limit=50&payload=%24.customer.id%20%3D%3D%20%2242%22".into(),
        ),
    ];
    let counts: Vec<(&str, &str, Value)> = vec![
        (
            "count cancel: queue=q3",
            "/api/v1/jobs/bulk/cancel/count",
            json!({"filter": {"queues": ["q3"]}}),
        ),
        (
            "count redrive: state=discarded",
            "/api/v1/jobs/bulk/redrive/count",
            json!({"filter": {"states": ["discarded"]}}),
        ),
        (
            "count cancel: kind=k7 (store, cap 100000)",
            "/api/v1/jobs/bulk/cancel/count",
            json!({"filter": {"kind": "k7"}}),
        ),
        (
            "count delete: kind=k7 (store, cap 100000)",
            "/api/v1/jobs/bulk/delete/count",
            json!({"filter": {"kind": "k7"}}),
        ),
    ];

    println!("{rounds} rounds each; ms at the client (p50 / p95 / max)");
    let report = |name: &str, mut ms: Vec<f64>, note: String| {
        ms.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} / {:.1} / {:.1} | {note} |",
            quantile(&ms, 0.5),
            quantile(&ms, 0.95),
            ms[ms.len() - 1]
        );
    };
    let mut open = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        client.call("GET", "/api/v1/me", None).await;
        client
            .call("GET", "/api/v1/jobs?order=desc&limit=50", None)
            .await;
        open.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report("open the page (me + first page)", open, String::new());
    for (name, path) in [
        ("queues (counts read afresh)", "/api/v1/queues"),
        (
            "throughput, last hour (open intervals re-read)",
            "/api/v1/stats/throughput",
        ),
    ] {
        let mut ms = Vec::new();
        for _ in 0..rounds {
            ms.push(client.call("GET", path, None).await.0);
        }
        report(name, ms, String::new());
    }
    for (name, path) in &pages {
        let mut ms = Vec::new();
        let mut n = 0;
        for _ in 0..rounds {
            let (t, body) = client.call("GET", path, None).await;
            n = body["jobs"].as_array().map_or(0, Vec::len);
            ms.push(t);
        }
        report(name, ms, format!("{n} jobs"));
    }
    for (name, path, body) in &counts {
        let mut ms = Vec::new();
        let mut last = Value::Null;
        for _ in 0..rounds {
            let (t, b) = client.call("POST", path, Some(body)).await;
            ms.push(t);
            last = b;
        }
        report(
            name,
            ms,
            format!(
                "{} ({})",
                if last["exact"] == json!(true) {
                    last["jobs"].to_string()
                } else if last["counted"] == json!(false) {
                    "not counted".to_string()
                } else {
                    format!("more than {}", last["cap"])
                },
                last["source"].as_str().unwrap_or("?")
            ),
        );
    }
    server.shutdown(Duration::from_secs(1)).await;
}
