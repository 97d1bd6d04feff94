//! A small W3C WebDriver client over reqwest, for the dashboard's browser tests: the
//! dozen commands they use, against Debian's `chromedriver` driving headless `chromium`.
//!
//! Written here rather than taken from a WebDriver crate: those bring a second HTTP
//! and TLS stack to build on every CI run for what is a few JSON requests.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Where Debian's packages put the driver and the browser.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browser binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Panics, naming the packages to install, when the driver or the browser is missing.
pub fn require_browser() {
    for path in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: the dashboard's browser tests need Debian's `chromium` and \
             `chromium-driver` packages (`apt-get install -y chromium chromium-driver`; .ci/run installs them)"
        );
    }
}

/// A chromedriver process and one headless browser session, ended on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    /// How long `wait` polls before failing.
    pub patience: Duration,
}

/// A WebDriver error (the driver's `value.error` and `value.message`).
#[derive(Debug)]
pub struct WdError {
    /// The W3C error code (`no such element`, `no such alert`, ...).
    pub error: String,
    /// The driver's message.
    pub message: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless chromium at 1280x900.
    pub async fn start() -> Browser {
        require_browser();
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--disable-extensions", "--no-first-run"]
            }
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            patience: Duration::from_secs(20),
        };
        let v = b
            .call("POST", "/session", Some(caps))
            .await
            .expect("new session");
        b.session = v["sessionId"].as_str().expect("session id").to_string();
        b
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let resp = req.send().await.map_err(|e| WdError {
            error: "transport".into(),
            message: e.to_string(),
        })?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(WdError {
                error: v["value"]["error"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
                message: v["value"]["message"].as_str().unwrap_or(&text).to_string(),
            })
        }
    }

    async fn session_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})))
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e:?}"));
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .await
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The elements matching `css` now (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .session_call(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e:?}"));
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for an element matching `css` and returns it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no element `{css}` appeared; the page says: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks an element.
    pub async fn click(&self, element: &str) {
        self.session_call("POST", &format!("/element/{element}/click"), None)
            .await
            .unwrap_or_else(|e| panic!("click: {e:?}"));
    }

    /// Waits for `css` and clicks it.
    pub async fn click_css(&self, css: &str) {
        let e = self.find(css).await;
        self.click(&e).await;
    }

    /// Types `text` into an element.
    pub async fn type_into(&self, element: &str, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await
        .unwrap_or_else(|e| panic!("typing: {e:?}"));
    }

    /// An element's rendered text.
    pub async fn text(&self, element: &str) -> String {
        self.session_call("GET", &format!("/element/{element}/text"), None)
            .await
            .map(|v| v.as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// The whole page's rendered text.
    pub async fn page_text(&self) -> String {
        self.exec(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Runs `script` (a function body) with `args` in the page.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
        .unwrap_or_else(|e| panic!("script failed: {e:?}"))
    }

    /// Runs an asynchronous `script`: it calls `arguments[arguments.length - 1]` with its result.
    pub async fn exec_async(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
        .unwrap_or_else(|e| panic!("script failed: {e:?}"))
    }

    /// The text of an open alert, confirm or prompt, if any.
    pub async fn alert_text(&self) -> Option<String> {
        match self.session_call("GET", "/alert/text", None).await {
            Ok(v) => Some(v.as_str().unwrap_or("").to_string()),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => panic!("reading the alert: {e:?}"),
        }
    }

    /// The browser's cookies for the current page, HttpOnly ones included.
    pub async fn cookies(&self) -> Vec<Value> {
        self.session_call("GET", "/cookie", None)
            .await
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .unwrap_or_else(|e| panic!("resize: {e:?}"));
    }

    /// Makes pages see `prefers-color-scheme: dark` (Chromium's DevTools command through
    /// chromedriver's extension route), as a system in dark mode does.
    pub async fn prefer_dark(&self) {
        self.session_call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": "dark"}]
            }})),
        )
        .await
        .unwrap_or_else(|e| panic!("dark mode: {e:?}"));
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self
            .session_call("GET", "/screenshot", None)
            .await
            .expect("screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .expect("a base64 PNG")
    }

    /// Polls `probe` until it returns `Some`, failing with `what` after `patience`.
    pub async fn wait<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; the page says: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = self
            .call("DELETE", &format!("/session/{}", self.session), None)
            .await;
        self.session.clear();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still stops its driver (and with it the browser).
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
