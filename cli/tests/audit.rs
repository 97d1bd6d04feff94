//! `jobmesh audit` as an operator drives it on the embedded store: CLI admin actions
//! are recorded as `cli@<user>@<host>` (the user from `USER`) and listed newest first,
//! filtered by action and actor, paged, and a bad option is refused by name.

use std::process::{Command, Output};

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[node]\nname = \"audit-test\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("jobmesh.toml"), config).unwrap();
        Sandbox { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_jobmesh"))
            .arg("--config")
            .arg(self.dir.path().join("jobmesh.toml"))
            .args(args)
            .env("USER", "auditor")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "jobmesh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn audit(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["--json", "audit"];
        args.extend_from_slice(extra);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

#[test]
fn audit_lists_cli_admin_actions() {
    let sb = Sandbox::new();
    assert!(sb.audit(&[]).is_empty(), "a fresh store has no audit rows");
    let out = sb.ok(&["audit"]);
    assert!(out.contains("no audit rows"), "{out}");
    let id = sb.ok(&["submit", "noop"]).trim().to_owned();
    let id: i64 = id
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {id:?}"));
    sb.ok(&["jobs", "cancel", &id.to_string()]);
    sb.ok(&["queue", "pause", "mail"]);
    let token = sb.ok(&["token", "create", "--scope", "read", "--name", "viewer"]);
    let token = token.trim();
    sb.ok(&["token", "revoke", "1"]);
    // A cancel of an unknown job fails and is recorded as a refusal.
    assert!(!sb.run(&["jobs", "cancel", "999999"]).status.success());

    let rows = sb.audit(&[]);
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

    let pauses = sb.audit(&["--action", "pause"]);
    assert_eq!(pauses.len(), 1, "{pauses:?}");
    let mine = sb.audit(&["--actor", &format!("cli@{who}"), "--limit", "2"]);
    assert_eq!(mine.len(), 2, "{mine:?}");
    let older = sb.audit(&["--before", &mine[1]["id"].to_string(), "--limit", "1000"]);
    assert_eq!(older.len(), 3, "{older:?}");

    let table = sb.ok(&["audit"]);
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
        let out = sb.run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
}
