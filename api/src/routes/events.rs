//! `GET /api/v1/events`: the lifecycle event log as Server-Sent Events.
//!
//! Each event's SSE `id` is its sequence number in the store, so a client that
//! reconnects with `Last-Event-ID` (browsers' `EventSource` does so by itself) resumes
//! right after the last event it saw. The stream reads the store's log
//! ([`jobmesh::store::EventLog::events_after`]) in pages; when it has caught up it waits
//! for the next poll, or less when the node serving it signals new events of its own.
//! A store error ends the stream (the client resumes from its last id); so does the
//! server stopping.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use jobmesh::event::StoredEvent;
use jobmesh::store::SharedStore;
use jobmesh::store::tokens::Scope;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::body::QueryParams;
use crate::model::EventView;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// How often a caught-up stream looks for new events without a hint.
pub const POLL: Duration = Duration::from_millis(250);
/// Events read per store call.
const PAGE: u32 = 500;

/// Where to start.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Start after this sequence number (default: the end of the log, so only new
    /// events). A `Last-Event-ID` header takes precedence.
    pub after: Option<i64>,
}

/// Follow the lifecycle event log.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        EventParams,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "A stream of events: `id` is the sequence number, `event` the kind, `data` the event as JSON", content_type = "text/event-stream", body = EventView),
        (status = 403, description = "The token lacks `read`, or is limited to queues", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(p): QueryParams<EventParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    caller.require(Scope::Read)?;
    // Events carry job ids across every queue.
    caller.require_all_queues("the event stream")?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    Problem::field(
                        ProblemKind::InvalidField,
                        "Last-Event-ID",
                        "must be an event sequence number",
                    )
                })?,
        ),
        None => p.after,
    };
    let cursor = match resume {
        Some(seq) => seq,
        None => {
            // Each stream without a start walks the log from the end the last one
            // found, not from 0: opening a dashboard costs the events since then.
            let known = state.event_tail.load(Ordering::Relaxed);
            let end = tail(&state.store, known).await?;
            state.event_tail.fetch_max(end, Ordering::Relaxed);
            end
        }
    };
    let feed = Feed {
        store: state.store.clone(),
        cursor,
        buffer: VecDeque::new(),
        stopping: state.stopping.clone(),
        hint: state.events_hint.clone(),
    };
    let stream =
        futures::stream::unfold(
            feed,
            |mut f| async move { f.next().await.map(|e| (Ok(e), f)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The sequence number of the last event in the log, read onwards from `from` (a
/// sequence number known to be in the log, or 0).
async fn tail(store: &SharedStore, from: i64) -> Result<i64, Problem> {
    const STEP: u32 = 10_000;
    let mut after = from;
    loop {
        let page = store.events_after(after, STEP).await?;
        match page.last() {
            Some(e) if page.len() == STEP as usize => after = e.seq,
            Some(e) => return Ok(e.seq),
            None => return Ok(after),
        }
    }
}

struct Feed {
    store: SharedStore,
    cursor: i64,
    buffer: VecDeque<StoredEvent>,
    stopping: CancellationToken,
    hint: Arc<Notify>,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.cursor = e.seq;
                return Some(sse(e));
            }
            if self.stopping.is_cancelled() {
                return None;
            }
            // Armed before the read, so a hint given while reading is not missed.
            let hinted = self.hint.notified();
            match self.store.events_after(self.cursor, PAGE).await {
                Ok(page) if !page.is_empty() => {
                    self.buffer.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading the log failed; ending the stream");
                    return None;
                }
            }
            tokio::select! {
                _ = self.stopping.cancelled() => return None,
                _ = hinted => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

fn sse(e: StoredEvent) -> Event {
    let view = EventView::from(e);
    let data = serde_json::to_string(&view).expect("an event serialises");
    Event::default()
        .id(view.seq.to_string())
        .event(view.kind)
        .data(data)
}
