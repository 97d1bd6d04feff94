//! What the cost curve of the mesh against N is drawn from: each run reports the time
//! from a crash to the first suspicion and to the first eviction certificate, and the
//! bytes per node per second of its traffic window, both in the report and in the JSON
//! line the binary appends for `jobmesh plot`.

use std::time::Duration;

use jobmesh_sim::sim::{Op, Scenario, SimConfig, World};

const S: fn(u64) -> Duration = Duration::from_secs;

fn crash_run(amplification: f64) -> jobmesh_sim::sim::Report {
    let mut config = SimConfig::new(10, 3);
    config.gossip_amplification = amplification;
    let mut world = World::new(config).expect("valid");
    let scenario = Scenario::new("crash", S(14))
        .window(S(1), S(5))
        .at(S(5), Op::Crash(9));
    world.run(&scenario).expect("runs")
}

#[test]
fn suspicion_detection_and_bytes_are_reported() {
    let r = crash_run(1.0);
    let m = &r.metrics;
    assert_eq!(m.suspicion.count, 1, "the crash was suspected: {m:?}");
    assert_eq!(m.detection.count, 1, "and evicted: {m:?}");
    let (suspect, detect) = (
        m.suspicion.p50_ms.expect("suspected"),
        m.detection.p50_ms.expect("detected"),
    );
    assert!(
        suspect <= detect,
        "suspicion ({suspect} ms) comes before the certificate ({detect} ms)"
    );

    // Bytes per node per second are the window's bytes over nodes and seconds, and
    // the gossip share is counted in them.
    let w = m.window_traffic;
    assert!(w.gossip_bytes > 0 && w.direct_bytes > 0, "{w:?}");
    assert_eq!(m.window_secs, 4.0);
    let per = |b: u64| b as f64 / 10.0 / 4.0;
    assert_eq!(m.bytes_per_node_s, per(w.bytes()));
    assert_eq!(m.gossip_bytes_per_node_s, per(w.gossip_bytes));
    assert!(m.gossip_bytes_per_node_s < m.bytes_per_node_s);
}

#[test]
fn gossip_bytes_follow_the_amplification() {
    // Same seed, same trace: only the byte accounting of gossip changes.
    let (one, two) = (crash_run(1.0), crash_run(2.0));
    assert_eq!(one.trace_hash, two.trace_hash);
    let (a, b) = (one.metrics.window_traffic, two.metrics.window_traffic);
    assert_eq!(a.gossip_msgs, b.gossip_msgs);
    let ratio = b.gossip_bytes as f64 / a.gossip_bytes as f64;
    assert!((ratio - 2.0).abs() < 0.01, "ratio {ratio}");
    assert_eq!(a.direct_bytes, b.direct_bytes);
}

#[test]
fn the_binary_appends_one_json_line_per_run_for_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mesh.jsonl");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_jobmesh-sim"))
        .args([
            "--nodes",
            "8,10",
            "--seed",
            "3",
            "--scenario",
            "crash",
            "--crashes",
            "1",
            "--warmup",
            // A steady traffic window of [5 s, 10 s): long enough to hold gossip rounds.
            "10",
            "--settle",
            "6",
            "--jsonl",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("runs");
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&out).expect("written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, n) in lines.iter().zip([8, 10]) {
        // The paths `benches/curves.sh mesh` plots.
        assert_eq!(line["config"]["nodes"], n);
        for path in ["suspicion", "detection", "convergence"] {
            assert!(
                line["metrics"][path]["p50_ms"].as_u64().is_some(),
                "{path} of N={n}: {line}"
            );
        }
        assert!(line["metrics"]["gossip_bytes_per_node_s"].as_f64() > Some(0.0));
        assert!(line["metrics"]["bytes_per_node_s"].as_f64() > Some(0.0));
    }
}
