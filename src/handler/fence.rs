//! What a handler hands to the outside world so that a receiver can apply each side
//! effect once: a key stable across the job's attempts, and the attempt's lease token.
//!
//! Execution is at least once: a node that dies mid-attempt (or loses its lease to a
//! partition) leaves the job to be run again, possibly while the first attempt is
//! still talking to the receiver. The receiver keeps, per idempotency key, the highest
//! lease token it has seen: a request with the same key is a repeat (answer it from
//! what it did the first time), and one with a lower token comes from a holder that
//! has since lost the lease (refuse it). Tokens only grow: every claim, rescue and
//! revoke bumps the job's token in the store.

use crate::job::Job;

/// Header with the key stable across attempts (a payload may set its own instead).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Header with the job's id.
pub const JOB_HEADER: &str = "jobmesh-job-id";
/// Header with the attempt number (1 for the first run).
pub const ATTEMPT_HEADER: &str = "jobmesh-attempt";
/// Header with the attempt's lease token (the fencing token).
pub const LEASE_HEADER: &str = "jobmesh-lease-token";
/// Prefix of the headers the node sets; a payload may not set them.
pub const RESERVED_HEADER_PREFIX: &str = "jobmesh-";
/// Prefix of the environment variables `exec` sets; a payload may not set them.
pub const RESERVED_ENV_PREFIX: &str = "JOBMESH_";

/// The fencing facts of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Stable across every attempt of the job: `job-<id>`.
    pub idempotency_key: String,
    /// The job's id.
    pub job: i64,
    /// This attempt's number.
    pub attempt: u32,
    /// This attempt's lease token: higher than every earlier attempt's.
    pub lease_token: i64,
}

impl Fence {
    /// The fence of the attempt `job` was claimed for.
    pub fn of(job: &Job) -> Self {
        Self {
            idempotency_key: format!("job-{}", job.id.0),
            job: job.id.0,
            attempt: job.attempt,
            lease_token: job.lease_token.0,
        }
    }

    /// The headers `http` sends (lower-case names), idempotency key first.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (IDEMPOTENCY_HEADER, self.idempotency_key.clone()),
            (JOB_HEADER, self.job.to_string()),
            (ATTEMPT_HEADER, self.attempt.to_string()),
            (LEASE_HEADER, self.lease_token.to_string()),
        ]
    }

    /// The environment `exec` gives the program.
    pub fn env(&self) -> [(&'static str, String); 4] {
        [
            ("JOBMESH_IDEMPOTENCY_KEY", self.idempotency_key.clone()),
            ("JOBMESH_JOB_ID", self.job.to_string()),
            ("JOBMESH_ATTEMPT", self.attempt.to_string()),
            ("JOBMESH_LEASE_TOKEN", self.lease_token.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Millis;
    use crate::job::{JobId, JobState, LeaseToken, ParentFailurePolicy};

    fn job(id: i64, attempt: u32, token: i64) -> Job {
        Job {
            id: JobId(id),
            queue: "default".into(),
            kind: "noop".into(),
            payload: serde_json::json!({}),
            priority: 0,
            state: JobState::Running,
            attempt,
            max_attempts: 25,
            run_at: Millis(0),
            created_at: Millis(0),
            finished_at: None,
            timeout: None,
            unique_key: None,
            lease_token: LeaseToken(token),
            lease_owner: None,
            lease_node: None,
            lease_expires_at: None,
            last_error: None,
            output: None,
            depends_on: Vec::new(),
            on_parent_failure: ParentFailurePolicy::Discard,
            progress: None,
            snoozes: 0,
        }
    }

    #[test]
    fn the_key_is_stable_and_the_token_is_the_attempts() {
        let f = Fence::of(&job(42, 3, 7));
        assert_eq!(f.idempotency_key, "job-42");
        assert_eq!(f.headers()[3], (LEASE_HEADER, "7".to_string()));
        assert_eq!(f.env()[2], ("JOBMESH_ATTEMPT", "3".to_string()));
        let later = Fence::of(&job(42, 4, 9));
        assert_eq!(later.idempotency_key, f.idempotency_key);
        assert!(later.lease_token > f.lease_token);
    }
}
