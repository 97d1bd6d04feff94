//! `noop`, `sleep`, `fail` and `panic`: handlers for benchmarks, demos and chaos tests.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{MAX_SLEEP_MS, decode, integer, string};
use crate::handler::{Handler, HandlerError, HandlerOutput, JobContext, Registry};
use crate::payload::{JsonType, PayloadRules, Schema};

/// Longest `message` accepted by `fail` and `panic`.
const MAX_MESSAGE_CHARS: usize = 4096;

pub(super) fn register(r: &mut Registry) {
    // `noop` is what throughput benchmarks run: it takes any object (benchmarks may tag
    // jobs with fields of their own), so its check is one type test, and the handler
    // does no work at all.
    r.register(
        "noop",
        PayloadRules::with_schema(Schema::of_type(JsonType::Object)),
        NoopHandler,
    );
    r.register(
        "sleep",
        PayloadRules::with_schema(Schema::object(
            &["ms"],
            [("ms", integer(Some(0.0), Some(MAX_SLEEP_MS as f64)))],
        )),
        SleepHandler,
    );
    r.register(
        "fail",
        PayloadRules::with_schema(Schema::object(
            &[],
            [
                ("message", string(MAX_MESSAGE_CHARS)),
                ("retryable", Schema::of_type(JsonType::Boolean)),
                ("times", integer(Some(0.0), Some(u32::MAX as f64))),
            ],
        )),
        FailHandler,
    );
    r.register(
        "panic",
        PayloadRules::with_schema(Schema::object(
            &[],
            [
                ("message", string(MAX_MESSAGE_CHARS)),
                ("times", integer(Some(0.0), Some(u32::MAX as f64))),
            ],
        )),
        PanicHandler,
    );
}

/// `noop`: succeeds at once with no output.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

#[async_trait]
impl Handler for NoopHandler {
    async fn run(&self, _ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        Ok(None)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    ms: u64,
}

/// `sleep`: waits `ms` milliseconds on the tokio timer, then succeeds with no output.
#[derive(Debug, Clone, Copy, Default)]
pub struct SleepHandler;

#[async_trait]
impl Handler for SleepHandler {
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        let p: SleepPayload = decode("sleep", &ctx.job.payload)?;
        tokio::time::sleep(Duration::from_millis(p.ms.min(MAX_SLEEP_MS))).await;
        Ok(None)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailPayload {
    message: Option<String>,
    #[serde(default = "yes")]
    retryable: bool,
    times: Option<u32>,
}

fn yes() -> bool {
    true
}

/// Whether an attempt should misbehave: always without `times`, else only the first
/// `times` attempts (so `times` lets a test see a job recover after retries).
fn misbehaves(times: Option<u32>, attempt: u32) -> bool {
    times.is_none_or(|n| attempt <= n)
}

/// `fail`: fails (retryably unless `retryable: false`), or with `times: n` fails only
/// while the attempt is at most `n` and then succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailHandler;

#[async_trait]
impl Handler for FailHandler {
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        let p: FailPayload = decode("fail", &ctx.job.payload)?;
        if !misbehaves(p.times, ctx.job.attempt) {
            return Ok(None);
        }
        let message = p
            .message
            .unwrap_or_else(|| format!("failed on purpose (attempt {})", ctx.job.attempt));
        Err(if p.retryable {
            HandlerError::Retryable(message)
        } else {
            HandlerError::Permanent(message)
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PanicPayload {
    message: Option<String>,
    times: Option<u32>,
}

/// `panic`: panics (with `times: n`, only while the attempt is at most `n`), to exercise
/// the worker supervisor's restart path.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicHandler;

#[async_trait]
impl Handler for PanicHandler {
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        let p: PanicPayload = decode("panic", &ctx.job.payload)?;
        if misbehaves(p.times, ctx.job.attempt) {
            let message = p
                .message
                .unwrap_or_else(|| format!("panicked on purpose (attempt {})", ctx.job.attempt));
            panic!("{message}");
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_counts_attempts_from_one() {
        assert!(misbehaves(None, 7));
        assert!(misbehaves(Some(2), 1));
        assert!(misbehaves(Some(2), 2));
        assert!(!misbehaves(Some(2), 3));
        assert!(!misbehaves(Some(0), 1));
    }
}
