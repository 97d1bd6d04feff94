//! Reading the lifecycle event log back, the same on every backend: decoding a row
//! (a kind this version does not know leaves the row out, a detail that will not parse
//! is kept marked "undecodable") and paging past rows left out.

use std::str::FromStr;

use serde_json::json;

use super::StoreError;
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent, StoredEvent};
use crate::job::{JobId, NodeId, WorkerId};

/// One row of `lifecycle_events` as a backend read it, before decoding: the detail as
/// text, parsed here row by row, so one unreadable detail does not fail the page.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    /// `seq`.
    pub seq: i64,
    /// `at`, in milliseconds.
    pub at: i64,
    /// `kind`, the event kind's name.
    pub kind: String,
    /// `job`.
    pub job: Option<i64>,
    /// `attempt`.
    pub attempt: Option<i64>,
    /// `worker`.
    pub worker: Option<String>,
    /// `node`.
    pub node: Option<String>,
    /// `detail`, as JSON text.
    pub detail: Option<String>,
}

impl EventRow {
    /// The stored event, or why it cannot be read (an unknown kind). An unreadable
    /// detail is marked as such and the event is kept: what happened to the job is
    /// still known.
    pub(crate) fn decode(self) -> Result<StoredEvent, StoreError> {
        let seq = self.seq;
        let kind = EventKind::from_str(&self.kind).map_err(|e| {
            StoreError::Corrupt(format!("lifecycle_events.kind of event {seq}: {e}"))
        })?;
        let detail = match self.detail {
            Some(d) => serde_json::from_str(&d).unwrap_or_else(
                |e| json!({ "undecodable": format!("lifecycle_events.detail: {e}") }),
            ),
            None => serde_json::Value::Null,
        };
        Ok(StoredEvent {
            seq,
            event: LifecycleEvent {
                at: Millis(self.at),
                kind,
                job: self.job.map(JobId),
                // A negative attempt (written by hand) reads as 0 rather than wrapping.
                attempt: self
                    .attempt
                    .map(|a| u32::try_from(a.max(0)).unwrap_or(u32::MAX)),
                worker: self.worker.map(WorkerId),
                node: self.node.map(NodeId),
                detail,
            },
        })
    }
}

/// One page of the event log as a backend read it: the events that decode, how many
/// rows were read, and the sequence number of the last row read (decoded or not).
pub(crate) type EventPage = (Vec<StoredEvent>, usize, Option<i64>);

/// [`Store::events_after`] from pages read by `page(after, limit)`: reads on past rows
/// left out as undecodable until `limit` events are found or the log ends. Readers of
/// the log (`events`, the relay, the tail position) take a page shorter than they asked
/// for as the end of the log, so a page that merely left a bad row out must not be one.
pub(crate) async fn fill_events<F, Fut>(
    mut after: i64,
    limit: u32,
    mut page: F,
) -> Result<Vec<StoredEvent>, StoreError>
where
    F: FnMut(i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<EventPage, StoreError>>,
{
    let mut out = Vec::new();
    loop {
        let want = limit - out.len() as u32;
        let (events, read, last) = page(after, want).await?;
        out.extend(events);
        match last {
            Some(last) if read == want as usize && out.len() < limit as usize => after = last,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, detail: Option<&str>) -> EventRow {
        EventRow {
            seq: 7,
            at: 1_000,
            kind: kind.into(),
            job: Some(3),
            attempt: Some(-1),
            worker: None,
            node: None,
            detail: detail.map(String::from),
        }
    }

    #[test]
    fn a_bad_detail_is_marked_and_an_unknown_kind_is_refused() {
        let ev = row("job.enqueued", Some("{not json")).decode().unwrap();
        assert_eq!(ev.event.kind, EventKind::JobEnqueued);
        assert_eq!(ev.event.attempt, Some(0));
        assert!(
            ev.event.detail["undecodable"].is_string(),
            "{}",
            ev.event.detail
        );
        let ok = row("job.enqueued", Some(r#"{"a":1}"#)).decode().unwrap();
        assert_eq!(ok.event.detail, json!({"a": 1}));
        let err = row("job.bogus", None).decode().unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("event 7")),
            "{err}"
        );
    }
}
