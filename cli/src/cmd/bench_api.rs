//! `jobmesh bench --via-api`: the enqueue measured through the HTTP API, beside the
//! store's own enqueue in the same run: batches of the store's batch size through
//! `POST /api/v1/jobs/batch`, then single jobs through `POST /api/v1/jobs` over
//! keep-alive connections. The server runs in this process on a loopback port with a
//! token made for the run (revoked at the end) and the rate limit lifted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::ApiSection;
use jobmesh::handler::Registry;
use jobmesh::job::NewJob;
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::{NewApiToken, Scope, TokenSecret};
use jobmesh_api::ApiServer;
use serde_json::{Value, json};

/// What the API run measured.
pub struct ApiRates {
    /// Jobs per second through `POST /api/v1/jobs/batch`, one request at a time.
    pub batch_per_s: f64,
    /// Jobs per second of the store's own enqueue, in batches of the same size taken
    /// in turn with the HTTP batches (each HTTP batch is followed by one straight to
    /// the store), so that both rates see the same machine.
    pub paired_store_per_s: f64,
    /// Requests (one job each) per second through `POST /api/v1/jobs`.
    pub single_per_s: f64,
    /// Latency of the single requests, p50 and p99 in ms.
    pub single_ms: (f64, f64),
}

/// The shape of one run.
pub struct Plan<'a> {
    /// Queue the jobs go to.
    pub queue: &'a str,
    /// Jobs sent in batches.
    pub batch_jobs: u32,
    /// Jobs in one batch request.
    pub batch_size: usize,
    /// Jobs sent one per request.
    pub single_jobs: u32,
    /// Keep-alive connections sending the single requests at once.
    pub connections: u32,
}

/// Serves the API for the run, sends the jobs and stops the server.
pub async fn measure(
    store: &SharedStore,
    registry: Arc<Registry>,
    api: &ApiSection,
    plan: &Plan<'_>,
) -> anyhow::Result<ApiRates> {
    let secret = TokenSecret::generate();
    let token = NewApiToken {
        name: "jobmesh-bench".into(),
        scopes: vec![Scope::Enqueue],
        queues: vec![plan.queue.to_string()],
    };
    // The benchmark's token is made and revoked by whoever runs it, like `jobmesh token`.
    let audit = crate::setup::audit_context();
    let id = store
        .create_token(&audit, &token, &secret.hash(), SystemClock.now())
        .await?;
    let bearer = format!("Bearer {}", secret.text(id));

    let mut config = api.clone();
    config.listen = Some("127.0.0.1:0".parse().expect("a loopback address"));
    // The benchmark measures the server, not the per-token rate limit.
    config.rate_per_second = 1_000_000;
    config.burst = 1_000_000;
    let batch_size = plan.batch_size.min(config.max_batch as usize).max(1);
    let server = ApiServer::start(store.clone(), registry, config, None)
        .await
        .context("starting the API server for the benchmark")?;
    let base = format!("http://{}/api/v1", server.local_addr());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.connections as usize)
        .build()
        .context("building the HTTP client")?;

    let result = async {
        let (batch_per_s, paired_store_per_s) =
            send_batches(store, &client, &base, &bearer, plan, batch_size).await?;
        let (single_per_s, single_ms) = send_singles(&client, &base, &bearer, plan).await?;
        anyhow::Ok(ApiRates {
            batch_per_s,
            paired_store_per_s,
            single_per_s,
            single_ms,
        })
    }
    .await;
    server.shutdown(Duration::from_secs(5)).await;
    store.revoke_token(&audit, id, SystemClock.now()).await?;
    result
}

fn job(queue: &str) -> Value {
    json!({"kind": "noop", "queue": queue})
}

/// Sends `plan.batch_jobs` through the batch route and as many straight to the store,
/// a batch of each in turn; the two rates in jobs per second.
async fn send_batches(
    store: &SharedStore,
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    plan: &Plan<'_>,
    batch_size: usize,
) -> anyhow::Result<(f64, f64)> {
    // The bodies are made before the clock starts: a client's own serialising is not
    // the server's cost (and here it would share the server's two cores).
    let full = json!({ "jobs": vec![job(plan.queue); batch_size] }).to_string();
    let url = format!("{base}/jobs/batch");
    let (mut http, mut direct) = (Duration::ZERO, Duration::ZERO);
    let mut pending = plan.batch_jobs as usize;
    while pending > 0 {
        let n = pending.min(batch_size);
        let body = if n == batch_size {
            full.clone()
        } else {
            json!({ "jobs": vec![job(plan.queue); n] }).to_string()
        };
        let t0 = Instant::now();
        let answer = post(client, &url, bearer, body).await?;
        http += t0.elapsed();
        let accepted = answer["accepted"].as_u64().unwrap_or(0) as usize;
        if accepted != n {
            bail!("the API accepted {accepted} of a batch of {n}: {answer}");
        }
        // The same number of jobs straight to the store, made as the store-only
        // benchmark makes them (inside the timed part).
        let t0 = Instant::now();
        let jobs = (0..n)
            .map(|_| {
                let mut job = NewJob::new("noop", json!({}));
                job.queue = plan.queue.to_string();
                job
            })
            .collect();
        store.enqueue(jobs, SystemClock.now()).await?;
        direct += t0.elapsed();
        pending -= n;
    }
    let jobs = plan.batch_jobs as f64;
    Ok((jobs / http.as_secs_f64(), jobs / direct.as_secs_f64()))
}

async fn send_singles(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    plan: &Plan<'_>,
) -> anyhow::Result<(f64, (f64, f64))> {
    let url = format!("{base}/jobs");
    let body = job(plan.queue).to_string();
    let connections = plan.connections.max(1);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        // Spread the requests evenly; the first connections take the remainder.
        let n = plan.single_jobs / connections + u32::from(c < plan.single_jobs % connections);
        let (client, url, bearer, body) = (
            client.clone(),
            url.clone(),
            bearer.to_string(),
            body.clone(),
        );
        tasks.spawn(async move {
            let mut ms = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let sent = Instant::now();
                post(&client, &url, &bearer, body.clone()).await?;
                ms.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(ms)
        });
    }
    let mut ms = Vec::with_capacity(plan.single_jobs as usize);
    while let Some(done) = tasks.join_next().await {
        ms.extend(done.context("a sending task failed")??);
    }
    let rate = plan.single_jobs as f64 / t0.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    Ok((rate, (percentile(&ms, 0.50), percentile(&ms, 0.99))))
}

/// POSTs `body` and returns the JSON answer; any status but 2xx is an error that
/// carries the problem document.
async fn post(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    body: String,
) -> anyhow::Result<Value> {
    let response = client
        .post(url)
        .header("authorization", bearer)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await.context("reading the answer")?;
    if !status.is_success() {
        bail!(
            "POST {url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes).with_context(|| format!("the answer of POST {url} is not JSON"))
}

/// The value at quantile `p` of sorted `xs` (NaN when empty).
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    xs.get(((p * xs.len() as f64) as usize).min(xs.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}
