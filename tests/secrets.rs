//! Credentials a job used never reach the record: a real node runs an `http` job whose
//! URL carries `alice:secretpw@` and whose `Authorization` header is a bearer token,
//! against a server that echoes the header back and fails; then every column of every
//! table of the store, the Redis event stream (redis_postgres) and the node's log
//! (everything at TRACE, through the redacting writer the binary uses) are searched for
//! the secret. The only place it may remain is the job's own payload, which is the
//! input the submitter stored.
//!
//! The production-mode test needs the machine's Postgres and Redis, like
//! `store_redis_postgres.rs` (same environment variables, its own schema and key prefix).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobmesh::config::{AddressPolicy, ExecSection, HttpSection};
use jobmesh::event::EventKind;
use jobmesh::handler::builtin;
use jobmesh::job::{JobId, JobState, NewJob};
use jobmesh::store::SharedStore;
use jobmesh::store::redis_postgres::{RedisPostgresConfig, RedisPostgresStore};
use jobmesh::store::sqlite::SqliteStore;
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

const SECRET: &str = "secretpw";
/// Bounds a failure only: the job fails within milliseconds.
const DEADLINE: Duration = Duration::from_secs(30);

/// The log of this test binary, as the node's log writer would have written it.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_ansi(false)
            .with_writer(move || {
                jobmesh::redact::RedactingWriter::new(SharedBuf(Arc::clone(&sink)))
            })
            .try_init()
            .ok();
        buf
    })
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An HTTP server on 127.0.0.1 that answers every request 401 with the request's
/// `Authorization` header in the body (as a misbehaving webhook receiver might).
async fn echoing_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: "))
                    .unwrap_or("none")
                    .to_string();
                let body = format!("bad credentials: {auth}");
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    base
}

/// Runs the secret-carrying job on a node over `store` until it is dead-lettered;
/// returns its id.
async fn run_secret_job(store: SharedStore) -> JobId {
    log();
    let base = echoing_server().await;
    let registry = builtin::registry(
        &ExecSection::default(),
        &HttpSection {
            allow_private: AddressPolicy::parse(&["127.0.0.1"]).unwrap(),
            ..HttpSection::default()
        },
    );
    let node = common::start_node(
        store.clone(),
        "secrets",
        Duration::from_millis(50),
        registry,
    )
    .await;
    let mut events = node.subscribe();
    let url = base.replace("http://", &format!("http://alice:{SECRET}@")) + "/hook?x=1";
    let mut job = NewJob::new(
        "http",
        json!({"url": url, "headers": {"Authorization": format!("Bearer {SECRET}-token")}}),
    );
    job.max_attempts = 1;
    let id = node.submit(vec![job]).await.unwrap()[0].id();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let e = events.recv().await.unwrap();
            if e.kind == EventKind::JobDiscarded && e.job == Some(id) {
                return;
            }
        }
    })
    .await
    .expect("the job was not dead-lettered");
    node.shutdown(Duration::from_secs(10)).await.unwrap();

    let job = store.get_job(id).await.unwrap().expect("the job is stored");
    assert_eq!(job.state, JobState::Discarded);
    let error = job.last_error.expect("a last error");
    // The error still says what happened, without the credentials.
    assert!(error.contains("http://127.0.0.1:"), "{error}");
    assert!(error.contains("returned 401"), "{error}");
    assert!(error.contains("bad credentials: ***"), "{error}");
    id
}

/// The (table, column) pairs whose text holds `SECRET`. Only the job's payload may.
fn assert_only_in_the_payload(hits: Vec<(String, String)>) {
    assert_eq!(
        hits,
        [("jobs".to_string(), "payload".to_string())],
        "the secret must be nowhere but in the job's own payload"
    );
}

fn assert_log_clean() {
    let log = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    assert!(
        !log.is_empty(),
        "the node logged nothing: the capture is broken"
    );
    let hits: Vec<&str> = log.lines().filter(|l| l.contains(SECRET)).collect();
    assert!(
        hits.is_empty(),
        "the log holds the secret:\n{}",
        hits.join("\n")
    );
}

#[tokio::test]
async fn secrets_stay_out_of_the_sqlite_record_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobmesh.db");
    let store: SharedStore = Arc::new(SqliteStore::open(&path).await.unwrap());
    run_secret_job(store).await;

    // Every column of every table, read as text by SQLite itself.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.iter().any(|t| t == "lifecycle_events"), "{tables:?}");
    let mut hits = Vec::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query(AssertSqlSafe(format!("PRAGMA table_info(\"{table}\")")))
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
        for column in columns {
            // Names read from the database's own catalogue, quoted.
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS TEXT), ?) > 0"
            )))
            .bind(SECRET)
            .fetch_one(&pool)
            .await
            .unwrap();
            if n > 0 {
                hits.push((table.clone(), column));
            }
        }
    }
    assert_only_in_the_payload(hits);
    assert_log_clean();
}

fn pg_url() -> String {
    std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("JOBMESH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

#[tokio::test]
async fn secrets_stay_out_of_postgres_the_redis_stream_and_the_log() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("jm_test_{secs}_{:016x}", rand::random::<u64>());
    let prefix = format!("jmtest:secrets:{:016x}", rand::random::<u64>());
    let store = RedisPostgresStore::connect(
        &pg_url(),
        Some(&schema),
        &redis_url(),
        RedisPostgresConfig::new(prefix.clone()),
    )
    .await
    .unwrap_or_else(|e| {
        panic!("this test needs Postgres and Redis (see store_redis_postgres.rs): {e}")
    });
    let store = Arc::new(store);
    run_secret_job(store.clone()).await;
    // Everything recorded is in the stream before it is searched.
    while store.relay_events().await.unwrap() > 0 {}

    // Every column of every table of the schema, as text.
    let pool = store.postgres().pool();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = $1",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(columns.iter().any(|(t, _, _)| t == "lifecycle_events"));
    let mut hits = Vec::new();
    for (table, column, ty) in columns {
        let text = if ty == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        // Names read from the database's own catalogue, quoted.
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE strpos({text}, $1) > 0"
        )))
        .bind(SECRET)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            hits.push((table, column));
        }
    }
    hits.sort();
    hits.dedup();
    assert_only_in_the_payload(hits);

    // The whole Redis event stream, raw.
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{entries:?}");
    assert!(
        text.contains("job.failed") || text.contains("JobFailed") || text.contains("failed"),
        "the stream holds no failure event, so it proves nothing: {text}"
    );
    assert!(
        !text.contains(SECRET),
        "the stream holds the secret: {text}"
    );

    common::delete_redis_keys(&mut conn, &format!("{prefix}*")).await;
    assert_log_clean();
}
