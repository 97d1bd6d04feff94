//! Traces: what a cluster did, one JSON line per attempt, the input of the predictors'
//! evaluation. Produced by [`generate`] (seeded synthetic regimes) or by [`export`]
//! (from any store), read back by [`read`].
//!
//! A line:
//!
//! ```json
//! {"job":17,"kind":"email.send","queue":"mail","payload_bytes":312,"attempt":1,
//!  "enqueued_at":1767225600000,"started_at":1767225600120,"finished_at":1767225600380,
//!  "outcome":"failed","error_class":"smtp_unavailable","node":"node-2","renew_ms":14.0}
//! ```
//!
//! Times are milliseconds since the Unix epoch. `enqueued_at` is when *this attempt*
//! became available (the job's creation for attempt 1, the retry's due time after a
//! failure, the rescue for an attempt after a lost one). `outcome` is `succeeded`,
//! `failed` (a retry follows), `discarded` (the job went to the dead-letter queue),
//! `cancelled` or `lost` (the attempt never finished: its node died or its lease was
//! revoked; `finished_at` is then when it was known lost). `error_class` is set for
//! failed and discarded attempts; `renew_ms` (mean lease renewal latency during the
//! attempt) is optional.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

pub mod export;
pub mod generate;

/// Longest line read (a line is a few hundred bytes; anything longer is not a trace).
pub const MAX_LINE: usize = 16 * 1024;
/// Most records read from one trace.
pub const MAX_RECORDS: usize = 5_000_000;
/// Longest name (kind, queue, node, error class).
pub const MAX_NAME: usize = 200;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed and the job was retried.
    Failed,
    /// It failed and the job went to the dead-letter queue.
    Discarded,
    /// The job was cancelled.
    Cancelled,
    /// It never finished (node died, lease revoked).
    Lost,
}

impl TraceOutcome {
    /// Whether the attempt failed (retried or discarded).
    pub fn is_failure(self) -> bool {
        matches!(self, TraceOutcome::Failed | TraceOutcome::Discarded)
    }
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRecord {
    /// Job id.
    pub job: i64,
    /// Job kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Payload size in bytes.
    pub payload_bytes: u64,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// When the attempt became available.
    pub enqueued_at: i64,
    /// When it started.
    pub started_at: i64,
    /// When it finished (or was known lost).
    pub finished_at: i64,
    /// How it ended.
    pub outcome: TraceOutcome,
    /// Class of its error (failed and discarded attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Node that ran it.
    pub node: String,
    /// Mean lease renewal latency during the attempt (ms), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_ms: Option<f64>,
}

impl TraceRecord {
    /// Time from available to started (ms).
    pub fn wait_ms(&self) -> f64 {
        (self.started_at - self.enqueued_at).max(0) as f64
    }

    /// Time from started to finished (ms).
    pub fn run_ms(&self) -> f64 {
        (self.finished_at - self.started_at).max(0) as f64
    }

    /// Checks what a reader must be able to rely on, naming the field that is wrong.
    pub fn check(&self) -> Result<(), String> {
        for (field, v) in [
            ("kind", &self.kind),
            ("queue", &self.queue),
            ("node", &self.node),
        ] {
            if v.is_empty() || v.len() > MAX_NAME {
                return Err(format!("`{field}` must have 1..={MAX_NAME} bytes"));
            }
        }
        if self
            .error_class
            .as_ref()
            .is_some_and(|c| c.len() > MAX_NAME)
        {
            return Err(format!("`error_class` must have at most {MAX_NAME} bytes"));
        }
        if self.attempt == 0 {
            return Err("`attempt` starts at 1".into());
        }
        if self.started_at < self.enqueued_at || self.finished_at < self.started_at {
            return Err("times must satisfy enqueued_at <= started_at <= finished_at".into());
        }
        if self.renew_ms.is_some_and(|r| !r.is_finite() || r < 0.0) {
            return Err("`renew_ms` must be a finite non-negative number".into());
        }
        Ok(())
    }
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a valid record.
    #[error("trace line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The trace holds more records than [`MAX_RECORDS`].
    #[error("the trace has more than {MAX_RECORDS} records")]
    TooLong,
}

/// Reads a trace: one record per line, blank lines skipped. Fails on the first bad line
/// with its number (nothing is half-read: the caller gets all records or an error).
pub fn read(input: impl BufRead) -> Result<Vec<TraceRecord>, TraceError> {
    let mut out = Vec::new();
    let mut input = input;
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        n += 1;
        let read =
            std::io::Read::take(&mut input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(TraceError::Line {
                line: n,
                reason: format!("longer than {MAX_LINE} bytes"),
            });
        }
        let text = std::str::from_utf8(&line).map_err(|_| TraceError::Line {
            line: n,
            reason: "not UTF-8".into(),
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let rec: TraceRecord = serde_json::from_str(text).map_err(|e| TraceError::Line {
            line: n,
            reason: e.to_string(),
        })?;
        rec.check()
            .map_err(|reason| TraceError::Line { line: n, reason })?;
        if out.len() >= MAX_RECORDS {
            return Err(TraceError::TooLong);
        }
        out.push(rec);
    }
    Ok(out)
}

/// Writes records as JSON lines.
pub fn write(records: &[TraceRecord], mut out: impl Write) -> std::io::Result<()> {
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The error class of an error text: what a retry policy can key on without the
/// details (ids, addresses) that make every message unique. `timeout` for timeouts,
/// else the text before the first `:` (at most 40 characters), lower-cased, with runs
/// of other characters folded to `_` and numbers longer than three digits (ids, ports)
/// folded to `N` (short ones, such as HTTP statuses, say what went wrong and stay).
pub fn error_class(error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        return "timeout".into();
    }
    let head: String = lower
        .split(':')
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(40)
        .collect();
    let mut class = String::new();
    let mut number = String::new();
    for c in head.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if !number.is_empty() {
            class.push_str(if number.len() <= 3 { &number } else { "N" });
            number.clear();
        }
        let c = if c.is_alphanumeric() || c == '.' || c == '-' {
            c
        } else {
            '_'
        };
        if !(c == '_' && class.ends_with('_')) {
            class.push(c);
        }
    }
    let class = class.trim_matches('_');
    if class.is_empty() {
        "error".into()
    } else {
        class.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> TraceRecord {
        TraceRecord {
            job: 1,
            kind: "k".into(),
            queue: "q".into(),
            payload_bytes: 10,
            attempt: 1,
            enqueued_at: 0,
            started_at: 5,
            finished_at: 9,
            outcome: TraceOutcome::Failed,
            error_class: Some("boom".into()),
            node: "n".into(),
            renew_ms: None,
        }
    }

    #[test]
    fn records_round_trip_and_bad_lines_are_named() {
        let mut buf = Vec::new();
        write(&[rec(), rec()], &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(!text.contains("renew_ms"), "{text}");
        assert_eq!(read(&buf[..]).unwrap(), vec![rec(), rec()]);
        let bad = format!("{text}\n{{\"job\":1}}\n");
        let e = read(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("missing field"), "{e}");
        let mut r = rec();
        r.finished_at = 1;
        let line = serde_json::to_string(&r).unwrap();
        let e = read(line.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("finished_at"), "{e}");
        let long = "x".repeat(MAX_LINE + 10);
        let e = read(long.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
        let e = read(&b"{\"job\":1,\"extra\":2}"[..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn error_classes_drop_the_details() {
        assert_eq!(
            error_class("connection refused: 10.0.0.7:25"),
            "connection_refused"
        );
        assert_eq!(
            error_class("HTTP 503 from upstream"),
            "http_503_from_upstream"
        );
        assert_eq!(error_class("job 123456 not found"), "job_N_not_found");
        assert_eq!(error_class("handler timed out after 30s"), "timeout");
        assert_eq!(error_class(""), "error");
    }
}
