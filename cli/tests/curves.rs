//! The cost-curve options of `jobmesh bench` and `jobmesh plot`, run as a user runs
//! them: small sizes, real stores (a scratch SQLite file, and Postgres for the backlog
//! writer's SQL), each number checked against what the options asked for.

mod common;

use common::Sandbox;
use serde_json::Value;

fn sandbox() -> Sandbox {
    Sandbox::with_config("curves", "")
}

fn json_line(out: &str) -> Value {
    serde_json::from_str(out.trim().lines().last().expect("a JSON line"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn backlog_nodes_and_queues_are_measured_and_plotted() {
    let sb = sandbox();
    let out_file = sb.dir.path().join("curve.jsonl");
    let out_arg = out_file.to_str().unwrap();
    for backlog in ["0", "3000"] {
        let line = json_line(&sb.ok(&[
            "bench",
            "--scratch",
            "--jobs",
            "300",
            "--latency-samples",
            "3",
            "--queues",
            "3",
            "--nodes",
            "2",
            "--backlog-finished",
            backlog,
            "--backlog-events",
            "--backlog-available",
            "500",
            "--out",
            out_arg,
        ]));
        assert_eq!(line["nodes"], 2);
        assert_eq!(line["queues"], 3);
        assert_eq!(line["N"], 300);
        assert_eq!(line["backlog_finished"].as_u64(), backlog.parse().ok());
        assert!(line["drain_per_s"].as_f64().unwrap() > 0.0, "{line}");
        assert_eq!(line["pickup_ms"]["n"], 3);
        if backlog != "0" {
            assert_eq!(line["backlog_events"], 9000, "{line}");
        }
    }
    let lines = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(lines.lines().count(), 2, "--out appends one line per run");

    let svg = sb.dir.path().join("curve.svg");
    sb.ok(&[
        "plot",
        out_arg,
        "--x",
        "backlog_finished",
        "--y",
        "drain_per_s,pickup_ms.p99",
        "--series",
        "system",
        "--out",
        svg.to_str().unwrap(),
    ]);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert_eq!(
        svg.matches("<polyline").count(),
        2,
        "one curve per panel: {svg}"
    );
    assert!(svg.contains("pickup_ms.p99") && svg.contains("jobmesh+sqlite"));

    let err = sb.err(&[
        "plot",
        out_arg,
        "--x",
        "backlog_finished",
        "--y",
        "nope",
        "--out",
        "x.svg",
    ]);
    assert!(
        err.contains("no line has numbers at both --x backlog_finished and --y nope"),
        "{err}"
    );
}

#[test]
fn the_finished_backlog_is_written_into_postgres() {
    let db = format!("jobmesh_curves_test_{}", std::process::id());
    let admin = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-c"])
        .arg(format!("CREATE DATABASE {db}"))
        .output()
        .expect("psql not found: install PostgreSQL (apt-get install postgresql-client)");
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let sb = Sandbox::with_config(
        "curves-pg",
        &format!("[store]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n"),
    );
    let line = json_line(&sb.ok(&[
        "bench",
        "--jobs",
        "200",
        "--latency-samples",
        "2",
        "--backlog-finished",
        "2500",
        "--backlog-events",
    ]));
    assert_eq!(line["system"], "jobmesh+postgres");
    let count = |sql: &str| -> i64 {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-At",
                "-d",
                &db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let q = "queue = 'bench-backlog-finished'";
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM jobs WHERE {q} AND state = 'succeeded'"
        )),
        2500
    );
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM job_executions e JOIN jobs j ON j.id = e.job WHERE j.{q}"
        )),
        2500
    );
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM lifecycle_events e JOIN jobs j ON j.id = e.job WHERE j.{q}"
        )),
        7500
    );
    // The finished backlog is what `jobs list` pages through like any finished job.
    let listed = sb.ok(&[
        "--json",
        "jobs",
        "list",
        "--queue",
        "bench-backlog-finished",
        "--limit",
        "5",
    ]);
    assert!(listed.contains("succeeded"), "{listed}");
    drop(sb);
    let _ = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-c"])
        .arg(format!("DROP DATABASE {db} WITH (FORCE)"))
        .output();
}

#[test]
fn an_open_loop_offers_its_rate_and_reports_windows() {
    let sb = sandbox();
    let line = json_line(&sb.ok(&[
        "bench",
        "--scratch",
        "--rate",
        "300",
        "--duration",
        "2s",
        "--window",
        "1s",
    ]));
    assert_eq!(line["rate_offered"], 300);
    assert_eq!(line["sent"], 600, "{line}");
    assert_eq!(line["done"], 600, "{line}");
    assert_eq!(line["kept_up"], true);
    let windows = line["windows"].as_array().unwrap();
    assert!(windows.len() >= 2, "{line}");
    assert!(
        windows.iter().all(|w| w["rss_mb"].as_f64().unwrap() > 1.0),
        "{line}"
    );
    assert!(
        line["pickup_ms"]["p99"].as_f64().unwrap() >= line["pickup_ms"]["p50"].as_f64().unwrap()
    );
}

#[test]
fn bad_curve_options_are_refused_with_the_option_named() {
    let sb = sandbox();
    for (args, says) in [
        (vec!["--rate", "0", "--duration", "1s"], "--rate"),
        (vec!["--rate", "10"], "--duration"),
        (vec!["--duration", "5s"], "--rate"),
        (vec!["--rate", "10", "--duration", "0s"], "--duration"),
        (vec!["--queues", "0"], "--queues"),
        (vec!["--nodes", "65"], "--nodes"),
        (vec!["--backlog-events"], "--backlog-finished"),
        (
            vec!["--rate", "10", "--duration", "1s", "--via-api"],
            "--via-api",
        ),
    ] {
        let all = [&["bench", "--scratch", "--jobs", "1"][..], &args].concat();
        let err = sb.err(&all);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
