//! The dashboard's Mesh page in headless Chromium on a real 5-node mesh (f = 1): five
//! `jobmesh node` processes on loopback, the first serving the API and dashboard. The
//! page shows the five members alive; after `kill -9` of one, the page, without a
//! reload, shows it suspected and then evicted with the signers of its certificate
//! (at least 2f + 1 = 3).

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
    b.exec("window.__reloaded = false", json!([])).await;
    // Record every state the page shows the victim in, however briefly.
    let victim = ids[N - 1].clone();
    b.exec(
        "const peer = arguments[0]; window.__seen = [];
         const look = () => {
           for (const el of document.querySelectorAll('[data-peer]'))
             if (el.dataset.peer === peer && !window.__seen.includes(el.dataset.state)) window.__seen.push(el.dataset.state);
           for (const li of document.querySelectorAll('.timeline li'))
             if (li.textContent.includes(peer) && li.textContent.includes('suspected') && !window.__seen.includes('suspected-event')) window.__seen.push('suspected-event');
         };
         new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
         look();",
        json!([victim]),
    )
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
                let e = b.find_all(&row).await.into_iter().next()?;
                let n = b
                    .exec(
                        "return arguments[0].lastElementChild.querySelectorAll('div').length",
                        json!([{"element-6066-11e4-a52e-4f735466cecf": e}]),
                    )
                    .await
                    .as_u64()?;
                (n >= 3).then_some(n)
            },
        )
        .await;
    assert!(signers >= 3, "2f + 1 signers, got {signers}");
    let seen = b.exec("return window.__seen", json!([])).await;
    let seen: Vec<String> = serde_json::from_value(seen).unwrap();
    assert!(
        seen.iter().any(|s| s.starts_with("suspected")),
        "the page never showed the victim suspected: {seen:?}"
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
    b.quit().await;
    drop(nodes);
}
