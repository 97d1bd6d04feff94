//! `jobmesh queue` as a user drives it on the embedded store: a paused queue keeps its
//! jobs while a node runs the others, the pause shows in `queue list` and `jobs stats`,
//! and a resume lets the next node run them.

use std::collections::BTreeMap;

mod common;

use common::Sandbox;

/// A sandbox whose node serves `default` and `mail`, polling every 50 ms.
fn sandbox() -> Sandbox {
    Sandbox::with_config(
        "queue-test",
        "[workers]\nqueues = [\"default\", \"mail\"]\npoll_interval = \"50ms\"\n",
    )
}

/// `jobs stats --json`: per queue its pause and its counts by state.
fn queue_stats(sb: &Sandbox) -> BTreeMap<String, (bool, BTreeMap<String, u64>)> {
    let by_queue: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&sb.ok(&["--json", "jobs", "stats"])).unwrap();
    by_queue
        .into_iter()
        .map(|(q, v)| {
            let paused = v["paused"].as_bool().expect("paused is a flag");
            (
                q,
                (paused, serde_json::from_value(v["counts"].clone()).unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_paused_queue_keeps_its_jobs_until_resumed() {
    let sb = sandbox();
    let out = sb.ok(&["queue", "pause", "mail"]);
    assert!(out.contains("queue mail paused"), "{out}");
    let out = sb.ok(&["queue", "pause", "mail"]);
    assert!(out.contains("already paused"), "{out}");
    // Enqueueing to a paused queue succeeds.
    sb.ok(&["submit", "noop", "--queue", "mail", "--count", "3"]);
    sb.ok(&["submit", "noop", "--count", "2"]);

    let list: serde_json::Value =
        serde_json::from_str(&sb.ok(&["--json", "queue", "list"])).unwrap();
    let mail = list
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "mail")
        .expect("mail is listed");
    assert_eq!(mail["paused"], true, "{list}");
    assert_eq!(mail["counts"]["available"], 3, "{list}");
    let table = sb.ok(&["jobs", "stats"]);
    let mail_row = table.lines().find(|l| l.starts_with("mail")).expect(&table);
    assert!(
        table.contains("PAUSED") && mail_row.contains("yes"),
        "{table}"
    );

    // A node runs the running queue and stops: the paused queue's jobs are not runnable.
    sb.ok(&["node", "--exit-when-idle"]);
    let stats = queue_stats(&sb);
    assert_eq!(stats["default"].1.get("succeeded"), Some(&2), "{stats:?}");
    assert_eq!(stats["mail"].1.get("available"), Some(&3), "{stats:?}");
    assert_eq!(
        (stats["mail"].0, stats["default"].0),
        (true, false),
        "{stats:?}"
    );

    let out = sb.ok(&["queue", "resume", "mail"]);
    assert!(out.contains("queue mail resumed"), "{out}");
    let out = sb.ok(&["queue", "resume", "mail"]);
    assert!(out.contains("was not paused"), "{out}");
    sb.ok(&["node", "--exit-when-idle"]);
    let stats = queue_stats(&sb);
    assert_eq!(stats["mail"].1.get("succeeded"), Some(&3), "{stats:?}");
    assert!(!stats["mail"].0, "resumed: {stats:?}");

    let events = sb.ok(&["events", "--after", "0"]);
    assert!(
        events.contains("queue.paused") && events.contains("queue.resumed"),
        "{events}"
    );
}

#[test]
fn a_queue_name_that_no_job_could_carry_is_refused() {
    let sb = sandbox();
    let out = sb.run(&["queue", "pause", ""]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queue name is empty"), "{err}");
}
