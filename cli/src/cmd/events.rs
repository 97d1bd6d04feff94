//! `jobmesh events`: print lifecycle events, optionally following new ones.

use std::time::Duration;

use jobmesh::config::Config;
use jobmesh::event::StoredEvent;

use crate::args::EventsArgs;
use crate::{output, setup};

/// How often `--follow` asks the store for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Events shown when no `--after` is given.
const TAIL: i64 = 20;

/// Runs the verb.
pub async fn run(config: Config, args: EventsArgs, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    let mut after = match args.after {
        Some(seq) => seq,
        None => last_seq(&*store).await?.saturating_sub(TAIL),
    };
    loop {
        let batch = store.events_after(after, 1000).await?;
        for e in &batch {
            print(e, json)?;
        }
        if let Some(last) = batch.last() {
            after = last.seq;
        }
        let drained = batch.len() < 1000;
        if drained && !args.follow {
            return Ok(());
        }
        if drained {
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}

async fn last_seq(store: &dyn jobmesh::store::Store) -> anyhow::Result<i64> {
    // Walk forward in large pages; the log is append-only so the last page ends it.
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).await?;
        match page.last() {
            Some(e) if page.len() == 10_000 => after = e.seq,
            Some(e) => return Ok(e.seq),
            None => return Ok(after),
        }
    }
}

fn print(e: &StoredEvent, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let ev = &e.event;
    let mut subject = Vec::new();
    if let Some(j) = ev.job {
        subject.push(format!("job={j}"));
    }
    if let Some(a) = ev.attempt {
        subject.push(format!("attempt={a}"));
    }
    if let Some(w) = &ev.worker {
        subject.push(format!("worker={w}"));
    }
    if let Some(n) = &ev.node {
        subject.push(format!("node={n}"));
    }
    let detail = if ev.detail.is_null() {
        String::new()
    } else {
        output::truncate(&ev.detail.to_string(), 100)
    };
    println!(
        "{:>8}  {}  {:<20} {} {}",
        e.seq,
        output::time(ev.at),
        ev.kind,
        subject.join(" "),
        detail
    );
    Ok(())
}
