//! Acceptance tests for issue 10: `ration guard` in front of an existing tenant. A second Ration
//! instance plays the tenant (same Management API, same log-stream format): its tokens stream to
//! the guard, which pauses the client there when its quota is exhausted and resumes it after the
//! (simulated) window reset; duplicate deliveries count once; a failing tenant Management API is
//! retried without losing the pause; the shipped example Action (`examples/auth0-action.js`),
//! run by the tenant's Actions runtime, denies once the decision endpoint says so and fails open
//! or closed when the guard is down.
//!
//! The harness starts `ration serve` only, so the guard process is run by [`GuardProc`] here.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::*;

const API: &str = "https://guarded.example.com/";
const LOG_AUTH: &str = "Bearer log-stream-s3cret";
const DECISION_SECRET: &str = "decision-s3cret-0123456789";
const ACTION_CODE: &str = include_str!("../../../../examples/auth0-action.js");
const HOUR_MS: i64 = 3_600_000;

// -------------------------------------------------------------------------------------------
// A `ration guard` process
// -------------------------------------------------------------------------------------------

/// One `ration guard` child process on a fixed data dir; restartable with other settings.
struct GuardProc {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    conf_dir: tempfile::TempDir,
    base_url: String,
    admin: (String, String),
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    http: reqwest::Client,
}

impl Drop for GuardProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The guard's issuer does not depend on its port, so tokens survive a restart on another one.
const GUARD_ISSUER: &str = "http://guard.test/";

impl GuardProc {
    /// Starts `ration guard --listen <listen>` with the `[guard]` section `toml` (may be empty)
    /// and `envs`.
    async fn start(listen: &str, toml: &str, envs: &[(&str, &str)]) -> GuardProc {
        let mut g = GuardProc {
            child: None,
            data_dir: tempfile::tempdir().expect("temp data dir"),
            conf_dir: tempfile::tempdir().expect("temp conf dir"),
            base_url: String::new(),
            admin: (unique("gadm"), format!("{}{}", unique("S"), unique("x"))),
            stdout: Arc::default(),
            stderr: Arc::default(),
            http: reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap(),
        };
        std::fs::write(g.config_path(), toml).expect("write guard config");
        g.spawn(listen, envs).await;
        g
    }

    fn config_path(&self) -> PathBuf {
        self.conf_dir.path().join("guard.toml")
    }

    async fn spawn(&mut self, listen: &str, envs: &[(&str, &str)]) {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("RATION_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["guard", "--listen", listen, "--issuer", GUARD_ISSUER])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--config")
            .arg(self.config_path())
            .env("RATION_BOOTSTRAP_CLIENT_ID", &self.admin.0)
            .env("RATION_BOOTSTRAP_CLIENT_SECRET", &self.admin.1)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ration guard");
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let lines = self.stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let bytes = self.stderr.clone();
        std::thread::spawn(move || {
            let mut r = err;
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = loop {
            if let Some(line) = self.stdout.lock().unwrap().iter().rev().find(|l| l.starts_with("listening on ")) {
                break line["listening on ".len()..].trim().to_owned();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ration guard exited with {status}; stderr:\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "ration guard did not start; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.base_url = url;
        self.child = Some(child);
    }

    /// Stops the process (SIGTERM, as an operator would) and starts it again on the same data
    /// dir, the same port and config file, with `envs`.
    async fn restart(&mut self, envs: &[(&str, &str)]) {
        let mut child = self.child.take().expect("guard running");
        let st = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "guard did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stdout.lock().unwrap().clear();
        let listen = self.base_url.trim_start_matches("http://").to_owned();
        self.spawn(&listen, envs).await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request to the guard");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let raw = r.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Resp { status, headers, json, raw }
    }

    /// A Management API call on the guard, as its admin.
    async fn mgmt(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let token = self
            .send(
                self.http
                    .post(self.url("/oauth/token"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form_body(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", self.admin.0.as_str()),
                        ("client_secret", self.admin.1.as_str()),
                        ("audience", &format!("{GUARD_ISSUER}api/v2/")),
                    ])),
            )
            .await
            .expect(200)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut rb = self.http.request(method, self.url(&format!("/api/v2{path}"))).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    /// A delivery to the log-stream receiver.
    async fn deliver(&self, authorization: Option<&str>, body: String) -> Resp {
        let mut rb = self.http.post(self.url("/v1/guard/log-stream")).header("content-type", "application/json");
        if let Some(a) = authorization {
            rb = rb.header("authorization", a);
        }
        self.send(rb.body(body)).await
    }

    /// A decision request.
    async fn consume(&self, authorization: Option<&str>, body: Value) -> Resp {
        let mut rb = self.http.post(self.url("/v1/quota/consume")).json(&body);
        if let Some(a) = authorization {
            rb = rb.header("authorization", a);
        }
        self.send(rb).await
    }

    /// The guard's events of type `ty` for `client_id`, waiting until there are at least `n`.
    async fn wait_events(&self, ty: &str, client_id: &str, n: usize) -> Vec<Value> {
        let q = urlencode(&format!("type:{ty} AND client_id:\"{client_id}\""));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let evs = self.mgmt(Method::GET, &format!("/logs?q={q}&per_page=100"), None).await.expect(200);
            let evs = evs.as_array().cloned().unwrap_or_default();
            if evs.len() >= n {
                return evs;
            }
            assert!(Instant::now() < deadline, "{n} {ty} events for {client_id}; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn used(&self, kind: &str, id: &str) -> u64 {
        let v = self.mgmt(Method::GET, &format!("/{kind}/{id}/quota-usage"), None).await.expect(200);
        v["buckets"][0]["used"].as_u64().unwrap_or_else(|| panic!("used in {v}"))
    }
}

// -------------------------------------------------------------------------------------------
// Tenant-side helpers
// -------------------------------------------------------------------------------------------

/// On the tenant: an API, a client with a grant, and the guard's Management API client (grant
/// to the tenant's Management API with read:clients update:clients). Returns
/// ((client_id, secret), (guard_mgmt_id, guard_mgmt_secret)).
async fn tenant_setup(tenant: &TestServer) -> ((String, String), (String, String)) {
    let client = tenant.m2m_setup(API, &["read"], &["read"]).await;
    let mgmt = tenant.create_client(&unique("ration-guard-"), json!({})).await;
    tenant.create_grant(&mgmt.0, &tenant.mgmt_audience(), &["read:clients", "update:clients"]).await;
    (client, mgmt)
}

async fn tenant_token(tenant: &TestServer, id: &str, secret: &str) -> Resp {
    tenant
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("audience", API),
        ])
        .await
}

async fn grant_types(tenant: &TestServer, id: &str) -> Vec<String> {
    let v = tenant.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    v["grant_types"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().to_owned()).collect()
}

/// Polls the tenant's client until `done` holds for its grant types.
async fn wait_grant_types(tenant: &TestServer, id: &str, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let g = grant_types(tenant, id).await;
        if done(&g) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: grant_types still {g:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_cc(g: &[String]) -> bool {
    g.iter().any(|x| x == "client_credentials")
}

/// Tokens counted in one UTC hour must not straddle its end: wait when it is near.
async fn away_from_hour_edge() {
    let into_hour = now_secs().rem_euclid(3600);
    if into_hour > 3600 - 90 {
        tokio::time::sleep(Duration::from_secs((3600 - into_hour + 2) as u64)).await;
    }
}

/// A free local port (for a process that must be allowed by another before it starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn seccft(log_id: &str, client_id: &str, organization: Option<&str>, audience: &str) -> Value {
    let mut data = json!({
        "date": ration_date(),
        "type": "seccft",
        "description": "Client Credentials for Access Token",
        "client_id": client_id,
        "client_name": "test",
        "audience": audience,
        "scope": "read",
        "log_id": log_id,
    });
    if let Some(org) = organization {
        data["organization_id"] = json!(org);
    }
    json!({ "log_id": log_id, "data": data })
}

/// Now as RFC 3339 (what Auth0 puts in `date`).
fn ration_date() -> String {
    ration_domain::UnixTime::from_secs(now_secs()).to_rfc3339()
}

// -------------------------------------------------------------------------------------------
// A flaky proxy in front of the tenant's Management API
// -------------------------------------------------------------------------------------------

/// Forwards everything to the tenant, except that the first `fail` PATCHes of a client get 503
/// with `Retry-After: 1`. Records the status of every PATCH.
struct FlakyProxy {
    addr: SocketAddr,
    patches: Arc<Mutex<Vec<u16>>>,
    task: JoinHandle<()>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlakyProxy {
    async fn start(target: String, fail: usize) -> FlakyProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let patches: Arc<Mutex<Vec<u16>>> = Arc::default();
        let seen = patches.clone();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (seen, http, target) = (seen.clone(), http.clone(), target.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (seen, http, target) = (seen.clone(), http.clone(), target.clone());
                        async move { Ok::<_, Infallible>(forward(req, &seen, &http, &target, fail).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        FlakyProxy { addr, patches, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn patches(&self) -> Vec<u16> {
        self.patches.lock().unwrap().clone()
    }
}

async fn forward(
    req: Request<Incoming>,
    seen: &Mutex<Vec<u16>>,
    http: &reqwest::Client,
    target: &str,
    fail: usize,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if method == hyper::Method::PATCH {
        let mut s = seen.lock().unwrap();
        if s.len() < fail {
            s.push(503);
            return Response::builder()
                .status(503)
                .header("retry-after", "1")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(r#"{"statusCode":503,"error":"Service Unavailable","message":"flaky"}"#)))
                .unwrap();
        }
    }
    let mut rb =
        http.request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), format!("{target}{path}"));
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            rb = rb.header(name, v.to_str().unwrap());
        }
    }
    let r = rb.body(body.to_vec()).send().await.expect("forward to the tenant");
    let status = r.status().as_u16();
    if method == hyper::Method::PATCH {
        seen.lock().unwrap().push(status);
    }
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = r.bytes().await.unwrap();
    Response::builder().status(status).header("content-type", ct).body(Full::new(bytes)).unwrap()
}

// -------------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_stream_to_the_guard_which_pauses_and_resumes_the_client_on_the_tenant() {
    let tenant = TestServer::builder().env("RATION_LOG_STREAM_RETRY_MAX_MS", "300").start().await;
    let ((id, secret), (mgmt_id, mgmt_secret)) = tenant_setup(&tenant).await;
    // Shadow quota in the file, connection settings in the environment.
    let toml = format!("[guard]\n[[guard.clients]]\nclient_id = \"{id}\"\nname = \"billing job\"\nper_hour = 3\n");
    let tenant_url = tenant.base_url().to_owned();
    let envs = [
        ("RATION_GUARD_TENANT_URL", tenant_url.as_str()),
        ("RATION_GUARD_MANAGEMENT_CLIENT_ID", mgmt_id.as_str()),
        ("RATION_GUARD_MANAGEMENT_CLIENT_SECRET", mgmt_secret.as_str()),
        ("RATION_GUARD_LOG_STREAM_AUTHORIZATION", LOG_AUTH),
    ];
    let mut guard = GuardProc::start("127.0.0.1:0", &toml, &envs).await;
    let shadow = guard.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(shadow["name"], "billing job", "{shadow}");
    assert_eq!(shadow["token_quota"]["client_credentials"]["per_hour"], 3, "{shadow}");

    let stream = json!({
        "name": unique("ration-guard-"),
        "type": "http",
        "sink": {
            "httpEndpoint": guard.url("/v1/guard/log-stream"),
            "httpContentFormat": "JSONLINES",
            "httpAuthorization": LOG_AUTH,
        },
        "filters": [{ "type": "category", "name": "auth.token_exchange.success" }],
    });
    tenant.mgmt(Method::POST, "/log-streams", Some(stream)).await.expect(201);

    away_from_hour_edge().await;
    for _ in 0..3 {
        assert_token_response(&tenant_token(&tenant, &id, &secret).await, "read", 86400);
    }
    wait_grant_types(&tenant, &id, "paused after the 3rd token", |g| !has_cc(g)).await;
    let r = tenant_token(&tenant, &id, &secret).await;
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(r.json["error"], "unauthorized_client", "{}", r.json);
    assert_eq!(guard.used("clients", &id).await, 3, "exactly the three issued tokens were counted");
    let paused = guard.wait_events("guard_client_paused", &id, 1).await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["details"]["reason"], "Client quota exceeded", "{}", paused[0]);
    assert_eq!(paused[0]["details"]["original_grant_types"], json!(["client_credentials"]), "{}", paused[0]);

    // The window resets: the guard restarts an hour later (test clock), finds the persisted
    // pause due and resumes the client.
    let offset = (HOUR_MS + 1000).to_string();
    let mut envs_later: Vec<(&str, &str)> = envs.to_vec();
    envs_later.push(("RATION_TEST_CLOCK_OFFSET_MS", &offset));
    guard.restart(&envs_later).await;
    wait_grant_types(&tenant, &id, "resumed after the reset", has_cc).await;
    assert_eq!(grant_types(&tenant, &id).await, vec!["client_credentials".to_owned()]);
    assert_token_response(&tenant_token(&tenant, &id, &secret).await, "read", 86400);
    let resumed = guard.wait_events("guard_client_resumed", &id, 1).await;
    assert_eq!(resumed[0]["details"]["outcome"], "resumed", "{}", resumed[0]);
}

#[tokio::test]
async fn duplicate_deliveries_count_once_and_both_endpoints_check_credentials() {
    // No tenant is contacted: no quota here is exhausted by the log stream.
    let toml = format!(
        "[guard]\ntenant_url = \"http://127.0.0.1:9\"\nmanagement_client_id = \"unused\"\n\
         management_client_secret = \"unused\"\nlog_stream_authorization = \"{LOG_AUTH}\"\n\
         decision_secret = \"{DECISION_SECRET}\"\n\
         [[guard.clients]]\nclient_id = \"cli_counted\"\nper_hour = 100\n\
         [[guard.clients]]\nclient_id = \"cli_decided\"\nper_hour = 2\n\
         [[guard.organizations]]\nid = \"org_Acme1\"\nper_hour = 50\nenforce = false\n"
    );
    let guard = GuardProc::start("127.0.0.1:0", &toml, &[]).await;
    let mgmt_aud = "http://127.0.0.1:9/api/v2/";
    let p = unique("900");
    let e1 = seccft(&format!("{p}1"), "cli_counted", None, API);
    let e2 = seccft(&format!("{p}2"), "cli_counted", Some("org_Acme1"), API);
    let e3 = seccft(&format!("{p}3"), "cli_counted", None, API);
    let mut failed = seccft(&format!("{p}4"), "cli_counted", None, API);
    failed["data"]["type"] = json!("feccft");
    let mgmt_token = seccft(&format!("{p}5"), "cli_counted", None, mgmt_aud);
    let batch = [&e1, &e2, &e3, &failed, &mgmt_token];

    // Wrong or missing Authorization: 401, nothing counted.
    let lines: String = batch.iter().map(|e| format!("{e}\n")).collect();
    assert_eq!(guard.deliver(None, lines.clone()).await.status, 401);
    assert_eq!(guard.deliver(Some("Bearer wrong"), lines.clone()).await.status, 401);
    assert_eq!(guard.deliver(Some(&LOG_AUTH.to_lowercase()), lines.clone()).await.status, 401);

    // JSONLINES, then the same batch again, then as JSONARRAY: counted once.
    let r = guard.deliver(Some(LOG_AUTH), lines.clone()).await.expect(200);
    assert_eq!(
        r,
        json!({ "accepted": 5, "counted": 3, "duplicates": 0 }),
        "feccft and Management API tokens are not counted"
    );
    let r = guard.deliver(Some(LOG_AUTH), lines).await.expect(200);
    assert_eq!(r, json!({ "accepted": 5, "counted": 0, "duplicates": 3 }));
    let array = serde_json::to_string(&batch).unwrap();
    let r = guard.deliver(Some(LOG_AUTH), array).await.expect(200);
    assert_eq!(r, json!({ "accepted": 5, "counted": 0, "duplicates": 3 }));
    // JSONOBJECT: one envelope per request, delivered twice.
    let e6 = seccft(&format!("{p}6"), "cli_counted", None, API);
    assert_eq!(guard.deliver(Some(LOG_AUTH), e6.to_string()).await.expect(200)["counted"], 1);
    assert_eq!(guard.deliver(Some(LOG_AUTH), e6.to_string()).await.expect(200)["duplicates"], 1);
    // A bare event carrying its own log_id.
    let bare = seccft(&format!("{p}7"), "cli_counted", None, API)["data"].clone();
    assert_eq!(guard.deliver(Some(LOG_AUTH), bare.to_string()).await.expect(200)["counted"], 1);
    assert_eq!(guard.deliver(Some(LOG_AUTH), "not json".into()).await.status, 400);

    assert_eq!(guard.used("clients", "cli_counted").await, 5);
    assert_eq!(guard.used("organizations", "org_Acme1").await, 1);

    // Decision endpoint: bearer secret required.
    let ask = json!({ "client_id": "cli_decided", "audience": API });
    assert_eq!(guard.consume(None, ask.clone()).await.status, 401);
    assert_eq!(guard.consume(Some("Bearer wrong"), ask.clone()).await.status, 401);
    assert_eq!(guard.consume(Some(DECISION_SECRET), ask.clone()).await.status, 401, "the scheme is required");
    let bearer = format!("Bearer {DECISION_SECRET}");
    let auth = Some(bearer.as_str());
    let r = guard.consume(auth, ask.clone()).await.expect(200);
    assert_eq!(r["allow"], true, "{r}");
    let bucket = &r["buckets"]["client"][0];
    assert_eq!((bucket["bucket"].clone(), bucket["quota"].clone()), (json!("per_hour"), json!(2)), "{r}");
    assert_eq!((bucket["used"].clone(), bucket["remaining"].clone()), (json!(1), json!(1)), "{r}");
    assert!(bucket["reset_in"].as_i64().is_some_and(|t| (1..=3600).contains(&t)), "{r}");
    assert_eq!(guard.consume(auth, ask.clone()).await.expect(200)["allow"], true);
    let r = guard.consume(auth, ask.clone()).await.expect(200);
    assert_eq!(r["allow"], false, "{r}");
    assert_eq!(r["reason"], "Client quota exceeded", "{r}");
    assert_eq!(r["buckets"]["client"][0]["remaining"], 0, "{r}");
    assert_eq!(guard.used("clients", "cli_decided").await, 2, "a refusal consumes nothing");

    // No quota configured: allow, no buckets. The tenant's Management API is never counted.
    let r = guard.consume(auth, json!({ "client_id": "cli_unknown", "audience": API })).await.expect(200);
    assert_eq!(r, json!({ "allow": true, "buckets": { "client": [], "organization": [] } }));
    let r = guard.consume(auth, json!({ "client_id": "cli_decided", "audience": mgmt_aud })).await.expect(200);
    assert_eq!(r["allow"], true, "{r}");
    // An organization quota in monitoring mode counts but never refuses.
    let r = guard
        .consume(auth, json!({ "client_id": "cli_unknown", "organization": "org_Acme1", "audience": API }))
        .await
        .expect(200);
    assert_eq!(r["allow"], true, "{r}");
    assert_eq!(r["buckets"]["organization"][0]["used"], 2, "{r}");
}

#[tokio::test]
async fn a_failing_tenant_management_api_is_retried_until_the_pause_lands() {
    let tenant = TestServer::start().await;
    let ((id, _secret), (mgmt_id, mgmt_secret)) = tenant_setup(&tenant).await;
    let proxy = FlakyProxy::start(tenant.base_url().to_owned(), 3).await;
    let toml = format!(
        "[guard]\ntenant_url = \"{}\"\nmanagement_audience = \"{}\"\nmanagement_client_id = \"{mgmt_id}\"\n\
         management_client_secret = \"{mgmt_secret}\"\nlog_stream_authorization = \"{LOG_AUTH}\"\n\
         [[guard.clients]]\nclient_id = \"{id}\"\nper_hour = 1\n",
        proxy.url(),
        tenant.mgmt_audience(),
    );
    let mut guard = GuardProc::start("127.0.0.1:0", &toml, &[]).await;
    away_from_hour_edge().await;
    let event = seccft(&unique("900"), &id, None, API);
    let r = guard.deliver(Some(LOG_AUTH), event.to_string()).await.expect(200);
    assert_eq!(r["counted"], 1, "{r}");

    wait_grant_types(&tenant, &id, "paused despite three 503s", |g| !has_cc(g)).await;
    let patches = proxy.patches();
    assert_eq!(patches, vec![503, 503, 503, 200], "retried after each 503, once it succeeded no more");
    let paused = guard.wait_events("guard_client_paused", &id, 1).await;
    assert_eq!(paused.len(), 1, "{paused:?}");

    // An operator changes the paused client for another reason: at the reset the guard leaves
    // it alone and records that.
    tenant
        .mgmt(Method::PATCH, &format!("/clients/{id}"), Some(json!({ "grant_types": ["authorization_code"] })))
        .await
        .expect(200);
    let offset = (HOUR_MS + 1000).to_string();
    guard.restart(&[("RATION_TEST_CLOCK_OFFSET_MS", &offset)]).await;
    let skipped = guard.wait_events("guard_client_resume_skipped", &id, 1).await;
    assert_eq!(skipped[0]["details"]["outcome"], "changed_by_operator", "{}", skipped[0]);
    assert_eq!(grant_types(&tenant, &id).await, vec!["authorization_code".to_owned()]);
    assert_eq!(proxy.patches().len(), 4, "no PATCH for a client the guard leaves alone");
}

#[tokio::test]
async fn the_example_action_denies_when_the_decision_endpoint_says_so() {
    let port = free_port();
    let allow = format!("127.0.0.1:{port}");
    let tenant = TestServer::start_with(&[], &[("RATION_ACTIONS_FETCH_ALLOW", &allow)]).await;
    let (id, secret) = tenant.m2m_setup(API, &["read"], &["read"]).await;
    let toml = format!(
        "[guard]\ntenant_url = \"{}\"\ndecision_secret = \"{DECISION_SECRET}\"\nfail_open = false\n\
         [[guard.clients]]\nclient_id = \"{id}\"\nper_hour = 2\n",
        tenant.base_url()
    );
    let mut guard = GuardProc::start(&allow, &toml, &[]).await;

    // The shipped file, unchanged, once per failure mode.
    let deploy = |name: String, fail_open: &'static str| {
        let (tenant, url) = (&tenant, guard.base_url.clone());
        async move {
            let body = json!({
                "name": name,
                "supported_triggers": [{ "id": "credentials-exchange", "version": "v2" }],
                "code": ACTION_CODE,
                "runtime": "node22",
                "secrets": [
                    { "name": "RATION_URL", "value": url },
                    { "name": "RATION_SECRET", "value": DECISION_SECRET },
                    { "name": "RATION_FAIL_OPEN", "value": fail_open },
                ],
                "deploy": true,
            });
            tenant.mgmt(Method::POST, "/actions/actions", Some(body)).await.expect(201);
            name
        }
    };
    let closed = deploy(unique("ration-quota-closed-"), "false").await;
    let open = deploy(unique("ration-quota-open-"), "true").await;
    let bind = |name: &str| {
        let body = json!({ "bindings": [{ "ref": { "type": "action_name", "value": name } }] });
        tenant.mgmt(Method::PATCH, "/actions/triggers/credentials-exchange/bindings", Some(body))
    };
    bind(&closed).await.expect(200);

    away_from_hour_edge().await;
    for _ in 0..2 {
        assert_token_response(&tenant_token(&tenant, &id, &secret).await, "read", 86400);
    }
    let r = tenant_token(&tenant, &id, &secret).await;
    assert_eq!((r.status, r.json["error"].clone()), (400, json!("invalid_request")), "{}", r.json);
    assert_eq!(r.json["error_description"], "Client quota exceeded", "{}", r.json);
    assert_eq!(guard.used("clients", &id).await, 2);

    // The guard is down: fail closed denies (server_error is a 500), fail open issues.
    guard.kill();
    let r = tenant_token(&tenant, &id, &secret).await;
    assert_eq!((r.status, r.json["error"].clone()), (500, json!("server_error")), "{}", r.json);
    assert_eq!(r.json["error_description"], "Quota service unavailable", "{}", r.json);
    bind(&open).await.expect(200);
    assert_token_response(&tenant_token(&tenant, &id, &secret).await, "read", 86400);
}
