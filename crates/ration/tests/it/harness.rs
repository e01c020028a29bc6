//! Test harness: runs the real `ration` binary as a child process on port 0 with a fresh data
//! directory and drives it over real HTTP.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, jwk::Jwk};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_ration");
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A fixed issuer for tests that restart the server (the port, and so the default issuer, changes).
pub const FIXED_ISSUER: &str = "http://ration.test/";

/// Every management scope DESIGN.md §1 says the bootstrap admin client is granted.
pub const MANAGEMENT_SCOPES: &[&str] = &[
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "read:client_grants",
    "create:client_grants",
    "update:client_grants",
    "delete:client_grants",
    "read:resource_servers",
    "create:resource_servers",
    "update:resource_servers",
    "delete:resource_servers",
    "read:organizations",
    "create:organizations",
    "update:organizations",
    "delete:organizations",
    "read:actions",
    "create:actions",
    "update:actions",
    "delete:actions",
    "read:log_streams",
    "create:log_streams",
    "update:log_streams",
    "delete:log_streams",
    "read:logs",
    "read:tenant_settings",
    "update:tenant_settings",
    "read:signing_keys",
    "create:signing_keys",
    "update:signing_keys",
];

/// A unique-enough alphanumeric string (no `rand` needed): time, pid and a counter.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}{:x}{:x}{:x}", t, std::process::id(), n)
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Percent-encodes a form value (everything except RFC 3986 unreserved characters).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` body from pairs (duplicates kept, order kept).
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>().join("&")
}

pub fn basic_header(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// An HTTP response with its body parsed as JSON (`Null` when empty, `String` when not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
    pub raw: Vec<u8>,
}

impl Resp {
    async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let raw = r.bytes().await.expect("read response body").to_vec();
        let json = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
        };
        Resp { status, headers, json, raw }
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.json);
        self.json.clone()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().expect("header is ASCII").to_owned())
    }

    #[track_caller]
    pub fn assert_json_content_type(&self) {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("application/json"), "content-type {ct:?}, body {}", self.json);
    }
}

/// Where the data directory is passed to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirVia {
    Flag,
    Env,
    /// The test passes it itself (e.g. in a config file, as `{data_dir}`).
    Nothing,
}

/// How a server is started; kept so that [`TestServer::restart`] starts the same way.
#[derive(Clone, Debug)]
pub struct Builder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    bootstrap_env: bool,
    listen_flag: bool,
    data_dir_via: DataDirVia,
    issuer: Option<String>,
    config: Option<String>,
}

impl Builder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn envs(mut self, envs: &[(&str, &str)]) -> Self {
        for (k, v) in envs {
            self = self.env(k, v);
        }
        self
    }

    /// Passes `--issuer <issuer>` and expects it in tokens.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.args.push("--issuer".into());
        self.args.push(issuer.into());
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// The issuer the server is expected to use when the test sets it some other way (env, file).
    pub fn expect_issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Do not set `RATION_BOOTSTRAP_CLIENT_ID/SECRET`: the server generates the admin credentials.
    pub fn generated_bootstrap(mut self) -> Self {
        self.bootstrap_env = false;
        self
    }

    /// Do not pass `--listen 127.0.0.1:0` (the test provides it through env or config).
    pub fn no_listen_flag(mut self) -> Self {
        self.listen_flag = false;
        self
    }

    pub fn data_dir_via(mut self, via: DataDirVia) -> Self {
        self.data_dir_via = via;
        self
    }

    /// A TOML config file passed with `--config`; `{data_dir}` is replaced by the data dir.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    pub async fn start(self) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let conf_dir = tempfile::tempdir().expect("temp config dir");
        let (admin_id, admin_secret) = if self.bootstrap_env {
            (unique("adm"), format!("{}{}", unique("S"), unique("x")))
        } else {
            (String::new(), String::new())
        };
        let mut server = TestServer {
            builder: self,
            data_dir,
            conf_dir,
            child: None,
            runs: Vec::new(),
            base_url: String::new(),
            issuer: String::new(),
            admin_id,
            admin_secret,
            admin_token: Mutex::new(None),
            http: http_client(),
        };
        server.spawn().await;
        server
    }

    /// Starts the process and returns its exit status, expecting it to fail before listening.
    pub async fn start_expect_failure(self) -> (ExitStatus, RunOutput) {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let conf_dir = tempfile::tempdir().expect("temp config dir");
        let mut cmd = command(&self, data_dir.path(), conf_dir.path(), "unused", "unused");
        let mut child = cmd.spawn().expect("spawn ration");
        let output = RunOutput::capture(&mut child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                output.join();
                return (status, output);
            }
            if let Some(line) = output.stdout().iter().find(|l| l.starts_with("listening on ")) {
                let line = line.clone();
                let _ = child.kill();
                let _ = child.wait();
                panic!("server started ({line}) although it should have refused; stderr:\n{}", output.stderr());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server neither exited nor listened within 30 s; stderr:\n{}", output.stderr());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

fn command(b: &Builder, data_dir: &Path, conf_dir: &Path, admin_id: &str, admin_secret: &str) -> Command {
    let mut cmd = Command::new(BIN);
    // Hermetic: no RATION_* from the environment running the tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("RATION_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve");
    if b.listen_flag {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    match b.data_dir_via {
        DataDirVia::Flag => {
            cmd.arg("--data-dir").arg(data_dir);
        }
        DataDirVia::Env => {
            cmd.env("RATION_DATA_DIR", data_dir);
        }
        DataDirVia::Nothing => {}
    }
    if let Some(toml) = &b.config {
        let path = conf_dir.join("ration.toml");
        let text = toml.replace("{data_dir}", &data_dir.display().to_string());
        std::fs::write(&path, text).expect("write config");
        cmd.arg("--config").arg(path);
    }
    cmd.args(&b.args);
    if b.bootstrap_env {
        cmd.env("RATION_BOOTSTRAP_CLIENT_ID", admin_id);
        cmd.env("RATION_BOOTSTRAP_CLIENT_SECRET", admin_secret);
    }
    for (k, v) in &b.envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Everything one server process printed.
#[derive(Clone, Debug, Default)]
pub struct RunOutput {
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl RunOutput {
    fn capture(child: &mut Child) -> RunOutput {
        let out = RunOutput::default();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = out.stdout.clone();
        let t1 = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_owned();
                        lines.lock().unwrap().push(line);
                    }
                }
            }
        });
        let err = out.stderr.clone();
        let t2 = std::thread::spawn(move || {
            let mut r = stderr;
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => err.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        out.threads.lock().unwrap().extend([t1, t2]);
        out
    }

    /// Waits for the reader threads (call after the process exited).
    fn join(&self) {
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stdout_text(&self) -> String {
        self.stdout().join("\n")
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout_text(), self.stderr())
    }
}

pub struct TestServer {
    builder: Builder,
    data_dir: tempfile::TempDir,
    #[allow(dead_code)]
    conf_dir: tempfile::TempDir,
    child: Option<Child>,
    runs: Vec<RunOutput>,
    base_url: String,
    issuer: String,
    admin_id: String,
    admin_secret: String,
    admin_token: Mutex<Option<String>>,
    pub http: reqwest::Client,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl TestServer {
    pub fn builder() -> Builder {
        Builder {
            args: Vec::new(),
            envs: Vec::new(),
            bootstrap_env: true,
            listen_flag: true,
            data_dir_via: DataDirVia::Flag,
            issuer: None,
            config: None,
        }
    }

    /// A server on `127.0.0.1:0`, a fresh data dir and known bootstrap credentials.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    pub async fn start_with(args: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let mut b = Self::builder();
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--issuer" && i + 1 < args.len() {
                b = b.issuer(args[i + 1]);
                i += 2;
            } else {
                b = b.arg(args[i]);
                i += 1;
            }
        }
        b.envs(envs).start().await
    }

    /// A server with the fixed issuer [`FIXED_ISSUER`], for restart tests.
    pub async fn start_fixed_issuer() -> TestServer {
        Self::start_with(&["--issuer", FIXED_ISSUER], &[]).await
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut cmd =
            command(&self.builder, self.data_dir.path(), self.conf_dir.path(), &self.admin_id, &self.admin_secret);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let output = RunOutput::capture(&mut child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = loop {
            if let Some(line) = output.stdout().iter().find(|l| l.starts_with("listening on ")) {
                break line["listening on ".len()..].trim().to_owned();
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                output.join();
                panic!(
                    "ration serve exited with {status} before printing `listening on ...`\nstdout:\n{}\nstderr:\n{}",
                    output.stdout_text(),
                    output.stderr()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                output.join();
                panic!(
                    "ration serve did not print `listening on http://127.0.0.1:PORT` within 30 s\nstdout:\n{}\nstderr:\n{}",
                    output.stdout_text(),
                    output.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("listening line must be `listening on http://127.0.0.1:PORT`, got url {url:?}"));
        let port: u16 = port.parse().unwrap_or_else(|_| panic!("bad port in listening line: {url:?}"));
        assert_ne!(port, 0, "the printed port must be the bound port");
        assert_eq!(
            output.stdout().iter().filter(|l| l.starts_with("listening on ")).count(),
            1,
            "exactly one listening line"
        );
        self.base_url = url.clone();
        self.issuer = self.builder.issuer.clone().unwrap_or_else(|| format!("{url}/"));
        self.child = Some(child);
        self.runs.push(output);
        *self.admin_token.lock().unwrap() = None;
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The `iss` of every token, with a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The Management API audience, `<issuer>api/v2/`.
    pub fn mgmt_audience(&self) -> String {
        format!("{}api/v2/", self.issuer)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The output of the current (or last) process.
    pub fn output(&self) -> &RunOutput {
        self.runs.last().expect("started")
    }

    /// The output of every process started so far, oldest first.
    pub fn runs(&self) -> &[RunOutput] {
        &self.runs
    }

    /// Bootstrap admin credentials: from the env we set, else from `bootstrap-credentials.json`.
    pub fn admin_credentials(&self) -> (String, String) {
        if self.builder.bootstrap_env {
            return (self.admin_id.clone(), self.admin_secret.clone());
        }
        let v = self.bootstrap_file();
        (
            v["client_id"].as_str().expect("client_id in bootstrap file").to_owned(),
            v["client_secret"].as_str().expect("client_secret in bootstrap file").to_owned(),
        )
    }

    pub fn bootstrap_file_path(&self) -> PathBuf {
        self.data_dir().join("bootstrap-credentials.json")
    }

    pub fn bootstrap_file(&self) -> Value {
        let text = std::fs::read_to_string(self.bootstrap_file_path()).expect("read bootstrap-credentials.json");
        serde_json::from_str(&text).expect("bootstrap-credentials.json is JSON")
    }

    #[track_caller]
    pub fn assert_running(&mut self) {
        let status = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait"));
        assert!(status.is_none(), "server died ({status:?}); stderr:\n{}", self.output().stderr());
    }

    /// SIGKILL the process (std's `Child::kill` is SIGKILL on Unix) and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        self.output().join();
    }

    /// SIGTERM the process and wait up to `timeout` for it to exit; returns its status.
    pub async fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let st = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
        assert!(st.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.output().join();
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.output().join();
                panic!("server did not exit within {timeout:?} of SIGTERM; stderr:\n{}", self.output().stderr());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process (SIGTERM, else SIGKILL) if it runs, then starts it again on the same data dir.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.sigterm(Duration::from_secs(15)).await;
            assert!(status.success(), "exit status after SIGTERM: {status}");
        }
        self.spawn().await;
    }

    // ---------------------------------------------------------------------------------------
    // HTTP
    // ---------------------------------------------------------------------------------------

    pub async fn get(&self, path: &str) -> Resp {
        Resp::from(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// POST `/oauth/token` with a form body (pairs may repeat).
    pub async fn token_form(&self, pairs: &[(&str, &str)]) -> Resp {
        self.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), form_body(pairs).into_bytes(), &[])
            .await
    }

    /// POST `/oauth/token` with a JSON body.
    pub async fn token_json(&self, body: &Value) -> Resp {
        self.post_raw("/oauth/token", Some("application/json"), serde_json::to_vec(body).unwrap(), &[]).await
    }

    /// POST `/oauth/token` with a form body and `Authorization: Basic`.
    pub async fn token_basic_form(&self, id: &str, secret: &str, pairs: &[(&str, &str)]) -> Resp {
        let auth = basic_header(id, secret);
        self.post_raw(
            "/oauth/token",
            Some("application/x-www-form-urlencoded"),
            form_body(pairs).into_bytes(),
            &[("authorization", &auth)],
        )
        .await
    }

    /// POST `/oauth/token` with a JSON body and `Authorization: Basic`.
    pub async fn token_basic_json(&self, id: &str, secret: &str, body: &Value) -> Resp {
        let auth = basic_header(id, secret);
        self.post_raw(
            "/oauth/token",
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
            &[("authorization", &auth)],
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self.http.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Resp::from(rb.send().await.expect("POST")).await
    }

    /// A client-credentials token (client_secret_post, form), asserting success.
    pub async fn token(&self, client_id: &str, secret: &str, audience: &str, scope: Option<&str>) -> Value {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("audience", audience),
        ];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        let r = self.token_form(&pairs).await;
        assert_eq!(r.status, 200, "token request failed: {}", r.json);
        r.json
    }

    pub async fn access_token(&self, client_id: &str, secret: &str, audience: &str) -> String {
        self.token(client_id, secret, audience, None).await["access_token"].as_str().expect("access_token").to_owned()
    }

    /// A Management API token for the bootstrap admin client (cached until restart).
    pub async fn admin_token(&self) -> String {
        if let Some(t) = self.admin_token.lock().unwrap().clone() {
            return t;
        }
        let (id, secret) = self.admin_credentials();
        let t = self.access_token(&id, &secret, &self.mgmt_audience()).await;
        *self.admin_token.lock().unwrap() = Some(t.clone());
        t
    }

    /// A Management API call with the admin token.
    pub async fn mgmt(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let token = self.admin_token().await;
        self.mgmt_with(Some(&token), method, path, body).await
    }

    /// A Management API call with the given bearer token (or none). `path` is under `/api/v2`.
    pub async fn mgmt_with(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut rb = self.http.request(method, self.url(&format!("/api/v2{path}")));
        if let Some(t) = token {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(serde_json::to_vec(&b).unwrap());
        }
        Resp::from(rb.send().await.expect("management request")).await
    }

    /// A Management API call with the admin token and a raw body.
    pub async fn mgmt_raw(&self, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Resp {
        let token = self.admin_token().await;
        let mut rb = self
            .http
            .request(method, self.url(&format!("/api/v2{path}")))
            .header("authorization", format!("Bearer {token}"));
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        Resp::from(rb.body(body).send().await.expect("management request")).await
    }

    /// `POST /api/v2/resource-servers` with `identifier`, a name and `extra` fields; returns the object.
    pub async fn create_api(&self, identifier: &str, extra: Value) -> Value {
        let mut body = json!({ "identifier": identifier, "name": format!("API {identifier}") });
        merge(&mut body, extra);
        self.mgmt(Method::POST, "/resource-servers", Some(body)).await.expect(201)
    }

    /// `POST /api/v2/clients` (an M2M client) with `extra` fields; returns (client_id, client_secret).
    pub async fn create_client(&self, name: &str, extra: Value) -> (String, String) {
        let mut body = json!({ "name": name, "app_type": "non_interactive", "grant_types": ["client_credentials"] });
        merge(&mut body, extra);
        let v = self.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
        (
            v["client_id"].as_str().expect("client_id").to_owned(),
            v["client_secret"].as_str().expect("client_secret").to_owned(),
        )
    }

    /// `POST /api/v2/client-grants`; returns the grant id.
    pub async fn create_grant(&self, client_id: &str, audience: &str, scopes: &[&str]) -> String {
        let body = json!({ "client_id": client_id, "audience": audience, "scope": scopes });
        let v = self.mgmt(Method::POST, "/client-grants", Some(body)).await.expect(201);
        v["id"].as_str().expect("grant id").to_owned()
    }

    /// An API, a client and a grant: returns (client_id, client_secret).
    pub async fn m2m_setup(&self, audience: &str, api_scopes: &[&str], granted: &[&str]) -> (String, String) {
        let scopes: Vec<Value> = api_scopes.iter().map(|s| json!({ "value": s, "description": s })).collect();
        self.create_api(audience, json!({ "scopes": scopes })).await;
        let (id, secret) = self.create_client(&unique("m2m-"), json!({})).await;
        self.create_grant(&id, audience, granted).await;
        (id, secret)
    }

    pub async fn jwks(&self) -> Value {
        let r = self.get("/.well-known/jwks.json").await;
        assert_eq!(r.status, 200, "jwks: {}", r.json);
        r.assert_json_content_type();
        r.json
    }

    /// Verifies a JWT against this server's JWKS (kid lookup, RFC 7638 kid, signature, iss,
    /// aud, exp). Returns the header and the claims.
    pub async fn verify(&self, token: &str, audience: &str) -> (Header, Value) {
        let jwks = self.jwks().await;
        verify_with_jwks(&jwks, token, self.issuer(), audience)
    }

    /// `GET /api/v2/clients?include_totals=true&per_page=100`, all pages: every client object.
    pub async fn all_clients(&self) -> Vec<Value> {
        self.all_pages("/clients", "clients", "").await
    }

    pub async fn all_pages(&self, path: &str, key: &str, filter: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 0.. {
            let r = self
                .mgmt(Method::GET, &format!("{path}?include_totals=true&per_page=100&page={page}{filter}"), None)
                .await;
            let v = r.expect(200);
            let items = v[key].as_array().unwrap_or_else(|| panic!("`{key}` array in {v}")).clone();
            let total = v["total"].as_u64().expect("total");
            let n = items.len();
            out.extend(items);
            if n == 0 || out.len() as u64 >= total {
                break;
            }
        }
        out
    }
}

/// Shallow-merges the object `extra` into the object `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

// -------------------------------------------------------------------------------------------
// JWT / JWKS
// -------------------------------------------------------------------------------------------

/// RFC 7638 thumbprint (SHA-256, base64url) of a public JWK given as JSON.
pub fn rfc7638_thumbprint(jwk: &Value) -> String {
    let s =
        |k: &str| serde_json::to_string(jwk[k].as_str().unwrap_or_else(|| panic!("jwk member {k} in {jwk}"))).unwrap();
    let canonical = match jwk["kty"].as_str().expect("kty") {
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s("e"), s("n")),
        "EC" => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, s("crv"), s("x"), s("y")),
        "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, s("crv"), s("x")),
        other => panic!("unexpected kty {other} in JWKS"),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Private-key members that must never appear in a published JWK.
pub const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

#[track_caller]
pub fn assert_public_jwks(jwks: &Value) {
    let keys = jwks["keys"].as_array().unwrap_or_else(|| panic!("JWKS has a keys array: {jwks}"));
    assert!(!keys.is_empty(), "JWKS has at least one key");
    for k in keys {
        for m in PRIVATE_JWK_MEMBERS {
            assert!(k.get(*m).is_none(), "JWKS key exposes private member {m}: {k}");
        }
        let kid = k["kid"].as_str().unwrap_or_else(|| panic!("every JWK has a kid: {k}"));
        assert_eq!(kid, rfc7638_thumbprint(k), "kid must be the RFC 7638 thumbprint: {k}");
    }
}

pub fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap_or_else(|| panic!("JWT has part {i}: {token}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url JWT part")).expect("JSON JWT part")
}

/// The raw JOSE header as JSON (to check which members are present).
pub fn raw_header(token: &str) -> Value {
    decode_part(token, 0)
}

pub fn raw_claims(token: &str) -> Value {
    decode_part(token, 1)
}

fn validation(alg: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 5;
    v
}

#[track_caller]
pub fn verify_with_jwks(jwks: &Value, token: &str, issuer: &str, audience: &str) -> (Header, Value) {
    assert_public_jwks(jwks);
    let header = jsonwebtoken::decode_header(token).expect("JWT header");
    let kid = header.kid.clone().unwrap_or_else(|| panic!("asymmetric token has a kid: {header:?}"));
    let jwk_json = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS {jwks}"))
        .clone();
    let jwk: Jwk = serde_json::from_value(jwk_json).expect("jsonwebtoken parses the JWK");
    let key = DecodingKey::from_jwk(&jwk).expect("DecodingKey from JWK");
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation(header.alg, issuer, audience))
        .unwrap_or_else(|e| panic!("token does not verify against the JWKS ({:?}): {e}", header.alg));
    (data.header, data.claims)
}

/// Verifies an HS256 token with the API's signing secret.
#[track_caller]
pub fn verify_hs256(token: &str, secret: &str, issuer: &str, audience: &str) -> (Header, Value) {
    let key = DecodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation(Algorithm::HS256, issuer, audience))
        .unwrap_or_else(|e| panic!("HS256 token does not verify with the API signing_secret: {e}"));
    (data.header, data.claims)
}

/// Asserts the Auth0-profile claims of a client-credentials token.
#[track_caller]
pub fn assert_cc_claims(claims: &Value, issuer: &str, client_id: &str, audience: &str, scope: &str, lifetime: i64) {
    assert_eq!(claims["iss"], issuer, "iss; claims {claims}");
    assert!(issuer.ends_with('/'), "issuer ends with /");
    assert_eq!(claims["sub"], format!("{client_id}@clients"), "sub; claims {claims}");
    assert_eq!(claims["aud"], audience, "aud is the single audience string; claims {claims}");
    assert_eq!(claims["scope"], scope, "scope; claims {claims}");
    assert_eq!(claims["gty"], "client-credentials", "gty; claims {claims}");
    assert_eq!(claims["azp"], client_id, "azp; claims {claims}");
    let iat = claims["iat"].as_i64().unwrap_or_else(|| panic!("iat is an integer: {claims}"));
    let exp = claims["exp"].as_i64().unwrap_or_else(|| panic!("exp is an integer: {claims}"));
    assert!((iat - now_secs()).abs() <= 120, "iat {iat} is now");
    assert_eq!(exp - iat, lifetime, "exp = iat + token_lifetime; claims {claims}");
    let jti = claims["jti"].as_str().unwrap_or_else(|| panic!("jti is a string: {claims}"));
    assert!(!jti.is_empty(), "jti is not empty");
}

/// Asserts a successful token response and returns the access token.
#[track_caller]
pub fn assert_token_response(r: &Resp, scope: &str, expires_in: i64) -> String {
    assert_eq!(r.status, 200, "token response: {}", r.json);
    r.assert_json_content_type();
    let cc = r.header("cache-control").unwrap_or_default();
    assert!(cc.contains("no-store"), "Cache-Control: no-store, got {cc:?}");
    // RFC 6749 §5.1 asks for both; the 200's headers come from prebuilt maps (`quota::response_headers`).
    assert_eq!(r.header("pragma").unwrap_or_default(), "no-cache", "Pragma: no-cache");
    let keys: BTreeSet<&str> = r.json.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["access_token", "token_type", "expires_in", "scope"]), "fields: {}", r.json);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], expires_in);
    assert_eq!(r.json["scope"], scope);
    let t = r.json["access_token"].as_str().expect("access_token string").to_owned();
    assert_eq!(t.split('.').count(), 3, "access_token is a JWS compact JWT");
    t
}

/// Asserts the JOSE header of an asymmetric token: alg, typ JWT, kid.
#[track_caller]
pub fn assert_jose_header(token: &str, alg: &str) {
    let h = raw_header(token);
    assert_eq!(h["alg"], alg, "alg; header {h}");
    assert_eq!(h["typ"], "JWT", "typ; header {h}");
    if alg == "HS256" {
        assert!(h.get("kid").is_none(), "HS256 tokens carry no kid: {h}");
    } else {
        assert!(h["kid"].is_string(), "kid present: {h}");
    }
}

// -------------------------------------------------------------------------------------------
// Table-driven error checks
// -------------------------------------------------------------------------------------------

/// How an expected `error_description` is matched.
#[derive(Clone, Debug)]
pub enum Desc {
    Is(String),
    StartsWith(String),
    /// Names the parameter (texts for these are not fixed by Auth0).
    Contains(String),
}

impl Desc {
    pub fn is(s: impl Into<String>) -> Desc {
        Desc::Is(s.into())
    }
    pub fn starts(s: impl Into<String>) -> Desc {
        Desc::StartsWith(s.into())
    }
    pub fn contains(s: impl Into<String>) -> Desc {
        Desc::Contains(s.into())
    }
    pub fn matches(&self, got: &str) -> bool {
        match self {
            Desc::Is(s) => got == s,
            Desc::StartsWith(s) => got.starts_with(s.as_str()),
            Desc::Contains(s) => got.contains(s.as_str()),
        }
    }
}

/// One token request, in one of the encodings the endpoint accepts.
#[derive(Clone, Debug)]
pub enum TokenReq {
    /// Form body, credentials (if any) in the body as given.
    Form(Vec<(String, String)>),
    /// JSON body.
    Json(Value),
    /// Form body with `Authorization: Basic`.
    BasicForm { id: String, secret: String, pairs: Vec<(String, String)> },
    /// JSON body with `Authorization: Basic`.
    BasicJson { id: String, secret: String, body: Value },
    /// Anything else.
    Raw { content_type: Option<String>, body: Vec<u8>, headers: Vec<(String, String)> },
}

impl TokenReq {
    pub async fn send(&self, server: &TestServer) -> Resp {
        match self {
            TokenReq::Form(p) => server.token_form(&pairs_ref(p)).await,
            TokenReq::Json(v) => server.token_json(v).await,
            TokenReq::BasicForm { id, secret, pairs } => server.token_basic_form(id, secret, &pairs_ref(pairs)).await,
            TokenReq::BasicJson { id, secret, body } => server.token_basic_json(id, secret, body).await,
            TokenReq::Raw { content_type, body, headers } => {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                server.post_raw("/oauth/token", content_type.as_deref(), body.clone(), &h).await
            }
        }
    }
}

pub fn pairs_ref(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub fn owned_pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Asserts the OAuth error shape `{error, error_description[, error_uri]}` and returns (error, description).
#[track_caller]
pub fn assert_oauth_error_shape(r: &Resp) -> (String, String) {
    r.assert_json_content_type();
    let obj = r.json.as_object().unwrap_or_else(|| panic!("OAuth error body is a JSON object: {:?}", r.json));
    for k in obj.keys() {
        assert!(
            ["error", "error_description", "error_uri"].contains(&k.as_str()),
            "unexpected member {k} in OAuth error {}",
            r.json
        );
    }
    let e = obj.get("error").and_then(Value::as_str).unwrap_or_else(|| panic!("`error` string in {}", r.json));
    let d = obj
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`error_description` string in {}", r.json));
    (e.to_owned(), d.to_owned())
}

/// Sends `request` and asserts the exact status, `error` and `error_description`.
pub async fn check_token_error(server: &TestServer, request: &TokenReq, status: u16, error: &str, description: &Desc) {
    let r = request.send(server).await;
    assert_eq!(r.status, status, "status for {request:?}; body {}", r.json);
    let (e, d) = assert_oauth_error_shape(&r);
    assert_eq!(e, error, "error for {request:?}; body {}", r.json);
    assert!(description.matches(&d), "error_description for {request:?}: got {d:?}, expected {description:?}");
    assert!(r.json.get("access_token").is_none());
}

/// Asserts the Management API error shape `{statusCode, error, message, errorCode}`.
#[track_caller]
pub fn assert_mgmt_error(r: &Resp, status: u16, error: &str, error_code: Option<&str>) -> String {
    assert_eq!(r.status, status, "status; body {}", r.json);
    r.assert_json_content_type();
    assert_eq!(r.json["statusCode"], status, "statusCode in {}", r.json);
    assert_eq!(r.json["error"], error, "error in {}", r.json);
    let message = r.json["message"].as_str().unwrap_or_else(|| panic!("message string in {}", r.json)).to_owned();
    assert!(!message.is_empty(), "message not empty");
    if let Some(code) = error_code {
        assert_eq!(r.json["errorCode"], code, "errorCode in {}", r.json);
    }
    message
}

/// A successful request proving the server still serves (token for the Management API).
pub async fn assert_still_serving(server: &mut TestServer) {
    server.assert_running();
    let (id, secret) = server.admin_credentials();
    let r = server
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("audience", &server.mgmt_audience()),
        ])
        .await;
    assert_eq!(r.status, 200, "server no longer serves tokens: {}", r.json);
}
