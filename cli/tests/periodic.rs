//! Periodic jobs on a real 3-node cluster: three `jobmesh node` processes sharing one
//! Postgres schema, the leader killed with SIGKILL. Exactly one job per tick: for the
//! tick right after a kill, and for each of a minute of `every 1s` ticks across two
//! leader changes. Needs the machine's Postgres (`JOBMESH_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobmesh::clock::Millis;
use jobmesh::job::Job;
use jobmesh::store::postgres::PostgresStore;
use jobmesh::store::{After, JobAdmin, JobFilter, PeriodicTicks};

fn pg_url() -> String {
    std::env::var("JOBMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh schema named like the store suites' (`jm_test_<secs>_<hex>`), which their
/// clean-up drops once stale.
fn schema() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "jm_test_{}_{:016x}",
        now.as_secs(),
        u64::from(now.subsec_nanos()) << 20 ^ u64::from(std::process::id())
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Three node processes on one schema, each logging to its own file.
struct Cluster {
    dir: tempfile::TempDir,
    store: PostgresStore,
    nodes: Vec<Option<Child>>,
    /// Where each node's current run starts in its log file.
    log_from: Vec<u64>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// Creates the schema, writes each node's config with `periodic` (a TOML
    /// `[[periodic]]` entry) and starts the nodes.
    async fn start(periodic: &str) -> Cluster {
        let schema = schema();
        let store = PostgresStore::connect(&pg_url(), Some(&schema))
            .await
            .unwrap_or_else(|e| {
                panic!("this test needs PostgreSQL on 127.0.0.1:5432 (install and start it, or set JOBMESH_TEST_POSTGRES_URL): {e}")
            });
        let dir = tempfile::tempdir().unwrap();
        // The nodes find their schema through the connection's search_path.
        let url = format!("{}?options=-c%20search_path%3D{schema}", pg_url());
        for i in 0..3 {
            let config = format!(
                "[node]\nname = \"n{i}\"\ndata_dir = \"{}\"\n\
                 [store]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n\
                 [workers]\nconcurrency = 2\nlease = \"3s\"\npoll_interval = \"100ms\"\n{periodic}",
                dir.path().join(format!("data{i}")).display()
            );
            std::fs::write(dir.path().join(format!("n{i}.toml")), config).unwrap();
        }
        let mut cluster = Cluster {
            dir,
            store,
            nodes: vec![None, None, None],
            log_from: vec![0; 3],
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn spawn(&mut self, i: usize) {
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        self.log_from[i] = log.metadata().unwrap().len();
        let child = Command::new(env!("CARGO_BIN_EXE_jobmesh"))
            .arg("--config")
            .arg(self.dir.path().join(format!("n{i}.toml")))
            .arg("node")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    /// SIGKILL: no clean-up, the periodic lease stays with the dead node until it lapses.
    fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The log of node `i`'s current run.
    fn log(&self, i: usize) -> String {
        let text = std::fs::read(self.log_path(i)).unwrap_or_default();
        String::from_utf8_lossy(&text[self.log_from[i] as usize..]).into_owned()
    }

    /// The running node whose log says it holds the periodic lease now.
    fn leader(&self) -> Option<usize> {
        let leads: Vec<usize> = (0..3)
            .filter(|&i| self.nodes[i].is_some())
            .filter(|&i| {
                let log = self.log(i);
                let took = log.rfind("took the periodic leader lease");
                let lost = log.rfind("lost the periodic leader lease");
                took.is_some_and(|t| lost.is_none_or(|l| l < t))
            })
            .collect();
        (leads.len() == 1).then(|| leads[0])
    }

    /// Waits (polling, 30 s at most) for one running node to lead.
    async fn await_leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no node took the periodic lease within 30 s; logs:\n{}",
                (0..3)
                    .map(|i| self.log(i))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (polling, `secs` at most) until `schedule`'s mark reaches `tick`.
    async fn await_mark(&self, schedule: &str, tick: i64, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let marks = self.store.tick_marks().await.unwrap();
            if marks
                .iter()
                .any(|m| m.schedule == schedule && m.last_tick.0 >= tick)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the mark of {schedule} did not reach {tick} within {secs} s: {marks:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The jobs of `schedule`'s ticks, by tick; panics if a tick has two.
    async fn jobs_by_tick(&self, schedule: &str) -> BTreeMap<i64, Job> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_jobs(&JobFilter {
                    after,
                    limit: 500,
                    ..JobFilter::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(After::Id(last.id));
            all.extend(page);
        }
        let prefix = format!("periodic:{schedule}:");
        let mut by_tick = BTreeMap::new();
        for job in all {
            let Some(tick) = job
                .unique_key
                .as_deref()
                .and_then(|k| k.strip_prefix(&prefix))
            else {
                continue;
            };
            let tick: i64 = tick.parse().unwrap();
            assert_eq!(job.run_at, Millis(tick), "a tick's job runs at the tick");
            if let Some(other) = by_tick.insert(tick, job.clone()) {
                panic!(
                    "two jobs for tick {tick} of {schedule}: {} and {}",
                    other.id, job.id
                );
            }
        }
        by_tick
    }
}

/// Sleeps until the wall clock reads `at` (ms); the fault is timed against the
/// schedule, not used to wait for an outcome.
async fn sleep_until(at: i64) {
    let ms = at - now_ms();
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_just_before_a_tick_yields_exactly_one_job_for_it() {
    let mut cluster =
        Cluster::start("[[periodic]]\nname = \"beat\"\nschedule = \"every 5s\"\nkind = \"noop\"\n")
            .await;
    let leader = cluster.await_leader().await;
    // The leader is working: a first tick is handled.
    let first = (now_ms() / 5000 + 1) * 5000;
    cluster.await_mark("beat", first, 30).await;
    assert_eq!(cluster.leader(), Some(leader));
    // Kill it 300 ms before the next tick.
    let tick = (now_ms() / 5000 + 1) * 5000;
    sleep_until(tick - 300).await;
    cluster.kill(leader);
    // Another node takes the lease once it lapses (1 s) and enqueues the tick late,
    // then the one after it on time.
    cluster.await_mark("beat", tick + 5000, 30).await;
    let successor = cluster.await_leader().await;
    assert_ne!(successor, leader);
    let jobs = cluster.jobs_by_tick("beat").await;
    let job = jobs
        .get(&tick)
        .unwrap_or_else(|| panic!("no job for tick {tick}: {:?}", jobs.keys()));
    assert!(
        job.created_at.0 >= tick,
        "the tick's job was enqueued after the kill, by the new leader"
    );
    assert!(jobs.contains_key(&(tick + 5000)));
}

/// The requirement: a schedule every second for a minute, across leader
/// changes (the leader killed twice and restarted), counts exactly 60 ticks. The
/// schedule catches up the ticks missed while the lease was lapsing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_for_a_minute_across_leader_kills_counts_exactly_60() {
    let mut cluster = Cluster::start(
        "[[periodic]]\nname = \"tick\"\nschedule = \"every 1s\"\nkind = \"noop\"\n\
         policy = \"catch_up\"\nbackfill = \"1m\"\n",
    )
    .await;
    cluster.await_leader().await;
    let start = (now_ms() / 1000 + 1) * 1000;
    cluster.await_mark("tick", start, 30).await;
    let end = start + 60_000;
    for at in [start + 15_000, start + 35_000] {
        sleep_until(at).await;
        let leader = cluster.await_leader().await;
        cluster.kill(leader);
        // Restarted under its name, as after a crash; another node leads meanwhile.
        cluster.spawn(leader);
    }
    cluster.await_mark("tick", end, 60).await;
    let jobs = cluster.jobs_by_tick("tick").await;
    let window: Vec<i64> = jobs.range(start + 1000..=end).map(|(t, _)| *t).collect();
    let expect: Vec<i64> = (1..=60).map(|i| start + i * 1000).collect();
    assert_eq!(window, expect, "every tick of the minute, once");
}

/// `jobmesh periodic list` on the embedded store: the configured schedules with the
/// next run time, and after a node ran, the last tick and its job. A bad entry is
/// refused at load with its key.
#[test]
fn periodic_list_shows_schedules_and_bad_entries_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jobmesh.toml");
    let base = format!(
        "[node]\nname = \"solo\"\ndata_dir = \"{}\"\n[workers]\npoll_interval = \"50ms\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(
        &config,
        format!(
            "{base}[[periodic]]\nname = \"nightly\"\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nkind = \"noop\"\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_jobmesh"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--json", "periodic", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["name"], "nightly");
    assert_eq!(row["timezone"], "Europe/Berlin");
    assert_eq!(row["policy"], "skip");
    assert!(row["last_tick"].is_null(), "no node led it yet: {row}");
    let next = row["next_run"].as_i64().expect("a next run");
    let ms = now_ms();
    assert!(next > ms && next <= ms + 25 * 3600 * 1000, "{row}");
    let table = String::from_utf8(run(&["periodic", "list"]).stdout).unwrap();
    assert!(
        table.contains("NEXT RUN") && table.contains("nightly"),
        "{table}"
    );

    std::fs::write(
        &config,
        format!("{base}[[periodic]]\nname = \"a\"\nschedule = \"every 1s\"\nkind = \"noop\"\n[[periodic]]\nname = \"b\"\nschedule = \"every soon\"\nkind = \"noop\"\n"),
    )
    .unwrap();
    let out = run(&["periodic", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("periodic[1].schedule") && err.contains("every soon"),
        "{err}"
    );
}
