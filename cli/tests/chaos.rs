//! `jobmesh chaos` end to end with the real binary: a short kill -9/restart run on a
//! 4-node cluster passes every invariant, a run whose store loses an acknowledged job
//! fails with the seed and the replay command, and bad options are refused.

use std::path::Path;
use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobmesh"))
        .arg("chaos")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn kill_restart_on_four_nodes_loses_nothing_and_records_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out = chaos(&[
        "--scenario",
        "kill-restart",
        "--nodes",
        "4",
        "--jobs",
        "300",
        "--seed",
        "11",
        "--duration",
        "10s",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("seed = 11\n"), "{stdout}");
    assert!(stdout.contains("result: PASS"), "{stdout}");
    let r = report(&out_dir);
    let c = &r["verdict"]["counts"];
    assert_eq!(c["lost"], 0, "{c}");
    assert_eq!(c["duplicated_completions"], 0, "{c}");
    assert_eq!(c["unexpected"], 0, "{c}");
    assert_eq!(c["acknowledged"], c["completed"], "{c}");
    assert!(c["acknowledged"].as_u64().unwrap() >= 300, "{c}");
    // The nodes run under `[[limit]]`s; the runner sampled them the whole run.
    assert_eq!(c["limit_exceeded"], 0, "{c}");
    assert!(c["limit_samples"].as_u64().unwrap() > 50, "{c}");
    let kills = r["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["fault"] == "kill")
        .count();
    assert!(kills >= 1, "the schedule kills nodes: {}", r["applied"]);
    assert_eq!(r["passed"], true);
    let svg = std::fs::read_to_string(out_dir.join("timeline.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("kill"),
        "timeline drawn"
    );
}

#[test]
fn a_lost_job_fails_the_run_with_the_seed_and_the_replay_command() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out = chaos(&[
        "--scenario",
        "kill-restart",
        "--nodes",
        "3",
        "--jobs",
        "60",
        "--seed",
        "5",
        "--duration",
        "6s",
        "--out",
        out_dir.to_str().unwrap(),
        "--sabotage-lose-job",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: FAIL"), "{stdout}");
    assert!(stderr.contains("seed = 5"), "{stderr}");
    assert!(
        stderr.contains(
            "replay: jobmesh chaos --scenario kill-restart --nodes 3 --byzantine 0 --jobs 60 --seed 5"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("lost: 1 acknowledged job(s) missing"),
        "{stderr}"
    );
    let c = &report(&out_dir)["verdict"]["counts"];
    assert_eq!(
        (c["lost"].as_u64(), c["missing"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
}

#[test]
fn scenarios_are_listed_and_bad_options_are_refused_with_the_reason() {
    for args in [&["list"][..], &["--list"][..]] {
        let out = chaos(args);
        assert!(out.status.success());
        let s = text(&out.stdout);
        for name in [
            "kill-restart",
            "pause",
            "partition",
            "byzantine-mixed",
            "postgres-outage",
            "redis-outage",
            "redis-flush",
            "store-slowness",
        ] {
            assert!(s.contains(name), "{name} not listed:\n{s}");
        }
    }
    let cases: [(&[&str], &str); 5] = [
        (&[], "give --scenario NAME"),
        (
            &["--scenario", "kil-restart"],
            "unknown scenario `kil-restart`",
        ),
        (
            &["--scenario", "redis-flush", "--sabotage-lose-job"],
            "use it with a SQLite scenario",
        ),
        (
            &["--scenario", "byzantine-false-down", "--byzantine", "0"],
            "needs Byzantine members",
        ),
        (
            &["run", "--scenario", "pause", "--nodes", "2"],
            "--nodes must be at least 3",
        ),
    ];
    for (args, want) in cases {
        let out = chaos(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let out = chaos(&["--scenario", "pause", "--out", tmp.path().to_str().unwrap()]);
    assert!(text(&out.stderr).contains("is not a chaos run directory"));
    assert!(tmp.path().join("precious.txt").exists());
}
