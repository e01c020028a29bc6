//! Acceptance tests for issue 3: token quotas (configuration and validation, organizations,
//! evaluation, exact counting under concurrency, Auth0's quota headers, window roll-over with the
//! test clock, consumption warnings and the live quota-usage endpoints).
//!
//! Time: every server whose headers are checked runs with `RATION_TEST_CLOCK_OFFSET_MS` so that its
//! clock reads a known time of day (a UTC day two days ahead). `t`, `Retry-After` and
//! `X-RateLimit-Reset` are then checked exactly: the server's clock is the real clock plus the
//! offset, so its `now` lies between the (offset) times read just before sending and just after
//! receiving, and the expected value is bracketed by those two instants.

use std::collections::BTreeSet;
use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) const OFFSET_ENV: &str = "RATION_TEST_CLOCK_OFFSET_MS";
const API: &str = "https://quota.example.com/";
const API2: &str = "https://quota2.example.com/";
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;
/// 10:00:05 UTC: an hour (and a day) far from rolling over, for the tests that are not about it.
const AT_10_00_05: i64 = 10 * HOUR_MS + 5_000;
const CLIENT_H: &str = "auth0-client-quota-limit";
const ORG_H: &str = "auth0-organization-quota-limit";
const BUCKETS: [&str; 3] = ["per_minute", "per_hour", "per_day"];

// -------------------------------------------------------------------------------------------
// Clock
// -------------------------------------------------------------------------------------------

pub(crate) fn real_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The clock offset that makes a server started now read `ms_into_day` after a UTC midnight (of
/// the day after tomorrow, so that tokens are never expired by the real clock).
pub(crate) fn offset_for(ms_into_day: i64) -> i64 {
    let now = real_now_ms();
    let midnight = now.div_euclid(DAY_MS) * DAY_MS + 2 * DAY_MS;
    midnight + ms_into_day - now
}

/// A server with a shifted clock.
pub(crate) struct Clocked {
    pub s: TestServer,
    pub offset_ms: i64,
}

impl Clocked {
    pub async fn start(ms_into_day: i64) -> Clocked {
        let offset_ms = offset_for(ms_into_day);
        let s = TestServer::builder().env(OFFSET_ENV, &offset_ms.to_string()).start().await;
        Clocked { s, offset_ms }
    }

    /// The server's clock, in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        real_now_ms() + self.offset_ms
    }

    pub async fn sleep_until(&self, server_ms: i64) {
        let d = server_ms - self.now_ms();
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d as u64)).await;
        }
    }

    /// Runs `f` and records the server-clock instants just before and just after it.
    pub async fn timed(&self, f: impl Future<Output = Resp>) -> Timed {
        let a = self.now_ms();
        let r = f.await;
        let b = self.now_ms();
        Timed { r, a, b }
    }

    /// A client-credentials token request (form, client_secret_post), timed.
    pub async fn tok(&self, id: &str, secret: &str, audience: &str, org: Option<&str>) -> Timed {
        let pairs = cc_pairs(id, secret, audience, org);
        self.timed(self.s.token_form(&pairs_ref(&pairs))).await
    }
}

/// A response and the server-clock interval `[a, b]` in which the server handled it.
#[derive(Debug)]
pub(crate) struct Timed {
    pub r: Resp,
    pub a: i64,
    pub b: i64,
}

pub(crate) fn win_secs(bucket: &str) -> i64 {
    match bucket {
        "per_minute" => 60,
        "per_hour" => 3_600,
        "per_day" => 86_400,
        other => panic!("unknown bucket {other}"),
    }
}

/// Seconds until the window of `len` seconds containing `now_ms` resets, rounded up.
fn secs_to_reset(len: i64, now_ms: i64) -> i64 {
    let l = len * 1000;
    let reset = (now_ms.div_euclid(l) + 1) * l;
    (reset - now_ms + 999) / 1000
}

/// The `t` the server must report for `bucket` if it handled the request within `[a, b]`.
#[track_caller]
pub(crate) fn t_range(bucket: &str, a: i64, b: i64) -> RangeInclusive<i64> {
    let l = win_secs(bucket) * 1000;
    assert_eq!(a.div_euclid(l), b.div_euclid(l), "request straddled a {bucket} boundary (server times {a}..{b})");
    secs_to_reset(win_secs(bucket), b)..=secs_to_reset(win_secs(bucket), a)
}

/// Unix seconds at which the `bucket` window containing server time `ms` resets.
fn reset_unix(bucket: &str, ms: i64) -> i64 {
    let len = win_secs(bucket);
    (ms.div_euclid(len * 1000) + 1) * len
}

/// `YYYY-MM-DDTHH:MM:SS` of unix seconds (UTC).
fn civil(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60)
}

// -------------------------------------------------------------------------------------------
// Requests
// -------------------------------------------------------------------------------------------

pub(crate) fn cc_pairs(id: &str, secret: &str, audience: &str, org: Option<&str>) -> Vec<(String, String)> {
    let mut p = owned_pairs(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("audience", audience),
    ]);
    if let Some(o) = org {
        p.push(("organization".into(), o.into()));
    }
    p
}

/// A reqwest response as the harness's [`Resp`]; `Err` when the body could not be read.
pub(crate) async fn to_resp(r: reqwest::Response) -> reqwest::Result<Resp> {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let raw = r.bytes().await?.to_vec();
    let json = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
    };
    Ok(Resp { status, headers, json, raw })
}

/// `total` token requests (same body) from `tasks` tokio tasks released together by a barrier.
async fn burst(c: &Clocked, pairs: &[(String, String)], total: usize, tasks: usize) -> Vec<Timed> {
    let url = c.s.url("/oauth/token");
    let body = form_body(&pairs_ref(pairs));
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let mut handles = Vec::new();
    for i in 0..tasks {
        let per = total / tasks + usize::from(i < total % tasks);
        let (http, url, body, barrier, offset) =
            (c.s.http.clone(), url.clone(), body.clone(), barrier.clone(), c.offset_ms);
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut out = Vec::with_capacity(per);
            for _ in 0..per {
                let a = real_now_ms() + offset;
                let resp = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("token request");
                let r = to_resp(resp).await.expect("token response body");
                let b = real_now_ms() + offset;
                out.push(Timed { r, a, b });
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(total);
    for h in handles {
        all.extend(h.await.expect("request task"));
    }
    assert_eq!(all.len(), total);
    all
}

// -------------------------------------------------------------------------------------------
// Setup
// -------------------------------------------------------------------------------------------

async fn api(s: &TestServer, identifier: &str) {
    s.create_api(
        identifier,
        json!({ "scopes": [{ "value": "read", "description": "r" }, { "value": "write", "description": "w" }] }),
    )
    .await;
}

fn cc_quota(q: Value) -> Value {
    json!({ "client_credentials": q })
}

/// A client with `token_quota` (or none) and a grant for `read` on `audience`; returns (id, secret).
async fn client(s: &TestServer, audience: &str, quota: Option<Value>) -> (String, String) {
    let extra = match quota {
        Some(q) => json!({ "token_quota": cc_quota(q) }),
        None => json!({}),
    };
    let (id, secret) = s.create_client(&unique("quota-"), extra).await;
    s.create_grant(&id, audience, &["read"]).await;
    (id, secret)
}

/// A client grant with organization settings; returns its id.
async fn org_grant(s: &TestServer, client_id: &str, audience: &str, usage: &str, any: bool) -> String {
    let body = json!({
        "client_id": client_id, "audience": audience, "scope": ["read"],
        "organization_usage": usage, "allow_any_organization": any,
    });
    let v = s.mgmt(Method::POST, "/client-grants", Some(body)).await.expect(201);
    assert_eq!(v["organization_usage"], usage, "grant {v}");
    assert_eq!(v["allow_any_organization"], any, "grant {v}");
    v["id"].as_str().expect("grant id").to_owned()
}

/// A client (no quota unless given) with an `allow` grant that any organization may use.
async fn org_client(s: &TestServer, audience: &str, quota: Option<Value>) -> (String, String) {
    let extra = match quota {
        Some(q) => json!({ "token_quota": cc_quota(q) }),
        None => json!({}),
    };
    let (id, secret) = s.create_client(&unique("orgc-"), extra).await;
    org_grant(s, &id, audience, "allow", true).await;
    (id, secret)
}

/// `POST /api/v2/organizations`; returns the organization object.
async fn create_org(s: &TestServer, name: &str, quota: Option<Value>) -> Value {
    let mut body = json!({ "name": name, "display_name": format!("Org {name}") });
    if let Some(q) = quota {
        body["token_quota"] = cc_quota(q);
    }
    let v = s.mgmt(Method::POST, "/organizations", Some(body)).await.expect(201);
    assert_eq!(v["name"], name, "organization {v}");
    assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()), "organization id in {v}");
    v
}

async fn associate(s: &TestServer, org_id: &str, grant_id: &str) {
    let r = s
        .mgmt(Method::POST, &format!("/organizations/{org_id}/client-grants"), Some(json!({ "grant_id": grant_id })))
        .await;
    r.expect(201);
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("id in {v}")).to_owned()
}

async fn patch_client_quota(s: &TestServer, id: &str, quota: Value) -> Value {
    s.mgmt(Method::PATCH, &format!("/clients/{id}"), Some(json!({ "token_quota": quota }))).await.expect(200)
}

async fn patch_org_quota(s: &TestServer, id: &str, quota: Value) -> Value {
    s.mgmt(Method::PATCH, &format!("/organizations/{id}"), Some(json!({ "token_quota": quota }))).await.expect(200)
}

async fn client_usage(s: &TestServer, id: &str) -> Value {
    s.mgmt(Method::GET, &format!("/clients/{id}/quota-usage"), None).await.expect(200)
}

async fn org_usage(s: &TestServer, id: &str) -> Value {
    s.mgmt(Method::GET, &format!("/organizations/{id}/quota-usage"), None).await.expect(200)
}

/// `(bucket, used, remaining)` of a quota-usage body, in order.
fn usage_counts(v: &Value) -> Vec<(String, u64, u64)> {
    v["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("buckets array in {v}"))
        .iter()
        .map(|b| {
            (
                b["bucket"].as_str().expect("bucket").to_owned(),
                b["used"].as_u64().expect("used"),
                b["remaining"].as_u64().expect("remaining"),
            )
        })
        .collect()
}

fn owned(v: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
    v.iter().map(|(b, u, r)| (b.to_string(), *u, *r)).collect()
}

// -------------------------------------------------------------------------------------------
// Strict header parsing
// -------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QuotaBucket {
    pub b: String,
    pub q: u64,
    pub r: u64,
    pub t: i64,
}

fn strict_uint(s: &str, what: &str, value: &str) -> u64 {
    assert!(
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0')),
        "{what} must be a plain non-negative integer, got {s:?} in {value:?}"
    );
    s.parse().unwrap_or_else(|_| panic!("{what} fits u64: {s:?}"))
}

fn attr<'a>(field: &'a str, key: &str, value: &str) -> &'a str {
    field
        .strip_prefix(key)
        .and_then(|f| f.strip_prefix('='))
        .unwrap_or_else(|| panic!("expected `{key}=` at {field:?} in {value:?}"))
}

/// Parses `b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200` strictly: no spaces, exactly
/// `b`, `q`, `r`, `t` in that order, known bucket names in minute/hour/day order without
/// repeats, `r <= q`, `1 <= t <= window length`.
#[track_caller]
pub(crate) fn parse_quota_header(value: &str) -> Vec<QuotaBucket> {
    assert!(!value.is_empty(), "empty quota header");
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for part in value.split(',') {
        let fields: Vec<&str> = part.split(';').collect();
        assert_eq!(fields.len(), 4, "bucket {part:?} of {value:?} must be exactly b;q;r;t");
        let b = attr(fields[0], "b", value);
        let idx = BUCKETS.iter().position(|n| *n == b).unwrap_or_else(|| panic!("unknown bucket {b:?} in {value:?}"));
        if let Some(l) = last {
            assert!(idx > l, "buckets out of order (per_minute, per_hour, per_day) or repeated in {value:?}");
        }
        last = Some(idx);
        let q = strict_uint(attr(fields[1], "q", value), "q", value);
        let r = strict_uint(attr(fields[2], "r", value), "r", value);
        let t = strict_uint(attr(fields[3], "t", value), "t", value) as i64;
        assert!(q >= 1, "q >= 1 in {value:?}");
        assert!(r <= q, "r <= q in {value:?}");
        assert!(t >= 1 && t <= win_secs(b), "1 <= t <= window length in {value:?}");
        out.push(QuotaBucket { b: b.to_owned(), q, r, t });
    }
    out
}

/// Asserts that header `name` lists exactly `want` = `[(bucket, q, r)]`, each `t` matching the
/// time the request was handled.
#[track_caller]
fn assert_quota_header(t: &Timed, name: &str, want: &[(&str, u64, u64)]) -> Vec<QuotaBucket> {
    let v = t.r.header(name).unwrap_or_else(|| panic!("{name} missing (status {}, body {})", t.r.status, t.r.json));
    let got = parse_quota_header(&v);
    let shape: Vec<(&str, u64, u64)> = got.iter().map(|g| (g.b.as_str(), g.q, g.r)).collect();
    assert_eq!(shape, want, "{name}: {v}");
    for g in &got {
        let range = t_range(&g.b, t.a, t.b);
        assert!(range.contains(&g.t), "{name} {}: t={} not in {range:?} ({v})", g.b, g.t);
    }
    got
}

#[track_caller]
fn assert_no_header(t: &Timed, name: &str) {
    assert!(t.r.header(name).is_none(), "unexpected {name}: {:?} (body {})", t.r.header(name), t.r.json);
}

/// The IETF fields for the tightest enforced bucket: `RateLimit-Policy: "<name>";q=..;w=..` and
/// `RateLimit: "<name>";r=..;t=..`.
#[track_caller]
fn assert_ratelimit(t: &Timed, name: &str, q: u64, bucket: &str, r: u64) {
    let policy = t.r.header("ratelimit-policy").unwrap_or_else(|| panic!("RateLimit-Policy missing"));
    assert_eq!(policy, format!("\"{name}\";q={q};w={}", win_secs(bucket)), "RateLimit-Policy");
    let rl = t.r.header("ratelimit").unwrap_or_else(|| panic!("RateLimit missing"));
    let prefix = format!("\"{name}\";r={r};t=");
    let secs = rl.strip_prefix(&prefix).unwrap_or_else(|| panic!("RateLimit {rl:?} must start with {prefix:?}"));
    let secs = strict_uint(secs, "RateLimit t", &rl) as i64;
    let range = t_range(bucket, t.a, t.b);
    assert!(range.contains(&secs), "RateLimit t={secs} not in {range:?}");
}

#[track_caller]
fn assert_no_ratelimit(t: &Timed) {
    for h in ["ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert_no_header(t, h);
    }
}

/// A successful token response; returns the access token.
#[track_caller]
fn assert_ok(t: &Timed) -> String {
    assert_eq!(t.r.status, 200, "expected a token, got {}", t.r.json);
    assert_no_header(t, "retry-after");
    t.r.json["access_token"].as_str().unwrap_or_else(|| panic!("access_token in {}", t.r.json)).to_owned()
}

/// A quota 429: exact body, `X-RateLimit-*` and `Retry-After` for the exhausted `bucket`.
#[track_caller]
fn assert_429(t: &Timed, description: &str, limit: u64, bucket: &str) {
    assert_eq!(t.r.status, 429, "expected 429, got {}", t.r.json);
    t.r.assert_json_content_type();
    assert_eq!(t.r.json, json!({ "error": "too_many_requests", "error_description": description }));
    assert_eq!(t.r.header("x-ratelimit-limit").as_deref(), Some(limit.to_string().as_str()), "X-RateLimit-Limit");
    assert_eq!(t.r.header("x-ratelimit-remaining").as_deref(), Some("0"), "X-RateLimit-Remaining");
    let range = t_range(bucket, t.a, t.b);
    let reset = t.r.header("x-ratelimit-reset").expect("X-RateLimit-Reset");
    assert_eq!(strict_uint(&reset, "X-RateLimit-Reset", &reset) as i64, reset_unix(bucket, t.a), "X-RateLimit-Reset");
    let retry = t.r.header("retry-after").expect("Retry-After");
    let retry = strict_uint(&retry, "Retry-After", &retry) as i64;
    assert!(range.contains(&retry), "Retry-After {retry} not in {range:?}");
}

// -------------------------------------------------------------------------------------------
// Events
// -------------------------------------------------------------------------------------------

async fn events_of_type(s: &TestServer, ty: &str) -> Vec<Value> {
    let q = urlencode(&format!("type:{ty}"));
    let v = s.mgmt(Method::GET, &format!("/logs?q={q}&per_page=100"), None).await.expect(200);
    v.as_array().unwrap_or_else(|| panic!("logs array: {v}")).clone()
}

/// Polls until at least `want` events of `ty` are stored, then checks (after a pause, since events
/// are written asynchronously) that there are exactly `want`.
async fn wait_events(s: &TestServer, ty: &str, want: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = events_of_type(s, ty).await.len();
        if n >= want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {n} of {want} {ty} events after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let events = events_of_type(s, ty).await;
    assert_eq!(events.len(), want, "exactly {want} {ty} events: {}", Value::Array(events.clone()));
    events
}

// -------------------------------------------------------------------------------------------
// 1. Configuration and validation
// -------------------------------------------------------------------------------------------

/// `token_quota` values that must be refused, with the field the message must name.
fn bad_quotas() -> Vec<(Value, &'static str)> {
    vec![
        (cc_quota(json!({ "per_hour": 0 })), "per_hour"),
        (cc_quota(json!({ "per_hour": -1 })), "per_hour"),
        (cc_quota(json!({ "per_hour": 2_147_483_648u64 })), "per_hour"),
        (cc_quota(json!({ "per_hour": 1.5 })), "per_hour"),
        (cc_quota(json!({ "per_hour": "10" })), "per_hour"),
        (cc_quota(json!({ "per_hour": true })), "per_hour"),
        (cc_quota(json!({ "per_day": 0 })), "per_day"),
        (cc_quota(json!({ "per_day": 99_999_999_999i64 })), "per_day"),
        (cc_quota(json!({ "per_minute": 0 })), "per_minute"),
        (cc_quota(json!({ "per_minute": 2.0e9 + 0.5 })), "per_minute"),
        (cc_quota(json!({ "per_hour": 5, "enforce": "yes" })), "enforce"),
        (cc_quota(json!({ "per_hour": 5, "enforce": 1 })), "enforce"),
        (cc_quota(json!({})), "client_credentials"),
        (json!({}), "client_credentials"),
        (cc_quota(json!({ "per_hour": 5, "per_week": 1 })), "per_week"),
        (json!({ "client_credentials": { "per_hour": 5 }, "password": { "per_hour": 1 } }), "password"),
        (json!({ "client_credentials": null }), "client_credentials"),
        (json!({ "client_credentials": 5 }), "client_credentials"),
        (json!("10"), "token_quota"),
        (json!([]), "token_quota"),
        (json!(10), "token_quota"),
    ]
}

/// Valid `client_credentials` values; `enforce` defaults to true.
fn good_quotas() -> Vec<Value> {
    vec![
        json!({ "per_hour": 10 }),
        json!({ "per_day": 1, "enforce": true }),
        json!({ "per_minute": 1, "per_hour": 2_147_483_647u64, "per_day": 50, "enforce": false }),
        json!({ "enforce": false }),
        json!({ "per_minute": 7 }),
    ]
}

/// `client_credentials` with `enforce` filled in (default true).
fn normalized(cc: &Value) -> Value {
    let mut cc = cc.clone();
    if cc.get("enforce").is_none() {
        cc["enforce"] = json!(true);
    }
    cc
}

/// Asserts that a returned `token_quota` equals `cc` (as `client_credentials`, `enforce`
/// defaulting to true) and has nothing else.
#[track_caller]
fn assert_quota_is(got: &Value, cc: &Value) {
    let obj = got.as_object().unwrap_or_else(|| panic!("token_quota object, got {got}"));
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["client_credentials"], "token_quota {got}");
    assert_eq!(normalized(&got["client_credentials"]), normalized(cc), "token_quota {got}");
}

#[track_caller]
fn assert_no_quota(v: &Value) {
    assert!(v.get("token_quota").is_none_or(Value::is_null), "token_quota should be gone: {v}");
}

#[track_caller]
fn assert_names_field(r: &Resp, field: &str, what: &str) {
    let message = assert_mgmt_error(r, 400, "Bad Request", Some("invalid_body"));
    assert!(message.contains(field), "{what}: message {message:?} should name {field:?}");
}

#[tokio::test]
async fn quota_config_on_clients_validates_and_round_trips() {
    let s = TestServer::start().await;
    let (id, _) = s.create_client(&unique("qv-"), json!({ "token_quota": cc_quota(json!({ "per_hour": 3 })) })).await;
    let before = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_quota_is(&before["token_quota"], &json!({ "per_hour": 3 }));
    let names_before: BTreeSet<String> =
        s.all_clients().await.iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect();

    for (bad, field) in bad_quotas() {
        // Create: refused, nothing stored.
        let name = unique("bad-");
        let body = json!({ "name": name, "app_type": "non_interactive", "grant_types": ["client_credentials"], "token_quota": bad });
        let r = s.mgmt(Method::POST, "/clients", Some(body)).await;
        assert_names_field(&r, field, &format!("POST /clients token_quota={bad}"));
        // Update: refused, the other field in the same body is not applied either.
        let r = s
            .mgmt(
                Method::PATCH,
                &format!("/clients/{id}"),
                Some(json!({ "description": "changed", "token_quota": bad })),
            )
            .await;
        assert_names_field(&r, field, &format!("PATCH /clients token_quota={bad}"));
        let now = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
        assert_eq!(now, before, "a refused PATCH ({bad}) changed the client");
    }
    let names_after: BTreeSet<String> =
        s.all_clients().await.iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(names_before, names_after, "refused creates stored nothing");

    for cc in good_quotas() {
        let v = patch_client_quota(&s, &id, cc_quota(cc.clone())).await;
        assert_quota_is(&v["token_quota"], &cc);
        let got = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
        assert_quota_is(&got["token_quota"], &cc);
        let listed = s.all_clients().await.into_iter().find(|c| c["client_id"] == id.as_str()).expect("listed");
        assert_quota_is(&listed["token_quota"], &cc);

        let body =
            json!({ "name": unique("good-"), "app_type": "non_interactive", "token_quota": cc_quota(cc.clone()) });
        let created = s.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
        assert_quota_is(&created["token_quota"], &cc);
        let cid = created["client_id"].as_str().expect("client_id");
        let got = s.mgmt(Method::GET, &format!("/clients/{cid}"), None).await.expect(200);
        assert_quota_is(&got["token_quota"], &cc);
    }

    // null removes; removing again is fine.
    for _ in 0..2 {
        let v = patch_client_quota(&s, &id, Value::Null).await;
        assert_no_quota(&v);
        assert_no_quota(&s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200));
    }
    // A PATCH without token_quota leaves it alone.
    patch_client_quota(&s, &id, cc_quota(json!({ "per_day": 9 }))).await;
    let v = s.mgmt(Method::PATCH, &format!("/clients/{id}"), Some(json!({ "description": "x" }))).await.expect(200);
    assert_quota_is(&v["token_quota"], &json!({ "per_day": 9 }));
}

#[tokio::test]
async fn quota_config_on_organizations_validates_and_round_trips() {
    let s = TestServer::start().await;
    let org = create_org(&s, &unique("org"), Some(json!({ "per_hour": 4 }))).await;
    let oid = id_of(&org);
    assert_quota_is(&org["token_quota"], &json!({ "per_hour": 4 }));
    let before = s.mgmt(Method::GET, &format!("/organizations/{oid}"), None).await.expect(200);
    assert_eq!(before, org, "GET returns what POST returned");

    for (bad, field) in bad_quotas() {
        let name = unique("bad");
        let r = s.mgmt(Method::POST, "/organizations", Some(json!({ "name": name, "token_quota": bad }))).await;
        assert_names_field(&r, field, &format!("POST /organizations token_quota={bad}"));
        // Nothing was stored: the name is still free.
        let created = create_org(&s, &name, None).await;
        assert_no_quota(&created);
        let r = s
            .mgmt(
                Method::PATCH,
                &format!("/organizations/{oid}"),
                Some(json!({ "display_name": "Changed", "token_quota": bad })),
            )
            .await;
        assert_names_field(&r, field, &format!("PATCH /organizations token_quota={bad}"));
        let now = s.mgmt(Method::GET, &format!("/organizations/{oid}"), None).await.expect(200);
        assert_eq!(now, before, "a refused PATCH ({bad}) changed the organization");
    }

    for cc in good_quotas() {
        let v = patch_org_quota(&s, &oid, cc_quota(cc.clone())).await;
        assert_quota_is(&v["token_quota"], &cc);
        let got = s.mgmt(Method::GET, &format!("/organizations/{oid}"), None).await.expect(200);
        assert_quota_is(&got["token_quota"], &cc);
        let created = create_org(&s, &unique("good"), Some(cc.clone())).await;
        assert_quota_is(&created["token_quota"], &cc);
        let got = s.mgmt(Method::GET, &format!("/organizations/{}", id_of(&created)), None).await.expect(200);
        assert_quota_is(&got["token_quota"], &cc);
    }
    let v = patch_org_quota(&s, &oid, Value::Null).await;
    assert_no_quota(&v);
    assert_no_quota(&s.mgmt(Method::GET, &format!("/organizations/{oid}"), None).await.expect(200));
}

#[tokio::test]
async fn tenant_default_quotas_validate_and_round_trip() {
    let s = TestServer::start().await;
    let initial = json!({
        "clients": cc_quota(json!({ "per_hour": 100, "per_day": 1000 })),
        "organizations": cc_quota(json!({ "per_hour": 500, "enforce": false })),
    });
    let v = s
        .mgmt(Method::PATCH, "/tenants/settings", Some(json!({ "default_token_quota": initial, "friendly_name": "Q" })))
        .await
        .expect(200);
    assert_quota_is(&v["default_token_quota"]["clients"], &json!({ "per_hour": 100, "per_day": 1000 }));
    assert_quota_is(&v["default_token_quota"]["organizations"], &json!({ "per_hour": 500, "enforce": false }));
    let before = s.mgmt(Method::GET, "/tenants/settings", None).await.expect(200);
    assert_eq!(before["default_token_quota"], v["default_token_quota"], "GET returns what PATCH returned");
    assert_eq!(
        before["default_token_quota"].as_object().expect("object").keys().collect::<Vec<_>>(),
        vec!["clients", "organizations"]
    );

    let mut bad: Vec<(Value, &str)> = vec![
        (json!({}), "default_token_quota"),
        (json!("x"), "default_token_quota"),
        (json!(5), "default_token_quota"),
        (json!({ "users": cc_quota(json!({ "per_hour": 1 })) }), "users"),
    ];
    for (q, field) in bad_quotas() {
        bad.push((json!({ "clients": q.clone() }), field));
        bad.push((json!({ "organizations": q }), field));
    }
    for (b, field) in bad {
        let r = s
            .mgmt(
                Method::PATCH,
                "/tenants/settings",
                Some(json!({ "friendly_name": "Changed", "default_token_quota": b })),
            )
            .await;
        assert_names_field(&r, field, &format!("default_token_quota={b}"));
        let now = s.mgmt(Method::GET, "/tenants/settings", None).await.expect(200);
        assert_eq!(now, before, "a refused PATCH ({b}) changed the settings");
    }

    for cc in good_quotas() {
        for kind in ["clients", "organizations"] {
            let v = s
                .mgmt(
                    Method::PATCH,
                    "/tenants/settings",
                    Some(json!({ "default_token_quota": { kind: cc_quota(cc.clone()) } })),
                )
                .await
                .expect(200);
            assert_quota_is(&v["default_token_quota"][kind], &cc);
            let got = s.mgmt(Method::GET, "/tenants/settings", None).await.expect(200);
            assert_quota_is(&got["default_token_quota"][kind], &cc);
        }
    }
    let v = s.mgmt(Method::PATCH, "/tenants/settings", Some(json!({ "default_token_quota": null }))).await.expect(200);
    assert!(v.get("default_token_quota").is_none_or(Value::is_null), "defaults removed: {v}");
    let got = s.mgmt(Method::GET, "/tenants/settings", None).await.expect(200);
    assert!(got.get("default_token_quota").is_none_or(Value::is_null), "defaults removed: {got}");
    assert_eq!(got["friendly_name"], "Q", "other settings kept");
}

// -------------------------------------------------------------------------------------------
// 2. Concurrency: never token N+1
// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_exactly_the_client_quota() {
    let c = Clocked::start(AT_10_00_05).await;
    api(&c.s, API).await;
    let (id, secret) = client(&c.s, API, Some(json!({ "per_hour": 37 }))).await;
    let all = burst(&c, &cc_pairs(&id, &secret, API, None), 200, 50).await;

    let ok: Vec<&Timed> = all.iter().filter(|t| t.r.status == 200).collect();
    let rejected: Vec<&Timed> = all.iter().filter(|t| t.r.status == 429).collect();
    let statuses: BTreeSet<u16> = all.iter().map(|t| t.r.status).collect();
    assert_eq!((ok.len(), rejected.len()), (37, 163), "200s and 429s; statuses seen {statuses:?}");

    let mut remaining = Vec::new();
    let mut jtis = BTreeSet::new();
    for t in &ok {
        let token = assert_ok(t);
        jtis.insert(raw_claims(&token)["jti"].as_str().expect("jti").to_owned());
        let h = t.r.header(CLIENT_H).expect("client quota header");
        let got = parse_quota_header(&h);
        assert_eq!(got.len(), 1, "{h}");
        remaining.push(got[0].r);
        assert_quota_header(t, CLIENT_H, &[("per_hour", 37, got[0].r)]);
        assert_no_header(t, ORG_H);
        assert_ratelimit(t, "client_per_hour", 37, "per_hour", got[0].r);
    }
    assert_eq!(jtis.len(), 37, "37 distinct tokens");
    remaining.sort_unstable();
    assert_eq!(remaining, (0..37).collect::<Vec<u64>>(), "each issued token reports its own remaining count");
    for t in &rejected {
        assert_429(t, "Client quota exceeded", 37, "per_hour");
        assert_quota_header(t, CLIENT_H, &[("per_hour", 37, 0)]);
        assert_no_header(t, ORG_H);
        assert_ratelimit(t, "client_per_hour", 37, "per_hour", 0);
    }
    // The 163 rejections consumed nothing.
    assert_eq!(usage_counts(&client_usage(&c.s, &id).await), owned(&[("per_hour", 37, 0)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_stop_at_the_tighter_organization_quota() {
    let c = Clocked::start(AT_10_00_05).await;
    api(&c.s, API).await;
    let (id, secret) =
        c.s.create_client(&unique("oc-"), json!({ "token_quota": cc_quota(json!({ "per_hour": 150 })) })).await;
    let grant = org_grant(&c.s, &id, API, "allow", false).await;
    let org = create_org(&c.s, &unique("tight"), Some(json!({ "per_hour": 37 }))).await;
    let oid = id_of(&org);
    associate(&c.s, &oid, &grant).await;

    let all = burst(&c, &cc_pairs(&id, &secret, API, Some(&oid)), 200, 50).await;
    let ok: Vec<&Timed> = all.iter().filter(|t| t.r.status == 200).collect();
    let rejected: Vec<&Timed> = all.iter().filter(|t| t.r.status == 429).collect();
    let statuses: BTreeSet<u16> = all.iter().map(|t| t.r.status).collect();
    assert_eq!((ok.len(), rejected.len()), (37, 163), "200s and 429s; statuses seen {statuses:?}");

    let mut org_remaining = Vec::new();
    for t in &ok {
        assert_ok(t);
        let h = t.r.header(ORG_H).expect("organization quota header");
        let r = parse_quota_header(&h)[0].r;
        org_remaining.push(r);
        assert_quota_header(t, ORG_H, &[("per_hour", 37, r)]);
        // Both quotas were consumed together: the client has used as many as the organization.
        assert_quota_header(t, CLIENT_H, &[("per_hour", 150, 113 + r)]);
        assert_ratelimit(t, "organization_per_hour", 37, "per_hour", r);
    }
    org_remaining.sort_unstable();
    assert_eq!(org_remaining, (0..37).collect::<Vec<u64>>());
    for t in &rejected {
        assert_429(t, "Organization quota exceeded", 37, "per_hour");
        assert_quota_header(t, ORG_H, &[("per_hour", 37, 0)]);
        // A rejection consumes nothing from the client quota either.
        assert_quota_header(t, CLIENT_H, &[("per_hour", 150, 113)]);
        assert_ratelimit(t, "organization_per_hour", 37, "per_hour", 0);
    }
    let (_, claims) = c.s.verify(&assert_ok(ok[0]), API).await;
    assert_eq!(claims["org_id"], oid.as_str());
    assert_eq!(claims["org_name"], org["name"]);
    assert_eq!(usage_counts(&client_usage(&c.s, &id).await), owned(&[("per_hour", 37, 113)]));
    assert_eq!(usage_counts(&org_usage(&c.s, &oid).await), owned(&[("per_hour", 37, 0)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenforced_quota_never_rejects_but_still_counts() {
    let c = Clocked::start(AT_10_00_05).await;
    api(&c.s, API).await;
    let (id, secret) = client(&c.s, API, Some(json!({ "per_hour": 37, "enforce": false }))).await;
    let all = burst(&c, &cc_pairs(&id, &secret, API, None), 200, 50).await;
    let mut remaining = Vec::new();
    for t in &all {
        assert_ok(t);
        let h = t.r.header(CLIENT_H).expect("client quota header");
        let r = parse_quota_header(&h)[0].r;
        remaining.push(r);
        assert_quota_header(t, CLIENT_H, &[("per_hour", 37, r)]);
        assert_no_header(t, ORG_H);
        // No enforced bucket: nothing to advertise as a rate limit.
        assert_no_ratelimit(t);
    }
    remaining.sort_unstable();
    let mut want = vec![0u64; 164];
    want.extend(1..37u64);
    assert_eq!(remaining, want, "r counts down to 0 and stays 0");
    let usage = client_usage(&c.s, &id).await;
    assert_eq!(usage_counts(&usage), owned(&[("per_hour", 200, 0)]), "{usage}");
    assert_eq!(usage["enforce"], false);
}

// -------------------------------------------------------------------------------------------
// 3. Headers, strictly
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn quota_headers_list_only_applicable_quotas_in_order() {
    // 10:20:02: the minute has 58 s left, far from the hour and day boundaries.
    let c = Clocked::start(10 * HOUR_MS + 20 * MINUTE_MS + 2_000).await;
    let s = &c.s;
    api(s, API).await;
    let a_quota = json!({ "per_day": 50, "per_hour": 10, "per_minute": 5 });
    let (a, a_secret) = org_client(s, API, Some(a_quota)).await;
    let (b, b_secret) = org_client(s, API, None).await;
    let o1 = id_of(&create_org(s, &unique("plain"), None).await);
    let o2_obj =
        create_org(s, &unique("watched"), Some(json!({ "per_hour": 4, "per_day": 8, "enforce": false }))).await;
    let o2 = id_of(&o2_obj);
    let o2_name = o2_obj["name"].as_str().unwrap().to_owned();

    let t = c.tok(&a, &a_secret, API, None).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_minute", 5, 4), ("per_hour", 10, 9), ("per_day", 50, 49)]);
    assert_no_header(&t, ORG_H);
    assert_ratelimit(&t, "client_per_minute", 5, "per_minute", 4);
    assert_no_header(&t, "x-ratelimit-limit");

    // An organization without a quota (and no tenant default): no organization header.
    let t = c.tok(&a, &a_secret, API, Some(&o1)).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_minute", 5, 3), ("per_hour", 10, 8), ("per_day", 50, 48)]);
    assert_no_header(&t, ORG_H);

    // An organization with an (unenforced) quota, by name.
    let t = c.tok(&a, &a_secret, API, Some(&o2_name)).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_minute", 5, 2), ("per_hour", 10, 7), ("per_day", 50, 47)]);
    assert_quota_header(&t, ORG_H, &[("per_hour", 4, 3), ("per_day", 8, 7)]);
    assert_ratelimit(&t, "client_per_minute", 5, "per_minute", 2);

    // No quota at all: no quota headers of any kind.
    let t = c.tok(&b, &b_secret, API, None).await;
    assert_ok(&t);
    assert_no_header(&t, CLIENT_H);
    assert_no_header(&t, ORG_H);
    assert_no_ratelimit(&t);

    // Only the organization's quota applies; it is unenforced, so no rate-limit fields.
    let t = c.tok(&b, &b_secret, API, Some(&o2)).await;
    assert_ok(&t);
    assert_no_header(&t, CLIENT_H);
    assert_quota_header(&t, ORG_H, &[("per_hour", 4, 2), ("per_day", 8, 6)]);
    assert_no_ratelimit(&t);

    let t = c.tok(&a, &a_secret, API, None).await;
    assert_quota_header(&t, CLIENT_H, &[("per_minute", 5, 1), ("per_hour", 10, 6), ("per_day", 50, 46)]);
    let t = c.tok(&a, &a_secret, API, None).await;
    assert_quota_header(&t, CLIENT_H, &[("per_minute", 5, 0), ("per_hour", 10, 5), ("per_day", 50, 45)]);
    assert_ratelimit(&t, "client_per_minute", 5, "per_minute", 0);

    // The minute bucket is exhausted.
    for _ in 0..2 {
        let t = c.tok(&a, &a_secret, API, None).await;
        assert_429(&t, "Client quota exceeded", 5, "per_minute");
        assert_quota_header(&t, CLIENT_H, &[("per_minute", 5, 0), ("per_hour", 10, 5), ("per_day", 50, 45)]);
        assert_no_header(&t, ORG_H);
        assert_ratelimit(&t, "client_per_minute", 5, "per_minute", 0);
    }
    // With the (unenforced) organization: still the client's 429, and the org header is there.
    let t = c.tok(&a, &a_secret, API, Some(&o2)).await;
    assert_429(&t, "Client quota exceeded", 5, "per_minute");
    assert_quota_header(&t, ORG_H, &[("per_hour", 4, 2), ("per_day", 8, 6)]);

    // Management API tokens carry no quota headers.
    let (admin, admin_secret) = s.admin_credentials();
    let t = c.tok(&admin, &admin_secret, &s.mgmt_audience(), None).await;
    assert_ok(&t);
    assert_no_header(&t, CLIENT_H);
    assert_no_header(&t, ORG_H);
    assert_no_ratelimit(&t);
}

#[test]
fn quota_header_parser_is_strict() {
    let ok = parse_quota_header("b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200");
    assert_eq!(
        ok,
        vec![
            QuotaBucket { b: "per_hour".into(), q: 10, r: 7, t: 3540 },
            QuotaBucket { b: "per_day".into(), q: 50, r: 47, t: 43200 }
        ]
    );
    for bad in [
        "b=per_hour;q=10;r=7;t=3540, b=per_day;q=50;r=47;t=43200",
        "b=per_day;q=50;r=47;t=43200,b=per_hour;q=10;r=7;t=3540",
        "q=10;b=per_hour;r=7;t=3540",
        "b=per_hour;q=10;r=11;t=3540",
        "b=per_hour;q=10;r=7;t=0",
        "b=per_hour;q=10;r=7;t=3601",
        "b=per_hour;q=10;r=7",
        "b=per_week;q=10;r=7;t=3540",
        "b=per_hour;q=010;r=7;t=3540",
        "b=per_hour;q=10;r=-1;t=3540",
        "b=per_hour;q=10;r=7;t=3540,b=per_hour;q=10;r=7;t=3540",
        "",
    ] {
        assert!(std::panic::catch_unwind(|| parse_quota_header(bad)).is_err(), "parser accepted {bad:?}");
    }
}

// -------------------------------------------------------------------------------------------
// 4. Windows roll over at UTC boundaries
// -------------------------------------------------------------------------------------------

/// Exhausts minute and hour buckets just before 11:00:00 and checks the first request after it.
async fn hour_roll() {
    let boundary_in_day = 11 * HOUR_MS;
    let c = Clocked::start(boundary_in_day - 20_000).await;
    let boundary = c.now_ms().div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
    assert_eq!(boundary.rem_euclid(DAY_MS), boundary_in_day, "server started near 10:59:40");
    api(&c.s, API).await;
    let (a, a_secret) = client(&c.s, API, Some(json!({ "per_minute": 3, "per_hour": 100 }))).await;
    let (b, b_secret) = client(&c.s, API, Some(json!({ "per_hour": 2, "per_day": 1000 }))).await;
    assert!(c.now_ms() < boundary - 6_000, "setup took too long: server already at {}", c.now_ms() - boundary);
    c.sleep_until(boundary - 5_000).await;

    for r in [2, 1, 0] {
        let t = c.tok(&a, &a_secret, API, None).await;
        assert_ok(&t);
        assert_quota_header(&t, CLIENT_H, &[("per_minute", 3, r), ("per_hour", 100, 97 + r)]);
    }
    let t = c.tok(&a, &a_secret, API, None).await;
    assert_429(&t, "Client quota exceeded", 3, "per_minute");
    assert_quota_header(&t, CLIENT_H, &[("per_minute", 3, 0), ("per_hour", 100, 97)]);
    assert_eq!(reset_unix("per_minute", t.a) * 1000, boundary);
    for r in [1, 0] {
        let t = c.tok(&b, &b_secret, API, None).await;
        assert_ok(&t);
        assert_quota_header(&t, CLIENT_H, &[("per_hour", 2, r), ("per_day", 1000, 998 + r)]);
    }
    let t = c.tok(&b, &b_secret, API, None).await;
    assert_429(&t, "Client quota exceeded", 2, "per_hour");
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 2, 0), ("per_day", 1000, 998)]);
    let retry: i64 = t.r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry} just before the hour");
    assert!(t.b < boundary, "the pre-boundary requests finished {} ms late", t.b - boundary);
    assert_eq!(usage_counts(&client_usage(&c.s, &b).await), owned(&[("per_hour", 2, 0), ("per_day", 2, 998)]));

    c.sleep_until(boundary + 300).await;
    let t = c.tok(&a, &a_secret, API, None).await;
    assert_ok(&t);
    let got = assert_quota_header(&t, CLIENT_H, &[("per_minute", 3, 2), ("per_hour", 100, 99)]);
    assert!(got[0].t >= 59 && got[1].t >= 3599, "full windows after the roll: {got:?}");
    let t = c.tok(&b, &b_secret, API, None).await;
    assert_ok(&t);
    // The hour rolled; the day did not.
    let got = assert_quota_header(&t, CLIENT_H, &[("per_hour", 2, 1), ("per_day", 1000, 997)]);
    assert!(got[0].t >= 3599, "full hour after the roll: {got:?}");
    assert_eq!(got[1].t, 13 * 3600, "13 h to midnight from 11:00:00.3");
    assert_eq!(usage_counts(&client_usage(&c.s, &b).await), owned(&[("per_hour", 1, 1), ("per_day", 3, 997)]));
    assert_eq!(usage_counts(&client_usage(&c.s, &a).await), owned(&[("per_minute", 1, 2), ("per_hour", 1, 99)]));
}

/// Exhausts a day bucket (and an organization's) just before midnight and checks the first request
/// after it.
async fn day_roll() {
    let c = Clocked::start(DAY_MS - 20_000).await;
    let boundary = c.now_ms().div_euclid(DAY_MS) * DAY_MS + DAY_MS;
    assert!(boundary - c.now_ms() <= 20_000, "server started near 23:59:40");
    api(&c.s, API).await;
    let (id, secret) = org_client(&c.s, API, Some(json!({ "per_minute": 50, "per_hour": 100, "per_day": 2 }))).await;
    let (id2, secret2) = org_client(&c.s, API, None).await;
    let org = id_of(&create_org(&c.s, &unique("daily"), Some(json!({ "per_day": 1 }))).await);
    assert!(c.now_ms() < boundary - 6_000, "setup took too long: server already at {}", c.now_ms() - boundary);
    c.sleep_until(boundary - 5_000).await;

    for r in [1, 0] {
        let t = c.tok(&id, &secret, API, None).await;
        assert_ok(&t);
        assert_quota_header(&t, CLIENT_H, &[("per_minute", 50, 48 + r), ("per_hour", 100, 98 + r), ("per_day", 2, r)]);
    }
    let t = c.tok(&id, &secret, API, None).await;
    assert_429(&t, "Client quota exceeded", 2, "per_day");
    assert_eq!(reset_unix("per_day", t.a) * 1000, boundary);
    let t = c.tok(&id2, &secret2, API, Some(&org)).await;
    assert_ok(&t);
    assert_quota_header(&t, ORG_H, &[("per_day", 1, 0)]);
    let t = c.tok(&id2, &secret2, API, Some(&org)).await;
    assert_429(&t, "Organization quota exceeded", 1, "per_day");
    let retry: i64 = t.r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry} just before midnight");
    assert!(t.b < boundary, "the pre-boundary requests finished {} ms late", t.b - boundary);

    c.sleep_until(boundary + 300).await;
    let t = c.tok(&id, &secret, API, None).await;
    assert_ok(&t);
    let got = assert_quota_header(&t, CLIENT_H, &[("per_minute", 50, 49), ("per_hour", 100, 99), ("per_day", 2, 1)]);
    assert!(got[2].t >= 86_399, "a full day after midnight: {got:?}");
    let t = c.tok(&id2, &secret2, API, Some(&org)).await;
    assert_ok(&t);
    let got = assert_quota_header(&t, ORG_H, &[("per_day", 1, 0)]);
    assert!(got[0].t >= 86_399, "a full day after midnight: {got:?}");
    assert_eq!(usage_counts(&org_usage(&c.s, &org).await), owned(&[("per_day", 1, 0)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_reset_at_utc_minute_hour_and_day_boundaries() {
    tokio::join!(hour_roll(), day_roll());
}

// -------------------------------------------------------------------------------------------
// 5. Tenant defaults and overrides
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn tenant_defaults_apply_unless_overridden() {
    let c = Clocked::start(AT_10_00_05).await;
    let s = &c.s;
    api(s, API).await;
    s.mgmt(
        Method::PATCH,
        "/tenants/settings",
        Some(json!({ "default_token_quota": {
            "clients": cc_quota(json!({ "per_hour": 3 })),
            "organizations": cc_quota(json!({ "per_hour": 2 })),
        }})),
    )
    .await
    .expect(200);
    let (a, a_secret) = org_client(s, API, None).await;
    let (b, b_secret) = org_client(s, API, Some(json!({ "per_hour": 5 }))).await;
    let x = id_of(&create_org(s, &unique("x"), None).await);
    let y = id_of(&create_org(s, &unique("y"), Some(json!({ "per_hour": 4 }))).await);
    let z = id_of(&create_org(s, &unique("z"), None).await);

    let t = c.tok(&a, &a_secret, API, None).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 3, 2)]);
    assert_no_header(&t, ORG_H);
    let t = c.tok(&b, &b_secret, API, None).await;
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 5, 4)]);
    let t = c.tok(&b, &b_secret, API, Some(&x)).await;
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 5, 3)]);
    assert_quota_header(&t, ORG_H, &[("per_hour", 2, 1)]);
    let t = c.tok(&b, &b_secret, API, Some(&y)).await;
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 5, 2)]);
    assert_quota_header(&t, ORG_H, &[("per_hour", 4, 3)]);
    // Each organization under the default has its own count.
    let t = c.tok(&b, &b_secret, API, Some(&z)).await;
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 5, 1)]);
    assert_quota_header(&t, ORG_H, &[("per_hour", 2, 1)]);
    let t = c.tok(&a, &a_secret, API, Some(&x)).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 3, 1)]);
    assert_quota_header(&t, ORG_H, &[("per_hour", 2, 0)]);
    let t = c.tok(&a, &a_secret, API, Some(&x)).await;
    assert_429(&t, "Organization quota exceeded", 2, "per_hour");
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 3, 1)]);
    assert_quota_header(&t, ORG_H, &[("per_hour", 2, 0)]);
    let t = c.tok(&a, &a_secret, API, None).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 3, 0)]);
    let t = c.tok(&a, &a_secret, API, Some(&y)).await;
    assert_429(&t, "Client quota exceeded", 3, "per_hour");
    assert_quota_header(&t, ORG_H, &[("per_hour", 4, 3)]);

    let ua = client_usage(s, &a).await;
    assert_eq!(ua["source"], "tenant_default", "{ua}");
    assert_eq!(usage_counts(&ua), owned(&[("per_hour", 3, 0)]));
    let ub = client_usage(s, &b).await;
    assert_eq!(ub["source"], "client", "{ub}");
    assert_eq!(usage_counts(&ub), owned(&[("per_hour", 4, 1)]));
    let ux = org_usage(s, &x).await;
    assert_eq!(ux["source"], "tenant_default", "{ux}");
    assert_eq!(usage_counts(&ux), owned(&[("per_hour", 2, 0)]));
    let uy = org_usage(s, &y).await;
    assert_eq!(uy["source"], "organization", "{uy}");
    assert_eq!(usage_counts(&uy), owned(&[("per_hour", 1, 3)]));

    // Management API tokens are never counted, even under a tenant-wide default of 3.
    let (admin, admin_secret) = s.admin_credentials();
    for _ in 0..6 {
        let t = c.tok(&admin, &admin_secret, &s.mgmt_audience(), None).await;
        assert_ok(&t);
        assert_no_header(&t, CLIENT_H);
        assert_no_ratelimit(&t);
    }

    // Removing the defaults removes the quotas that came from them.
    s.mgmt(Method::PATCH, "/tenants/settings", Some(json!({ "default_token_quota": null }))).await.expect(200);
    let t = c.tok(&a, &a_secret, API, Some(&x)).await;
    assert_ok(&t);
    assert_no_header(&t, CLIENT_H);
    assert_no_header(&t, ORG_H);
    let t = c.tok(&b, &b_secret, API, Some(&x)).await;
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 5, 0)]);
    assert_no_header(&t, ORG_H);
    let ua = client_usage(s, &a).await;
    assert!(ua["source"].is_null(), "{ua}");
    assert_eq!(ua["buckets"], json!([]), "{ua}");
}

// -------------------------------------------------------------------------------------------
// 6. Changes apply on the next request
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn quota_changes_take_effect_on_the_next_request() {
    let c = Clocked::start(AT_10_00_05).await;
    let s = &c.s;
    api(s, API).await;
    let (id, secret) = org_client(s, API, Some(json!({ "per_hour": 10 }))).await;
    for r in (5..10).rev() {
        let t = c.tok(&id, &secret, API, None).await;
        assert_ok(&t);
        assert_quota_header(&t, CLIENT_H, &[("per_hour", 10, r)]);
    }
    // Lowered below current use: blocked at once.
    patch_client_quota(s, &id, cc_quota(json!({ "per_hour": 3 }))).await;
    let t = c.tok(&id, &secret, API, None).await;
    assert_429(&t, "Client quota exceeded", 3, "per_hour");
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 3, 0)]);
    // Raised: unblocked, and the 429 did not count.
    patch_client_quota(s, &id, cc_quota(json!({ "per_hour": 7 }))).await;
    for r in [1, 0] {
        let t = c.tok(&id, &secret, API, None).await;
        assert_ok(&t);
        assert_quota_header(&t, CLIENT_H, &[("per_hour", 7, r)]);
    }
    let t = c.tok(&id, &secret, API, None).await;
    assert_429(&t, "Client quota exceeded", 7, "per_hour");
    // Monitoring only: issued and counted.
    patch_client_quota(s, &id, cc_quota(json!({ "per_hour": 7, "enforce": false }))).await;
    let t = c.tok(&id, &secret, API, None).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 7, 0)]);
    assert_eq!(usage_counts(&client_usage(s, &id).await), owned(&[("per_hour", 8, 0)]));
    // Removed: no headers, and tokens issued without a quota are not counted.
    patch_client_quota(s, &id, Value::Null).await;
    for _ in 0..3 {
        let t = c.tok(&id, &secret, API, None).await;
        assert_ok(&t);
        assert_no_header(&t, CLIENT_H);
        assert_no_ratelimit(&t);
    }
    patch_client_quota(s, &id, cc_quota(json!({ "per_hour": 10 }))).await;
    let t = c.tok(&id, &secret, API, None).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 10, 1)]);

    // The same for an organization.
    let (id2, secret2) = org_client(s, API, None).await;
    let org = id_of(&create_org(s, &unique("chg"), Some(json!({ "per_hour": 5 }))).await);
    for r in [4, 3, 2] {
        let t = c.tok(&id2, &secret2, API, Some(&org)).await;
        assert_quota_header(&t, ORG_H, &[("per_hour", 5, r)]);
    }
    patch_org_quota(s, &org, cc_quota(json!({ "per_hour": 2 }))).await;
    let t = c.tok(&id2, &secret2, API, Some(&org)).await;
    assert_429(&t, "Organization quota exceeded", 2, "per_hour");
    assert_quota_header(&t, ORG_H, &[("per_hour", 2, 0)]);
    patch_org_quota(s, &org, cc_quota(json!({ "per_hour": 4 }))).await;
    let t = c.tok(&id2, &secret2, API, Some(&org)).await;
    assert_ok(&t);
    assert_quota_header(&t, ORG_H, &[("per_hour", 4, 0)]);
    patch_org_quota(s, &org, Value::Null).await;
    let t = c.tok(&id2, &secret2, API, Some(&org)).await;
    assert_ok(&t);
    assert_no_header(&t, ORG_H);
}

#[tokio::test]
async fn rejected_and_failed_requests_consume_nothing() {
    let c = Clocked::start(AT_10_00_05).await;
    let s = &c.s;
    api(s, API).await;
    api(s, API2).await;
    let (id, secret) = client(s, API, Some(json!({ "per_hour": 3 }))).await;
    let org = id_of(&create_org(s, &unique("nope"), None).await);
    for _ in 0..3 {
        assert_eq!(c.tok(&id, "wrong-secret", API, None).await.r.status, 401);
        let mut pairs = cc_pairs(&id, &secret, API, None);
        pairs.push(("scope".into(), "write".into()));
        assert_eq!(s.token_form(&pairs_ref(&pairs)).await.status, 403, "scope not granted");
        assert_eq!(c.tok(&id, &secret, API2, None).await.r.status, 403, "no grant for API2");
        assert_eq!(c.tok(&id, &secret, "https://unknown.example.com/", None).await.r.status, 403);
        assert_eq!(c.tok(&id, &secret, API, Some(&org)).await.r.status, 400, "organization with a deny grant");
    }
    assert_eq!(usage_counts(&client_usage(s, &id).await), owned(&[("per_hour", 0, 3)]));
    for r in [2, 1, 0] {
        let t = c.tok(&id, &secret, API, None).await;
        assert_ok(&t);
        assert_quota_header(&t, CLIENT_H, &[("per_hour", 3, r)]);
    }
    for _ in 0..4 {
        assert_429(&c.tok(&id, &secret, API, None).await, "Client quota exceeded", 3, "per_hour");
    }
    assert_eq!(usage_counts(&client_usage(s, &id).await), owned(&[("per_hour", 3, 0)]));
    patch_client_quota(s, &id, cc_quota(json!({ "per_hour": 4 }))).await;
    let t = c.tok(&id, &secret, API, None).await;
    assert_ok(&t);
    assert_quota_header(&t, CLIENT_H, &[("per_hour", 4, 0)]);
}

// -------------------------------------------------------------------------------------------
// 7. Consumption warnings
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn consumption_warnings_at_60_80_and_100_percent() {
    let c = Clocked::start(AT_10_00_05).await;
    let s = &c.s;
    api(s, API).await;
    let (a, a_secret) = client(s, API, Some(json!({ "per_hour": 10 }))).await;
    let (b, b_secret) = client(s, API, Some(json!({ "per_hour": 10, "enforce": false }))).await;
    let (cc, c_secret) = client(s, API, Some(json!({ "per_hour": 7, "per_day": 20 }))).await;
    let (d, d_secret) = org_client(s, API, None).await;
    let (e, e_secret) = client(s, API, Some(json!({ "per_hour": 1 }))).await;
    let org = id_of(&create_org(s, &unique("warn"), Some(json!({ "per_hour": 5 }))).await);

    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(c.tok(&a, &a_secret, API, None).await.r.status);
    }
    assert_eq!(statuses, [vec![200; 10], vec![429; 2]].concat());
    for _ in 0..15 {
        assert_eq!(c.tok(&b, &b_secret, API, None).await.r.status, 200);
    }
    for _ in 0..7 {
        assert_eq!(c.tok(&cc, &c_secret, API, None).await.r.status, 200);
    }
    assert_eq!(c.tok(&cc, &c_secret, API, None).await.r.status, 429);
    for _ in 0..5 {
        assert_eq!(c.tok(&d, &d_secret, API, Some(&org)).await.r.status, 200);
    }
    assert_eq!(c.tok(&d, &d_secret, API, Some(&org)).await.r.status, 429);
    assert_eq!(c.tok(&e, &e_secret, API, None).await.r.status, 200);
    assert_eq!(c.tok(&e, &e_secret, API, None).await.r.status, 429);

    // 3 each for a, b, c (hour), the organization and e; none for c's day bucket (7 of 20 = 35 %).
    let events = wait_events(s, "token_quota_consumption_warning", 15).await;
    let expect = |entity_type: &str, entity_id: &str, client_id: &str, quota: u64, counts: [u64; 3]| {
        let mut mine: Vec<&Value> = events.iter().filter(|e| e["details"]["entity_id"] == entity_id).collect();
        mine.sort_by_key(|e| e["details"]["quota_consumption_percentage"].as_u64());
        assert_eq!(mine.len(), 3, "3 warnings for {entity_id}: {mine:?}");
        for (ev, (pct, count)) in mine.iter().zip([60u64, 80, 100].into_iter().zip(counts)) {
            assert_eq!(ev["type"], "token_quota_consumption_warning");
            assert_eq!(ev["description"], format!("{pct}% of {entity_type} per_hour quota consumed"), "{ev}");
            assert_eq!(ev["client_id"], client_id, "{ev}");
            let d = &ev["details"];
            let got = json!({
                "bucket": d["bucket"], "entity_type": d["entity_type"], "entity_id": d["entity_id"],
                "quota": d["quota"], "quota_consumption_percentage": d["quota_consumption_percentage"],
                "quota_consumption": d["quota_consumption"],
            });
            let want = json!({
                "bucket": "per_hour", "entity_type": entity_type, "entity_id": entity_id, "quota": quota,
                "quota_consumption_percentage": pct, "quota_consumption": count,
            });
            assert_eq!(got, want, "{ev}");
            assert!(ev["log_id"].as_str().is_some_and(|l| !l.is_empty()), "log_id in {ev}");
            assert!(ev["date"].is_string(), "date in {ev}");
        }
    };
    expect("client", &a, &a, 10, [6, 8, 10]);
    expect("client", &b, &b, 10, [6, 8, 10]);
    expect("client", &cc, &cc, 7, [5, 6, 7]);
    expect("organization", &org, &d, 5, [3, 4, 5]);
    expect("client", &e, &e, 1, [1, 1, 1]);

    // Each quota 429 writes one feccft.
    let failures = wait_events(s, "feccft", 5).await;
    let mut by_client: Vec<(String, String)> = failures
        .iter()
        .map(|f| {
            (
                f["client_id"].as_str().unwrap_or_default().to_owned(),
                f["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    by_client.sort();
    let mut want = vec![
        (a.clone(), "Client quota exceeded".to_owned()),
        (a.clone(), "Client quota exceeded".to_owned()),
        (cc.clone(), "Client quota exceeded".to_owned()),
        (d.clone(), "Organization quota exceeded".to_owned()),
        (e.clone(), "Client quota exceeded".to_owned()),
    ];
    want.sort();
    assert_eq!(by_client, want);
}

// -------------------------------------------------------------------------------------------
// 8. Live usage
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn quota_usage_endpoints_report_live_counts() {
    let c = Clocked::start(AT_10_00_05).await;
    let s = &c.s;
    api(s, API).await;
    let quota = json!({ "per_minute": 50, "per_hour": 10, "per_day": 20 });
    let (a, a_secret) = client(s, API, Some(quota.clone())).await;
    for _ in 0..4 {
        assert_ok(&c.tok(&a, &a_secret, API, None).await);
    }
    let before = c.now_ms();
    let u = client_usage(s, &a).await;
    let after = c.now_ms();
    assert_eq!(u["source"], "client", "{u}");
    assert_eq!(u["enforce"], true, "{u}");
    assert_quota_is(&u["token_quota"], &quota);
    let buckets = u["buckets"].as_array().expect("buckets");
    let want = [("per_minute", 50, 4), ("per_hour", 10, 4), ("per_day", 20, 4)];
    assert_eq!(buckets.len(), 3, "{u}");
    for (b, (name, q, used)) in buckets.iter().zip(want) {
        assert_eq!(b["bucket"], name, "{b}");
        assert_eq!(b["quota"], q, "{b}");
        assert_eq!(b["used"], used, "{b}");
        assert_eq!(b["remaining"], q - used, "{b}");
        let resets_at = b["resets_at"].as_str().unwrap_or_else(|| panic!("resets_at in {b}"));
        let expected = civil(reset_unix(name, before));
        assert!(resets_at.starts_with(&expected) && resets_at.ends_with('Z'), "resets_at {resets_at} vs {expected}");
        let reset_in = b["reset_in"].as_i64().unwrap_or_else(|| panic!("reset_in in {b}"));
        let range = t_range(name, before, after);
        assert!(range.contains(&reset_in), "reset_in {reset_in} not in {range:?}");
    }
    for _ in 0..6 {
        assert_ok(&c.tok(&a, &a_secret, API, None).await);
    }
    for _ in 0..2 {
        assert_eq!(c.tok(&a, &a_secret, API, None).await.r.status, 429);
    }
    assert_eq!(
        usage_counts(&client_usage(s, &a).await),
        owned(&[("per_minute", 10, 40), ("per_hour", 10, 0), ("per_day", 10, 10)])
    );

    // No quota anywhere.
    let (b, b_secret) = org_client(s, API, None).await;
    let (c2, c2_secret) = org_client(s, API, None).await;
    let ub = client_usage(s, &b).await;
    assert!(ub["source"].is_null() && ub["token_quota"].is_null(), "{ub}");
    assert_eq!(ub["buckets"], json!([]));

    // An organization counts all clients together.
    let org = id_of(&create_org(s, &unique("use"), Some(json!({ "per_hour": 6 }))).await);
    let plain = id_of(&create_org(s, &unique("plain"), None).await);
    for _ in 0..2 {
        assert_ok(&c.tok(&b, &b_secret, API, Some(&org)).await);
        assert_ok(&c.tok(&c2, &c2_secret, API, Some(&org)).await);
    }
    let uo = org_usage(s, &org).await;
    assert_eq!(uo["source"], "organization", "{uo}");
    assert_eq!(uo["enforce"], true, "{uo}");
    assert_quota_is(&uo["token_quota"], &json!({ "per_hour": 6 }));
    assert_eq!(usage_counts(&uo), owned(&[("per_hour", 4, 2)]));
    let up = org_usage(s, &plain).await;
    assert!(up["source"].is_null(), "{up}");
    assert_eq!(up["buckets"], json!([]));
    s.mgmt(
        Method::PATCH,
        "/tenants/settings",
        Some(
            json!({ "default_token_quota": { "organizations": cc_quota(json!({ "per_day": 9, "enforce": false })) } }),
        ),
    )
    .await
    .expect(200);
    let up = org_usage(s, &plain).await;
    assert_eq!(up["source"], "tenant_default", "{up}");
    assert_eq!(up["enforce"], false, "{up}");
    assert_eq!(usage_counts(&up), owned(&[("per_day", 0, 9)]));

    let r = s.mgmt(Method::GET, "/clients/nosuchclient/quota-usage", None).await;
    assert_eq!(r.status, 404, "{}", r.json);
    let r = s.mgmt(Method::GET, "/organizations/org_nosuchorg/quota-usage", None).await;
    assert_eq!(r.status, 404, "{}", r.json);
}

// -------------------------------------------------------------------------------------------
// 10. Organizations: CRUD, associations, errors and claims
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn organization_crud_and_grant_associations() {
    let s = TestServer::start().await;
    api(&s, API).await;
    let name = unique("crud");
    let org = create_org(&s, &name, None).await;
    let oid = id_of(&org);
    assert_eq!(org["display_name"], format!("Org {name}"));
    let r = s.mgmt(Method::POST, "/organizations", Some(json!({ "name": name }))).await;
    assert_mgmt_error(&r, 409, "Conflict", None);
    assert_eq!(s.mgmt(Method::GET, &format!("/organizations/{oid}"), None).await.expect(200), org);
    let v = s
        .mgmt(Method::PATCH, &format!("/organizations/{oid}"), Some(json!({ "display_name": "Renamed" })))
        .await
        .expect(200);
    assert_eq!(v["display_name"], "Renamed");
    assert_eq!(v["name"], name.as_str());
    let listed = s.mgmt(Method::GET, "/organizations", None).await.expect(200);
    let listed =
        listed.as_array().cloned().unwrap_or_else(|| listed["organizations"].as_array().cloned().unwrap_or_default());
    assert!(listed.iter().any(|o| o["id"] == oid.as_str()), "listed: {listed:?}");

    let (cid, secret) = s.create_client(&unique("assoc-"), json!({})).await;
    let grant = org_grant(&s, &cid, API, "allow", false).await;
    associate(&s, &oid, &grant).await;
    let r =
        s.mgmt(Method::POST, &format!("/organizations/{oid}/client-grants"), Some(json!({ "grant_id": grant }))).await;
    assert_eq!(r.status, 409, "duplicate association: {}", r.json);
    let grants = s.mgmt(Method::GET, &format!("/organizations/{oid}/client-grants"), None).await.expect(200);
    let grants =
        grants.as_array().cloned().unwrap_or_else(|| grants["client_grants"].as_array().cloned().unwrap_or_default());
    assert_eq!(grants.iter().map(|g| g["id"].clone()).collect::<Vec<_>>(), vec![json!(grant)]);
    assert_eq!(s.token_form(&pairs_ref(&cc_pairs(&cid, &secret, API, Some(&oid)))).await.status, 200);

    let r = s.mgmt(Method::DELETE, &format!("/organizations/{oid}/client-grants/{grant}"), None).await;
    assert_eq!(r.status, 204, "{}", r.json);
    let grants = s.mgmt(Method::GET, &format!("/organizations/{oid}/client-grants"), None).await.expect(200);
    let grants =
        grants.as_array().cloned().unwrap_or_else(|| grants["client_grants"].as_array().cloned().unwrap_or_default());
    assert!(grants.is_empty(), "{grants:?}");
    let r = s.token_form(&pairs_ref(&cc_pairs(&cid, &secret, API, Some(&oid)))).await;
    assert_eq!(r.status, 403, "no longer associated: {}", r.json);
    assert_eq!(assert_oauth_error_shape(&r).0, "access_denied");

    let r = s.mgmt(Method::DELETE, &format!("/organizations/{oid}"), None).await;
    assert_eq!(r.status, 204, "{}", r.json);
    assert_eq!(s.mgmt(Method::GET, &format!("/organizations/{oid}"), None).await.status, 404);
    check_token_error(
        &s,
        &TokenReq::Form(cc_pairs(&cid, &secret, API, Some(&oid))),
        403,
        "access_denied",
        &Desc::is(format!("Organization not found: {oid}")),
    )
    .await;
}

#[tokio::test]
async fn organization_token_errors_and_claims() {
    let s = TestServer::start().await;
    let (deny_api, allow_api, require_api, any_api) = (
        "https://deny.example.com/",
        "https://allow.example.com/",
        "https://require.example.com/",
        "https://any.example.com/",
    );
    for a in [deny_api, allow_api, require_api, any_api] {
        api(&s, a).await;
    }
    let org1 = create_org(&s, &unique("one"), None).await;
    let org2 = create_org(&s, &unique("two"), None).await;
    let (o1, o1_name) = (id_of(&org1), org1["name"].as_str().unwrap().to_owned());
    let (o2, o2_name) = (id_of(&org2), org2["name"].as_str().unwrap().to_owned());

    let (cid, secret) = s.create_client(&unique("orgerr-"), json!({})).await;
    s.create_grant(&cid, deny_api, &["read"]).await; // organization_usage defaults to deny
    let g_allow = org_grant(&s, &cid, allow_api, "allow", false).await;
    let g_req = org_grant(&s, &cid, require_api, "require", false).await;
    org_grant(&s, &cid, any_api, "allow", true).await;
    associate(&s, &o1, &g_allow).await;
    associate(&s, &o1, &g_req).await;

    // A client whose default organization is org1.
    let (did, dsecret) = s
        .create_client(
            &unique("deforg-"),
            json!({ "default_organization": { "organization_id": o1, "flows": ["client_credentials"] } }),
        )
        .await;
    let dg_req = org_grant(&s, &did, require_api, "require", false).await;
    let dg_allow = org_grant(&s, &did, allow_api, "allow", false).await;
    associate(&s, &o1, &dg_req).await;
    associate(&s, &o1, &dg_allow).await;

    let req = |id: &str, sec: &str, aud: &str, org: Option<&str>| TokenReq::Form(cc_pairs(id, sec, aud, org));
    let errors: Vec<(TokenReq, u16, &str, Desc)> = vec![
        (req(&cid, &secret, deny_api, Some(&o1)), 400, "invalid_request", Desc::contains("organization")),
        (req(&cid, &secret, deny_api, Some(&o1_name)), 400, "invalid_request", Desc::contains("organization")),
        (req(&cid, &secret, require_api, None), 400, "invalid_request", Desc::contains("organization")),
        (
            req(&cid, &secret, allow_api, Some("org_doesnotexist")),
            403,
            "access_denied",
            Desc::is("Organization not found: org_doesnotexist"),
        ),
        (
            req(&cid, &secret, require_api, Some("nosuchname")),
            403,
            "access_denied",
            Desc::is("Organization not found: nosuchname"),
        ),
        (
            req(&cid, &secret, any_api, Some("nosuchname")),
            403,
            "access_denied",
            Desc::is("Organization not found: nosuchname"),
        ),
        (req(&cid, &secret, allow_api, Some(&o2)), 403, "access_denied", Desc::contains(&o2)),
        (req(&cid, &secret, allow_api, Some(&o2_name)), 403, "access_denied", Desc::starts("")),
        (req(&cid, &secret, require_api, Some(&o2)), 403, "access_denied", Desc::contains(&o2)),
        (req(&did, &dsecret, require_api, Some(&o2)), 403, "access_denied", Desc::contains(&o2)),
    ];
    for (r, status, error, desc) in &errors {
        check_token_error(&s, r, *status, error, desc).await;
    }

    // (client, secret, audience, organization param, expected org (id, name) in the token)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<(&'a str, &'a str)>);
    let oks: Vec<Case> = vec![
        (&cid, &secret, deny_api, None, None),
        (&cid, &secret, allow_api, None, None),
        (&cid, &secret, allow_api, Some(&o1), Some((&o1, &o1_name))),
        (&cid, &secret, allow_api, Some(&o1_name), Some((&o1, &o1_name))),
        (&cid, &secret, require_api, Some(&o1), Some((&o1, &o1_name))),
        (&cid, &secret, require_api, Some(&o1_name), Some((&o1, &o1_name))),
        (&cid, &secret, any_api, Some(&o2), Some((&o2, &o2_name))),
        (&cid, &secret, any_api, Some(&o2_name), Some((&o2, &o2_name))),
        (&cid, &secret, any_api, None, None),
        // The default organization applies only where one is required.
        (&did, &dsecret, require_api, None, Some((&o1, &o1_name))),
        (&did, &dsecret, allow_api, None, None),
        (&did, &dsecret, allow_api, Some(&o1), Some((&o1, &o1_name))),
    ];
    for (id, sec, aud, org, want) in oks {
        let r = s.token_form(&pairs_ref(&cc_pairs(id, sec, aud, org))).await;
        let token = assert_token_response(&r, "read", r.json["expires_in"].as_i64().unwrap_or(-1));
        let (_, claims) = s.verify(&token, aud).await;
        match want {
            Some((oid, oname)) => {
                assert_eq!(claims["org_id"], oid, "org_id for {aud} {org:?}: {claims}");
                assert_eq!(claims["org_name"], oname, "org_name for {aud} {org:?}: {claims}");
            }
            None => {
                assert!(claims.get("org_id").is_none(), "no org_id for {aud} {org:?}: {claims}");
                assert!(claims.get("org_name").is_none(), "no org_name for {aud} {org:?}: {claims}");
            }
        }
    }

    // Removing the client's default organization makes `require` fail again.
    s.mgmt(Method::PATCH, &format!("/clients/{did}"), Some(json!({ "default_organization": null }))).await.expect(200);
    check_token_error(
        &s,
        &req(&did, &dsecret, require_api, None),
        400,
        "invalid_request",
        &Desc::contains("organization"),
    )
    .await;
}
