//! `GET /api/v1/mesh` and `GET /api/v1/nodes` of a real mesh node: two `jobmesh node`
//! processes on loopback join one mesh (each with its own key, both on one SQLite
//! file), the first with `--api`; its API shows both members as `jobmesh mesh peers`
//! does, and both nodes as up. `jobmesh api` (no mesh) answers the mesh route 404.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::nodes::{Proc, free_port, ok, spawn};
use serde_json::Value;

/// Bounds a failure only: a two-node mesh forms within a few seconds.
const WAIT: Duration = Duration::from_secs(60);

/// `GET path` with a bearer token over a plain HTTP/1.1 connection: status and JSON
/// body, or None while nothing answers.
fn get(addr: SocketAddr, path: &str, token: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Polls `GET path` until `done` accepts the answer; fails with the last answer and the
/// node's log at the deadline or if the node exits.
fn poll(
    node: &mut Proc,
    addr: SocketAddr,
    path: &str,
    token: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        if let Some((status, body)) = get(addr, path, token) {
            if done(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        if let Some(status) = node.child.try_wait().unwrap() {
            panic!("the node exited ({status}): {}", node.log());
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: last answer {last:?}\nlog:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_mesh_node_serves_its_view_of_the_mesh_and_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let configs: Vec<PathBuf> = (1..=2).map(|i| root.join(format!("n{i}.toml"))).collect();
    for (i, c) in configs.iter().enumerate() {
        std::fs::write(
            c,
            format!(
                "[node]\nname = \"n{n}\"\ndata_dir = \"{d}\"\n[store]\nsqlite_path = \"{db}\"\n[workers]\nconcurrency = 1\n",
                n = i + 1,
                d = root.join(format!("n{}", i + 1)).display(),
                db = root.join("shared.db").display()
            ),
        )
        .unwrap();
    }
    let ids: Vec<String> = configs.iter().map(|c| ok(c, &["mesh", "id"])).collect();
    for c in &configs {
        let mut f = std::fs::OpenOptions::new().append(true).open(c).unwrap();
        writeln!(
            f,
            "[mesh]\nf = 0\nmembers = [\"{}\", \"{}\"]",
            ids[0], ids[1]
        )
        .unwrap();
    }
    let token = ok(
        &configs[0],
        &["token", "create", "--scope", "read", "--name", "mesh-view"],
    );
    assert!(token.starts_with("jmt_"), "{token}");

    let (p1, p2) = (free_port(), free_port());
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut n1 = spawn(
        &configs[0],
        &[
            "node",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{p1}"),
            "--api",
            &api.to_string(),
        ],
        root.join("n1.log"),
    );
    let _n2 = spawn(
        &configs[1],
        &[
            "node",
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{p2}"),
            "--join",
            &format!("/ip4/127.0.0.1/tcp/{p1}/p2p/{}", ids[0]),
        ],
        root.join("n2.log"),
    );

    // The first node's view: itself as `self`, the second as alive once heard.
    let member = |view: &Value, id: &str| {
        view["members"]
            .as_array()
            .and_then(|m| m.iter().find(|p| p["peer"] == id).cloned())
    };
    let view = poll(&mut n1, api, "/api/v1/mesh", &token, |status, body| {
        status == 200
            && member(body, &ids[1]).is_some_and(|p| p["state"] == "alive" && p["heard"] == true)
    });
    assert_eq!(view["me"], ids[0].as_str(), "{view}");
    let me = member(&view, &ids[0]).expect("itself is a member");
    assert_eq!(me["state"], "self", "{view}");
    let peer = member(&view, &ids[1]).unwrap();
    for field in ["incarnation", "down_votes"] {
        assert!(peer[field].is_u64(), "{field}: {view}");
    }
    assert!(peer.get("phi").is_some(), "{view}");
    assert_eq!(peer["down_votes"], 0, "{view}");
    assert_eq!(peer["evicted_by"], Value::Array(vec![]), "{view}");
    assert_eq!(view["quorum"], true, "{view}");
    assert!(view["at"].as_i64().unwrap() > 0, "{view}");

    // The nodes view, from the shared record: both nodes up, with their workers.
    let nodes = poll(&mut n1, api, "/api/v1/nodes", &token, |status, body| {
        status == 200
            && ids.iter().all(|id| {
                body["nodes"].as_array().is_some_and(|ns| {
                    ns.iter().any(|n| {
                        n["id"] == id.as_str()
                            && n["state"] == "up"
                            && n["workers"].as_array().is_some_and(|w| w.len() == 1)
                    })
                })
            })
    });
    assert_eq!(
        nodes["heartbeats"], "none",
        "SQLite keeps no heartbeats: {nodes}"
    );

    // `jobmesh api` beside them runs no mesh node: 404 naming why.
    let api2: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut alone = spawn(
        &configs[0],
        &["api", "--listen", &api2.to_string()],
        root.join("api.log"),
    );
    let body = poll(&mut alone, api2, "/api/v1/mesh", &token, |status, _| {
        status == 404
    });
    assert_eq!(body["type"], "urn:jobmesh:problem:not-found", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("no mesh node"),
        "{body}"
    );
}
