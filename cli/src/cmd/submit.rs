//! `jobmesh submit`: validate and enqueue jobs.
//!
//! `--count N` streams: one job is built and validated, then copies go to the store in
//! transactions of [`BATCH`], so memory stays flat whatever N is. Each batch is
//! all-or-nothing; the whole set is not. So every way out (done, a batch that failed,
//! Ctrl-C or SIGTERM between batches) says how many jobs were stored and their ids.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::dag::{self, WorkflowStep};
use jobmesh::job::{JobId, NewJob, ParentFailurePolicy};
use jobmesh::store::{EnqueueOutcome, SharedStore};
use serde::Deserialize;

use crate::args::SubmitArgs;
use crate::output::{self, outln};
use crate::setup;

/// Jobs per enqueue transaction.
pub const BATCH: u32 = 1000;

/// Runs the verb.
pub async fn run(config: Config, args: SubmitArgs, json: bool) -> anyhow::Result<()> {
    let registry = config.registry()?;
    let jobs: Vec<(String, NewJob)> = match &args.workflow {
        Some(path) => workflow(path)?,
        None => vec![("0".to_string(), single(&args)?)],
    };
    for (name, job) in &jobs {
        registry
            .validate(job)
            .with_context(|| format!("job `{name}` refused"))?;
    }
    let store = setup::open_store(&config).await?;
    if args.workflow.is_none() && args.count > 1 {
        return submit_copies(&store, &jobs[0].1, args.count, json).await;
    }
    // One job, or a workflow, which links parents by batch index: one transaction.
    let outcomes = store
        .enqueue(
            jobs.iter().map(|(_, j)| j.clone()).collect(),
            SystemClock.now(),
        )
        .await?;
    report(&jobs, &outcomes, json)
}

/// Jobs stored so far by a streaming submit.
#[derive(Debug, Default)]
struct Stored {
    count: u64,
    ids: Option<(JobId, JobId)>,
}

impl Stored {
    fn add(&mut self, outcomes: &[EnqueueOutcome]) {
        for o in outcomes {
            if let EnqueueOutcome::Inserted(id) = o {
                self.count += 1;
                self.ids = Some(match self.ids {
                    None => (*id, *id),
                    Some((lo, hi)) => (lo.min(*id), hi.max(*id)),
                });
            }
        }
    }

    /// `stored 2000 of 5000 jobs (ids 1..=2000)`.
    fn summary(&self, of: u32) -> String {
        let ids = match self.ids {
            Some((lo, hi)) => format!(" (ids {lo}..={hi})"),
            None => String::new(),
        };
        format!("stored {} of {of} jobs{ids}", self.count)
    }
}

/// Submits `count` copies of `job` in batches of [`BATCH`], stopping between batches
/// on SIGINT/SIGTERM. The batch in flight when a signal arrives is let finish, so the
/// count reported is exact.
async fn submit_copies(
    store: &SharedStore,
    job: &NewJob,
    count: u32,
    json: bool,
) -> anyhow::Result<()> {
    let stop = stop_on_signal()?;
    let mut stored = Stored::default();
    let mut sent = 0u32;
    while sent < count {
        if stop.load(Ordering::SeqCst) {
            bail!(
                "interrupted: {}; the rest were not submitted",
                stored.summary(count)
            );
        }
        let n = BATCH.min(count - sent);
        let batch = vec![job.clone(); n as usize];
        match store.enqueue(batch, SystemClock.now()).await {
            Ok(outcomes) => stored.add(&outcomes),
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "{}; a batch of {n} failed and the rest were not submitted",
                    stored.summary(count)
                )));
            }
        }
        sent += n;
    }
    if json {
        let (first, last) = stored.ids.unzip();
        return output::json(&serde_json::json!({
            "stored": stored.count,
            "first_id": first,
            "last_id": last,
        }));
    }
    outln!("{}", stored.summary(count))?;
    Ok(())
}

/// A flag raised by the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// before the first batch, so a signal never kills the process mid-way unreported.
fn stop_on_signal() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let flag = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        });
    }
    #[cfg(not(unix))]
    {
        let flag = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
    }
    Ok(stop)
}

fn single(args: &SubmitArgs) -> anyhow::Result<NewJob> {
    let kind = args.kind.clone().context("a job kind is required")?;
    let payload = match args.payload.as_deref() {
        None => serde_json::json!({}),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the payload from stdin")?;
            jobmesh::payload::parse(&text)?
        }
        Some(text) => jobmesh::payload::parse(text)?,
    };
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.unique_key.is_some() && args.count > 1 {
        bail!("--unique-key with --count > 1 would submit duplicates of one key; submit one job");
    }
    if let Some(d) = args.delay
        && d > jobmesh::job::MAX_DELAY
    {
        bail!(
            "--delay {} is beyond the 10-year bound on run_at",
            humantime::format_duration(d)
        );
    }
    let mut job = NewJob::new(kind, payload);
    job.queue = args.queue.clone();
    job.priority = args.priority;
    job.run_at = args.delay.map(|d| SystemClock.now().plus(d));
    job.max_attempts = args.max_attempts;
    job.timeout = args.timeout;
    job.unique_key = args.unique_key.clone();
    job.depends_on = args.after.iter().map(|&id| JobId(id)).collect();
    if args.hold_on_parent_failure {
        job.on_parent_failure = ParentFailurePolicy::Hold;
    }
    Ok(job)
}

/// A workflow file: `[[step]]` tables with a name, a kind, a payload and `after`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowFile {
    step: Vec<StepSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    name: String,
    kind: String,
    #[serde(default = "empty_object")]
    payload: serde_json::Value,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<i16>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    timeout: Option<std::time::Duration>,
    #[serde(default)]
    on_parent_failure: Option<ParentFailurePolicy>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn workflow(path: &Path) -> anyhow::Result<Vec<(String, NewJob)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading workflow {}", path.display()))?;
    let file: WorkflowFile =
        toml::from_str(&text).with_context(|| format!("invalid workflow {}", path.display()))?;
    let steps = file
        .step
        .into_iter()
        .map(|s| {
            let mut job = NewJob::new(s.kind, s.payload);
            if let Some(q) = s.queue {
                job.queue = q;
            }
            job.priority = s.priority.unwrap_or(0);
            job.max_attempts = s.max_attempts.unwrap_or(job.max_attempts);
            job.timeout = s.timeout;
            job.on_parent_failure = s.on_parent_failure.unwrap_or_default();
            WorkflowStep {
                name: s.name,
                after: s.after,
                job,
            }
        })
        .collect();
    Ok(dag::plan(steps)?)
}

fn report(
    jobs: &[(String, NewJob)],
    outcomes: &[EnqueueOutcome],
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = jobs
            .iter()
            .zip(outcomes)
            .map(|((name, job), o)| serde_json::json!({"name": name, "kind": job.kind, "outcome": o}))
            .collect();
        return output::json(&rows);
    }
    for ((name, job), o) in jobs.iter().zip(outcomes) {
        let what = match o {
            EnqueueOutcome::Inserted(id) => format!("job {id} submitted"),
            EnqueueOutcome::Duplicate(id) => {
                format!("duplicate of unfinished job {id} (unique key); nothing submitted")
            }
        };
        if jobs.len() > 1 {
            outln!("{name} ({}): {what}", job.kind)?;
        } else {
            outln!("{what}")?;
        }
    }
    Ok(())
}
