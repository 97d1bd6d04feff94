//! `jobmesh events`: print lifecycle events, optionally following new ones (in
//! redis_postgres from the Redis event stream).

use std::time::Duration;

use jobmesh::config::Config;
use jobmesh::event::{LifecycleEvent, StoredEvent};
use jobmesh::store::redis::RedisDispatch;

use crate::args::EventsArgs;
use crate::output::{self, outln};
use crate::setup;

/// How often `--follow` asks the store for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Events shown when no `--after` is given.
const TAIL: i64 = 20;

/// Runs the verb.
pub async fn run(config: Config, args: EventsArgs, json: bool) -> anyhow::Result<()> {
    let store = setup::open_store(&config).await?;
    if args.follow
        && let Some(redis) = setup::event_stream(&config).await?
    {
        return follow_redis(&*store, &redis, args.after, json).await;
    }
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

/// redis_postgres: the SQL record up to the relay's position, then the Redis stream
/// from there (`XREAD BLOCK`: new events show at once, without polling Postgres).
async fn follow_redis(
    store: &dyn jobmesh::store::Store,
    redis: &RedisDispatch,
    after: Option<i64>,
    json: bool,
) -> anyhow::Result<()> {
    let (cursor, relayed) = redis.relay_position().await?;
    let mut after = match after {
        Some(seq) => seq,
        None => last_seq(store).await?.saturating_sub(TAIL),
    };
    // Events the relay has not copied yet (it may be off, or behind) come from SQL too:
    // up to the relay position, then the stream.
    let until = relayed.unwrap_or(i64::MAX);
    loop {
        let batch = store.events_after(after, 1000).await?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        for e in batch.iter().filter(|e| e.seq <= until) {
            print(e, json)?;
        }
        if last >= until || batch.len() < 1000 {
            break;
        }
        after = last;
    }
    let mut tail = redis.tail(Some(cursor)).await?;
    loop {
        let batch = tokio::select! {
            b = tail.next_batch() => b?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        for e in batch {
            print_event(&e.event, None, json)?;
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
        return output::json_line(e);
    }
    print_event(&e.event, Some(e.seq), false)
}

/// One event; `seq` is its number in the SQL record (events read from the Redis
/// stream have none, and print `-`).
fn print_event(ev: &LifecycleEvent, seq: Option<i64>, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json_line(ev);
    }
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
    let seq = seq.map_or_else(|| "-".to_string(), |s| s.to_string());
    outln!(
        "{:>8}  {}  {:<20} {} {}",
        seq,
        output::time(ev.at),
        ev.kind,
        subject.join(" "),
        detail
    )?;
    Ok(())
}
