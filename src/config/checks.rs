//! Values that parse but make no sense (a zero lease, a batch of a million, `3f + 1`
//! observers missing), checked after the config is read, every problem at once, each
//! named by its key.

use std::time::Duration;

use super::{Backend, Config};

/// Most worker actors on one node.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Most jobs per claim, completions per transaction, or jobs per retention purge.
pub const MAX_BATCH: u32 = 10_000;
/// Longest configurable duration (about 10 years): durations are added to timestamps in
/// milliseconds, and anything longer is a typo rather than a policy.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest lease: a lost worker's jobs wait this long before they are rescued.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// Longest fallback poll interval.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
/// Most restarts allowed within `workers.restart.window`.
pub const MAX_RESTARTS: u32 = 1_000_000;
/// Highest `workers.max_snoozes`.
pub const MAX_SNOOZES: u32 = 1_000_000;
/// Longest delay between worker restarts.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(3600);
/// Longest time a cancelled attempt may take to stop before its worker drops it.
pub const MAX_CANCEL_GRACE: Duration = Duration::from_secs(3600);
/// Largest output (`exec`) or response (`http`) kept per job, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// Most Byzantine members tolerated (`mesh.f`).
pub const MAX_MESH_F: usize = 1_000;
/// Most observers per member (`mesh.observers`).
pub const MAX_MESH_OBSERVERS: usize = 10_000;

/// One refused value: the key and what is wrong with it.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) key: String,
    message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Messages of the sections' own validators already start with their key.
        if self.message.starts_with(&self.key) {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Collects every refused value, so one run of the loader reports all of them.
#[derive(Default)]
struct Checks(Vec<Problem>);

impl Checks {
    fn fail(&mut self, key: &str, message: String) {
        self.0.push(Problem {
            key: key.to_string(),
            message,
        });
    }

    /// `min..=max`; returns whether it was.
    fn within<T: PartialOrd + std::fmt::Display>(
        &mut self,
        key: &str,
        v: T,
        min: T,
        max: T,
    ) -> bool {
        let ok = min <= v && v <= max;
        if !ok {
            self.fail(key, format!("must be within {min}..={max}, got {v}"));
        }
        ok
    }

    fn duration(&mut self, key: &str, v: Duration, min: Duration, max: Duration) {
        if v < min {
            let floor = if min == Duration::from_millis(1) {
                "greater than zero".to_string()
            } else {
                format!("at least {}", human(min))
            };
            self.fail(key, format!("must be {floor}, got {}", human(v)));
        } else if v > max {
            self.fail(
                key,
                format!("must be at most {}, got {}", human(max), human(v)),
            );
        }
    }

    /// A section's own validator, whose message names its key (`retry.jitter must …`).
    fn external(&mut self, section: &str, result: Result<(), String>) {
        if let Err(message) = result {
            let key = message
                .split([' ', ':'])
                .next()
                .filter(|k| k.starts_with(section))
                .unwrap_or(section)
                .to_string();
            self.0.push(Problem { key, message });
        }
    }

    fn finish(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn human(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

impl Config {
    /// Every refused value, or nothing.
    pub(super) fn validate_all(&self) -> Result<(), Vec<Problem>> {
        let mut c = Checks::default();
        let w = &self.workers;
        c.within("workers.concurrency", w.concurrency, 1, MAX_CONCURRENCY);
        if w.queues.is_empty() {
            c.fail("workers.queues", "must name at least one queue".into());
        }
        for q in &w.queues {
            if let Err(e) = crate::job::check_queue_name(q) {
                c.fail("workers.queues", e);
            }
        }
        c.duration(
            "workers.lease",
            w.lease,
            Duration::from_millis(100),
            MAX_LEASE,
        );
        c.duration(
            "workers.poll_interval",
            w.poll_interval,
            Duration::from_millis(1),
            MAX_POLL_INTERVAL,
        );
        c.duration(
            "workers.default_timeout",
            w.default_timeout,
            Duration::from_millis(1),
            MAX_DURATION,
        );
        c.duration(
            "workers.cancel_grace",
            w.cancel_grace,
            Duration::ZERO,
            MAX_CANCEL_GRACE,
        );
        c.within("workers.claim_batch", w.claim_batch, 1, MAX_BATCH);
        c.within("workers.complete_batch", w.complete_batch, 1, MAX_BATCH);
        c.duration(
            "workers.progress_interval",
            w.progress_interval,
            Duration::from_millis(10),
            MAX_POLL_INTERVAL,
        );
        c.within("workers.max_snoozes", w.max_snoozes, 0, MAX_SNOOZES);
        c.duration(
            "workers.max_snooze",
            w.max_snooze,
            Duration::ZERO,
            crate::job::MAX_DELAY,
        );
        let r = &w.restart;
        c.within(
            "workers.restart.max_restarts",
            r.max_restarts,
            0,
            MAX_RESTARTS,
        );
        c.duration(
            "workers.restart.window",
            r.window,
            Duration::from_millis(1),
            MAX_DURATION,
        );
        c.duration(
            "workers.restart.backoff_min",
            r.backoff_min,
            Duration::ZERO,
            MAX_RESTART_BACKOFF,
        );
        c.duration(
            "workers.restart.backoff_max",
            r.backoff_max,
            Duration::ZERO,
            MAX_RESTART_BACKOFF,
        );
        if r.backoff_min > r.backoff_max {
            c.fail(
                "workers.restart.backoff_min",
                format!(
                    "must not exceed workers.restart.backoff_max ({}), got {}",
                    human(r.backoff_max),
                    human(r.backoff_min)
                ),
            );
        }
        c.external("workers.learned", w.learned.validate());
        for (name, policy) in &self.queues {
            c.external("queues", policy.validate(name));
        }
        c.external("retry", self.retry.validate());
        c.duration("retry.unit", self.retry.unit, Duration::ZERO, MAX_DURATION);
        c.duration(
            "retry.max_delay",
            self.retry.max_delay,
            Duration::ZERO,
            MAX_DURATION,
        );
        let p = &self.predict;
        c.duration(
            "predict.save_interval",
            p.save_interval,
            super::MIN_SAVE_INTERVAL,
            super::MAX_SAVE_INTERVAL,
        );
        if !p.feed {
            // Each of these asks the live models; with none it would quietly do nothing.
            let needs_models = [
                ("retry.learned", self.retry.learned),
                ("workers.learned.timeout", w.learned.timeout),
                ("workers.learned.lease", w.learned.lease),
            ];
            for (key, on) in needs_models {
                if on {
                    c.fail(
                        key,
                        "needs the live models, but predict.feed = false".into(),
                    );
                }
            }
            for (name, policy) in &self.queues {
                if policy.wait_slo.is_some() {
                    c.fail(
                        &format!("queues.{name}.wait_slo"),
                        "needs the live models, but predict.feed = false".into(),
                    );
                }
            }
        }
        c.within(
            "exec.max_output_bytes",
            self.exec.max_output_bytes,
            1,
            MAX_OUTPUT_BYTES,
        );
        c.within(
            "http.max_response_bytes",
            self.http.max_response_bytes,
            1,
            MAX_OUTPUT_BYTES,
        );
        let m = &self.mesh;
        // Bounded first: `mesh.validate` computes `3f + 1`.
        let f_ok = c.within("mesh.f", m.f, 0, MAX_MESH_F);
        let observers_ok = m
            .observers
            .is_none_or(|k| c.within("mesh.observers", k, 1, MAX_MESH_OBSERVERS));
        if f_ok && observers_ok {
            c.external("mesh", m.validate());
        }
        let t = &self.retention;
        c.duration(
            "retention.finished_jobs",
            t.finished_jobs,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.dead_letters",
            t.dead_letters,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.coordination",
            t.coordination,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.audit",
            t.audit,
            Duration::from_secs(1),
            MAX_DURATION,
        );
        c.duration(
            "retention.interval",
            t.interval,
            Duration::from_millis(1),
            MAX_DURATION,
        );
        c.within("retention.batch", t.batch, 1, MAX_BATCH);
        c.external("retention", t.validate());
        if self.node.name.is_empty() {
            c.fail("node.name", "must not be empty".into());
        }
        c.external("exec", self.exec.validate());
        c.external("http", self.http.validate());
        c.external("api", self.api.validate());
        let st = &self.store;
        for (key, url) in [
            ("store.postgres_url", &st.postgres_url),
            ("store.redis_url", &st.redis_url),
        ] {
            if url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                c.fail(key, "must not be empty (leave it out instead)".into());
            }
        }
        if st.redis_prefix.as_deref() == Some("") {
            c.fail("store.redis_prefix", "must not be empty".into());
        }
        match st.backend {
            Backend::Sqlite => {}
            Backend::Postgres if st.postgres_url.is_none() => c.fail(
                "store.postgres_url",
                "store.backend = \"postgres\" needs store.postgres_url (or JOBMESH__STORE__POSTGRES_URL)"
                    .into(),
            ),
            Backend::RedisPostgres if st.postgres_url.is_none() || st.redis_url.is_none() => {
                c.fail(
                    "store.redis_url",
                    "store.backend = \"redis_postgres\" needs store.postgres_url and store.redis_url"
                        .into(),
                )
            }
            _ => {}
        }
        // Kinds and payloads are checked against the handlers the config builds; a
        // refused `[kinds]` section is reported where the registry is built.
        let registry = self.registry().ok();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        for (key, message) in super::periodic::problems(&self.periodic, registry.as_ref(), now) {
            c.fail(&key, message);
        }
        for (key, message) in super::limits::problems(&self.limit) {
            c.fail(&key, message);
        }
        c.finish()
    }
}
