//! Printing results as tables or JSON.

use jobmesh::clock::Millis;
use jobmesh::job::Job;
use serde::Serialize;

/// Prints `value` as one JSON document.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A plain text table with left-aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A timestamp as RFC 3339 UTC.
pub fn time(t: Millis) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.0.max(0) as u64);
    humantime::format_rfc3339_millis(st).to_string()
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
