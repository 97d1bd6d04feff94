//! The lifecycle event stream for live watchers (`jobmesh events --follow`).
//!
//! Events are appended with `XADD ... MAXLEN ~ N`, so the stream stays bounded; it is a
//! live feed, not the record (the SQL store keeps every event). A watcher that falls
//! more than about N events behind misses the trimmed ones and should page the SQL
//! record instead. Each entry is versioned: field `v` is the encoding version (1),
//! `kind` the dotted event name (for `redis-cli` readers), `e` the event as JSON.

use std::time::Duration;

use futures::Stream;
use redis::aio::ConnectionManager;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use super::RedisDispatch;
use crate::event::LifecycleEvent;
use crate::store::StoreError;

/// The encoding version written in field `v`.
const ENCODING_VERSION: &str = "1";

/// A position in the event stream: the id of the last entry seen (`0-0` before the
/// first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventCursor(pub String);

impl EventCursor {
    /// Before the first entry: reading from here returns the whole (trimmed) stream.
    pub fn start() -> Self {
        EventCursor("0-0".into())
    }
}

/// An event read from the stream, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The entry id; pass it as the cursor to read what follows.
    pub cursor: EventCursor,
    /// The event.
    pub event: LifecycleEvent,
}

impl RedisDispatch {
    /// Appends events to the stream (one pipeline), trimming it to about
    /// `stream_maxlen` entries. Returns their cursors.
    pub async fn publish(&self, events: &[LifecycleEvent]) -> Result<Vec<EventCursor>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        self.xadd_all(&mut pipe, events, false)?;
        let ids: Vec<String> = pipe.query_async(&mut self.conn()).await?;
        Ok(ids.into_iter().map(EventCursor).collect())
    }

    /// Appends events copied from the SQL record and, in the same `MULTI`, records `seq`
    /// (the last one's sequence number) as the relay position, so a relay that stops
    /// between the two never copies a batch twice.
    pub async fn publish_relayed(
        &self,
        events: &[LifecycleEvent],
        seq: i64,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.xadd_all(&mut pipe, events, true)?;
        pipe.cmd("SET")
            .arg(self.keys.relay_cursor())
            .arg(seq)
            .ignore();
        pipe.query_async::<()>(&mut self.conn()).await?;
        Ok(())
    }

    /// The relay position set by [`RedisDispatch::publish_relayed`], `None` if unset (never
    /// relayed, or Redis lost its data).
    pub async fn relayed_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(redis::cmd("GET")
            .arg(self.keys.relay_cursor())
            .query_async(&mut self.conn())
            .await?)
    }

    fn xadd_all(
        &self,
        pipe: &mut redis::Pipeline,
        events: &[LifecycleEvent],
        ignore_replies: bool,
    ) -> Result<(), StoreError> {
        let key = self.keys.events();
        for e in events {
            let json = serde_json::to_string(e)
                .map_err(|err| StoreError::Invalid(format!("event not encodable: {err}")))?;
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.stream_maxlen)
                .arg("*")
                .arg("v")
                .arg(ENCODING_VERSION)
                .arg("kind")
                .arg(e.kind.as_str())
                .arg("e")
                .arg(json);
            if ignore_replies {
                pipe.ignore();
            }
        }
        Ok(())
    }

    /// Up to `count` events after `after`. With `block`, waits up to that long for the
    /// first one, on a connection of its own opened for this call (to follow the stream,
    /// [`RedisDispatch::tail`] keeps one open instead).
    pub async fn read(
        &self,
        after: &EventCursor,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        match block {
            None => Ok(
                xread(&mut self.conn(), &self.keys.events(), after, count, None)
                    .await?
                    .0,
            ),
            Some(d) => {
                let mut conn = self.dedicated_connection().await?;
                Ok(xread(&mut conn, &self.keys.events(), after, count, Some(d))
                    .await?
                    .0)
            }
        }
    }

    /// The cursor of the newest entry (`0-0` when the stream is empty): tailing from it
    /// sees only events published afterwards.
    pub async fn latest_cursor(&self) -> Result<EventCursor, StoreError> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .next()
            .map_or_else(EventCursor::start, |e| EventCursor(e.id)))
    }

    /// Where the relay stands, read atomically (one `MULTI`): the newest stream entry and
    /// the sequence number of the last event relayed (`None` if never relayed, or lost).
    /// Every SQL event up to that number is in the stream at or before that entry, and
    /// every later one will follow it, so a reader can print the SQL record up to the
    /// number and then tail the stream from the entry without a gap or a repeat.
    pub async fn relay_position(&self) -> Result<(EventCursor, Option<i64>), StoreError> {
        let (reply, seq): (StreamRangeReply, Option<i64>) = redis::pipe()
            .atomic()
            .cmd("XREVRANGE")
            .arg(self.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("GET")
            .arg(self.keys.relay_cursor())
            .query_async(&mut self.conn())
            .await?;
        let cursor = reply
            .ids
            .into_iter()
            .next()
            .map_or_else(EventCursor::start, |e| EventCursor(e.id));
        Ok((cursor, seq))
    }

    /// A follower of the stream on a connection of its own, starting after `after`
    /// (`None`: after the newest entry now, so only new events). The position is fixed
    /// when this returns, so an event published afterwards is always seen.
    pub async fn tail(&self, after: Option<EventCursor>) -> Result<EventTail, StoreError> {
        let cursor = match after {
            Some(c) => c,
            None => self.latest_cursor().await?,
        };
        Ok(EventTail {
            conn: self.dedicated_connection().await?,
            key: self.keys.events(),
            cursor,
            count: 512,
            block: Duration::from_secs(5),
        })
    }
}

/// Follows the event stream with `XREAD BLOCK` (see [`RedisDispatch::tail`]).
pub struct EventTail {
    conn: ConnectionManager,
    key: String,
    cursor: EventCursor,
    count: usize,
    block: Duration,
}

impl std::fmt::Debug for EventTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTail")
            .field("key", &self.key)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl EventTail {
    /// Sets how long one [`EventTail::next_batch`] waits (default 5 s).
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// The position after the last event returned.
    pub fn cursor(&self) -> &EventCursor {
        &self.cursor
    }

    /// The next events, waiting up to the block time for the first; empty when none came.
    pub async fn next_batch(&mut self) -> Result<Vec<StreamEvent>, StoreError> {
        let (batch, last) = xread(
            &mut self.conn,
            &self.key,
            &self.cursor,
            self.count,
            Some(self.block),
        )
        .await?;
        // Past the last entry read, decoded or not: a bad entry is not read again.
        if let Some(last) = last {
            self.cursor = last;
        }
        Ok(batch)
    }

    /// The events as an endless stream. An error is yielded and following resumes from
    /// the same position (the connection reconnects by itself); stop by dropping it.
    pub fn into_stream(self) -> impl Stream<Item = Result<StreamEvent, StoreError>> + Send {
        futures::stream::unfold(
            (self, std::collections::VecDeque::new()),
            |(mut tail, mut buf)| async move {
                loop {
                    if let Some(e) = buf.pop_front() {
                        return Some((Ok(e), (tail, buf)));
                    }
                    match tail.next_batch().await {
                        Ok(batch) => buf.extend(batch),
                        Err(e) => return Some((Err(e), (tail, buf))),
                    }
                }
            },
        )
    }
}

/// Up to `count` decodable events after `after`, and the cursor of the last entry read.
async fn xread(
    conn: &mut ConnectionManager,
    key: &str,
    after: &EventCursor,
    count: usize,
    block: Option<Duration>,
) -> Result<(Vec<StreamEvent>, Option<EventCursor>), StoreError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count.max(1));
    if let Some(d) = block {
        // BLOCK 0 would wait forever.
        cmd.arg("BLOCK").arg(d.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(key).arg(&after.0);
    let reply: Option<StreamReadReply> = cmd.query_async(conn).await?;
    let entries: Vec<StreamId> = reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .collect();
    let last = entries.last().map(|e| EventCursor(e.id.clone()));
    // An entry this version cannot decode is left out (with a warning), not the batch.
    let events = crate::store::skip_undecodable("event stream", entries.into_iter().map(decode));
    Ok((events, last))
}

fn decode(entry: StreamId) -> Result<StreamEvent, StoreError> {
    let version: Option<String> = entry.get("v");
    if version.as_deref() != Some(ENCODING_VERSION) {
        return Err(StoreError::Corrupt(format!(
            "event {} has encoding version {version:?}, expected {ENCODING_VERSION}",
            entry.id
        )));
    }
    let json: String = entry
        .get("e")
        .ok_or_else(|| StoreError::Corrupt(format!("event {} has no body", entry.id)))?;
    let event = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", entry.id)))?;
    Ok(StreamEvent {
        cursor: EventCursor(entry.id),
        event,
    })
}
