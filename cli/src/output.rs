//! Printing results as tables or JSON.
//!
//! Everything goes through [`outln!`], which returns the write error instead of
//! panicking as `println!` does: `jobmesh ... | head -1` closes the pipe early, and the
//! verb then stops with a broken-pipe error that `main` turns into a quiet exit.
//!
//! Tables print times as RFC 3339 and durations as humantime (`30s`); `--json` keeps
//! the stored numbers: times in milliseconds since the Unix epoch, durations in
//! milliseconds under a `_ms` key.

use jobmesh::clock::Millis;
use jobmesh::job::Job;
use serde::Serialize;

/// `println!` that returns an `io::Result` instead of panicking when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// Prints `value` as one JSON document.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Prints `value` as one line of JSON (for JSON-lines streams).
pub fn json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string(value)?)?;
    Ok(())
}

/// A job as `--json` prints it: the stored fields, with times in milliseconds since
/// the Unix epoch and the timeout in milliseconds as `timeout_ms` (serde's own form
/// of a `Duration`, `{"secs":30,"nanos":0}`, is no use to a script).
pub fn job_json(job: &Job) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(job)?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("timeout");
        let ms = job
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        obj.insert("timeout_ms".into(), serde_json::json!(ms));
    }
    Ok(v)
}

/// A plain text table with left-aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> std::io::Result<()> {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", padded.join("  ").trim_end())
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>())?;
    for row in rows {
        line(row)?;
    }
    Ok(())
}

/// `jobs show`: one `field: value` line per field, times as RFC 3339 and durations as
/// humantime.
pub fn job_details(j: &Job) -> anyhow::Result<()> {
    let opt_time = |t: Option<Millis>| t.map_or_else(|| "-".to_string(), time);
    let opt = |s: Option<&str>| s.unwrap_or("-").to_string();
    let json_text = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    let parents: Vec<String> = j.depends_on.iter().map(|p| p.to_string()).collect();
    let rows: [(&str, String); 21] = [
        ("id", j.id.to_string()),
        ("state", j.state.to_string()),
        ("queue", j.queue.clone()),
        ("kind", j.kind.clone()),
        ("priority", j.priority.to_string()),
        ("attempt", format!("{}/{}", j.attempt, j.max_attempts)),
        ("snoozes", j.snoozes.to_string()),
        ("progress", progress(j.progress.as_ref())),
        ("run_at", time(j.run_at)),
        ("created_at", time(j.created_at)),
        ("finished_at", opt_time(j.finished_at)),
        (
            "timeout",
            j.timeout
                .map_or_else(|| "node default".to_string(), duration),
        ),
        ("unique_key", opt(j.unique_key.as_deref())),
        (
            "depends_on",
            if parents.is_empty() {
                "-".into()
            } else {
                parents.join(", ")
            },
        ),
        (
            "on_parent_failure",
            format!("{:?}", j.on_parent_failure).to_lowercase(),
        ),
        (
            "lease_owner",
            opt(j.lease_owner.as_ref().map(|w| w.0.as_str())),
        ),
        (
            "lease_node",
            opt(j.lease_node.as_ref().map(|n| n.0.as_str())),
        ),
        ("lease_expires_at", opt_time(j.lease_expires_at)),
        ("last_error", opt(j.last_error.as_deref())),
        ("payload", json_text(&j.payload)),
        (
            "output",
            j.output.as_ref().map_or_else(|| "-".into(), json_text),
        ),
    ];
    for (name, value) in rows {
        outln!("{:<18} {value}", format!("{name}:"))?;
    }
    Ok(())
}

/// A progress report as `jobs show` prints it: `50% copying 5/10 (at <time>)`, or `-`.
pub fn progress(p: Option<&jobmesh::job::Progress>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p.message.is_empty() => {
            format!("{:.0}% (at {})", p.fraction * 100.0, time(p.at))
        }
        Some(p) => format!(
            "{:.0}% {} (at {})",
            p.fraction * 100.0,
            p.message,
            time(p.at)
        ),
    }
}

/// The latest instant RFC 3339 can write (9999-12-31T23:59:59.999Z), in milliseconds.
const RFC3339_MAX_MS: i64 = 253_402_300_799_999;

/// A timestamp as RFC 3339 UTC; a stored value outside years 1970..=9999 (which
/// validation refuses, but an old or foreign row may hold) prints as its raw number
/// of milliseconds rather than failing.
pub fn time(t: Millis) -> String {
    if !(0..=RFC3339_MAX_MS).contains(&t.0) {
        return format!("{} ms", t.0);
    }
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.0.unsigned_abs());
    humantime::format_rfc3339_millis(st).to_string()
}

/// A duration as humantime (`30s`, `1h 30m`).
pub fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One table row per job.
pub fn job_rows(jobs: &[Job]) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.state.to_string(),
                j.queue.clone(),
                j.kind.clone(),
                j.priority.to_string(),
                format!("{}/{}", j.attempt, j.max_attempts),
                time(j.run_at),
                j.last_error
                    .as_deref()
                    .map(|e| truncate(e, 60))
                    .unwrap_or_default(),
            ]
        })
        .collect()
}

/// Column headers of [`job_rows`].
pub const JOB_HEADERS: [&str; 8] = [
    "ID",
    "STATE",
    "QUEUE",
    "KIND",
    "PRI",
    "ATTEMPT",
    "RUN_AT",
    "LAST_ERROR",
];

/// At most `n` characters, with an ellipsis when cut.
pub fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n - 1).collect::<String>())
    }
}
