//! The dashboard's session on every backend (`session_suite!`, called from
//! `api_sqlite.rs`, `api_postgres.rs` and `api_redis_postgres.rs`), over plain HTTP:
//! logging in sets a strict cookie the API accepts, a change made with the cookie must
//! come from this origin, a revoked token's cookie stops working, and the queue counts
//! are read once per `api.counts_max_age` for every caller. (The pages themselves are
//! tested in a browser in `dashboard.rs`.)

use std::time::Duration;

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::job::NewJob;
use jobmesh::store::tokens::Scope;
use jobmesh::store::{AuditContext, SharedStore};
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use super::{Harness, send};

/// Expands to one test per session case, each on a fresh store from `$make`.
#[macro_export]
macro_rules! session_suite {
    ($make:path) => {
        $crate::session_suite!(@cases $make;
            session_cookie_logs_in_and_changes_need_this_origin,
            queue_counts_are_shared_for_counts_max_age);
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::session::$case($make().await).await;
            }
        )*
    };
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// `POST /login` with `token` and `headers`: status and `Set-Cookie`.
async fn log_in(h: &Harness, token: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut req = no_redirects()
        .post(format!("{}/login", h.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), cookie)
}

/// A request with the session cookie of `token` and `headers`.
async fn with_cookie(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = h
        .http
        .request(method, format!("{}{path}", h.base))
        .header("cookie", format!("jobmesh_session={token}"))
        .header("content-type", "application/json")
        .body("{}");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

/// Logging in: a live token that may read gets an HttpOnly, SameSite=Strict cookie
/// (Secure when the browser's origin is https); a wrong token, a token that may not
/// read, or a form posted from another site gets none. With the cookie the API reads;
/// it changes things only for requests from this origin (Sec-Fetch-Site or Origin),
/// while bearer tokens need neither. A revoked token's cookie is refused at once.
pub async fn session_cookie_logs_in_and_changes_need_this_origin(store: SharedStore) {
    let h = Harness::start(store, false, |_| {}).await;
    let (op_id, op) = h.token(&[Scope::Operate], &[]).await;
    let (_, enqueue_only) = h.token(&[Scope::Enqueue], &[]).await;
    let same = [("sec-fetch-site", "same-origin")];

    let (status, cookie) = log_in(&h, &op, &same).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    assert_eq!(
        cookie,
        format!("jobmesh_session={op}; Path=/; HttpOnly; SameSite=Strict")
    );
    let origin = h.base.clone();
    let (_, cookie) = log_in(&h, &op, &[("origin", &origin.replace("http:", "https:"))]).await;
    assert!(
        cookie.is_some_and(|c| c.ends_with("; Secure")),
        "a page served over TLS gets a Secure cookie"
    );
    for (token, headers, expected) in [
        ("jmt_1_00", &same[..], 401),
        (enqueue_only.as_str(), &same[..], 403),
        (op.as_str(), &[("sec-fetch-site", "cross-site")][..], 403),
        (op.as_str(), &[("origin", "http://evil.example")][..], 403),
    ] {
        let (status, cookie) = log_in(&h, token, headers).await;
        assert_eq!((status, cookie), (expected, None), "{headers:?}");
    }

    let (status, me) = with_cookie(&h, reqwest::Method::GET, "/api/v1/me", &op, &[]).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (
            me["credential"].clone(),
            me["may"]["operate"].clone(),
            me["may"]["admin"].clone()
        ),
        (json!("session"), json!(true), json!(false)),
        "{me}"
    );
    let (_, me) = h.get("/api/v1/me", &op).await;
    assert_eq!(me["credential"], "bearer");

    let pause = "/api/v1/queues/mail/pause";
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "http://evil.example")][..],
        &[("origin", "null")][..],
        &[][..],
    ] {
        let (status, body) = with_cookie(&h, reqwest::Method::POST, pause, &op, headers).await;
        assert_eq!(
            (status, body["type"].as_str()),
            (403, Some("urn:jobmesh:problem:forbidden")),
            "{headers:?}: {body}"
        );
    }
    assert!(
        h.store.paused_queues().await.unwrap().is_empty(),
        "nothing changed"
    );
    let host = origin.trim_start_matches("http://").to_string();
    let (status, body) = with_cookie(
        &h,
        reqwest::Method::POST,
        pause,
        &op,
        &[("origin", &origin), ("host", &host)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = with_cookie(
        &h,
        reqwest::Method::POST,
        "/api/v1/queues/mail/resume",
        &op,
        &same,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h.post("/api/v1/queues/mail/pause", &op, &json!({})).await;
    assert_eq!(status, 200, "a bearer token needs no origin");

    h.store
        .revoke_token(&AuditContext::system(), op_id, SystemClock.now())
        .await
        .unwrap();
    let (status, _) = with_cookie(&h, reqwest::Method::GET, "/api/v1/queues", &op, &[]).await;
    assert_eq!(status, 401, "a revoked token's cookie is refused");
    let resp = no_redirects()
        .get(format!("{}/", h.base))
        .header("cookie", format!("jobmesh_session={op}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["location"].to_str().unwrap()
        ),
        (303, "/login"),
        "the dashboard sends a revoked session to the log-in page"
    );
    let resp = no_redirects()
        .post(format!("{}/logout", h.base))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    h.stop().await;
}

/// With `api.counts_max_age`, one read of the counts serves every request until it is
/// that old: a job stored meanwhile shows only after it, while a pause shows at once.
pub async fn queue_counts_are_shared_for_counts_max_age(store: SharedStore) {
    let h = Harness::start(store, false, |api| {
        api.counts_max_age = Duration::from_secs(60);
    })
    .await;
    let (_, op) = h.token(&[Scope::Operate], &[]).await;
    let add = |n: usize| {
        let store = h.store.clone();
        async move {
            let jobs = (0..n)
                .map(|_| NewJob {
                    queue: "mail".into(),
                    ..NewJob::new("noop", json!({}))
                })
                .collect();
            store.enqueue(jobs, SystemClock.now()).await.unwrap();
        }
    };
    add(2).await;
    let (_, first) = h.get("/api/v1/queues", &op).await;
    assert_eq!(first["queues"][0]["counts"]["available"], 2, "{first}");
    add(3).await;
    h.post("/api/v1/queues/mail/pause", &op, &json!({})).await;
    let (_, second) = h.get("/api/v1/queues", &op).await;
    assert_eq!(
        (
            second["queues"][0]["counts"]["available"].clone(),
            second["counts_at"].clone(),
            second["queues"][0]["paused"].clone()
        ),
        (json!(2), first["counts_at"].clone(), json!(true)),
        "the cached counts, the current pause: {second}"
    );
    h.stop().await;
}
