//! Hostile configuration: whatever the file holds and whatever `JOBMESH__` overrides
//! the environment carries, `Config::load` returns a config or a `ConfigError` that says
//! what is wrong, never panics and never overflows the stack.
//!
//! The case budget is fixed and small so the suite costs seconds in CI.

use std::io::Write;
use std::time::{Duration, Instant};

use jobmesh::config::{Config, ConfigError, ENV_PREFIX};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    }
}

/// Table paths the config knows, plus nonsense.
const SECTIONS: &[&str] = &[
    "node",
    "store",
    "workers",
    "workers.restart",
    "retry",
    "exec",
    "http",
    "mesh",
    "retention",
    "kinds.noop",
    "kinds.sleep.schema",
    "kinds.fail.schema.properties.message",
    "kinds.nope",
    "nope",
    "node.name",
];

/// Keys the config knows (in some section), plus nonsense.
const KEYS: &[&str] = &[
    "name",
    "data_dir",
    "backend",
    "sqlite_path",
    "postgres_url",
    "redis_url",
    "redis_prefix",
    "concurrency",
    "queues",
    "lease",
    "poll_interval",
    "default_timeout",
    "claim_batch",
    "complete_batch",
    "max_restarts",
    "window",
    "backoff_min",
    "backoff_max",
    "allow",
    "max_output_bytes",
    "allow_hosts",
    "max_response_bytes",
    "enabled",
    "listen",
    "join",
    "members",
    "cluster_key",
    "join_certificate",
    "allow_private",
    "f",
    "observers",
    "max_bytes",
    "type",
    "required",
    "items",
    "minimum",
    "max_length",
    "enum",
    "nope",
];

/// TOML values of every type, with edge cases for each.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "1e308",
    "nan",
    "-inf",
    "true",
    "\"\"",
    "\"30s\"",
    "\"0s\"",
    "\"8000y\"",
    "\"soon\"",
    "\"sqlite\"",
    "\"postgres\"",
    "\"postgres://user:secret@127.0.0.1:1/db\"",
    "\"default\"",
    "\"/ip4/127.0.0.1/tcp/0\"",
    "[\"/ip4/127.0.0.1/tcp/0\"]",
    "\"12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq\"",
    "[\"10.0.0.0/8\", \"db.internal\"]",
    "\"a\\u0000b\"",
    "[]",
    "[\"default\", \"\"]",
    "[1, \"a\"]",
    "{}",
    "{ type = \"string\" }",
    "1979-05-27T07:32:00Z",
    "'''multi\nline'''",
];

fn toml_doc() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        proptest::sample::select(SECTIONS).prop_map(|s| format!("[{s}]")),
        proptest::sample::select(SECTIONS).prop_map(|s| format!("[[{s}]]")),
        (
            proptest::sample::select(KEYS),
            proptest::sample::select(VALUES)
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
        (
            proptest::sample::select(SECTIONS),
            proptest::sample::select(KEYS),
            proptest::sample::select(VALUES)
        )
            .prop_map(|(s, k, v)| format!("{s}.{k} = {v}")),
    ];
    proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

fn env_key() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => proptest::sample::select(SECTIONS).prop_map(|s| s.replace('.', "__").to_uppercase()),
        4 => proptest::sample::select(KEYS).prop_map(str::to_uppercase),
        1 => Just(String::new()),
        1 => "[a-zA-Z_]{0,6}",
    ];
    proptest::collection::vec(segment, 1..4)
        .prop_map(|segments| format!("{ENV_PREFIX}{}", segments.join("__")))
}

fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(VALUES).prop_map(str::to_string),
        any::<String>(),
    ]
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// Loading must give a config that passes its own checks, or an error with a message.
fn assert_loads_or_clear(result: Result<Config, ConfigError>) {
    match result {
        Ok(c) => assert_eq!(c.validate(), Ok(())),
        Err(ConfigError::Invalid { origin, message }) => {
            assert!(!origin.is_empty());
            assert!(!message.trim().is_empty(), "empty message from {origin}");
        }
        Err(e @ ConfigError::Read { .. }) => panic!("the file exists: {e}"),
        // Reasons added later must still say something.
        #[allow(unreachable_patterns)]
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let f = write(&text);
        assert_loads_or_clear(Config::load(Some(f.path()), []));
    }

    #[test]
    fn config_shaped_files_never_panic(doc in toml_doc()) {
        let f = write(&doc);
        assert_loads_or_clear(Config::load(Some(f.path()), []));
    }

    #[test]
    fn arbitrary_overrides_never_panic(
        doc in toml_doc(),
        env in proptest::collection::vec((env_key(), env_value()), 0..6),
    ) {
        let f = write(&doc);
        assert_loads_or_clear(Config::load(Some(f.path()), env.clone()));
        assert_loads_or_clear(Config::load(None, env));
    }
}

/// Loads a file with `text`, timing it.
fn load_text(text: &str) -> (Result<Config, ConfigError>, Duration) {
    let f = write(text);
    let started = Instant::now();
    let result = Config::load(Some(f.path()), []);
    (result, started.elapsed())
}

const DEEP: usize = 100_000;

#[test]
fn deep_nesting_in_the_file_is_an_error_not_a_stack_overflow() {
    let dotted = vec!["a"; DEEP].join(".");
    let schema_items = format!("kinds.noop.schema{}", ".items".repeat(DEEP));
    let cases = [
        format!("x = {}", "[".repeat(DEEP)),
        format!("x = {}{}", "[".repeat(DEEP), "]".repeat(DEEP)),
        format!("x = {}1{}", "{a=".repeat(DEEP), "}".repeat(DEEP)),
        format!("[{dotted}]\nb = 1"),
        format!("{dotted} = 1"),
        format!("[[{dotted}]]"),
        format!("[{schema_items}]\ntype = \"string\""),
        format!("{schema_items}.type = \"string\""),
    ];
    for text in cases {
        let (result, took) = load_text(&text);
        let head: String = text.chars().take(20).collect();
        let err = result.err().unwrap_or_else(|| panic!("`{head}...` loaded"));
        assert_loads_or_clear(Err(err));
        assert!(took < Duration::from_secs(20), "`{head}...` took {took:?}");
    }
}

#[test]
fn deep_overrides_are_an_error_not_a_stack_overflow() {
    let key = format!("{ENV_PREFIX}{}", vec!["A"; DEEP].join("__"));
    let result = Config::load(None, [(key, "1".to_string())]);
    let err = result.expect_err("a 100k-deep override loaded");
    assert!(
        err.to_string().contains("has 100000 levels, more than 64"),
        "{err}"
    );
    assert_loads_or_clear(Err(err));
    let deep_value = "[".repeat(DEEP);
    for key in ["JOBMESH__WORKERS__QUEUES", "JOBMESH__KINDS__NOOP__SCHEMA"] {
        let result = Config::load(None, [(key.to_string(), deep_value.clone())]);
        assert_loads_or_clear(Err(result.expect_err("a 100k-deep value loaded")));
    }
}

#[test]
fn overrides_at_the_depth_limit_are_read_as_keys() {
    // 64 levels is the limit: refused as an unknown key, not for its depth.
    let key = format!("{ENV_PREFIX}{}", vec!["A"; 64].join("__"));
    let err = Config::load(None, [(key, "1".to_string())]).unwrap_err();
    assert!(!err.to_string().contains("levels"), "{err}");
}

#[test]
fn moderately_deep_schemas_still_load() {
    // Nesting within reason is not refused wholesale: a schema 20 arrays deep is valid.
    let header = format!("kinds.noop.schema{}", ".items".repeat(20));
    let (result, _) = load_text(&format!("[{header}]\ntype = \"string\""));
    let config = result.unwrap();
    assert!(config.kinds.contains_key("noop"));
}
