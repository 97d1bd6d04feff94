use super::*;
use std::io::Write;
use std::time::Duration;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_are_valid() {
    let c = Config::load(None, []).unwrap();
    assert_eq!(c.store.backend, Backend::Sqlite);
    assert_eq!(c.sqlite_path(), PathBuf::from("data/jobmesh.db"));
}

#[test]
fn environment_overrides_file() {
    let f = file("[workers]\nconcurrency = 4\nlease = \"10s\"\n");
    let env = [
        ("JOBMESH__WORKERS__CONCURRENCY".to_string(), "8".to_string()),
        (
            "JOBMESH__WORKERS__QUEUES".to_string(),
            "[\"a\", \"b\"]".to_string(),
        ),
        ("JOBMESH__NODE__NAME".to_string(), "n1".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let c = Config::load(Some(f.path()), env).unwrap();
    assert_eq!(c.workers.concurrency, 8);
    assert_eq!(c.workers.queues, ["a", "b"]);
    assert_eq!(c.workers.lease, Duration::from_secs(10));
    assert_eq!(c.node.name, "n1");
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let err = Config::load(Some(file("[workers]\nconcurency = 4\n").path()), [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `concurency`"), "{err}");
    let err = Config::load(Some(file("[workers]\nconcurrency = 0\n").path()), [])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("workers.concurrency: must be within 1..=10000"),
        "{err}"
    );
    let err = Config::load(Some(file("[store]\nbackend = \"postgres\"\n").path()), [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs store.postgres_url"), "{err}");
    let err = Config::load(None, [("JOBMESH__WORKERS__LEASE".into(), "soon".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("JOBMESH__WORKERS__LEASE"), "{err}");
}

#[test]
fn observers_default_to_all_to_all_for_small_meshes() {
    let mut m = MeshSection::default();
    assert_eq!(m.observers_for(5), None);
    assert_eq!(m.observers_for(31), None);
    assert_eq!(m.observers_for(32), Some(10));
    m.f = 4;
    assert_eq!(m.observers_for(100), Some(13), "at least 3f + 1");
    m.f = 1;
    m.observers = Some(4);
    assert_eq!(m.observers_for(7), Some(4));
    assert_eq!(
        m.observers_for(5),
        None,
        "4 observers of 5 members is everyone"
    );
    assert!(m.validate().is_ok());
    m.observers = Some(3);
    let err = m.validate().unwrap_err();
    assert!(
        err.contains("mesh.observers = 3") && err.contains("at least 4"),
        "{err}"
    );
}

/// Loads `text` as a config file and returns the error message.
fn refused(text: &str) -> String {
    match Config::load(Some(file(text).path()), []) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn type_errors_name_the_key() {
    for (text, expected) in [
        (
            "[workers]\nconcurrency = \"x\"\n",
            "workers.concurrency: invalid type: string \"x\", expected a non-negative integer",
        ),
        (
            "[workers]\nconcurrency = -1\n",
            "workers.concurrency: invalid value",
        ),
        (
            "[workers]\nqueues = \"default\"\n",
            "workers.queues: invalid type",
        ),
        (
            "[workers]\nqueues = [\"a\", 5]\n",
            "workers.queues[1]: invalid type",
        ),
        ("[workers]\nlease = 30\n", "workers.lease: invalid type"),
        ("[workers]\nlease = \"soon\"\n", "workers.lease: "),
        (
            "[workers.restart]\nwindow = true\n",
            "workers.restart.window: invalid type",
        ),
        ("[retry]\njitter = \"lots\"\n", "retry.jitter: invalid type"),
        (
            "[exec]\nmax_output_bytes = \"1k\"\n",
            "exec.max_output_bytes: invalid type",
        ),
        ("[mesh]\nf = 1.5\n", "mesh.f: invalid type"),
        (
            "[store]\nbackend = \"mysql\"\n",
            "store.backend: unknown variant `mysql`",
        ),
        ("[retention]\nbatch = []\n", "retention.batch: invalid type"),
        (
            "[kinds.http]\nmax_bytes = \"big\"\n",
            "kinds.http.max_bytes: invalid type",
        ),
    ] {
        let err = refused(text);
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn override_type_errors_name_the_key_and_the_variable() {
    let f = file("[workers]\nconcurrency = 4\n");
    for (var, value, expected) in [
        (
            "JOBMESH__WORKERS__CONCURRENCY",
            "many",
            "workers.concurrency: invalid type",
        ),
        ("JOBMESH__WORKERS__LEASE", "soon", "workers.lease: "),
        (
            "JOBMESH__WORKERS__RESTART__WINDOW",
            "7",
            "workers.restart.window: invalid type",
        ),
        (
            "JOBMESH__RETRY__EXPONENT",
            "[1]",
            "retry.exponent: invalid type",
        ),
    ] {
        let err = Config::load(Some(f.path()), [(var.to_string(), value.to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{var}: {err}");
        assert!(
            err.contains(&format!("environment override {var}")),
            "{var}: {err}"
        );
    }
    // A bad value in the file is blamed on the file even when other keys are overridden.
    let f = file("[workers]\nconcurrency = \"x\"\n");
    let err = Config::load(
        Some(f.path()),
        [("JOBMESH__NODE__NAME".to_string(), "n1".to_string())],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&f.path().display().to_string()), "{err}");
    assert!(!err.contains("JOBMESH__NODE__NAME"), "{err}");
}

#[test]
fn nonsense_values_are_refused_with_their_key() {
    for (text, expected) in [
        // Queue names follow the submit rule.
        (
            "[workers]\nqueues = [\"\"]\n",
            "workers.queues: queue name ``",
        ),
        (
            "[workers]\nqueues = [\"a b\"]\n",
            "workers.queues: queue name `a b`",
        ),
        (
            "[workers]\nqueues = [\"ok\", \"sp/am\"]\n",
            "queue name `sp/am`",
        ),
        (
            "[workers]\nqueues = []\n",
            "workers.queues: must name at least one queue",
        ),
        // Durations that must be positive, and bounded.
        (
            "[workers]\ndefault_timeout = \"0s\"\n",
            "workers.default_timeout: must be greater than zero",
        ),
        (
            "[workers]\npoll_interval = \"0s\"\n",
            "workers.poll_interval: must be greater than zero",
        ),
        (
            "[workers]\nlease = \"10ms\"\n",
            "workers.lease: must be at least 100ms",
        ),
        (
            "[workers]\nlease = \"30days\"\n",
            "workers.lease: must be at most 1day",
        ),
        (
            "[workers]\ndefault_timeout = \"8000y\"\n",
            "workers.default_timeout: must be at most",
        ),
        (
            "[workers.restart]\nwindow = \"0s\"\n",
            "workers.restart.window: must be greater than zero",
        ),
        (
            "[workers.restart]\nbackoff_min = \"10s\"\nbackoff_max = \"1s\"\n",
            "workers.restart.backoff_min: must not exceed workers.restart.backoff_max",
        ),
        (
            "[retention]\nfinished_jobs = \"0s\"\n",
            "retention.finished_jobs: must be at least 1s",
        ),
        (
            "[retention]\ndead_letters = \"0s\"\n",
            "retention.dead_letters: must be at least 1s",
        ),
        (
            "[retention]\ncoordination = \"0s\"\n",
            "retention.coordination: must be at least 1s",
        ),
        (
            "[retention]\ninterval = \"0s\"\n",
            "retention.interval: must be greater than zero",
        ),
        (
            "[retry]\nmax_delay = \"100y\"\n",
            "retry.max_delay: must be at most",
        ),
        // Batch sizes.
        (
            "[workers]\nclaim_batch = 0\n",
            "workers.claim_batch: must be within 1..=10000, got 0",
        ),
        (
            "[workers]\nclaim_batch = 4000000000\n",
            "workers.claim_batch: must be within 1..=10000",
        ),
        (
            "[workers]\ncomplete_batch = 0\n",
            "workers.complete_batch: must be within 1..=10000",
        ),
        (
            "[workers]\ncomplete_batch = 1000000\n",
            "workers.complete_batch: must be within 1..=10000",
        ),
        (
            "[retention]\nbatch = 0\n",
            "retention.batch: must be within 1..=10000",
        ),
        (
            "[workers]\nconcurrency = 100000\n",
            "workers.concurrency: must be within 1..=10000",
        ),
        // Output limits.
        (
            "[exec]\nmax_output_bytes = 0\n",
            "exec.max_output_bytes: must be within 1..=67108864, got 0",
        ),
        (
            "[exec]\nmax_output_bytes = 1000000000000\n",
            "exec.max_output_bytes: must be within",
        ),
        (
            "[http]\nmax_response_bytes = 0\n",
            "http.max_response_bytes: must be within 1..=67108864",
        ),
        // Retry policy.
        (
            "[retry]\nexponent = 1000\n",
            "retry.exponent must be within 0..=10, got 1000",
        ),
        (
            "[retry]\njitter = 2.0\n",
            "retry.jitter must be within 0.0..=1.0",
        ),
        (
            "[retry]\njitter = nan\n",
            "retry.jitter must be within 0.0..=1.0",
        ),
        (
            "[retry]\nunit = \"0s\"\n",
            "retry.unit must be greater than zero",
        ),
        // Mesh numbers (a huge f must not overflow 3f + 1).
        (
            "[mesh]\nf = 9223372036854775807\n",
            "mesh.f: must be within 0..=1000",
        ),
        (
            "[mesh]\nobservers = 0\n",
            "mesh.observers: must be within 1..=10000",
        ),
        (
            "[mesh]\nobservers = 2\n",
            "mesh.observers = 2: tolerating f = 1",
        ),
        ("[mesh]\nenabled = true\n", "mesh.members lists 0 peer ids"),
        // Store and node.
        (
            "[store]\npostgres_url = \" \"\n",
            "store.postgres_url: must not be empty",
        ),
        (
            "[store]\nredis_prefix = \"\"\n",
            "store.redis_prefix: must not be empty",
        ),
        ("[node]\nname = \"\"\n", "node.name: must not be empty"),
    ] {
        let err = refused(text);
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn mesh_addresses_peer_ids_and_keys_are_parsed_at_load() {
    let me = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let cluster = libp2p::identity::Keypair::generate_ed25519();
    let cluster_id = cluster.public().to_peer_id();
    let c = Config::load(
        Some(
            file(&format!(
                "[mesh]\nlisten = [\"/ip4/0.0.0.0/tcp/4001\"]\n\
                 join = [\"/ip4/10.0.0.1/tcp/4001/p2p/{me}\"]\n\
                 members = [\"{me}\"]\ncluster_key = \"{cluster_id}\"\n\
                 [http]\nallow_private = [\"10.0.0.0/8\", \"db.internal\"]\n"
            ))
            .path(),
        ),
        [],
    )
    .unwrap();
    assert_eq!(c.mesh.listen, ["/ip4/0.0.0.0/tcp/4001".parse().unwrap()]);
    assert_eq!(
        c.mesh.join,
        [format!("/ip4/10.0.0.1/tcp/4001/p2p/{me}").parse().unwrap()]
    );
    assert_eq!(c.mesh.members, [me]);
    let key = c.mesh.cluster_key.as_ref().unwrap();
    assert_eq!(key.id(), cluster_id);
    assert_eq!(*key.public_key(), cluster.public());
    assert_eq!(
        c.http.allow_private.entries(),
        ["10.0.0.0/8", "db.internal"]
    );
    assert!(c.http.allow_private.host_opened("DB.internal"));
    // Written back as the strings they were read from.
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["mesh"]["members"][0], me.to_string());
    assert_eq!(json["mesh"]["cluster_key"], cluster_id.to_string());
    assert_eq!(json["http"]["allow_private"][1], "db.internal");
}

#[test]
fn bad_mesh_and_http_entries_are_refused_at_load_with_their_key() {
    // An identity-multihash peer id of random bytes: a valid id, but no key inside.
    let keyless = libp2p::PeerId::random();
    for (text, expected) in [
        (
            "[mesh]\nlisten = [\"nonsense\"]\n".to_string(),
            "mesh.listen[0]: `nonsense` is not a multiaddr",
        ),
        (
            "[mesh]\njoin = [\"/ip4/127.0.0.1/tcp/1\", \"/tcp/http\"]\n".to_string(),
            "mesh.join[1]: `/tcp/http` is not a multiaddr",
        ),
        (
            "[mesh]\nlisten = [4001]\n".to_string(),
            "mesh.listen[0]: invalid type: integer `4001`, expected a string",
        ),
        (
            "[mesh]\nmembers = [\"not-a-peer\"]\n".to_string(),
            "mesh.members[0]: `not-a-peer` is not a peer id",
        ),
        (
            "[mesh]\ncluster_key = \"nope\"\n".to_string(),
            "mesh.cluster_key: `nope` is not a cluster key id",
        ),
        (
            format!("[mesh]\ncluster_key = \"{keyless}\"\n"),
            "does not embed an ed25519 key",
        ),
        (
            "[http]\nallow_private = [\"10.0.0.0/99\"]\n".to_string(),
            "http.allow_private[0]: `10.0.0.0/99` is not an IP address, a network",
        ),
    ] {
        let err = refused(&text);
        assert!(err.contains(expected), "{text}: {err}");
    }
    let err = Config::load(
        None,
        [(
            "JOBMESH__MESH__LISTEN".to_string(),
            "[\"/ip4/127.0.0.1/tcp/0\", \"nonsense\"]".to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("environment override JOBMESH__MESH__LISTEN")
            && err.contains("mesh.listen[1]: `nonsense` is not a multiaddr"),
        "{err}"
    );
}

#[test]
fn the_registry_applies_kind_rules_and_refuses_unknown_kinds() {
    let c = Config::load(Some(file("[kinds.noop]\nmax_bytes = 10\n").path()), []).unwrap();
    let registry = c.registry().unwrap();
    assert_eq!(registry.get("noop").unwrap().rules.max_bytes, 10);
    let c = Config::load(Some(file("[kinds.nope]\nmax_bytes = 10\n").path()), []).unwrap();
    let err = c.registry().unwrap_err().to_string();
    assert!(err.starts_with("config [kinds.nope]: "), "{err}");
    assert!(err.contains("noop"), "the known kinds are listed: {err}");
}

#[test]
fn every_refused_value_is_reported_at_once() {
    let err = refused("[workers]\nclaim_batch = 0\n[exec]\nmax_output_bytes = 0\n");
    assert!(
        err.contains("workers.claim_batch") && err.contains("exec.max_output_bytes"),
        "{err}"
    );
}

#[test]
fn override_value_errors_name_the_variable() {
    let err = Config::load(
        None,
        [(
            "JOBMESH__WORKERS__QUEUES".to_string(),
            "[\"no spaces please\"]".to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("environment override JOBMESH__WORKERS__QUEUES")
            && err.contains("queue name `no spaces please`"),
        "{err}"
    );
}

/// `config/node.toml`, which documents every key.
fn documented() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

#[test]
fn documented_config_equals_the_defaults() {
    let (path, text) = documented();
    let mut loaded = Config::load(Some(&path), []).unwrap();
    // The keys the quick tour needs, which the file lists in its header.
    let tour_keys = ["exec.allow"];
    for key in tour_keys {
        assert!(
            text.lines()
                .any(|l| l.starts_with("#   ") && l.contains(key)),
            "config/node.toml must list `{key}` among the keys that differ from the defaults"
        );
    }
    assert!(
        !loaded.exec.allow.is_empty(),
        "the quick tour runs `echo` through exec"
    );
    loaded.exec.allow = Config::default().exec.allow;
    assert_eq!(loaded, Config::default());
}

#[test]
fn documented_config_lists_every_key() {
    let (_, text) = documented();
    // Sections as written, with their set and commented-out keys.
    let mut keys: Vec<(String, String, bool)> = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let code = line.trim_start_matches(['#', ' ']);
        let commented = line.starts_with('#');
        if let Some(name) = code.strip_prefix('[').and_then(|r| r.split(']').next()) {
            if !commented {
                section = name.to_string();
            }
            continue;
        }
        if let Some((key, _)) = code.split_once(" = ")
            && !key.contains(' ')
        {
            keys.push((section.clone(), key.to_string(), commented));
        }
    }
    // JSON keeps `None` fields (as null), so optional keys are listed too.
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut missing = Vec::new();
    walk(&defaults, "", &mut |path, value| {
        let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
        let found = keys
            .iter()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, commented)| *commented);
        match found {
            // Keys without a default value are documented as comments.
            Some(commented) if commented == value.is_null() => {}
            _ if section.is_empty() && value.as_object().is_some_and(|o| o.is_empty()) => {
                // `[kinds]` is an empty map: an example table suffices.
                if !text.contains(&format!("# [{key}.")) {
                    missing.push(path.to_string());
                }
            }
            _ if section.is_empty() && value.as_array().is_some_and(|a| a.is_empty()) => {
                // `[[periodic]]` is an empty list: an example entry suffices.
                if !text.contains(&format!("# [[{key}]]")) {
                    missing.push(path.to_string());
                }
            }
            _ => missing.push(path.to_string()),
        }
    });
    assert!(
        missing.is_empty(),
        "config/node.toml does not document (set, or commented out when unset by default): {missing:?}"
    );
}

/// Calls `f` with the dotted path of every leaf (non-table value) of `v`.
fn walk(v: &serde_json::Value, prefix: &str, f: &mut impl FnMut(&str, &serde_json::Value)) {
    match v.as_object() {
        Some(o) if !o.is_empty() => {
            for (k, child) in o {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(child, &path, f);
            }
        }
        _ => f(prefix, v),
    }
}

#[test]
fn missing_file_is_named() {
    let err = Config::load(Some(Path::new("/nonexistent/jobmesh.toml")), [])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read config file /nonexistent/jobmesh.toml"),
        "{err}"
    );
}

#[test]
fn limits_are_read_and_checked_with_their_key() {
    let f = file(
        "[[limit]]\nqueue = \"emails\"\nmax_running = 5\nrate = \"100/s\"\nburst = 20\n\
         limit_by = \"$.customer_id\"\n[[limit]]\nkind = \"http\"\nmax_running = 2\n",
    );
    let c = Config::load(Some(f.path()), []).unwrap();
    let limits = c.limits();
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0].name(), "queue:emails");
    assert_eq!(limits[0].rate.unwrap().count, 100);
    assert_eq!(limits[0].capacity(), 20);
    assert_eq!(limits[1].name(), "kind:http");
    for (text, key) in [
        ("[[limit]]\nmax_running = 1\n", "limit[0].queue"),
        (
            "[[limit]]\nqueue = \"q\"\nkind = \"k\"\nmax_running = 1\n",
            "limit[0].kind",
        ),
        ("[[limit]]\nqueue = \"q\"\n", "limit[0].queue"),
        (
            "[[limit]]\nqueue = \"q\"\nrate = \"fast\"\n",
            "limit[0].rate",
        ),
        (
            "[[limit]]\nqueue = \"q\"\nmax_running = 0\n",
            "limit[0].max_running",
        ),
        (
            "[[limit]]\nqueue = \"q\"\nmax_running = 1\nburst = 3\n",
            "limit[0].burst",
        ),
        (
            "[[limit]]\nqueue = \"q\"\nmax_running = 1\nlimit_by = \"customer\"\n",
            "limit[0].limit_by",
        ),
        (
            "[[limit]]\nqueue = \"q\"\nmax_running = 1\n[[limit]]\nqueue = \"q\"\nmax_running = 2\n",
            "limit[1]",
        ),
        ("[[limit]]\nqueue = \"q\"\nmax_runing = 1\n", "max_runing"),
    ] {
        let e = refused(text);
        assert!(e.contains(key), "{key} not named in: {e}");
    }
}
