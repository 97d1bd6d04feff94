//! Queue control: pausing and resuming a queue.
//!
//! A paused queue still accepts jobs, but no claim on any node takes from it until it is
//! resumed. The pause is a row in the store (not a flag in a node), so it holds for every
//! node at its next claim, survives restarts, and each backend applies it inside its
//! claim statement: there is no separate check a claimer could race past.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::StoreError;
use super::audit::{AuditAction, AuditContext, AuditOutcome, AuditTarget};
use crate::clock::Millis;
use crate::event::{EventKind, LifecycleEvent};

/// Longest queue name a pause accepts (queue names are stored and become Redis key
/// segments; a longer one is a mistake, not a queue).
pub const MAX_QUEUE_NAME: usize = 200;

/// A paused queue and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedQueue {
    /// The queue.
    pub queue: String,
    /// When it was paused.
    pub paused_at: Millis,
}

/// Pausing and resuming queues. Every backend has it, so [`super::Store`] requires it.
#[async_trait]
pub trait QueueControl: Send + Sync + 'static {
    /// Pauses `queue`: claims on every node skip it until it is resumed; enqueues still
    /// succeed. Writes a `queue.paused` event and the audit row of `ctx` in the same
    /// transaction. `true` if the queue was running; pausing a paused queue changes
    /// nothing (and writes no event; its audit row says `changed: false`).
    async fn pause_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Resumes `queue` and wakes claimers waiting on it, so its jobs start at once.
    /// Writes a `queue.resumed` event and the audit row of `ctx` in the same
    /// transaction. `true` if it was paused; resuming a running queue changes nothing.
    async fn resume_queue(
        &self,
        ctx: &AuditContext,
        queue: &str,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// The paused queues, by name.
    async fn paused_queues(&self) -> Result<Vec<PausedQueue>, StoreError>;
}

/// Refuses a queue name no job could carry: empty, too long, or with control characters.
pub(crate) fn check_queue(queue: &str) -> Result<(), StoreError> {
    if queue.is_empty() {
        return Err(StoreError::Invalid("queue name is empty".into()));
    }
    if queue.len() > MAX_QUEUE_NAME {
        return Err(StoreError::Invalid(format!(
            "queue name is {} bytes long; at most {MAX_QUEUE_NAME} are allowed",
            queue.len()
        )));
    }
    if queue.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "queue name contains a control character".into(),
        ));
    }
    Ok(())
}

/// The audit row's parts for pausing (`paused = true`) or resuming `queue`, which
/// `changed` it or found it so already.
pub(crate) fn queue_audit(
    queue: &str,
    paused: bool,
    changed: bool,
) -> (AuditAction, AuditTarget, AuditOutcome) {
    let action = if paused {
        AuditAction::Pause
    } else {
        AuditAction::Resume
    };
    (
        action,
        AuditTarget::Queue(queue.to_owned()),
        AuditOutcome::Ok(json!({ "changed": changed })),
    )
}

/// The event a pause (`paused = true`) or resume of `queue` writes.
pub(crate) fn queue_event(queue: &str, paused: bool, now: Millis) -> LifecycleEvent {
    let kind = if paused {
        EventKind::QueuePaused
    } else {
        EventKind::QueueResumed
    };
    LifecycleEvent::new(kind, now).detail(json!({ "queue": queue }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_queue_names_are_refused_with_the_reason() {
        assert!(check_queue("emails").is_ok());
        let e = check_queue("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = check_queue(&"q".repeat(MAX_QUEUE_NAME + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most"), "{e}");
        assert!(check_queue("a\nb").is_err());
    }

    #[test]
    fn the_event_names_the_queue() {
        let e = queue_event("emails", true, Millis(5));
        assert_eq!(e.kind, EventKind::QueuePaused);
        assert_eq!(e.detail["queue"], "emails");
        assert_eq!(
            queue_event("emails", false, Millis(5)).kind,
            EventKind::QueueResumed
        );
    }
}
