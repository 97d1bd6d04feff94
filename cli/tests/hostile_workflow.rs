//! Hostile workflow files through `jobmesh submit --workflow`: whatever the file holds,
//! the binary either stores the workflow or exits with status 1 and a message saying
//! what is wrong; it never panics (status 101), never dies of a signal (a stack
//! overflow aborts), and a refused file stores nothing.
//!
//! Each case starts the binary, so the case budget is small and fixed.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use proptest::prelude::*;

mod common;

use common::Sandbox;

/// A sandbox for one hostile file.
fn sandbox() -> Sandbox {
    Sandbox::with_config("hostile", "")
}

/// Submits `text` as a workflow file, returning the output and how long it took.
fn submit(sb: &Sandbox, text: &str) -> (Output, Duration) {
    let file = sb.dir.path().join("flow.toml");
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let out = sb
        .cmd(&["submit", "--workflow"])
        .arg(&file)
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// Exit status 0 or 1 with something said on failure; 101 is a panic and no code at all
/// a signal (the abort of a stack overflow).
fn assert_clean_exit(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(1) => assert!(!stderr.trim().is_empty(), "{what}: failed silently"),
        other => panic!("{what}: exit {other:?}: {stderr}"),
    }
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
}

/// A refused file: status 1, the message, and nothing stored.
fn assert_refused(sb: &Sandbox, text: &str, what: &str, needle: &str) -> Duration {
    let (out, took) = submit(sb, text);
    assert_clean_exit(&out, what);
    assert_eq!(out.status.code(), Some(1), "{what} was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{what}: {stderr}");
    assert_stored_nothing(&sb.db());
    took
}

fn assert_stored_nothing(db: &Path) {
    // Every refusal happens before the store is opened, so it is never even created.
    assert!(!db.exists(), "a refused workflow created the store");
}

const DEEP: usize = 100_000;

#[test]
fn deep_nesting_in_a_workflow_is_refused_not_a_crash() {
    let sb = sandbox();
    let dotted = vec!["a"; DEEP].join(".");
    let cases = [
        (
            format!(
                "[[step]]\nname = \"a\"\nkind = \"noop\"\npayload = {}{}\n",
                "[".repeat(DEEP),
                "]".repeat(DEEP)
            ),
            "deep array payload",
        ),
        (
            format!(
                "[[step]]\nname = \"a\"\nkind = \"noop\"\npayload = {}1{}\n",
                "{a=".repeat(DEEP),
                "}".repeat(DEEP)
            ),
            "deep inline-table payload",
        ),
        (
            format!("[[step]]\nname = \"a\"\nkind = \"noop\"\n[step.payload.{dotted}]\nb = 1\n"),
            "deep table-header payload",
        ),
        (
            format!("[[step]]\nname = \"a\"\nkind = \"noop\"\npayload.{dotted} = 1\n"),
            "deep dotted-key payload",
        ),
        (format!("[{dotted}]\n"), "deep unknown table"),
    ];
    for (text, what) in cases {
        let took = assert_refused(&sb, &text, what, "workflow");
        assert!(took < Duration::from_secs(60), "{what} took {took:?}");
    }
}

#[test]
fn huge_workflows_are_refused_in_bounded_time() {
    let sb = sandbox();
    let steps = 100_000;
    let mut text = String::new();
    for i in 0..steps {
        let after = if i == 0 { steps - 1 } else { i - 1 };
        text.push_str(&format!(
            "[[step]]\nname = \"s{i}\"\nkind = \"noop\"\nafter = [\"s{after}\"]\n"
        ));
    }
    let took = assert_refused(&sb, &text, "a 100k-step cycle", "dependency cycle");
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // The same chain without the cycle but with an unknown kind at the end: parsed,
    // planned, then refused by the kind check, still before the store is touched.
    let mut text = text.replacen(&format!("after = [\"s{}\"]", steps - 1), "after = []", 1);
    text.push_str("[[step]]\nname = \"end\"\nkind = \"nope\"\nafter = [\"s0\"]\n");
    let took = assert_refused(&sb, &text, "a 100k-step chain", "unknown job kind `nope`");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

const LINES: &[&str] = &[
    "[[step]]",
    "[step]",
    "[[step.payload]]",
    "name = \"a\"",
    "name = \"b\"",
    "name = \"\"",
    "name = 1",
    "kind = \"noop\"",
    "kind = \"sleep\"",
    "kind = \"exec\"",
    "kind = \"\"",
    "after = [\"a\"]",
    "after = [\"b\", \"b\"]",
    "after = [\"zz\"]",
    "after = \"a\"",
    "payload = {}",
    "payload = { ms = 1 }",
    "payload = { ms = -1 }",
    "payload = { ms = 1e400 }",
    "payload = \"a\\u0000b\"",
    "payload = 1979-05-27T07:32:00Z",
    "payload = [1, [2, [3]]]",
    "queue = \"\"",
    "queue = \"no spaces\"",
    "priority = 40000",
    "priority = -101",
    "max_attempts = 0",
    "max_attempts = -1",
    "timeout = \"0s\"",
    "timeout = \"8000y\"",
    "timeout = \"soon\"",
    "on_parent_failure = \"hold\"",
    "on_parent_failure = \"explode\"",
    "unknown = 1",
    "= broken",
    "\u{0}",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn workflow_shaped_files_never_crash_the_binary(
        lines in proptest::collection::vec(proptest::sample::select(LINES), 0..14),
    ) {
        let sb = sandbox();
        let text = lines.join("\n");
        let (out, _) = submit(&sb, &text);
        assert_clean_exit(&out, &text);
    }
}
