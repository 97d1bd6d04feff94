//! `jobmesh jobs`: list (filters, keyset pages), show, the actions by ids or by filter
//! (cancel, retry, redrive, delete), stats (with each queue's pause).

use anyhow::{Context, bail};
use jobmesh::clock::{Clock, SystemClock};
use jobmesh::config::Config;
use jobmesh::job::{JobId, JobState};
use jobmesh::store::filter::MAX_LIMIT;
use jobmesh::store::{
    BulkAction, BulkTarget, CancelOutcome, Cursor, JobFilter, Order, PayloadMatch, Store, TimeRange,
};

use crate::args::{BulkArgs, FilterArgs, JobsVerb};
use crate::cmd::queue;
use crate::output::{self, outln};
use crate::setup;

/// Runs the verb.
pub async fn run(config: Config, verb: JobsVerb, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    match verb {
        JobsVerb::List {
            filter,
            desc,
            cursor,
            limit,
        } => list(&*store, filter, desc, cursor, limit, json).await?,
        JobsVerb::Show { id } => {
            let Some(job) = store.get_job(JobId(id)).await? else {
                bail!("job {id} not found")
            };
            if json {
                return output::json(&output::job_json(&job)?);
            }
            output::job_details(&job)?;
        }
        // One job by id: the single cancel, which says whether it was running or had
        // finished, and fails (recorded as a refusal) for an unknown id.
        JobsVerb::Cancel(args) if args.ids.len() == 1 && args.filter.is_empty() && !args.all => {
            cancel_one(&*store, args.ids[0], json).await?
        }
        JobsVerb::Cancel(args) => bulk(&*store, BulkAction::Cancel, args, json).await?,
        JobsVerb::Retry(args) => bulk(&*store, BulkAction::Retry, args, json).await?,
        JobsVerb::Redrive(args) => bulk(&*store, BulkAction::Redrive, args, json).await?,
        JobsVerb::Delete(args) => bulk(&*store, BulkAction::Delete, args, json).await?,
        JobsVerb::Stats => {
            let (counts, paused) = queue::counts_and_paused(&*store).await?;
            // The predicted wait per queue from the models the nodes saved; the counts
            // answer without it when they cannot be read.
            let predictions = match store.load_models().await {
                Ok(saved) => Some(jobmesh::predict::live::Predictions::from_saved(
                    &saved,
                    jobmesh::clock::Clock::now(&jobmesh::clock::SystemClock).0,
                    30_000.0,
                    config.predict.peer_max_age_ms(),
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "saved models unreadable: no predicted waits");
                    None
                }
            };
            let wait = |q: &str| predictions.as_ref().and_then(|p| p.queue_wait_ms(q));
            if json {
                // Per queue its pause beside its counts (`{"mail": {"paused": true,
                // "counts": {"available": 3}}}`), as the table shows both.
                let by_queue: std::collections::BTreeMap<&String, serde_json::Value> = counts
                    .iter()
                    .map(|(q, c)| {
                        (
                            q,
                            serde_json::json!({
                                "paused": paused.contains(q),
                                "counts": c,
                                "predicted_wait_ms": wait(q),
                            }),
                        )
                    })
                    .collect();
                return output::json(&by_queue);
            }
            let mut headers = vec!["QUEUE", "PAUSED"];
            headers.extend(JobState::ALL.iter().map(|s| s.as_str()));
            headers.push("PREDICTED WAIT");
            let rows: Vec<Vec<String>> = counts
                .iter()
                .map(|(queue, by_state)| {
                    let paused = queue::yes_no(paused.contains(queue));
                    let mut row = vec![queue.clone(), paused.to_owned()];
                    row.extend(
                        JobState::ALL
                            .iter()
                            .map(|s| by_state.get(s).copied().unwrap_or(0).to_string()),
                    );
                    row.push(
                        wait(queue).map_or_else(|| "-".into(), |w| format!("{:.1}s", w / 1000.0)),
                    );
                    row
                })
                .collect();
            output::table(&headers, &rows)?;
        }
    }
    Ok(())
}

/// Most jobs one `jobs list` prints (read a page of at most 1000 at a time).
const MAX_LIST: u32 = 100_000;

/// The store filter of the flags, checked by the core's one validation (errors name
/// the flag).
fn filter_of(f: FilterArgs) -> anyhow::Result<JobFilter> {
    let payload = f
        .payload
        .as_deref()
        .map(PayloadMatch::parse)
        .transpose()
        .map_err(flag_error)?;
    let filter = JobFilter {
        queues: f.queue,
        states: f.state,
        kind: f.kind,
        priority_min: f.priority_min,
        priority_max: f.priority_max,
        created: TimeRange {
            from: f.created_from,
            to: f.created_to,
        },
        finished: TimeRange {
            from: f.finished_from,
            to: f.finished_to,
        },
        payload,
        ..JobFilter::default()
    };
    filter.check().map_err(flag_error)?;
    Ok(filter)
}

/// A refused filter, naming the flag.
fn flag_error(e: jobmesh::store::FilterError) -> anyhow::Error {
    anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.reason)
}

async fn list(
    store: &dyn Store,
    flags: FilterArgs,
    desc: bool,
    cursor: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    if !(1..=MAX_LIST).contains(&limit) {
        bail!("--limit: must be within 1..={MAX_LIST}, got {limit}");
    }
    let mut filter = filter_of(flags)?;
    filter.order = if desc { Order::Desc } else { Order::Asc };
    if let Some(c) = cursor {
        let c = Cursor::decode(&c).map_err(flag_error)?;
        if desc != (c.order == Order::Desc) {
            bail!(
                "--cursor: it continues a listing {} --desc",
                if desc { "without" } else { "with" }
            );
        }
        filter.after = Some(c.after);
        // A cursor of a listing by id with a finished range (or the reverse) is refused.
        filter.check().map_err(flag_error)?;
    }
    // Pages of at most MAX_LIMIT, up to `limit` jobs.
    let mut jobs = Vec::new();
    let next = loop {
        filter.limit = (limit - jobs.len() as u32).min(MAX_LIMIT);
        let page = store.list_jobs(&filter).await?;
        let next = Cursor::after_page(&filter, &page);
        jobs.extend(page);
        match next {
            Some(c) if (jobs.len() as u32) < limit => filter.after = Some(c.after),
            _ => break next,
        }
    };
    if json {
        let rows = jobs
            .iter()
            .map(output::job_json)
            .collect::<anyhow::Result<Vec<_>>>()?;
        output::json(&rows)?;
    } else {
        output::table(&output::JOB_HEADERS, &output::job_rows(&jobs))?;
    }
    if let Some(c) = next {
        // On stderr, so that the table or JSON on stdout stays what scripts read.
        eprintln!("more: --cursor {}", c.encode());
    }
    Ok(())
}

async fn cancel_one(store: &dyn Store, id: i64, json: bool) -> anyhow::Result<()> {
    let outcome = store
        .cancel(&setup::audit_context(), JobId(id), SystemClock.now())
        .await?;
    if json {
        return output::json(&serde_json::json!({"id": id, "outcome": outcome}));
    }
    match outcome {
        CancelOutcome::Cancelled => outln!("job {id} cancelled")?,
        CancelOutcome::AlreadyFinished(state) => {
            outln!("job {id} had already finished ({state}); nothing changed")?
        }
    }
    Ok(())
}

async fn bulk(
    store: &dyn Store,
    action: BulkAction,
    args: BulkArgs,
    json: bool,
) -> anyhow::Result<()> {
    let target = if !args.ids.is_empty() {
        if !args.filter.is_empty() || args.all {
            bail!("name jobs by ids or by filter flags (or --all), not both");
        }
        BulkTarget::Ids(args.ids.iter().map(|&i| JobId(i)).collect())
    } else if args.filter.is_empty() && !args.all {
        bail!(
            "name the jobs: ids, filter flags (--queue, --state, --kind, ...), or --all for every job"
        );
    } else {
        BulkTarget::Filter(Box::new(filter_of(args.filter)?))
    };
    target.check().map_err(flag_error)?;
    let out = store
        .bulk(&setup::audit_context(), action, &target, SystemClock.now())
        .await
        .with_context(|| format!("{action} stopped; the batches before the error are done"))?;
    if json {
        return output::json(&serde_json::json!({"action": action, "outcome": out}));
    }
    let verb = match action {
        BulkAction::Cancel => "cancelled",
        BulkAction::Retry => "retried",
        BulkAction::Redrive => "redrove",
        BulkAction::Delete => "deleted",
    };
    outln!(
        "{verb} {} job(s); {} left as they were, {} not found ({} transaction(s))",
        out.changed,
        out.skipped,
        out.not_found,
        out.batches
    )?;
    Ok(())
}
