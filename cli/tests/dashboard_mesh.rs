//! The dashboard's Mesh page in headless Chromium on a real 5-node mesh (f = 1): five
//! `jobmesh node` processes on loopback, the first serving the API and dashboard. The
//! page draws the five members alive with an arrow from each observer to each member
//! it observes; after `kill -9` of one (running a long `sleep` job), the page, without a
//! reload, shows that member itself suspected (its phi and incarnation on hover), then
//! evicted with the signers of its certificate (at least 2f + 1 = 3) and the job its
//! eviction re-queued.

#[path = "../../api/tests/browser/mod.rs"]
mod browser;
mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use browser::Browser;
use common::nodes::{free_port, ok, spawn};
use serde_json::json;

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_page_follows_a_kill_to_its_eviction() {
    browser::require_browser();
    const N: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let configs: Vec<PathBuf> = (1..=N).map(|i| root.join(format!("n{i}.toml"))).collect();
    for (i, c) in configs.iter().enumerate() {
        // The victim (the last node) alone works the queue `victim`: the job there runs
        // on it, and after its eviction nobody takes the job again.
        let queues = if i == N - 1 {
            "queues = [\"victim\"]\n"
        } else {
            ""
        };
        std::fs::write(
            c,
            format!(
                "[node]\nname = \"n{n}\"\ndata_dir = \"{d}\"\n[store]\nsqlite_path = \"{db}\"\n[workers]\nconcurrency = 1\n{queues}",
                n = i + 1,
                d = root.join(format!("n{}", i + 1)).display(),
                db = root.join("shared.db").display()
            ),
        )
        .unwrap();
    }
    let ids: Vec<String> = configs.iter().map(|c| ok(c, &["mesh", "id"])).collect();
    let members = ids
        .iter()
        .map(|id| format!("\"{id}\""))
        .collect::<Vec<_>>()
        .join(", ");
    for c in &configs {
        let mut f = std::fs::OpenOptions::new().append(true).open(c).unwrap();
        writeln!(f, "[mesh]\nf = 1\nmembers = [{members}]").unwrap();
    }
    let token = ok(
        &configs[0],
        &["token", "create", "--scope", "read", "--name", "mesh-page"],
    );
    let ports: Vec<u16> = (0..N).map(|_| free_port()).collect();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let first = format!("/ip4/127.0.0.1/tcp/{}", ports[0]);
    let mut nodes = vec![spawn(
        &configs[0],
        &["node", "--listen", &first, "--api", &api.to_string()],
        root.join("n1.log"),
    )];
    for i in 1..N {
        nodes.push(spawn(
            &configs[i],
            &[
                "node",
                "--listen",
                &format!("/ip4/127.0.0.1/tcp/{}", ports[i]),
                "--join",
                &format!("{first}/p2p/{}", ids[0]),
            ],
            root.join(format!("n{}.log", i + 1)),
        ));
    }

    let mut b = Browser::start().await;
    // A mesh of five forms and evicts within seconds; this bounds a failure only.
    b.patience = Duration::from_secs(60);
    let base = format!("http://{api}");
    b.wait("the dashboard to answer", || async {
        reqwest::get(format!("{base}/login"))
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    b.goto(&format!("{base}/login")).await;
    let field = b.find("#token").await;
    b.type_into(&field, &token).await;
    b.click_css("#login").await;
    b.find("#who").await;
    b.goto(&format!("{base}/#/mesh")).await;

    // Every member alive in the picture.
    let alive = "g.member[data-state=\"alive\"]";
    b.wait("four members alive around the serving node", || async {
        (b.find_all(alive).await.len() == N - 1).then_some(())
    })
    .await;
    std::fs::write(
        screenshot_dir().join("mesh-alive.png"),
        b.screenshot().await,
    )
    .unwrap();
    // Who observes whom: with all-to-all monitoring every member observes every other,
    // so there is an arrow between two members neither of which serves the page.
    let edge = format!(
        "path.edge.observes[data-from=\"{}\"][data-to=\"{}\"]",
        ids[1], ids[2]
    );
    b.wait("an arrow between two other members", || async {
        (!b.find_all(&edge).await.is_empty()).then_some(())
    })
    .await;
    b.exec("window.__reloaded = false", json!([])).await;
    // Record every state the victim's own circle and row show, however briefly, and its
    // hover text while it is suspected.
    let victim = ids[N - 1].clone();
    b.exec(
        "const peer = arguments[0]; window.__seen = []; window.__suspectTitle = null;
         const look = () => {
           for (const el of document.querySelectorAll('g.member[data-peer], tr[data-peer]')) {
             if (el.dataset.peer !== peer) continue;
             const what = `${el.tagName.toLowerCase()}:${el.dataset.state}`;
             if (!window.__seen.includes(what)) window.__seen.push(what);
             const title = el.tagName.toLowerCase() === 'g' ? el.querySelector('title') : null;
             if (title && el.dataset.state === 'suspected') window.__suspectTitle = title.textContent;
           }
         };
         new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
         look();",
        json!([victim]),
    )
    .await;

    // A long job on the victim, running before the kill.
    let submitted = ok(
        &configs[0],
        &["submit", "sleep", r#"{"ms": 600000}"#, "--queue", "victim"],
    );
    let job = submitted
        .strip_prefix("job ")
        .and_then(|s| s.strip_suffix(" submitted"))
        .unwrap_or_else(|| panic!("submit said {submitted:?}"))
        .to_string();
    b.wait("the victim to run the long job", || async {
        let shown = ok(&configs[0], &["--json", "jobs", "show", &job]);
        let v: serde_json::Value = serde_json::from_str(&shown).ok()?;
        (v["state"] == "running").then_some(())
    })
    .await;

    // kill -9 the last node.
    let mut dead = nodes.pop().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let row = format!("tr[data-peer=\"{victim}\"][data-state=\"evicted\"]");
    let signers = b
        .wait(
            "the victim evicted with its certificate's signers",
            || async {
                let n = b
                    .find_all(&format!("{row} td.signers div.mono"))
                    .await
                    .len();
                (n >= 3).then_some(n)
            },
        )
        .await;
    assert!(signers >= 3, "2f + 1 signers, got {signers}");
    let requeued = format!("{row} td.requeued a[href=\"#/jobs/{job}\"]");
    b.wait(
        "the evicted member's row to list the re-queued job",
        || async { (!b.find_all(&requeued).await.is_empty()).then_some(()) },
    )
    .await;
    let seen = b.exec("return window.__seen", json!([])).await;
    let seen: Vec<String> = serde_json::from_value(seen).unwrap();
    assert!(
        seen.iter().any(|s| s == "g:suspected") && seen.iter().any(|s| s == "tr:suspected"),
        "the page never showed the victim's circle and row suspected: {seen:?}"
    );
    let title = b.exec("return window.__suspectTitle", json!([])).await;
    let title = title.as_str().unwrap_or_default();
    assert!(
        title.contains("phi") && title.contains("incarnation") && title.contains("suspected"),
        "hover text of the suspected member: {title:?}"
    );
    assert_eq!(
        b.exec("return window.__reloaded", json!([])).await,
        json!(false),
        "the page was reloaded"
    );
    assert_eq!(b.alert_text().await, None);
    std::fs::write(
        screenshot_dir().join("mesh-evicted.png"),
        b.screenshot().await,
    )
    .unwrap();
    b.exec(
        "document.querySelector('#mesh-members').scrollIntoView()",
        json!([]),
    )
    .await;
    std::fs::write(
        screenshot_dir().join("mesh-evicted-members.png"),
        b.screenshot().await,
    )
    .unwrap();
    b.quit().await;
    drop(nodes);
}
