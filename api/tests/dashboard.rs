//! The dashboard in a real browser: Debian's headless `chromium` driven through
//! `chromedriver` (WebDriver) against a real node with its API on SQLite.
//!
//! One browser session walks through every step (starting browsers is the slow part):
//! log-in, a job enqueued through the API appearing and finishing on the Jobs page
//! without a reload, values from jobs rendered as text (XSS probes in kind, queue,
//! payload and error), pausing a queue with its button (checked in the store and the
//! audit log), cancelling selected jobs, the security headers, a cross-site forged
//! action refused, the cluster-wide views (`dashboard_steps/insights.rs`), log-out,
//! and a read-only token that sees no action buttons and gets
//! 403 when it calls one anyway. Screenshots of each page land in
//! `target/dashboard-screenshots/`.

mod browser;
#[allow(unused_imports)]
mod common;
#[path = "dashboard_steps/insights.rs"]
mod insights;
#[path = "dashboard_steps/nodes.rs"]
mod nodes;

use std::path::PathBuf;

use browser::Browser;
use common::Harness;
use jobmesh::clock::{Clock, Millis, SystemClock};
use jobmesh::job::{JobId, JobState, NewJob};
use jobmesh::store::tokens::Scope;
use serde_json::json;

/// Markup that would run script if any of it reached the page as HTML.
const PROBE: &str = "<script>window.__xss='script'</script><img src=x onerror=\"window.__xss='img';alert('img')\"><a id=jsl href=\"javascript:alert('href')\">link</a>";

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Browser, name: &str) {
    let png = b.screenshot().await;
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn log_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/login")).await;
    let field = b.find("#token").await;
    b.type_into(&field, token).await;
    b.click_css("#login").await;
}

/// Nothing the probes carry ran or became an element.
async fn assert_inert(b: &Browser, page: &str) {
    assert_eq!(b.alert_text().await, None, "{page}: a dialog opened");
    let v = b
        .exec(
            "return [typeof window.__xss, document.querySelectorAll('img[src=\"x\"], #jsl, main script').length]",
            json!([]),
        )
        .await;
    assert_eq!(
        v,
        json!(["undefined", 0]),
        "{page}: injected markup came alive"
    );
}

async fn text_of(b: &Browser, css: &str) -> String {
    let e = b.find(css).await;
    b.text(&e).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    browser::require_browser();
    let dir = tempfile::tempdir().unwrap();
    let store = jobmesh::store::sqlite::SqliteStore::open(&dir.path().join("dash.db"))
        .await
        .unwrap();
    let h = Harness::start(std::sync::Arc::new(store), true, |_| {}).await;
    // Jobs of twenty minutes ago, before any page opens (checked on the Overview in
    // `insights::cluster_views`).
    insights::run_in_the_past(&h.store).await;
    let base = h.base.clone();
    let (_, operator) = h.token(&[Scope::Operate, Scope::Enqueue], &[]).await;
    let (_, reader) = h.token(&[Scope::Read], &[]).await;
    let (_, admin) = h.token(&[Scope::Admin], &[]).await;
    let b = Browser::start().await;

    // Without a session, the dashboard sends the browser to the log-in page; a wrong
    // token is refused there.
    b.goto(&format!("{base}/")).await;
    assert!(b.url().await.ends_with("/login"), "{}", b.url().await);
    log_in(&b, &base, "jmt_1_00").await;
    assert!(text_of(&b, ".notice").await.contains("not valid"));
    shot(&b, "login").await;

    // Logging in keeps the token in an HttpOnly, SameSite=Strict cookie.
    log_in(&b, &base, &operator).await;
    b.wait("the operator's name in the header", || async {
        let who = b.text(&b.find("#who").await).await;
        who.contains("operate").then_some(())
    })
    .await;
    let cookie = b
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "jobmesh_session")
        .expect("the session cookie");
    assert_eq!(
        (cookie["httpOnly"].clone(), cookie["sameSite"].clone()),
        (json!(true), json!("Strict")),
        "{cookie}"
    );
    assert_eq!(
        b.exec("return document.cookie", json!([])).await,
        json!(""),
        "scripts cannot read the session"
    );

    // A job enqueued through the API appears on the Jobs page and finishes there, with
    // no reload (the marker set on the page survives).
    b.goto(&format!("{base}/#/jobs")).await;
    b.find("#job-table").await;
    b.exec("window.__mark = 'same page'", json!([])).await;
    let (status, body) = h
        .post(
            "/api/v1/jobs",
            &operator,
            &json!({"kind": "sleep", "payload": {"ms": 300}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let row = format!("tr[data-id=\"{id}\"]");
    b.find(&row).await;
    b.wait("the job to show as succeeded", || async {
        let text = b.text(&b.find(&row).await).await;
        text.contains("succeeded").then_some(())
    })
    .await;
    assert_eq!(
        b.exec("return window.__mark", json!([])).await,
        json!("same page"),
        "the page was reloaded"
    );
    shot(&b, "jobs").await;

    // XSS probes: a payload and an error through the API, and a kind and a queue no
    // API would accept, written into the store directly (as an old row or a hand-written
    // SQL insert could be). All of it shows as the literal text.
    let (status, body) = h
        .post(
            "/api/v1/jobs",
            &operator,
            &json!({"kind": "fail", "payload": {"message": PROBE, "retryable": false}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let dead = body["id"].as_i64().unwrap();
    h.wait_state(dead, JobState::Discarded).await;
    let hostile = h
        .store
        .enqueue(
            vec![NewJob {
                queue: "<script>alert('queue')</script>".into(),
                ..NewJob::new(
                    "<img src=x onerror=alert('kind')>",
                    json!({"note": PROBE, "href": "javascript:alert('payload')"}),
                )
            }],
            SystemClock.now(),
        )
        .await
        .expect("the store keeps any queue and kind")[0]
        .id()
        .0;
    b.goto(&format!("{base}/#/jobs/{dead}")).await;
    let error = text_of(&b, ".last-error").await;
    assert!(error.contains(PROBE), "the error as text: {error}");
    let payload = text_of(&b, "#payload pre").await;
    assert!(
        payload.contains("onerror=\\\"window.__xss"),
        "the payload as text: {payload}"
    );
    assert_inert(&b, "job detail (payload, error)").await;
    shot(&b, "job-detail").await;

    // Redrive it from its page: the store runs it again (it fails again, for good) and
    // the audit log names the operator.
    b.click_css("#job-redrive").await;
    b.click_css("#confirm-yes").await;
    b.wait("the redrive in the audit log", || async {
        let (_, audit) = h.get("/api/v1/audit?action=redrive", &admin).await;
        let row = &audit["rows"][0];
        (row["target"]["dead_letters"]["ids"] == json!([dead])
            && row["actor"].to_string().contains("test-operate"))
        .then_some(())
    })
    .await;
    b.wait("the redriven job to run and die again", || async {
        let (_, job) = h.get(&format!("/api/v1/jobs/{dead}"), &operator).await;
        let kinds: Vec<&str> = job["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        (kinds.contains(&"job.redriven")
            && kinds.iter().filter(|k| **k == "job.discarded").count() == 2
            && job["state"] == "discarded")
            .then_some(())
    })
    .await;

    b.goto(&format!("{base}/#/jobs/{hostile}")).await;
    b.wait("the hostile kind as text", || async {
        let t = b.page_text().await;
        (t.contains("<img src=x onerror=alert('kind')>")
            && t.contains("<script>alert('queue')</script>"))
        .then_some(())
    })
    .await;
    assert_inert(&b, "job detail (kind, queue)").await;
    for (page, marker) in [
        ("#/jobs", "<script>alert('queue')</script>"),
        ("#/queues", "<script>alert('queue')</script>"),
        ("#/dlq", "onerror=\"window.__xss"),
    ] {
        b.goto(&format!("{base}/{page}")).await;
        b.wait(&format!("the probe as text on {page}"), || async {
            b.page_text().await.contains(marker).then_some(())
        })
        .await;
        assert_inert(&b, page).await;
    }
    shot(&b, "dead-letters").await;

    // Pause the default queue with its button: the store and the audit log agree.
    b.goto(&format!("{base}/#/queues")).await;
    b.click_css("button.pause[data-queue=\"default\"]").await;
    b.find("button.resume[data-queue=\"default\"]").await;
    let paused = h.store.paused_queues().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].queue, "default");
    let (_, audit) = h.get("/api/v1/audit?action=pause", &admin).await;
    assert_eq!(
        audit["rows"][0]["target"],
        json!({"queue": "default"}),
        "{audit}"
    );
    assert!(
        audit["rows"][0]["actor"]
            .to_string()
            .contains("test-operate"),
        "{audit}"
    );
    shot(&b, "queues").await;
    b.click_css("button.resume[data-queue=\"default\"]").await;
    b.find("button.pause[data-queue=\"default\"]").await;
    assert!(h.store.paused_queues().await.unwrap().is_empty());

    // Cancel selected jobs: three scheduled ones, picked with the page's checkbox.
    let later = Millis(SystemClock.now().0 + 3_600_000);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = h
            .post(
                "/api/v1/jobs",
                &operator,
                &json!({"kind": "noop", "payload": {}, "queue": "later", "run_at": later.0}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_i64().unwrap());
    }
    b.goto(&format!("{base}/#/jobs?queue=later")).await;
    b.find(&format!("tr[data-id=\"{}\"]", ids[2])).await;
    b.click_css("#job-table thead input[type=checkbox]").await;
    b.wait("3 selected", || async {
        (b.text(&b.find("#selected-count").await).await == "3 selected").then_some(())
    })
    .await;
    b.click_css("button.bulk-cancel").await;
    let question = text_of(&b, "#confirm p").await;
    assert!(question.contains("3 selected jobs"), "{question}");
    b.click_css("#confirm-yes").await;
    b.wait("the bulk result", || async {
        let t = b.text(&b.find("#bulk-result").await).await;
        t.contains("3 changed").then_some(())
    })
    .await;
    for id in &ids {
        let job = h.store.get_job(JobId(*id)).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Cancelled, "job {id}");
    }
    let (_, audit) = h.get("/api/v1/audit?action=cancel", &admin).await;
    assert!(
        audit["rows"][0]["actor"]
            .to_string()
            .contains("test-operate"),
        "the bulk cancel is audited: {audit}"
    );

    // Every response carries the security headers.
    let session = format!("jobmesh_session={operator}");
    for path in ["/", "/login", "/assets/app.js", "/api/v1/queues"] {
        let resp = h
            .http
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        let headers = resp.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }

    // A cross-site request carrying the cookie acts on nothing.
    for (origin, site) in [
        (Some("http://evil.example"), Some("cross-site")),
        (None, None),
    ] {
        let mut req = h
            .http
            .post(format!("{base}/api/v1/queues/default/pause"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("x=1");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "origin {origin:?}");
    }
    assert!(h.store.paused_queues().await.unwrap().is_empty());

    // The other pages render (screenshots for the record).
    for (page, name, css) in [
        ("#/", "overview", "#overview-cards .card"),
        ("#/nodes", "nodes", ".panel"),
        ("#/events", "events", "#event-table"),
        ("#/mesh", "mesh", "main p"),
    ] {
        b.goto(&format!("{base}/{page}")).await;
        b.find(css).await;
        shot(&b, name).await;
    }

    // The cluster-wide views: latency from the store, the workflow graph, dead letters
    // by reason, the count an action by filter touches.
    insights::cluster_views(&b, &h, &admin).await;
    nodes::presence_views(&b, &h, &admin).await;

    // The admin pages, live: an action taken through the API while the audit log is
    // open appears in it without a reload; the token list names every token.
    log_in(&b, &base, &admin).await;
    b.wait("the admin's name in the header", || async {
        let who = b.text(&b.find("#who").await).await;
        who.contains("admin").then_some(())
    })
    .await;
    b.goto(&format!("{base}/#/audit")).await;
    b.wait("the audit log's rows", || async {
        b.page_text().await.contains("pause").then_some(())
    })
    .await;
    let (status, body) = h
        .post("/api/v1/queues/audited-live/pause", &admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    b.wait("the new audit row without a reload", || async {
        b.page_text().await.contains("audited-live").then_some(())
    })
    .await;
    shot(&b, "audit").await;
    let (status, body) = h
        .post("/api/v1/queues/audited-live/resume", &admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    b.goto(&format!("{base}/#/tokens")).await;
    b.wait("the token list", || async {
        let t = b.page_text().await;
        (t.contains("Revoke") && t.contains("admin")).then_some(())
    })
    .await;
    shot(&b, "tokens").await;

    // Dark mode follows the system: the page's background turns dark.
    b.prefer_dark().await;
    b.goto(&format!("{base}/#/")).await;
    b.find("#overview-cards .card").await;
    let luminance = b
        .exec(
            "const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number); \
             return (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;",
            json!([]),
        )
        .await
        .as_f64()
        .expect("the body's background colour");
    assert!(
        luminance < 0.3,
        "dark mode: background luminance {luminance}"
    );
    shot(&b, "overview-dark").await;

    // Log out: the cookie is gone and the dashboard asks for a token again.
    b.click_css("#logout").await;
    b.wait("the log-in page", || async {
        b.url().await.ends_with("/login").then_some(())
    })
    .await;
    assert!(
        b.cookies()
            .await
            .iter()
            .all(|c| c["name"] != "jobmesh_session"),
        "the cookie outlived log-out"
    );
    b.goto(&format!("{base}/")).await;
    assert!(b.url().await.ends_with("/login"));

    // A read-only token sees the pages without action buttons, and the server refuses
    // the action when the page calls it anyway.
    log_in(&b, &base, &reader).await;
    // The log-in answers with a redirect to `/`: wait for it to land, or it would land
    // after (and over) the next page asked for.
    b.wait("the reader's name in the header", || async {
        let who = b.text(&b.find("#who").await).await;
        who.contains("read").then_some(())
    })
    .await;
    b.goto(&format!("{base}/#/queues")).await;
    b.find("tr[data-queue=\"default\"]").await;
    assert!(b.find_all("button.pause, button.resume").await.is_empty());
    b.goto(&format!("{base}/#/jobs?order=asc")).await;
    b.find(&row).await;
    assert!(
        b.find_all("#bulk-actions button, #job-table input[type=checkbox]")
            .await
            .is_empty()
    );
    b.goto(&format!("{base}/#/jobs/{dead}")).await;
    b.find(".last-error").await;
    assert!(
        b.find_all("#job-redrive, #job-delete, #job-cancel")
            .await
            .is_empty()
    );
    shot(&b, "read-only-job").await;
    let status = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/queues/default/pause', {method: 'POST', headers: {'content-type': 'application/json'}, body: '{}'})
               .then(r => done(r.status), e => done(String(e)));",
            json!([]),
        )
        .await;
    assert_eq!(
        status,
        json!(403),
        "the server refuses a read-only token's action"
    );
    assert!(h.store.paused_queues().await.unwrap().is_empty());

    // The same pages at a phone's width: nothing wider than the screen, and the menu
    // button opens the navigation.
    b.resize(390, 844).await;
    b.goto(&format!("{base}/#/jobs?order=asc")).await;
    b.find(&row).await;
    shot(&b, "jobs-phone").await;
    for page in [
        "#/",
        "#/queues",
        "#/jobs?order=asc",
        "#/dlq",
        "#/nodes",
        "#/events",
    ] {
        b.goto(&format!("{base}/{page}")).await;
        b.find("main h1").await;
        let (page_width, screen) = b
            .wait("the page laid out", || async {
                let v = b
                    .exec(
                        "return [document.documentElement.scrollWidth, window.innerWidth];",
                        json!([]),
                    )
                    .await;
                Some((v[0].as_i64()?, v[1].as_i64()?))
            })
            .await;
        assert!(
            page_width <= screen,
            "{page} is {page_width} px wide on a {screen} px screen"
        );
    }
    let nav_shown = "return getComputedStyle(document.getElementById('nav')).display !== 'none';";
    assert_eq!(
        b.exec(nav_shown, json!([])).await,
        json!(false),
        "the navigation folds on a phone"
    );
    b.click_css("#menu").await;
    assert_eq!(
        b.exec(nav_shown, json!([])).await,
        json!(true),
        "the menu button opens it"
    );
    shot(&b, "menu-phone").await;

    b.quit().await;
    h.stop().await;
}
