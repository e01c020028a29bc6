//! Acceptance tests for the operator dashboard (issue 8): the page as served (content types,
//! security headers), and the page at work in a real headless Chromium.
//!
//! The browser is Debian's `chromium`, driven over W3C WebDriver by Debian's `chromedriver` (same
//! version, same package source) through the `fantoccini` client. `.ci/run` installs both; when
//! they are missing the browser test fails and says so (it never skips). It takes a screenshot of
//! the applications view and checks its size; with `RATION_UPDATE_DASHBOARD_PNG=1` it also writes
//! it to `docs/dashboard.png` (the README's picture), which a plain test run leaves alone.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const API: &str = "https://billing.example.com";
/// How long the page may take to show something (the machine may be busy with other tests).
const WAIT: Duration = Duration::from_secs(30);
/// Chromium's flags: headless, and nothing that reaches out to the network on its own.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1366,768",
    "--force-device-scale-factor=1",
    "--lang=en-US",
];

fn tool(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// A running `chromedriver`, in its own process group so that the browsers it starts go with it.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
    /// Chromium's fresh profile directory (and the driver's log), removed at the end.
    dir: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let chromium = tool("RATION_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("RATION_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        for path in [&chromium, &chromedriver] {
            assert!(
                path.is_file(),
                "{} is missing: the browser tests need Debian's chromium and chromium-driver packages, \
                 which `.ci/run` installs (apt-get install -y chromium chromium-driver)",
                path.display()
            );
        }
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for the browser");
            let log = dir.path().join("chromedriver.log");
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let child = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                // Times on the page (and in the screenshot) in UTC, like the quota windows.
                .env("TZ", "UTC")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn chromedriver");
            let mut driver = Driver { child, url: format!("http://127.0.0.1:{port}"), log, dir };
            match driver.wait_ready() {
                Ok(()) => return driver,
                // Dropping the driver kills it; another port is tried.
                Err(e) => last_error = e,
            }
        }
        panic!("chromedriver did not start: {last_error}");
    }

    /// Polls `/status` until the driver is ready (or has exited, e.g. its port was taken).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = self.url.trim_start_matches("http://").to_owned();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}; log: {}", self.log_tail()));
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::Write as _;
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s
                    .write_all(format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                if body.contains("\"ready\":true") || body.contains("\"ready\": true") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after 20 s; log: {}", self.log_tail()))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn kill(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A browser session: a fresh profile, a 1366×768 window.
    async fn session(&self) -> Client {
        let chromium = tool("RATION_TEST_CHROMIUM", "/usr/bin/chromium");
        let profile = self.dir.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), json!({ "binary": chromium, "args": args }));
        // fantoccini is built without TLS (the driver is on loopback): a plain HTTP connector.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await.unwrap_or_else(|e| {
                panic!("cannot start Chromium through chromedriver: {e}\nlog: {}", self.log_tail())
            });
        set_viewport(&client, 1366, 768).await;
        client
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sizes the window so that the page itself (the viewport) is `width`×`height`.
async fn set_viewport(c: &Client, width: u32, height: u32) {
    c.set_window_size(width, height).await.expect("window size");
    let inner = c.execute("return [window.innerWidth, window.innerHeight];", vec![]).await.expect("viewport");
    let dim = |i: usize| inner[i].as_u64().unwrap_or(0) as u32;
    let (w, h) = (width + width.saturating_sub(dim(0)), height + height.saturating_sub(dim(1)));
    if (w, h) != (width, height) {
        c.set_window_size(w, h).await.expect("window size");
    }
}

/// With `RATION_TEST_SCREENSHOTS` set to a directory, saves a screenshot of every view there (for
/// working on the page's looks).
async fn extra_screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("RATION_TEST_SCREENSHOTS") {
        set_viewport(c, 1366, 1400).await;
        let png = c.screenshot().await.expect("screenshot");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).expect("write screenshot");
        set_viewport(c, 1366, 768).await;
    }
}

/// Waits until the element matching `css` exists and its text contains `want`.
async fn wait_text(c: &Client, css: &str, want: &str) -> Element {
    let deadline = Instant::now() + WAIT;
    let mut seen = String::from("(no such element)");
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(text) = e.text().await
        {
            if text.contains(want) {
                return e;
            }
            seen = text;
        }
        if Instant::now() > deadline {
            let status = match c.find(Locator::Css("#status")).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("waited {WAIT:?} for {css:?} to contain {want:?}; it reads {seen:?}; status line: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `script` (a JS function body) returns `true`.
async fn wait_js(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if c.execute(script, vec![]).await.ok() == Some(Value::Bool(true)) {
            return;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the dialog's confirm button once the confirmation dialog is open; returns its text.
async fn confirm(c: &Client) -> String {
    wait_js(c, "return document.getElementById('confirm').open;", "the confirmation dialog").await;
    let text = c.find(Locator::Css("#confirm")).await.expect("dialog").text().await.expect("dialog text");
    c.find(Locator::Css("#confirm-ok")).await.expect("confirm button").click().await.expect("click confirm");
    wait_js(c, "return !document.getElementById('confirm').open;", "the dialog to close").await;
    text
}

async fn token_status(s: &TestServer, id: &str, secret: &str) -> Resp {
    s.token_form(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("audience", API),
    ])
    .await
}

/// Waits, if needed, until a UTC minute has at least 20 s and the hour at least 90 s left, so that
/// the counts the test sees on the page are still those of the windows it issued tokens in.
async fn wait_for_quiet_windows() {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        if now % 60 < 40 && now % 3600 < 3510 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png")
}

#[tokio::test]
async fn dashboard_is_served_with_its_assets_and_security_headers() {
    let s = TestServer::start().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(s.url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "dashboard/");

    for (path, content_type, marker) in [
        ("/dashboard/", "text/html; charset=utf-8", "<!doctype html>"),
        ("/dashboard/index.html", "text/html; charset=utf-8", "<!doctype html>"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8", "use strict"),
        ("/dashboard/app.css", "text/css; charset=utf-8", ":root"),
        ("/dashboard/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], content_type, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(marker), "{path} does not look like itself");
        // Everything is embedded: no URL of another origin anywhere.
        assert!(!body.contains("https://") && !body.contains("//cdn"), "{path} references another origin");
    }
    let page = http.get(s.url("/dashboard/")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("style=\""), "inline code would break the CSP");

    let r = http.get(s.url("/dashboard/nope.js")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
}

/// Sign in, see an application's usage, change its quota and pause it, all through the page.
#[tokio::test]
async fn operator_signs_in_sees_usage_edits_the_quota_and_pauses_an_application() {
    let driver = Driver::start();
    let s = TestServer::start().await;
    let (admin_id, admin_secret) = s.admin_credentials();

    // An API, three applications and an organization, as an operator would have them.
    s.create_api(API, json!({ "scopes": [{ "value": "read:invoices" }] })).await;
    let (id, secret) = s.create_client("Nightly billing job", json!({})).await;
    s.create_grant(&id, API, &["read:invoices"]).await;
    let quota = json!({ "client_credentials": { "per_minute": 3, "per_hour": 10, "per_day": 100, "enforce": true } });
    s.mgmt(Method::PATCH, &format!("/clients/{id}"), Some(json!({ "token_quota": quota }))).await.expect(200);
    let (sync_id, sync_secret) = s.create_client("Inventory sync", json!({})).await;
    s.create_grant(&sync_id, API, &["read:invoices"]).await;
    let monitor = json!({ "client_credentials": { "per_hour": 50, "per_day": 1000, "enforce": false } });
    s.mgmt(Method::PATCH, &format!("/clients/{sync_id}"), Some(json!({ "token_quota": monitor }))).await.expect(200);
    s.create_client("Partner export", json!({ "grant_types": [] })).await;
    let org = json!({ "name": "acme", "display_name": "Acme Corp",
                      "token_quota": { "client_credentials": { "per_day": 500 } } });
    s.mgmt(Method::POST, "/organizations", Some(org)).await.expect(201);

    // Every count the page shows below comes from these windows: start them with time to spare.
    wait_for_quiet_windows().await;
    for _ in 0..7 {
        assert_eq!(token_status(&s, &sync_id, &sync_secret).await.status, 200);
    }
    // Three tokens and a 429 (per_minute = 3) in one UTC minute.
    for _ in 0..3 {
        let r = token_status(&s, &id, &secret).await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let r = token_status(&s, &id, &secret).await;
    assert_eq!(r.status, 429, "{}", r.json);

    let c = driver.session().await;
    c.goto(&s.url("/dashboard")).await.expect("open the dashboard");

    // Sign in.
    let field = c.wait().at_most(WAIT).for_element(Locator::Css("#client-id")).await.expect("sign-in form");
    field.send_keys(&admin_id).await.unwrap();
    c.find(Locator::Css("#client-secret")).await.unwrap().send_keys(&admin_secret).await.unwrap();
    c.find(Locator::Css("#sign-in")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#who-id", &admin_id).await;
    let stored = c.execute("return JSON.stringify(sessionStorage);", vec![]).await.unwrap();
    let stored = stored.as_str().unwrap_or_default().to_owned();
    assert!(stored.contains("access_token"), "the token is kept in sessionStorage: {stored}");
    assert!(!stored.contains(&admin_secret), "the secret must never be stored");
    let local = c.execute("return localStorage.length;", vec![]).await.unwrap();
    assert_eq!(local, json!(0), "nothing in localStorage");

    // The list: usage against quota, status.
    let row = format!("tr[data-client-id=\"{id}\"]");
    wait_text(&c, &format!("{row} [data-bucket=\"per_hour\"] .count"), "3 / 10").await;
    wait_text(&c, &format!("{row} [data-bucket=\"per_minute\"] .count"), "3 / 3").await;
    wait_text(&c, &format!("{row} [data-bucket=\"per_day\"] .count"), "3 / 100").await;
    wait_text(&c, &format!("{row} .badge"), "Active").await;
    wait_text(&c, &format!("tr[data-client-id=\"{sync_id}\"] [data-bucket=\"per_hour\"] .count"), "7 / 50").await;
    wait_text(&c, &format!("tr[data-client-id=\"{sync_id}\"]"), "not enforced").await;
    wait_text(&c, "tbody", "Partner export").await;
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
    assert!(png.len() < 300 * 1024, "screenshot is {} bytes", png.len());
    // Written only when asked: a test run that rewrote a tracked file left every checkout dirty.
    if std::env::var_os("RATION_UPDATE_DASHBOARD_PNG").is_some() {
        std::fs::write(screenshot_path(), &png).expect("write docs/dashboard.png");
    }

    // Organizations and recent events.
    c.find(Locator::Css("a[data-view=\"orgs\"]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main table", "Acme Corp").await;
    wait_text(&c, "main table", "0 / 500").await;
    extra_screenshot(&c, "orgs").await;
    c.find(Locator::Css("main table a")).await.unwrap().click().await.unwrap();
    wait_text(&c, "h1", "Acme Corp").await;
    wait_text(&c, "[data-bucket=\"per_day\"] .count", "0 / 500").await;
    let per_day = c.find(Locator::Css("#quota-per_day")).await.unwrap();
    assert_eq!(per_day.prop("value").await.unwrap().as_deref(), Some("500"));
    c.find(Locator::Css("a[data-view=\"events\"]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "main table", "Client quota exceeded").await;
    wait_text(&c, "main table", "Token issued").await;
    extra_screenshot(&c, "events").await;

    // The application's page: usage, and the chart built from the event log.
    c.find(Locator::Css("a[data-view=\"apps\"]")).await.unwrap().click().await.unwrap();
    let link = format!("{row} a");
    c.wait().at_most(WAIT).for_element(Locator::Css(&link)).await.unwrap().click().await.unwrap();
    wait_text(&c, "h1", "Nightly billing job").await;
    wait_text(&c, "#chart-summary", "3 tokens issued in the last 24 hours").await;
    wait_text(&c, "#chart-summary", "1 request rejected with 429").await;
    let marks: Value = c
        .execute("return document.querySelector('svg.chart path.rejected').getAttribute('d').length > 0;", vec![])
        .await
        .unwrap();
    assert_eq!(marks, json!(true), "the 429 is marked on the chart");
    wait_text(&c, "[data-bucket=\"per_hour\"] .count", "3 / 10").await;
    extra_screenshot(&c, "app").await;

    // Change the quota through the form, confirming the dialog.
    let per_hour = c.find(Locator::Css("#quota-per_hour")).await.unwrap();
    assert_eq!(per_hour.prop("value").await.unwrap().as_deref(), Some("10"));
    per_hour.clear().await.unwrap();
    per_hour.send_keys("20").await.unwrap();
    c.find(Locator::Css("#quota-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let asked = confirm(&c).await;
    assert!(asked.contains("20 per hour"), "the dialog says what will change: {asked}");
    wait_text(&c, "#status", "Quota of Nightly billing job saved.").await;
    let v = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(
        v["token_quota"],
        json!({ "client_credentials": { "per_minute": 3, "per_hour": 20, "per_day": 100, "enforce": true } })
    );
    wait_text(&c, "[data-bucket=\"per_hour\"] .count", "3 / 20").await;

    // Pause: cancelling the dialog changes nothing; confirming pauses.
    c.wait().at_most(WAIT).for_element(Locator::Css("#pause-toggle")).await.unwrap().click().await.unwrap();
    wait_js(&c, "return document.getElementById('confirm').open;", "the confirmation dialog").await;
    c.find(Locator::Css("#confirm-cancel")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#status", "Nothing changed.").await;
    let v = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(v["grant_types"], json!(["client_credentials"]));

    c.find(Locator::Css("#pause-toggle")).await.unwrap().click().await.unwrap();
    let asked = confirm(&c).await;
    assert!(asked.contains("Pause Nightly billing job?"), "{asked}");
    wait_text(&c, "#status", "Nightly billing job paused").await;
    wait_text(&c, "main .view-head .badge", "Paused").await;
    wait_text(&c, "#pause-toggle", "Resume application").await;
    let v = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(v["grant_types"], json!([]));
    let r = token_status(&s, &id, &secret).await;
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(r.json["error"], "unauthorized_client");

    // Sign out forgets the token.
    c.find(Locator::Css("#sign-out")).await.unwrap().click().await.unwrap();
    c.wait().at_most(WAIT).for_element(Locator::Css("#sign-in-form")).await.expect("back to the sign-in form");
    let stored = c.execute("return sessionStorage.length;", vec![]).await.unwrap();
    assert_eq!(stored, json!(0));
    c.close().await.expect("close the browser");
}
