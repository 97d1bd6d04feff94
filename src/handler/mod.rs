//! Handlers: the code that runs a job of a given kind.
//!
//! Register Rust handlers by kind with a [`Registry`]; the same registry validates
//! payloads at submit time, so a job whose payload its handler would refuse is never
//! stored. Built-in kinds (`noop`, `sleep`, `fail`, `panic`, `exec`, `http`) make the
//! binary useful without writing Rust.

pub mod builtin;
pub mod fence;
pub mod progress;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::job::{Job, NewJob, ProgressError};
use crate::payload::{PayloadError, PayloadRules};

/// What a handler sees of the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job, as claimed (attempt already counts this run).
    pub job: Job,
    /// The attempt's deadline, after which the worker abandons it.
    pub timeout: Duration,
    /// Fired when the attempt must stop: the job was cancelled, its lease was lost
    /// (rescued, revoked), or the node is stopping. A handler that watches it can stop
    /// cleanly; the worker drops a handler that is still running `workers.cancel_grace`
    /// later. Whatever the handler returns then, the store records the job as the
    /// canceller left it (cancelled, or running elsewhere).
    pub cancel: CancellationToken,
    /// Where [`JobContext::progress`] reports go.
    pub progress: progress::ProgressReporter,
}

impl JobContext {
    /// A context for running `job` outside a node (a test, a tool): progress reports
    /// are checked and dropped, and nothing cancels it.
    pub fn detached(job: Job, timeout: Duration) -> Self {
        Self {
            job,
            timeout,
            cancel: CancellationToken::new(),
            progress: progress::ProgressReporter::detached(),
        }
    }

    /// What to hand a receiver so it applies this job's side effect once (see
    /// [`fence`]).
    pub fn fence(&self) -> fence::Fence {
        fence::Fence::of(&self.job)
    }

    /// Reports how far this attempt got: `fraction` in `0..=1` and a short message
    /// (cut to [`crate::job::MAX_PROGRESS_MESSAGE`] characters, control characters
    /// removed, credentials masked). Cheap enough for a hot loop: the node records the
    /// newest report of each attempt once per `workers.progress_interval` (and the last
    /// one when the attempt ends), with a `job.progress` event, and each recorded report
    /// extends the lease. Refused with [`ProgressError::LeaseLost`] once the attempt
    /// lost its lease (cancelled, rescued, node stopping).
    pub fn progress(&self, fraction: f64, message: &str) -> Result<(), ProgressError> {
        self.progress.report(fraction, message)
    }
}

/// How a handler failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again later (network error, busy downstream ...).
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot help (bad input): the job goes straight to the dead-letter queue.
    #[error("{0}")]
    Permanent(String),
    /// Not an error: run the job again after this delay without spending an attempt
    /// (polling for something outside, as River's `JobSnooze`). The job's snooze count
    /// goes up; past `workers.max_snoozes` it is dead-lettered, and a delay beyond
    /// `workers.max_snooze` fails the attempt.
    #[error("snoozed for {}", humantime_serde::re::humantime::format_duration(*.0))]
    Snooze(Duration),
}

impl HandlerError {
    /// Whether the job should be retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HandlerError::Retryable(_))
    }

    /// Asks to run the job again after `delay` (see [`HandlerError::Snooze`]).
    pub fn snooze(delay: Duration) -> Self {
        HandlerError::Snooze(delay)
    }

    /// This error with `f` applied to its message (a snooze has none and is kept).
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            HandlerError::Retryable(m) => HandlerError::Retryable(f(&m)),
            HandlerError::Permanent(m) => HandlerError::Permanent(f(&m)),
            snooze @ HandlerError::Snooze(_) => snooze,
        }
    }
}

/// A refused progress report fails the attempt when a handler passes it on with `?`:
/// retryably, since the job itself may be fine (a lost lease's outcome is refused by
/// the store anyway).
impl From<ProgressError> for HandlerError {
    fn from(e: ProgressError) -> Self {
        HandlerError::Retryable(e.to_string())
    }
}

/// What a handler returns on success: optional JSON output kept with the job.
pub type HandlerOutput = Option<serde_json::Value>;

/// Runs jobs of one kind.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt. Panics are caught by the worker and count as a retryable failure.
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError>;
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<HandlerOutput, HandlerError>> + Send>>;

struct FnHandler<F>(F);

#[async_trait]
impl<F> Handler for FnHandler<F>
where
    F: Fn(JobContext) -> BoxFuture + Send + Sync + 'static,
{
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        (self.0)(ctx).await
    }
}

/// An extra submit-time payload check, run after the schema has passed: for rules a
/// schema cannot express (the `exec` allowlist, header names, map value types).
pub type PayloadCheck = Arc<dyn Fn(&serde_json::Value) -> Result<(), PayloadError> + Send + Sync>;

/// A registered kind: its handler and its payload rules.
#[derive(Clone)]
pub struct Registered {
    /// The handler.
    pub handler: Arc<dyn Handler>,
    /// How payloads of this kind are checked.
    pub rules: PayloadRules,
    /// Check run after `rules`; kept apart so that replacing the rules from the config
    /// (`set_rules`) can never switch off a safety check such as an allowlist.
    pub check: Option<PayloadCheck>,
}

/// Handlers by kind.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Registered>,
}

/// Why a job was refused at submit time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// No handler for the kind.
    #[error("unknown job kind `{kind}`; known kinds: {known}")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds, comma-separated.
        known: String,
    },
    /// The payload broke the kind's rules.
    #[error("invalid payload for kind `{kind}`: {error}")]
    Payload {
        /// The kind.
        kind: String,
        /// What was wrong.
        error: PayloadError,
    },
    /// A job option is out of range.
    #[error("invalid job: {0}")]
    Options(String),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the handler of `kind`.
    pub fn register(
        &mut self,
        kind: impl Into<String>,
        rules: PayloadRules,
        handler: impl Handler,
    ) -> &mut Self {
        self.insert(kind.into(), rules, Arc::new(handler), None)
    }

    /// Registers (or replaces) the handler of `kind` with an extra payload check that
    /// [`Registry::validate`] runs after the schema.
    pub fn register_checked(
        &mut self,
        kind: impl Into<String>,
        rules: PayloadRules,
        check: impl Fn(&serde_json::Value) -> Result<(), PayloadError> + Send + Sync + 'static,
        handler: impl Handler,
    ) -> &mut Self {
        self.insert(kind.into(), rules, Arc::new(handler), Some(Arc::new(check)))
    }

    fn insert(
        &mut self,
        kind: String,
        rules: PayloadRules,
        handler: Arc<dyn Handler>,
        check: Option<PayloadCheck>,
    ) -> &mut Self {
        self.kinds.insert(
            kind,
            Registered {
                handler,
                rules,
                check,
            },
        );
        self
    }

    /// Registers an async closure as the handler of `kind`.
    pub fn register_fn<F, Fut>(
        &mut self,
        kind: impl Into<String>,
        rules: PayloadRules,
        f: F,
    ) -> &mut Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HandlerOutput, HandlerError>> + Send + 'static,
    {
        let boxed = move |ctx: JobContext| -> BoxFuture { Box::pin(f(ctx)) };
        self.register(kind, rules, FnHandler(boxed))
    }

    /// Replaces the payload rules of a registered kind (from the config's `[kinds.NAME]`).
    pub fn set_rules(&mut self, kind: &str, rules: PayloadRules) -> Result<(), SubmitError> {
        let known = self.kinds().collect::<Vec<_>>().join(", ");
        match self.kinds.get_mut(kind) {
            Some(reg) => {
                reg.rules = rules;
                Ok(())
            }
            None => Err(SubmitError::UnknownKind {
                kind: kind.to_string(),
                known,
            }),
        }
    }

    /// The handler and rules of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Registered> {
        self.kinds.get(kind)
    }

    /// Registered kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Checks a job before it is stored: known kind, valid payload, sane options.
    pub fn validate(&self, job: &NewJob) -> Result<(), SubmitError> {
        let reg = self
            .get(&job.kind)
            .ok_or_else(|| SubmitError::UnknownKind {
                kind: job.kind.clone(),
                known: self.kinds().collect::<Vec<_>>().join(", "),
            })?;
        reg.rules
            .validate(&job.payload)
            .and_then(|()| reg.check.as_ref().map_or(Ok(()), |c| c(&job.payload)))
            .map_err(|error| SubmitError::Payload {
                kind: job.kind.clone(),
                error,
            })?;
        validate_options(job)
    }
}

/// Checks the options every job has, whatever its kind.
pub fn validate_options(job: &NewJob) -> Result<(), SubmitError> {
    use crate::job::{MAX_PRIORITY, MIN_PRIORITY};
    let bad = |m: String| Err(SubmitError::Options(m));
    if job.max_attempts == 0 {
        return bad("max_attempts must be at least 1".into());
    }
    if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&job.priority) {
        return bad(format!(
            "priority must be within {MIN_PRIORITY}..={MAX_PRIORITY}, got {}",
            job.priority
        ));
    }
    crate::job::check_queue_name(&job.queue).map_err(SubmitError::Options)?;
    if job.timeout.is_some_and(|t| t.is_zero()) {
        return bad("timeout must be greater than zero".into());
    }
    // Times are bounded against the wall clock: every submitter's `run_at` is wall time.
    use crate::clock::Clock as _;
    job.check_bounds(crate::clock::SystemClock.now())
        .map_err(SubmitError::Options)?;
    if job
        .unique_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 512)
    {
        return bad("unique_key must be 1-512 bytes".into());
    }
    Ok(())
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}
