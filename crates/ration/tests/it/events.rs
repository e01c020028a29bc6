//! Acceptance tests for issue 4, part 1: the event log. `seccft` for every issued token (durable
//! before the 200), `feccft` for every failed exchange, `sapi` for every Management API write
//! (never a secret), unique increasing `log_id`s, `GET /api/v2/logs` (search and checkpoint
//! paging, `q`, totals, bad parameters) and retention.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) const OFFSET_ENV: &str = "RATION_TEST_CLOCK_OFFSET_MS";
const API: &str = "https://events.example.com/";
const FORM: &str = "application/x-www-form-urlencoded";
const UA: &str = "ration-events-test/1.0 (+acceptance)";
const DAY_MS: i64 = 86_400_000;

// -------------------------------------------------------------------------------------------
// Helpers (also used by log_streams.rs)
// -------------------------------------------------------------------------------------------

/// `GET /api/v2/logs?{query}`, expecting 200 and an array.
pub(crate) async fn logs(s: &TestServer, query: &str) -> Vec<Value> {
    let v = s.mgmt(Method::GET, &format!("/logs?{query}"), None).await.expect(200);
    v.as_array().unwrap_or_else(|| panic!("GET /logs?{query} returns an array: {v}")).clone()
}

/// `GET /api/v2/logs?q=<q>&per_page=100`.
pub(crate) async fn logs_q(s: &TestServer, q: &str) -> Vec<Value> {
    logs(s, &format!("q={}&per_page=100", urlencode(q))).await
}

/// Events of `ty` for `client_id` (at most 100).
pub(crate) async fn events_for(s: &TestServer, ty: &str, client_id: &str) -> Vec<Value> {
    logs_q(s, &format!("type:{ty} AND client_id:\"{client_id}\"")).await
}

pub(crate) fn log_id(ev: &Value) -> String {
    ev["log_id"].as_str().unwrap_or_else(|| panic!("log_id string in {ev}")).to_owned()
}

pub(crate) fn jti_of(access_token: &str) -> String {
    raw_claims(access_token)["jti"].as_str().unwrap_or_else(|| panic!("jti claim in {access_token}")).to_owned()
}

pub(crate) fn event_jti(ev: &Value) -> String {
    ev["details"]["access_token_jti"]
        .as_str()
        .unwrap_or_else(|| panic!("details.access_token_jti string in {ev}"))
        .to_owned()
}

/// A `log_id`: a non-empty string of ASCII digits.
#[track_caller]
pub(crate) fn assert_log_id_shape(id: &str) {
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()), "log_id is a digit string: {id:?}");
}

/// The `Link: <url>; rel="next"` target, as a path under `/api/v2` (e.g. `/logs?from=…&take=…`).
#[track_caller]
pub(crate) fn link_next(r: &Resp) -> String {
    let link = r.header("link").unwrap_or_else(|| panic!("checkpoint response has a Link header; body {}", r.json));
    let part = link
        .split(',')
        .find(|p| p.contains("rel=\"next\"") || p.contains("rel=next"))
        .unwrap_or_else(|| panic!("Link has rel=\"next\": {link:?}"));
    let start = part.find('<').unwrap_or_else(|| panic!("Link has <url>: {link:?}"));
    let end = part.find('>').unwrap_or_else(|| panic!("Link has <url>: {link:?}"));
    let url = &part[start + 1..end];
    let i = url.find("/api/v2/logs?").unwrap_or_else(|| panic!("Link next points at /api/v2/logs?…: {url:?}"));
    url[i + "/api/v2".len()..].to_owned()
}

/// The value of query parameter `name` in `path_and_query`.
pub(crate) fn query_param(path_and_query: &str, name: &str) -> Option<String> {
    let q = path_and_query.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_owned())
    })
}

/// Every event after `from`, by following checkpoint pages of `take`.
pub(crate) async fn events_after(s: &TestServer, from: &str, take: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/logs?from={from}&take={take}");
    for _ in 0..10_000 {
        let r = s.mgmt(Method::GET, &path, None).await;
        let page = r.expect(200);
        let items = page.as_array().unwrap_or_else(|| panic!("checkpoint page is an array: {page}")).clone();
        assert!(items.len() <= take as usize, "checkpoint page larger than take={take}: {}", items.len());
        if items.is_empty() {
            return out;
        }
        out.extend(items);
        path = link_next(&r);
    }
    panic!("checkpoint paging does not end");
}

/// The newest event's `log_id` (the event log always holds at least the admin's token event).
pub(crate) async fn newest_log_id(s: &TestServer) -> String {
    let page = logs(s, "per_page=1").await;
    log_id(page.first().unwrap_or_else(|| panic!("the event log is empty")))
}

/// Polls `GET /logs?q=<q>` until `done(events)` holds.
pub(crate) async fn wait_logs(
    s: &TestServer,
    q: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let evs = logs_q(s, q).await;
        if done(&evs) {
            return evs;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}; q={q}; events: {}", Value::Array(evs));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` (UTC) of a unix time in seconds.
pub(crate) fn ymd(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses an RFC 3339 UTC date-time (`YYYY-MM-DDTHH:MM:SS[.fff]Z` or `+00:00`) to unix ms.
#[track_caller]
pub(crate) fn rfc3339_ms(s: &str) -> i64 {
    let bad = || panic!("date is not an RFC 3339 UTC date-time: {s:?}");
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        bad();
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        let t = &s[r];
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            bad();
        }
        t.parse().unwrap()
    };
    let (y, mo, d, h, mi, se) = (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            bad();
        }
        let padded = format!("{digits:0<3}");
        frac_ms = padded[..3].parse().unwrap();
        rest = &f[digits.len()..];
    }
    if !(rest == "Z" || rest == "z" || rest == "+00:00") {
        bad();
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        bad();
    }
    ((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se) * 1000) + frac_ms
}

pub(crate) fn real_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `absent`, `null` or `""`.
pub(crate) fn is_blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// The fields every event carries.
#[track_caller]
pub(crate) fn assert_common(ev: &Value, ty: &str, now_ms: i64, clock_slack_ms: i64) {
    assert_eq!(ev["type"], ty, "type in {ev}");
    assert_log_id_shape(&log_id(ev));
    let date = ev["date"].as_str().unwrap_or_else(|| panic!("date string in {ev}"));
    let t = rfc3339_ms(date);
    assert!((t - now_ms).abs() <= clock_slack_ms, "date {date} is now (±{clock_slack_ms} ms) in {ev}");
    assert!(ev["description"].as_str().is_some_and(|d| !d.is_empty()), "description in {ev}");
}

/// The API `API` with scopes `read` and `write` (created once per server: a second call gets 409).
async fn api(s: &TestServer) {
    let body = json!({ "identifier": API, "name": "Events API",
                       "scopes": [{ "value": "read", "description": "r" }, { "value": "write", "description": "w" }] });
    let r = s.mgmt(Method::POST, "/resource-servers", Some(body)).await;
    assert!(r.status == 201 || r.status == 409, "create API: {} {}", r.status, r.json);
}

/// The API, and a client (named `name`) granted `granted` on it.
async fn setup(s: &TestServer, name: &str, granted: &[&str]) -> (String, String) {
    api(s).await;
    let (id, secret) = s.create_client(name, json!({})).await;
    if !granted.is_empty() {
        s.create_grant(&id, API, granted).await;
    }
    (id, secret)
}

fn pairs(id: &str, secret: &str, audience: &str, scope: Option<&str>) -> Vec<(String, String)> {
    let mut p = owned_pairs(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("audience", audience),
    ]);
    if let Some(sc) = scope {
        p.push(("scope".into(), sc.into()));
    }
    p
}

/// A token request (form body) with our User-Agent; extra headers optional.
async fn token_ua(s: &TestServer, pairs: &[(String, String)], headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("user-agent", UA)];
    h.extend_from_slice(headers);
    s.post_raw("/oauth/token", Some(FORM), form_body(&pairs_ref(pairs)).into_bytes(), &h).await
}

// -------------------------------------------------------------------------------------------
// seccft
// -------------------------------------------------------------------------------------------

#[track_caller]
fn assert_seccft(ev: &Value, client_id: &str, client_name: &str, audience: &str, scope: &str, jti: &str) {
    assert_common(ev, "seccft", real_now_ms(), 120_000);
    assert_eq!(ev["description"], "Client Credentials for Access Token", "description in {ev}");
    assert_eq!(ev["client_id"], client_id, "client_id in {ev}");
    assert_eq!(ev["client_name"], client_name, "client_name in {ev}");
    assert_eq!(ev["audience"], audience, "audience in {ev}");
    assert_eq!(ev["scope"], scope, "scope (space-separated) in {ev}");
    assert_eq!(ev["ip"], "127.0.0.1", "ip in {ev}");
    assert_eq!(ev["user_agent"], UA, "user_agent in {ev}");
    assert!(ev["hostname"].as_str().is_some_and(|h| !h.is_empty()), "hostname in {ev}");
    assert_eq!(ev["details"]["access_token_jti"], jti, "details.access_token_jti is the token's jti in {ev}");
}

#[tokio::test]
async fn seccft_is_stored_before_the_200_and_describes_the_exchange() {
    let s = TestServer::start().await;
    let name = unique("seccft-client-");
    let (id, secret) = setup(&s, &name, &["read", "write"]).await;
    let basic = basic_header(&id, &secret);
    let q = format!("type:seccft AND client_id:\"{id}\"");

    let mut seen: Vec<String> = Vec::new();
    for i in 0..12 {
        // Alternate client_secret_post and client_secret_basic.
        let r = if i % 2 == 0 {
            token_ua(&s, &pairs(&id, &secret, API, Some("read write")), &[]).await
        } else {
            let p = owned_pairs(&[("grant_type", "client_credentials"), ("audience", API), ("scope", "write read")]);
            token_ua(&s, &p, &[("authorization", &basic)]).await
        };
        assert_eq!(r.status, 200, "token {i}: {}", r.json);
        let token = r.json["access_token"].as_str().expect("access_token").to_owned();
        let jti = jti_of(&token);
        let granted = r.json["scope"].as_str().expect("scope").to_owned();

        // No polling: the event is durable before the 200 is sent.
        let evs = logs_q(&s, &q).await;
        assert_eq!(
            evs.len(),
            i + 1,
            "token {i}: a GET of the logs right after the 200 lists every seccft so far; got {}",
            Value::Array(evs.clone())
        );
        let ev = evs
            .iter()
            .find(|e| e["details"]["access_token_jti"] == jti.as_str())
            .unwrap_or_else(|| panic!("token {i}: no seccft with jti {jti} right after the 200: {evs:?}"));
        assert_seccft(ev, &id, &name, API, &granted, &jti);
        assert!(is_blank(ev.get("organization_id")), "no organization_id without an organization: {ev}");

        // The same event by id.
        let one = s.mgmt(Method::GET, &format!("/logs/{}", log_id(ev)), None).await.expect(200);
        assert_eq!(&one, ev, "GET /logs/{{id}} returns the listed event");
        seen.push(log_id(ev));
    }
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len(), "log_ids unique: {seen:?}");

    // A JSON body: same event.
    let body = json!({ "grant_type": "client_credentials", "client_id": id, "client_secret": secret, "audience": API,
                       "scope": "read" });
    let r = s
        .post_raw("/oauth/token", Some("application/json"), serde_json::to_vec(&body).unwrap(), &[("user-agent", UA)])
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let jti = jti_of(r.json["access_token"].as_str().unwrap());
    let evs = logs_q(&s, &q).await;
    let ev =
        evs.iter().find(|e| e["details"]["access_token_jti"] == jti.as_str()).expect("seccft for the JSON request");
    assert_seccft(ev, &id, &name, API, "read", &jti);
}

/// The `seccft` events in the data dir's event journal (what a crash leaves for the next start).
fn journaled_jtis(data_dir: &std::path::Path, client_id: &str) -> BTreeSet<String> {
    let mut jtis = BTreeSet::new();
    for entry in std::fs::read_dir(data_dir).expect("read data dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !(name.starts_with("events-") && name.ends_with(".journal")) {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("read journal").lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(millis), Some(log_id), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
                panic!("journal line `<millis> <log_id> <json>`: {line}");
            };
            // Journaled as written: packed (`ration_store::packed`), its `log_id` and date on the line.
            let date = ration_domain::UnixTime::from_millis(millis.parse().expect("millis"));
            let json = ration_store::packed::unpack(json, ration_store::packed::Columns { log_id, date });
            let ev: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("journal JSON ({e}): {json}"));
            if ev["type"] == "seccft" && ev["client_id"] == client_id {
                jtis.insert(event_jti(&ev));
            }
        }
    }
    jtis
}

#[tokio::test]
async fn every_seccft_survives_a_kill_9_right_after_the_last_200() {
    let mut s = TestServer::start().await;
    let (id, secret) = setup(&s, &unique("k9-events-"), &["read"]).await;
    let p = pairs(&id, &secret, API, None);
    let body = form_body(&pairs_ref(&p));
    // 100 tokens from 4 concurrent tasks, then kill -9 at once: no time for the background
    // indexing to catch up, so the journal alone must carry whatever the store does not have.
    let http = reqwest::Client::new();
    let url = format!("{}/oauth/token", s.base_url());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut jtis = Vec::new();
            for _ in 0..25 {
                let r = http.post(&url).header("content-type", FORM).body(body.clone()).send().await.expect("send");
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.expect("json");
                jtis.push(jti_of(v["access_token"].as_str().expect("access_token")));
            }
            jtis
        }));
    }
    let mut issued = BTreeSet::new();
    for t in tasks {
        issued.extend(t.await.expect("task"));
    }
    s.kill9();
    assert_eq!(issued.len(), 100);
    assert_eq!(journaled_jtis(s.data_dir(), &id), issued, "every 200 had its seccft in the journal before it left");

    s.restart().await;
    let stored: BTreeSet<String> = events_for(&s, "seccft", &id).await.iter().map(event_jti).collect();
    assert_eq!(stored, issued, "after the restart the log lists exactly the tokens issued");
    // Replayed segments are gone; the log is not doubled by a second restart.
    s.kill9();
    s.restart().await;
    assert_eq!(events_for(&s, "seccft", &id).await.len(), 100, "no event twice after another restart");
}

#[tokio::test]
async fn seccft_carries_the_organization() {
    let s = TestServer::start().await;
    let name = unique("org-client-");
    let (id, secret) = setup(&s, &name, &[]).await;
    let grant = json!({ "client_id": id, "audience": API, "scope": ["read"], "organization_usage": "allow",
                        "allow_any_organization": true });
    s.mgmt(Method::POST, "/client-grants", Some(grant)).await.expect(201);
    let org_name = unique("evorg");
    let org = s
        .mgmt(Method::POST, "/organizations", Some(json!({ "name": org_name, "display_name": "Events Org" })))
        .await
        .expect(201);
    let org_id = org["id"].as_str().expect("org id").to_owned();

    let mut p = pairs(&id, &secret, API, None);
    p.push(("organization".into(), org_id.clone()));
    let r = token_ua(&s, &p, &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let jti = jti_of(r.json["access_token"].as_str().unwrap());
    let evs = events_for(&s, "seccft", &id).await;
    assert_eq!(evs.len(), 1, "one seccft right after the 200: {evs:?}");
    assert_seccft(&evs[0], &id, &name, API, "read", &jti);
    assert_eq!(evs[0]["organization_id"], org_id.as_str(), "organization_id in {}", evs[0]);
    assert_eq!(evs[0]["organization_name"], org_name.as_str(), "organization_name in {}", evs[0]);

    // Without the organization: none on the event.
    let r = token_ua(&s, &pairs(&id, &secret, API, None), &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let jti = jti_of(r.json["access_token"].as_str().unwrap());
    let evs = events_for(&s, "seccft", &id).await;
    let ev = evs.iter().find(|e| e["details"]["access_token_jti"] == jti.as_str()).expect("second seccft");
    assert!(is_blank(ev.get("organization_id")), "no organization_id: {ev}");
    assert!(is_blank(ev.get("organization_name")), "no organization_name: {ev}");
}

// -------------------------------------------------------------------------------------------
// feccft
// -------------------------------------------------------------------------------------------

struct FailCase {
    what: &'static str,
    pairs: Vec<(String, String)>,
    basic: Option<(String, String)>,
    /// `client_id` the event must carry (None: the request named none).
    client_id: Option<String>,
    /// `client_name` the event must carry (None: no such client).
    client_name: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    /// Send the pairs as a JSON object instead of a form.
    json: bool,
}

#[tokio::test]
async fn feccft_for_every_failed_exchange() {
    let s = TestServer::start().await;
    let a_name = unique("fail-a-");
    let (a, a_secret) = setup(&s, &a_name, &["read"]).await;
    let n_name = unique("fail-n-");
    let (n, n_secret) = setup(&s, &n_name, &[]).await;
    let wrong = format!("{a_secret}x");
    let nope = "https://nope.example.com/";
    let cc = ("grant_type", "client_credentials");

    let case = |what: &'static str,
                p: &[(&str, &str)],
                basic: Option<(&str, &str)>,
                client_id: Option<&str>,
                client_name: Option<&str>,
                audience: Option<&str>,
                scope: Option<&str>| FailCase {
        what,
        pairs: owned_pairs(p),
        basic: basic.map(|(i, s)| (i.to_owned(), s.to_owned())),
        client_id: client_id.map(str::to_owned),
        client_name: client_name.map(str::to_owned),
        audience: audience.map(str::to_owned),
        scope: scope.map(str::to_owned),
        json: false,
    };
    #[rustfmt::skip]
    let mut cases = vec![
        case("wrong secret (post)", &[cc, ("client_id", &a), ("client_secret", &wrong), ("audience", API)], None,
             Some(&a), Some(&a_name), Some(API), None),
        case("wrong secret (basic)", &[cc, ("audience", API), ("scope", "read")], Some((&a, &wrong)),
             Some(&a), Some(&a_name), Some(API), Some("read")),
        case("unknown client", &[cc, ("client_id", "no-such-client-4"), ("client_secret", &a_secret), ("audience", API)],
             None, Some("no-such-client-4"), None, Some(API), None),
        case("unknown audience", &[cc, ("client_id", &a), ("client_secret", &a_secret), ("audience", nope)], None,
             Some(&a), Some(&a_name), Some(nope), None),
        case("ungranted scope", &[cc, ("client_id", &a), ("client_secret", &a_secret), ("audience", API),
             ("scope", "read write")], None, Some(&a), Some(&a_name), Some(API), Some("read write")),
        case("no grant", &[cc, ("client_id", &n), ("client_secret", &n_secret), ("audience", API)], None,
             Some(&n), Some(&n_name), Some(API), None),
        case("unsupported grant type", &[("grant_type", "password"), ("client_id", &a), ("client_secret", &a_secret),
             ("audience", API)], None, Some(&a), Some(&a_name), Some(API), None),
        case("no client at all", &[cc, ("audience", API)], None, None, None, Some(API), None),
    ];
    let p = [cc, ("client_id", a.as_str()), ("client_secret", wrong.as_str()), ("audience", API), ("scope", "read")];
    let mut j = case("wrong secret (JSON body)", &p, None, Some(&a), Some(&a_name), Some(API), Some("read"));
    j.json = true;
    cases.push(j);

    let mut wrong: Vec<&str> = Vec::new();
    for c in &cases {
        let before: BTreeSet<String> = logs_q(&s, "type:feccft").await.iter().map(log_id).collect();
        let r = match &c.basic {
            None if c.json => {
                let obj: serde_json::Map<String, Value> =
                    c.pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
                s.post_raw("/oauth/token", Some("application/json"), body, &[("user-agent", UA)]).await
            }
            None => token_ua(&s, &c.pairs, &[]).await,
            Some((id, secret)) => token_ua(&s, &c.pairs, &[("authorization", &basic_header(id, secret))]).await,
        };
        assert_ne!(r.status, 200, "{}: the request must fail: {}", c.what, r.json);
        let (error, description) = assert_oauth_error_shape(&r);
        let evs = wait_logs(&s, "type:feccft", Duration::from_secs(3), c.what, |evs| evs.len() > before.len()).await;
        let new: Vec<&Value> = evs.iter().filter(|e| !before.contains(&log_id(e))).collect();
        assert_eq!(new.len(), 1, "{}: exactly one feccft per failed request: {new:?}", c.what);
        let ev = new[0].clone();
        let w = c.what;
        // Every case is checked even if an earlier one is wrong; the panics are printed as they happen.
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ev = &ev;
            assert_common(ev, "feccft", real_now_ms(), 120_000);
            assert_eq!(ev["description"], description.as_str(), "{w}: description is the error_description: {ev}");
            assert_eq!(ev["details"]["error"], error.as_str(), "{w}: details.error is the OAuth error: {ev}");
            match &c.client_id {
                Some(id) => assert_eq!(ev["client_id"], id.as_str(), "{w}: client_id: {ev}"),
                None => assert!(is_blank(ev.get("client_id")), "{w}: no client_id: {ev}"),
            }
            match &c.client_name {
                Some(name) => assert_eq!(ev["client_name"], name.as_str(), "{w}: client_name: {ev}"),
                None => assert!(is_blank(ev.get("client_name")), "{w}: no client_name: {ev}"),
            }
            if let Some(aud) = &c.audience {
                assert_eq!(ev["audience"], aud.as_str(), "{w}: audience as requested: {ev}");
            }
            if let Some(scope) = &c.scope {
                assert_eq!(ev["scope"], scope.as_str(), "{w}: scope as requested: {ev}");
            }
            assert_eq!(ev["ip"], "127.0.0.1", "{w}: ip: {ev}");
            assert_eq!(ev["user_agent"], UA, "{w}: user_agent: {ev}");
        }));
        if checked.is_err() {
            wrong.push(w);
        }
    }

    // Failures wrote no seccft; a success writes a seccft and no feccft.
    assert!(events_for(&s, "seccft", &a).await.is_empty(), "no seccft for failed exchanges");
    let n_fail = logs_q(&s, "type:feccft").await.len();
    assert_eq!(n_fail, cases.len(), "one feccft per failed request");
    let r = token_ua(&s, &pairs(&a, &a_secret, API, None), &[]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(events_for(&s, "seccft", &a).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(logs_q(&s, "type:feccft").await.len(), n_fail, "a 200 writes no feccft");
    assert!(wrong.is_empty(), "feccft contents wrong for {wrong:?} (assertions printed above)");
}

// -------------------------------------------------------------------------------------------
// sapi
// -------------------------------------------------------------------------------------------

/// `details.request.method` (Auth0 writes it in lower case; compared case-insensitively).
pub(crate) fn sapi_method(ev: &Value) -> String {
    ev["details"]["request"]["method"].as_str().unwrap_or_else(|| panic!("details.request.method in {ev}")).to_owned()
}

/// The `sapi` event for `method path` (exactly one), read right after the response (no polling).
#[track_caller]
fn find_sapi<'a>(evs: &'a [Value], method: &str, path: &str) -> &'a Value {
    let found: Vec<&Value> = evs
        .iter()
        .filter(|e| sapi_method(e).eq_ignore_ascii_case(method) && e["details"]["request"]["path"] == path)
        .collect();
    assert_eq!(found.len(), 1, "exactly one sapi for {method} {path} right after the response; sapi events: {evs:?}");
    found[0]
}

#[track_caller]
fn assert_sapi(ev: &Value, admin: &str, status: u16) {
    assert_common(ev, "sapi", real_now_ms(), 120_000);
    assert_eq!(ev["client_id"], admin, "sapi client_id is the caller: {ev}");
    assert_eq!(ev["details"]["response"]["statusCode"], status, "details.response.statusCode: {ev}");
}

/// A secret-bearing member, if present in `obj`, is `"[REDACTED]"`.
#[track_caller]
fn assert_redacted_if_present(obj: &Value, key: &str, ev: &Value) {
    if let Some(v) = obj.get(key) {
        assert_eq!(v, "[REDACTED]", "{key} is redacted in {ev}");
    }
}

#[tokio::test]
async fn sapi_for_every_management_write_without_secrets() {
    let s = TestServer::start().await;
    let (admin, admin_secret) = s.admin_credentials();
    let sapis = || async { logs_q(&s, "type:sapi").await };
    let mut writes = 0;

    // Create a client.
    let name = unique("sapi-client-");
    let body = json!({ "name": name, "app_type": "non_interactive", "grant_types": ["client_credentials"] });
    let created = s.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
    writes += 1;
    let id = created["client_id"].as_str().expect("client_id").to_owned();
    let secret1 = created["client_secret"].as_str().expect("client_secret").to_owned();
    let evs = sapis().await;
    let ev = find_sapi(&evs, "POST", "/api/v2/clients");
    assert_sapi(ev, &admin, 201);
    assert_eq!(ev["description"], "Create a client", "{ev}");
    assert_eq!(ev["details"]["request"]["body"]["name"], name.as_str(), "request body: {ev}");
    assert_eq!(ev["details"]["response"]["body"]["client_id"], id.as_str(), "response body: {ev}");
    assert_eq!(ev["details"]["response"]["body"]["client_secret"], "[REDACTED]", "client_secret redacted: {ev}");

    // Patch it, setting a secret.
    let secret2 = format!("patched-{}-{}", unique("s"), "0123456789abcdefghijklmnopqrstuvwxyz");
    let new_name = unique("renamed-");
    s.mgmt(Method::PATCH, &format!("/clients/{id}"), Some(json!({ "name": new_name, "client_secret": secret2 })))
        .await
        .expect(200);
    writes += 1;
    let evs = sapis().await;
    let ev = find_sapi(&evs, "PATCH", &format!("/api/v2/clients/{id}"));
    assert_sapi(ev, &admin, 200);
    assert_eq!(ev["details"]["request"]["body"]["name"], new_name.as_str(), "{ev}");
    assert_eq!(ev["details"]["request"]["body"]["client_secret"], "[REDACTED]", "request client_secret: {ev}");
    assert_redacted_if_present(&ev["details"]["response"]["body"], "client_secret", ev);

    // Rotate the secret.
    let rotated = s.mgmt(Method::POST, &format!("/clients/{id}/rotate-secret"), None).await.expect(200);
    writes += 1;
    let secret3 = rotated["client_secret"].as_str().expect("rotated client_secret").to_owned();
    let evs = sapis().await;
    let ev = find_sapi(&evs, "POST", &format!("/api/v2/clients/{id}/rotate-secret"));
    assert_sapi(ev, &admin, 200);
    assert_eq!(ev["details"]["response"]["body"]["client_secret"], "[REDACTED]", "rotated secret redacted: {ev}");

    // An HS256 API with a given signing secret, and one with a generated secret.
    let hs_given = format!("hs256-given-{}-0123456789abcdefghij", unique("k"));
    let aud1 = "https://hs-given.example.com/";
    let body = json!({ "identifier": aud1, "name": "HS given", "signing_alg": "HS256", "signing_secret": hs_given });
    let rs1 = s.mgmt(Method::POST, "/resource-servers", Some(body)).await.expect(201);
    writes += 1;
    let evs = sapis().await;
    let ev = find_sapi(&evs, "POST", "/api/v2/resource-servers").clone();
    assert_sapi(&ev, &admin, 201);
    assert_eq!(ev["details"]["request"]["body"]["signing_secret"], "[REDACTED]", "request signing_secret: {ev}");
    assert_eq!(ev["details"]["request"]["body"]["identifier"], aud1, "{ev}");
    assert_redacted_if_present(&ev["details"]["response"]["body"], "signing_secret", &ev);
    let aud2 = "https://hs-generated.example.com/";
    let body = json!({ "identifier": aud2, "name": "HS generated", "signing_alg": "HS256" });
    let rs2 = s.mgmt(Method::POST, "/resource-servers", Some(body)).await.expect(201);
    writes += 1;
    let mut generated: Option<String> = rs2["signing_secret"].as_str().map(str::to_owned);
    if generated.is_none() {
        let rs_id = rs2["id"].as_str().expect("resource server id");
        let got = s.mgmt(Method::GET, &format!("/resource-servers/{rs_id}"), None).await.expect(200);
        generated = got["signing_secret"].as_str().map(str::to_owned);
    }
    let _ = rs1;

    // Delete the client.
    let r = s.mgmt(Method::DELETE, &format!("/clients/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.json);
    writes += 1;
    let evs = sapis().await;
    let ev = find_sapi(&evs, "DELETE", &format!("/api/v2/clients/{id}"));
    assert_sapi(ev, &admin, 204);

    // Reads and refused writes write no sapi.
    s.mgmt(Method::GET, "/clients", None).await.expect(200);
    s.mgmt(Method::GET, "/resource-servers", None).await.expect(200);
    let r = s.mgmt(Method::POST, "/clients", Some(json!({ "name": "" }))).await;
    assert_eq!(r.status, 400, "{}", r.json);
    let r = s.mgmt(Method::DELETE, "/clients/no-such-client", None).await;
    assert_eq!(r.status, 404, "{}", r.json);

    let evs = sapis().await;
    assert_eq!(evs.len(), writes, "one sapi per successful write, none for reads or failures: {evs:?}");
    for ev in &evs {
        assert_sapi(ev, &admin, ev["details"]["response"]["statusCode"].as_u64().unwrap_or(0) as u16);
        let m = sapi_method(ev).to_ascii_uppercase();
        assert!(["POST", "PATCH", "PUT", "DELETE"].contains(&m.as_str()), "sapi only for writes: {ev}");
    }

    // No secret anywhere in the event log.
    let all = logs(&s, "per_page=100").await;
    let text = serde_json::to_string(&all).unwrap();
    let mut secrets = vec![("created client_secret", secret1), ("patched client_secret", secret2)];
    secrets.push(("rotated client_secret", secret3));
    secrets.push(("given signing_secret", hs_given));
    secrets.push(("admin client_secret", admin_secret));
    if let Some(g) = generated {
        secrets.push(("generated signing_secret", g));
    }
    for (what, secret) in &secrets {
        assert!(!text.contains(secret.as_str()), "the {what} appears in the event log: {text}");
    }
}

// -------------------------------------------------------------------------------------------
// log_id
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn log_ids_are_unique_and_increase_in_creation_order() {
    let s = TestServer::start().await;
    let (id, secret) = setup(&s, &unique("ids-"), &["read"]).await;

    // Sequential tokens: log_ids increase in request order.
    let mut jtis = Vec::new();
    for _ in 0..10 {
        let t = s.access_token(&id, &secret, API).await;
        jtis.push(jti_of(&t));
    }
    let evs = events_for(&s, "seccft", &id).await;
    let by_jti: std::collections::BTreeMap<String, String> = evs.iter().map(|e| (event_jti(e), log_id(e))).collect();
    let ids: Vec<String> =
        jtis.iter().map(|j| by_jti.get(j).unwrap_or_else(|| panic!("seccft for jti {j}")).clone()).collect();
    for w in ids.windows(2) {
        assert_eq!(w[0].len(), w[1].len(), "log_ids have one length: {ids:?}");
        assert!(w[0] < w[1], "log_ids increase in creation order: {ids:?}");
    }

    // Concurrent tokens and failures: all unique.
    let url = s.url("/oauth/token");
    let good = form_body(&pairs_ref(&pairs(&id, &secret, API, None)));
    let bad = form_body(&pairs_ref(&pairs(&id, "wrong-secret", API, None)));
    let mut handles = Vec::new();
    for t in 0..6 {
        let (http, url, good, bad) = (s.http.clone(), url.clone(), good.clone(), bad.clone());
        handles.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..25 {
                let body = if (t + i) % 5 == 0 { bad.clone() } else { good.clone() };
                let r = http.post(&url).header("content-type", FORM).body(body).send().await.expect("token request");
                if r.status() == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for h in handles {
        ok += h.await.unwrap();
    }
    assert_eq!(ok, 120, "the good requests succeed");
    wait_logs(&s, &format!("type:feccft AND client_id:\"{id}\""), Duration::from_secs(3), "30 feccft", |e| {
        e.len() >= 30
    })
    .await;

    // All events, newest first, by pages.
    let mut all: Vec<Value> = Vec::new();
    for page in 0.. {
        let v =
            s.mgmt(Method::GET, &format!("/logs?include_totals=true&per_page=100&page={page}"), None).await.expect(200);
        let items = v["logs"].as_array().unwrap_or_else(|| panic!("logs in {v}")).clone();
        if items.is_empty() {
            break;
        }
        all.extend(items);
    }
    let ids: Vec<String> = all.iter().map(log_id).collect();
    let unique_ids: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique_ids.len(), ids.len(), "log_ids are unique");
    assert!(ids.len() >= 10 + 150, "every event listed: {}", ids.len());
    for id in &ids {
        assert_log_id_shape(id);
        assert_eq!(id.len(), ids[0].len(), "all log_ids have the same length: {id} vs {}", ids[0]);
    }
    for w in ids.windows(2) {
        assert!(w[0] > w[1], "newest first: log_ids strictly decrease down the listing: {} then {}", w[0], w[1]);
    }

    // Checkpoint from the oldest: everything else, oldest first.
    let oldest = ids.last().unwrap().clone();
    let after: Vec<String> = events_after(&s, &oldest, 100).await.iter().map(log_id).collect();
    let mut expected: Vec<String> = ids[..ids.len() - 1].to_vec();
    expected.reverse();
    assert_eq!(after, expected, "checkpoint paging from the oldest returns every later event, in log_id order");
}

// -------------------------------------------------------------------------------------------
// GET /api/v2/logs
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn logs_api_pages_filters_and_totals() {
    let s = TestServer::start().await;
    let (a, a_secret) = setup(&s, &unique("page-a-"), &["read"]).await;
    let (b, _) = setup(&s, &unique("page-b-"), &["read"]).await;
    let mut jtis = Vec::new();
    for _ in 0..7 {
        jtis.push(jti_of(&s.access_token(&a, &a_secret, API).await));
    }
    for _ in 0..3 {
        let r = s.token_form(&pairs_ref(&pairs(&b, "not-the-secret", API, None))).await;
        assert_eq!(r.status, 401, "{}", r.json);
    }
    wait_logs(&s, &format!("type:feccft AND client_id:\"{b}\""), Duration::from_secs(3), "3 feccft", |e| e.len() == 3)
        .await;

    // include_totals paging, newest first.
    let q = urlencode(&format!("type:seccft AND client_id:\"{a}\""));
    let mut listed = Vec::new();
    for (page, want) in [(0u64, 3usize), (1, 3), (2, 1), (3, 0)] {
        let v = s.mgmt(Method::GET, &format!("/logs?q={q}&page={page}&per_page=3&include_totals=true"), None).await;
        let v = v.expect(200);
        let keys: BTreeSet<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["start", "limit", "length", "total", "logs"]), "totals shape: {v}");
        assert_eq!(v["start"], page * 3, "start: {v}");
        assert_eq!(v["limit"], 3, "limit: {v}");
        assert_eq!(v["length"], want, "length: {v}");
        assert_eq!(v["total"], 7, "total: {v}");
        let items = v["logs"].as_array().unwrap();
        assert_eq!(items.len(), want, "page {page}: {v}");
        listed.extend(items.iter().map(event_jti));
    }
    let mut newest_first = jtis.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first, "pages list the events newest first");

    // Without include_totals: a bare array.
    let arr = logs(&s, &format!("q={q}&per_page=3&page=1")).await;
    assert_eq!(arr.iter().map(event_jti).collect::<Vec<_>>(), newest_first[3..6].to_vec());

    // q terms.
    let fb = logs_q(&s, &format!("type:feccft AND client_id:\"{b}\"")).await;
    assert_eq!(fb.len(), 3, "{fb:?}");
    assert!(fb.iter().all(|e| e["type"] == "feccft" && e["client_id"] == b.as_str()), "{fb:?}");
    let ca = logs_q(&s, &format!("client_id:\"{a}\"")).await;
    assert_eq!(ca.len(), 7, "client_id term alone: {ca:?}");
    let seccft = logs_q(&s, "type:seccft").await;
    assert_eq!(seccft.len(), 8, "type term alone: the admin's token and A's 7: {seccft:?}");
    assert!(logs_q(&s, "type:feccft").await.iter().all(|e| e["type"] == "feccft"));
    let now = now_secs();
    let (yesterday, later) = (ymd(now - 86_400), ymd(now + 2 * 86_400));
    let dated = logs_q(&s, &format!("type:seccft AND client_id:\"{a}\" AND date:[{yesterday} TO *]")).await;
    assert_eq!(dated.len(), 7, "date range from yesterday: {dated:?}");
    let dated = logs_q(&s, &format!("client_id:\"{a}\" AND date:[{yesterday} TO {later}]")).await;
    assert_eq!(dated.len(), 7, "closed date range around today: {dated:?}");
    assert!(logs_q(&s, &format!("client_id:\"{a}\" AND date:[2000-01-01 TO 2000-12-31]")).await.is_empty());
    assert!(logs_q(&s, &format!("client_id:\"{a}\" AND date:[{later} TO *]")).await.is_empty());

    // Bad parameters: 400 in the Management API error shape.
    for query in ["per_page=1000", "per_page=101", "per_page=abc", "page=-1", "page=x"] {
        let r = s.mgmt(Method::GET, &format!("/logs?{query}"), None).await;
        assert_mgmt_error(&r, 400, "Bad Request", None);
    }
    let r = s.mgmt(Method::GET, "/logs/90000000000000000000000000000000000000000", None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);

    // Scope: read:logs.
    let r = s.mgmt_with(None, Method::GET, "/logs", None).await;
    assert_eq!(r.status, 401, "{}", r.json);
    let (c, c_secret) = s.create_client(&unique("reader-"), json!({})).await;
    s.create_grant(&c, &s.mgmt_audience(), &["read:clients"]).await;
    let t = s.access_token(&c, &c_secret, &s.mgmt_audience()).await;
    let r = s.mgmt_with(Some(&t), Method::GET, "/logs", None).await;
    assert_mgmt_error(&r, 403, "Forbidden", Some("insufficient_scope"));
    let id = log_id(&ca[0]);
    let r = s.mgmt_with(Some(&t), Method::GET, &format!("/logs/{id}"), None).await;
    assert_mgmt_error(&r, 403, "Forbidden", Some("insufficient_scope"));
}

#[tokio::test]
async fn checkpoint_paging_follows_link_next() {
    let s = TestServer::start().await;
    let (a, a_secret) = setup(&s, &unique("ckpt-"), &["read"]).await;
    let start = newest_log_id(&s).await;
    let mut jtis = Vec::new();
    for _ in 0..7 {
        jtis.push(jti_of(&s.access_token(&a, &a_secret, API).await));
    }

    let mut path = format!("/logs?from={start}&take=3");
    let mut got: Vec<Value> = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let r = s.mgmt(Method::GET, &path, None).await;
        let items = r.expect(200).as_array().unwrap_or_else(|| panic!("array: {}", r.json)).clone();
        sizes.push(items.len());
        let next = link_next(&r);
        assert_eq!(query_param(&next, "take").as_deref(), Some("3"), "Link next keeps take: {next}");
        if items.is_empty() {
            assert_eq!(
                query_param(&next, "from"),
                query_param(&path, "from"),
                "on an empty page, Link next is the current checkpoint: {next}"
            );
            break;
        }
        assert_eq!(
            query_param(&next, "from").as_deref(),
            Some(log_id(items.last().unwrap()).as_str()),
            "Link next continues from the page's last log_id: {next}"
        );
        got.extend(items);
        path = next;
        assert!(sizes.len() < 10, "checkpoint paging does not end: {sizes:?}");
    }
    assert_eq!(sizes, vec![3, 3, 1, 0], "pages of take=3");
    let ids: Vec<String> = got.iter().map(log_id).collect();
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "checkpoint pages are oldest first: {ids:?}");
    }
    assert!(ids.iter().all(|id| *id > start), "only events after `from`");
    assert_eq!(got.iter().map(event_jti).collect::<Vec<_>>(), jtis, "every event after the checkpoint, in order");

    // `from` wins over search parameters.
    let v = logs(&s, &format!("from={start}&take=100&q={}&per_page=1", urlencode("type:feccft"))).await;
    assert_eq!(v.len(), 7, "from/take ignore q and per_page: {v:?}");
}

// -------------------------------------------------------------------------------------------
// Retention
// -------------------------------------------------------------------------------------------

/// A server on `data_dir` (owned by another TestServer) with extra env; generated bootstrap.
async fn server_on(data_dir: &std::path::Path, envs: &[(&str, &str)]) -> TestServer {
    TestServer::builder()
        .issuer(FIXED_ISSUER)
        .generated_bootstrap()
        .data_dir_via(DataDirVia::Nothing)
        .arg("--data-dir")
        .arg(data_dir.display().to_string())
        .envs(envs)
        .start()
        .await
}

/// A Management API token on `s` for the admin whose credentials are in `owner`'s data dir.
async fn admin_token_from(s: &TestServer, owner: &TestServer) -> String {
    let (id, secret) = owner.admin_credentials();
    s.access_token(&id, &secret, &s.mgmt_audience()).await
}

async fn logs_with(s: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let v = s.mgmt_with(Some(token), Method::GET, &format!("/logs?{query}"), None).await.expect(200);
    v.as_array().unwrap_or_else(|| panic!("array: {v}")).clone()
}

#[tokio::test]
async fn retention_prunes_events_older_than_the_configured_days() {
    let mut first = TestServer::builder().issuer(FIXED_ISSUER).generated_bootstrap().start().await;
    let (a, a_secret) = setup(&first, &unique("old-"), &["read"]).await;
    for _ in 0..3 {
        first.access_token(&a, &a_secret, API).await;
    }
    let old: Vec<String> = events_for(&first, "seccft", &a).await.iter().map(log_id).collect();
    assert_eq!(old.len(), 3);
    let status = first.sigterm(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    let offset = (31 * DAY_MS).to_string();
    let q = format!("q={}&per_page=100", urlencode(&format!("client_id:\"{a}\"")));

    // 31 days later with a 60-day retention: kept.
    {
        let s = server_on(first.data_dir(), &[(OFFSET_ENV, &offset), ("RATION_LOG_RETENTION_DAYS", "60")]).await;
        let t = admin_token_from(&s, &first).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let kept = logs_with(&s, &t, &q).await;
        assert_eq!(kept.len(), 3, "events 31 days old are kept with a 60-day retention: {kept:?}");
        let mut s = s;
        let status = s.sigterm(Duration::from_secs(15)).await;
        assert!(status.success(), "{status}");
    }

    // 31 days later with the default retention (30 days): pruned within a few seconds of start.
    let s = server_on(first.data_dir(), &[(OFFSET_ENV, &offset)]).await;
    let t = admin_token_from(&s, &first).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = logs_with(&s, &t, &q).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "events 31 days old still listed 5 s after start: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &old {
        let r = s.mgmt_with(Some(&t), Method::GET, &format!("/logs/{id}"), None).await;
        assert_eq!(r.status, 404, "pruned event {id} is gone: {}", r.json);
    }
    // New events are kept, dated by the (moved) clock.
    let fresh = logs_with(&s, &t, &format!("q={}", urlencode("type:seccft"))).await;
    assert!(!fresh.is_empty(), "the new admin token's seccft is kept");
    let t_ms = rfc3339_ms(fresh[0]["date"].as_str().expect("date"));
    assert!((t_ms - (real_now_ms() + 31 * DAY_MS)).abs() < 120_000, "new events carry the server clock: {}", fresh[0]);
}
