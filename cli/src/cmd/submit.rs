//! `jobmesh submit`: validate and enqueue jobs.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::dag::{self, WorkflowStep};
use jobmesh::job::{JobId, NewJob, ParentFailurePolicy};
use jobmesh::store::EnqueueOutcome;
use serde::Deserialize;

use crate::args::SubmitArgs;
use crate::{output, setup};

/// Jobs per enqueue transaction.
const BATCH: usize = 1000;

/// Runs the verb.
pub async fn run(config: Config, args: SubmitArgs, json: bool) -> anyhow::Result<()> {
    let registry = setup::registry(&config)?;
    let jobs: Vec<(String, NewJob)> = match &args.workflow {
        Some(path) => workflow(path)?,
        None => {
            let job = single(&args)?;
            (0..args.count)
                .map(|i| (i.to_string(), job.clone()))
                .collect()
        }
    };
    for (name, job) in &jobs {
        registry
            .validate(job)
            .with_context(|| format!("job `{name}` refused"))?;
    }
    let store = setup::open_store(&config).await?;
    let now = SystemClock.now();
    let mut outcomes = Vec::with_capacity(jobs.len());
    if args.workflow.is_some() {
        // A workflow links parents by batch index: it must go in one transaction.
        outcomes = store
            .enqueue(jobs.iter().map(|(_, j)| j.clone()).collect(), now)
            .await?;
    } else {
        for chunk in jobs.chunks(BATCH) {
            outcomes.extend(
                store
                    .enqueue(chunk.iter().map(|(_, j)| j.clone()).collect(), now)
                    .await?,
            );
        }
    }
    report(&jobs, &outcomes, json)
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
    if outcomes.len() > 20 {
        let dups = outcomes
            .iter()
            .filter(|o| matches!(o, EnqueueOutcome::Duplicate(_)))
            .count();
        let first = outcomes.first().map(|o| o.id().0).unwrap_or_default();
        let last = outcomes.last().map(|o| o.id().0).unwrap_or_default();
        println!(
            "submitted {} jobs (ids {first}..={last}), {dups} duplicates",
            outcomes.len() - dups
        );
        return Ok(());
    }
    for ((name, job), o) in jobs.iter().zip(outcomes) {
        let what = match o {
            EnqueueOutcome::Inserted(id) => format!("job {id} submitted"),
            EnqueueOutcome::Duplicate(id) => {
                format!("duplicate of unfinished job {id} (unique key); nothing submitted")
            }
        };
        if jobs.len() > 1 {
            println!("{name} ({}): {what}", job.kind);
        } else {
            println!("{what}");
        }
    }
    Ok(())
}
