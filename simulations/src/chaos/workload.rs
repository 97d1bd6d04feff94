//! The workload: submits jobs at a steady rate straight into the shared store (as a
//! client of the cluster would) and records every attempt and acknowledgement.
//!
//! Every job carries a unique key `chaos-<n>`, so a job whose acknowledgement was lost
//! can still be recognised in the store afterwards, and anything without such a key
//! is unexpected.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::NewJob;
use jobmesh::store::SharedStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::ChaosError;
use super::history::Attempt;

/// Attempts shared with the progress display.
pub type Attempts = Arc<Mutex<Vec<Attempt>>>;

/// Submits jobs and records the attempts.
pub struct Workload {
    store: SharedStore,
    rng: StdRng,
    panic_share: f64,
    attempts: Attempts,
    http_receiver: Option<String>,
    /// `sleep` jobs made so far (every third goes to the limited queue).
    sleeps: u64,
}

/// How many jobs are due after `elapsed` of a run submitting `total` over `over`.
pub fn due(total: u64, over: Duration, elapsed: Duration) -> u64 {
    if elapsed >= over || over.is_zero() {
        return total;
    }
    (total as u128 * elapsed.as_millis() / over.as_millis()) as u64
}

impl Workload {
    /// A workload on `store`; `seed` picks the job mix, `panic_share` is the share of
    /// jobs that panic their worker on the first attempt.
    pub fn new(store: SharedStore, seed: u64, panic_share: f64) -> Self {
        Self {
            store,
            // A stream of its own: the job mix must not shift the fault schedule.
            rng: StdRng::seed_from_u64(seed ^ 0x6a6f_626d_6573_6821),
            panic_share,
            attempts: Attempts::default(),
            http_receiver: None,
            sleeps: 0,
        }
    }

    /// Submits `http` jobs that POST `{"ms": n}` to `url` instead of `sleep {"ms": n}`
    /// jobs (the receiver holds its answer `n` ms, so kills catch calls in flight).
    pub fn with_http_receiver(mut self, url: Option<String>) -> Self {
        self.http_receiver = url;
        self
    }

    /// The attempts so far (shared).
    pub fn attempts(&self) -> Attempts {
        self.attempts.clone()
    }

    /// Submits `total` jobs spread evenly over `over`.
    pub async fn run(&mut self, total: u64, over: Duration) {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            let target = due(total, over, start.elapsed());
            while sent < target {
                let job = self.next_job();
                self.submit(job).await;
                sent += 1;
            }
        }
    }

    /// Submits `count` jobs of `sleep {"ms": ms}` at once: work for every node after the
    /// faults healed, to judge liveness.
    pub async fn burst(&mut self, count: u64, ms: u64) {
        for _ in 0..count {
            self.submit(NewJob::new("sleep", json!({ "ms": ms }))).await;
        }
    }

    fn next_job(&mut self) -> NewJob {
        if self.rng.random_bool(self.panic_share) {
            // Panics on the first attempt only: the retry succeeds, so the job must end
            // succeeded like every other.
            NewJob::new("panic", json!({ "times": 1 }))
        } else {
            // Long enough that kills and pauses catch jobs mid-run; every third to the
            // queue under a limit (by count, so the seed's job mix is unchanged).
            let ms: u64 = self.rng.random_range(50..=500);
            let mut job = match &self.http_receiver {
                Some(url) => NewJob::new("http", json!({ "url": url, "body": { "ms": ms } })),
                None => NewJob::new("sleep", json!({ "ms": ms })),
            };
            self.sleeps += 1;
            if self.sleeps.is_multiple_of(3) {
                job.queue = super::limits::LIMITED_QUEUE.into();
            }
            job
        }
    }

    async fn submit(&mut self, mut job: NewJob) -> Option<i64> {
        let key = {
            let n = self.attempts.lock().expect("attempts lock").len();
            format!("chaos-{n}")
        };
        job.unique_key = Some(key.clone());
        let kind = job.kind.clone();
        let now = SystemClock.now();
        let (acked, error) = match self.store.enqueue(vec![job], now).await {
            Ok(out) => (out.first().map(|o| o.id().0), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.attempts.lock().expect("attempts lock").push(Attempt {
            key,
            kind,
            submitted_ms: now.0,
            acked,
            error,
        });
        acked
    }

    /// The self-test of the checker through a real run: submits one job for an hour
    /// from now (so no node claims it), then deletes it from the SQLite file behind the
    /// store's back. The checker must report it lost.
    pub async fn sabotage_lose_one(&mut self, sqlite: &Path) -> Result<(), ChaosError> {
        let mut job = NewJob::new("sleep", json!({ "ms": 1 }));
        job.run_at = Some(SystemClock.now().plus(Duration::from_secs(3600)));
        let id = self.submit(job).await.ok_or_else(|| ChaosError::Options {
            message: "sabotage: the store refused the victim job".into(),
        })?;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(sqlite)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(sabotage_failed)?;
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id)
            .execute(&pool)
            .await
            .map_err(sabotage_failed)?;
        pool.close().await;
        Ok(())
    }
}

/// The host of a receiver URL, which must be `http://` on loopback (the nodes are
/// opened up to call it, and nothing else).
pub fn receiver_host(url: &str) -> Result<String, ChaosError> {
    let bad = |why: &str| ChaosError::Options {
        message: format!("--http-receiver `{}`: {why}", url.escape_debug()),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => authority,
    };
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(host.to_string()),
        _ => Err(bad(
            "must name a loopback address, such as http://127.0.0.1:8080/effect",
        )),
    }
}

fn sabotage_failed(e: sqlx::Error) -> ChaosError {
    ChaosError::Options {
        message: format!("sabotage: cannot delete the victim job: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_due_evenly() {
        let s = Duration::from_secs;
        assert_eq!(due(100, s(10), s(0)), 0);
        assert_eq!(due(100, s(10), s(5)), 50);
        assert_eq!(due(100, s(10), s(11)), 100);
        assert_eq!(due(100, Duration::ZERO, s(0)), 100);
    }

    #[test]
    fn a_receiver_must_be_on_loopback() {
        assert_eq!(
            receiver_host("http://127.0.0.1:9000/effect").unwrap(),
            "127.0.0.1"
        );
        for bad in [
            "https://127.0.0.1/",
            "http://10.0.0.1:80/",
            "http://example.com/x",
        ] {
            assert!(receiver_host(bad).is_err(), "{bad}");
        }
    }
}
