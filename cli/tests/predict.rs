//! `jobmesh trace generate`, `jobmesh trace export` and `jobmesh predict eval` as a user
//! runs them: a generated trace evaluates into four tables (and JSON, and an SVG); a
//! store's jobs export into a trace the evaluation reads; bad input is refused with a
//! message that says what is wrong, and no file is overwritten.

use std::path::Path;
use std::process::{Command, Output};

fn jobmesh(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobmesh"))
        .args(args)
        .current_dir(dir)
        .env("JOBMESH__STORE__SQLITE_PATH", dir.join("jobs.db"))
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = jobmesh(dir, args);
    assert!(
        out.status.success(),
        "jobmesh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(dir: &Path, args: &[&str]) -> String {
    let out = jobmesh(dir, args);
    assert!(!out.status.success(), "jobmesh {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_generated_trace_evaluates_into_four_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "trace",
        "generate",
        "--seed",
        "7",
        "--duration",
        "1h",
        "--cycle",
        "30m",
    ];
    let out = ok(d, &[&args[..], &["--out", "t.jsonl"]].concat());
    assert!(out.contains("attempts to t.jsonl"), "{out}");
    // The same seed gives the same file.
    ok(d, &[&args[..], &["--out", "again.jsonl"]].concat());
    assert_eq!(
        std::fs::read(d.join("t.jsonl")).unwrap(),
        std::fs::read(d.join("again.jsonl")).unwrap()
    );
    let err = refused(d, &[&args[..], &["--out", "t.jsonl"]].concat());
    assert!(err.contains("not overwritten"), "{err}");

    let text = ok(
        d,
        &["predict", "eval", "--trace", "t.jsonl", "--plot", "p.svg"],
    );
    for title in ["duration (", "node failure (", "retry (", "congestion ("] {
        assert!(text.contains(title), "{title} missing:\n{text}");
    }
    assert!(text.contains("winner"), "{text}");
    let svg = std::fs::read_to_string(d.join("p.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg:.200}"
    );

    let json = ok(d, &["--json", "predict", "eval", "--trace", "t.jsonl"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 4);
    assert_eq!(tables[0]["rows"][0]["role"], "model");
}

#[test]
fn bad_traces_and_options_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.jsonl"), "{\"job\": 1}\n").unwrap();
    let err = refused(d, &["predict", "eval", "--trace", "bad.jsonl"]);
    assert!(
        err.contains("line 1") && err.contains("missing field"),
        "{err}"
    );
    std::fs::write(d.join("empty.jsonl"), "\n").unwrap();
    let err = refused(d, &["predict", "eval", "--trace", "empty.jsonl"]);
    assert!(err.contains("empty"), "{err}");
    let err = refused(d, &["predict", "eval", "--trace", "missing.jsonl"]);
    assert!(err.contains("missing.jsonl"), "{err}");
    ok(
        d,
        &["trace", "generate", "--duration", "10m", "--out", "t.jsonl"],
    );
    let err = refused(
        d,
        &["predict", "eval", "--trace", "t.jsonl", "--split", "1.5"],
    );
    assert!(err.contains("--split"), "{err}");
    let err = refused(
        d,
        &["predict", "eval", "--trace", "t.jsonl", "--season", "10s"],
    );
    assert!(err.contains("--season"), "{err}");
    let err = refused(
        d,
        &["trace", "generate", "--nodes", "2", "--out", "x.jsonl"],
    );
    assert!(err.contains("--nodes"), "{err}");
    assert!(!d.join("x.jsonl").exists());
}

#[test]
fn a_stores_jobs_export_into_a_trace_the_evaluation_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "bench",
            "--jobs",
            "300",
            "--concurrency",
            "4",
            "--latency-samples",
            "20",
        ],
    );
    let out = ok(d, &["trace", "export", "--out", "b.jsonl"]);
    assert!(out.contains("wrote 320 attempts"), "{out}");
    let text = std::fs::read_to_string(d.join("b.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 320);
    assert!(
        text.lines()
            .all(|l| l.contains("\"outcome\":\"succeeded\""))
    );
    ok(d, &["predict", "eval", "--trace", "b.jsonl"]);
    let none = ok(
        d,
        &[
            "trace",
            "export",
            "--since",
            "2999-01-01T00:00:00Z",
            "--out",
            "n.jsonl",
        ],
    );
    assert!(none.contains("wrote 0 attempts"), "{none}");
}

#[test]
fn predict_show_prints_what_a_node_that_ran_jobs_saved() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(d, &["predict", "show"]);
    assert!(out.contains("no saved models"), "{out}");
    ok(d, &["submit", "sleep", "{\"ms\": 5}", "--count", "20"]);
    ok(
        d,
        &[
            "submit",
            "fail",
            "{\"times\": 1, \"message\": \"smtp down: 10.0.0.1\"}",
        ],
    );
    // The node saves its models when it stops.
    ok(d, &["node", "--exit-when-idle"]);

    let text = ok(d, &["predict", "show"]);
    for part in [
        "NODES",
        "DURATIONS",
        "RETRIES",
        "RETRY BUDGETS",
        "QUEUES",
        "+15m",
    ] {
        assert!(text.contains(part), "{part} missing:\n{text}");
    }
    let sleep_row = text
        .lines()
        .find(|l| l.starts_with("sleep") && l.contains("default"))
        .unwrap_or_else(|| panic!("no sleep row:\n{text}"));
    assert!(sleep_row.contains(" 20 "), "20 runs: {sleep_row}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("fail") && l.contains("smtp_down")),
        "the retry of `fail` by its error class:\n{text}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "predict", "show", "--slo", "5s"])).unwrap();
    assert_eq!(json["slo_ms"], 5000.0);
    assert_eq!(json["nodes"].as_array().unwrap().len(), 1, "{json}");
    let sleep = json["durations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "sleep")
        .expect("sleep durations");
    assert_eq!(sleep["runs"], 20);
    assert!(sleep["p50_ms"].as_f64().unwrap() >= 4.0, "{sleep}");
    assert!(
        json["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["queue"] == "default"),
        "{json}"
    );

    // `jobs stats` shows the predicted wait beside the counts.
    let stats: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "jobs", "stats"])).unwrap();
    assert!(stats["default"]["predicted_wait_ms"].is_number(), "{stats}");
    assert!(ok(d, &["jobs", "stats"]).contains("PREDICTED WAIT"));

    let err = refused(d, &["predict", "show", "--slo", "0s"]);
    assert!(err.contains("--slo"), "{err}");
}
