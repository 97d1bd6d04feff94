//! What an `exec` program tells the node while it runs, by lines on its stdout, and
//! how its exit code reads:
//!
//! - `JOBMESH_PROGRESS <fraction> [message]`: progress, `fraction` within `0..=1`
//!   (`JOBMESH_PROGRESS 0.5 copied 5 of 10 files`); recorded like a Rust handler's
//!   [`JobContext::progress`](crate::handler::JobContext::progress). A malformed line
//!   is ordinary output.
//! - `JOBMESH_SNOOZE <duration>`: the delay of a snooze (`JOBMESH_SNOOZE 30s`,
//!   humantime syntax); the last one printed counts.
//! - exit code [`SNOOZE_EXIT_CODE`] (75, `EX_TEMPFAIL` of sysexits.h): snooze the job,
//!   after the delay of the last `JOBMESH_SNOOZE` line or [`DEFAULT_SNOOZE`]; no
//!   attempt is spent (within `workers.max_snoozes`). A malformed `JOBMESH_SNOOZE`
//!   line fails such a run, saying why.
//!
//! Control lines stay in the captured output. Lines longer than [`MAX_CONTROL_LINE`]
//! bytes are never control lines (and are not buffered whole), so a program writing
//! megabytes without a newline costs no memory beyond the output limit.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The exit code that snoozes the job (`EX_TEMPFAIL`).
pub const SNOOZE_EXIT_CODE: i32 = 75;
/// The snooze delay when the program printed no `JOBMESH_SNOOZE` line.
pub const DEFAULT_SNOOZE: Duration = Duration::from_secs(60);
/// Longest line read as a control line, in bytes.
pub const MAX_CONTROL_LINE: usize = 1024;

const PROGRESS: &str = "JOBMESH_PROGRESS";
const SNOOZE: &str = "JOBMESH_SNOOZE";

/// A control line of a program's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlLine {
    /// `JOBMESH_PROGRESS <fraction> [message]`.
    Progress {
        /// Done so far (checked when recorded).
        fraction: f64,
        /// The rest of the line.
        message: String,
    },
    /// `JOBMESH_SNOOZE <duration>`: the delay, or why it could not be read.
    Snooze(Result<Duration, String>),
}

/// Reads `line` (without its newline) as a control line; `None` for ordinary output.
pub fn parse(line: &str) -> Option<ControlLine> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        PROGRESS => {
            let (fraction, message) = rest.trim_start().split_once(' ').unwrap_or((rest, ""));
            let fraction: f64 = fraction.trim().parse().ok()?;
            Some(ControlLine::Progress {
                fraction,
                message: message.trim().to_string(),
            })
        }
        SNOOZE => Some(ControlLine::Snooze(
            humantime_serde::re::humantime::parse_duration(rest.trim())
                .map_err(|e| format!("bad `{SNOOZE} {}` line: {e}", rest.trim())),
        )),
        _ => None,
    }
}

/// Reads a pipe to its end, keeping the first `limit` bytes (reading on past the limit,
/// and discarding, keeps the program from blocking on a full pipe), and hands every
/// control line to `on_control` as it arrives.
pub async fn capture(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
    mut on_control: impl FnMut(ControlLine),
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut pipe) = pipe else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut lines = LineScanner::default();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            lines.finish(&mut on_control);
            return Ok((kept, truncated));
        }
        lines.feed(&buf[..n], &mut on_control);
        let room = limit - kept.len();
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Splits a byte stream into lines of at most [`MAX_CONTROL_LINE`] bytes (longer ones
/// are skipped) and parses them.
#[derive(Debug, Default)]
struct LineScanner {
    line: Vec<u8>,
    /// The current line is too long to be a control line.
    skipping: bool,
}

impl LineScanner {
    fn feed(&mut self, mut bytes: &[u8], on_control: &mut impl FnMut(ControlLine)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let (part, rest) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.skipping {
                if self.line.len() + part.len() > MAX_CONTROL_LINE {
                    self.skipping = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if end.is_some() {
                self.end_line(on_control);
            }
            bytes = rest;
        }
    }

    fn end_line(&mut self, on_control: &mut impl FnMut(ControlLine)) {
        if !self.skipping
            && let Some(c) = std::str::from_utf8(&self.line).ok().and_then(parse)
        {
            on_control(c);
        }
        self.line.clear();
        self.skipping = false;
    }

    fn finish(&mut self, on_control: &mut impl FnMut(ControlLine)) {
        if !self.line.is_empty() {
            self.end_line(on_control);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_and_others_are_output() {
        assert_eq!(
            parse("JOBMESH_PROGRESS 0.5 copied 5 of 10\r"),
            Some(ControlLine::Progress {
                fraction: 0.5,
                message: "copied 5 of 10".into()
            })
        );
        assert_eq!(
            parse("JOBMESH_PROGRESS 1"),
            Some(ControlLine::Progress {
                fraction: 1.0,
                message: String::new()
            })
        );
        assert_eq!(parse("JOBMESH_PROGRESS half done"), None);
        assert_eq!(parse("progress 0.5"), None);
        assert_eq!(
            parse("JOBMESH_SNOOZE 1m 30s"),
            Some(ControlLine::Snooze(Ok(Duration::from_secs(90))))
        );
        match parse("JOBMESH_SNOOZE soon") {
            Some(ControlLine::Snooze(Err(e))) => {
                assert!(e.contains("`JOBMESH_SNOOZE soon`"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn lines_split_across_reads_are_seen_and_long_ones_skipped() {
        let long = "x".repeat(MAX_CONTROL_LINE + 10);
        let text = format!(
            "a\nJOBMESH_PROG{long}\nJOBMESH_PROGRESS 0.25 q\nJOBMESH_{long} 0.1\nJOBMESH_SNOOZE 2s"
        );
        let mut seen = Vec::new();
        let (kept, cut) = capture(Some(text.as_bytes()), 16, |c| seen.push(c))
            .await
            .unwrap();
        assert_eq!((kept.len(), cut), (16, true));
        assert_eq!(
            seen,
            [
                ControlLine::Progress {
                    fraction: 0.25,
                    message: "q".into()
                },
                ControlLine::Snooze(Ok(Duration::from_secs(2)))
            ]
        );
        // Fed a byte at a time, the same lines come out.
        let mut scanner = LineScanner::default();
        let mut seen = Vec::new();
        for b in "JOBMESH_PROGRESS 0.5 m\n".bytes() {
            scanner.feed(&[b], &mut |c| seen.push(c));
        }
        assert_eq!(seen.len(), 1);
    }
}
