//! `jobmesh audit` as an operator drives it on the embedded store: CLI admin actions
//! are recorded as `cli@<user>@<host>` (the user from `USER`) and listed newest first,
//! filtered by action and actor, paged, and a bad option is refused by name.

mod common;

use common::{Sandbox, succeeded};

/// A sandbox for the audit tests.
fn sandbox() -> Sandbox {
    Sandbox::with_config("audit-test", "")
}

/// Runs `args` as the user `auditor` (the CLI's audit actor takes `USER`).
fn run(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    sb.cmd(args).env("USER", "auditor").output().unwrap()
}

/// Runs `args` as `auditor`; they must succeed.
fn ok(sb: &Sandbox, args: &[&str]) -> String {
    succeeded(run(sb, args), args)
}

/// `jobmesh --json audit <extra>`.
fn audit(sb: &Sandbox, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["--json", "audit"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(sb, &args)).unwrap()
}

#[test]
fn audit_lists_cli_admin_actions() {
    let sb = sandbox();
    assert!(
        audit(&sb, &[]).is_empty(),
        "a fresh store has no audit rows"
    );
    let out = ok(&sb, &["audit"]);
    assert!(out.contains("no audit rows"), "{out}");
    let id = ok(&sb, &["submit", "noop"]).trim().to_owned();
    let id: i64 = id
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {id:?}"));
    ok(&sb, &["jobs", "cancel", &id.to_string()]);
    ok(&sb, &["queue", "pause", "mail"]);
    let token = ok(
        &sb,
        &["token", "create", "--scope", "read", "--name", "viewer"],
    );
    let token = token.trim();
    ok(&sb, &["token", "revoke", "1"]);
    // A cancel of an unknown job fails and is recorded as a refusal.
    assert!(!run(&sb, &["jobs", "cancel", "999999"]).status.success());

    let rows = audit(&sb, &[]);
    let actions: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("cancel", "refused"),
            ("token.revoke", "ok"),
            ("token.create", "ok"),
            ("pause", "ok"),
            ("cancel", "ok"),
        ],
        "newest first: {rows:?}"
    );
    let cancel = &rows[4];
    assert_eq!(cancel["actor"]["kind"], "cli", "{cancel}");
    let who = cancel["actor"]["who"].as_str().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(who, format!("auditor@{}", host.trim()), "user@host");
    assert_eq!(cancel["target"]["jobs"]["ids"], serde_json::json!([id]));
    assert_eq!(cancel["detail"]["cancelled"], true);
    assert!(
        cancel["address"].is_null(),
        "no address at the command line"
    );
    let all = serde_json::to_string(&rows).unwrap();
    assert!(
        !all.contains(&token[token.rfind('_').unwrap() + 1..]),
        "the token's secret is not in the audit log"
    );

    let pauses = audit(&sb, &["--action", "pause"]);
    assert_eq!(pauses.len(), 1, "{pauses:?}");
    let mine = audit(&sb, &["--actor", &format!("cli@{who}"), "--limit", "2"]);
    assert_eq!(mine.len(), 2, "{mine:?}");
    let older = audit(
        &sb,
        &["--before", &mine[1]["id"].to_string(), "--limit", "1000"],
    );
    assert_eq!(older.len(), 3, "{older:?}");

    let table = ok(&sb, &["audit"]);
    assert!(
        table.contains("ACTION") && table.contains("cli@"),
        "{table}"
    );

    for (args, named) in [
        (vec!["audit", "--limit", "0"], "--limit"),
        (vec!["audit", "--limit", "5000"], "--limit"),
        (vec!["audit", "--action", "drop"], "--action"),
        (vec!["audit", "--before=-3"], "--before"),
    ] {
        let out = run(&sb, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
}
