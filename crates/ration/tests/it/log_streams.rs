//! Acceptance tests for issue 4, part 2: log streams. `/api/v2/log-streams` CRUD and validation,
//! delivery to a real HTTP receiver in the three formats with the configured headers, category
//! filters, a `file` stream, outages (down, then 500s) with nothing lost, suspension and resume,
//! and a `kill -9` with pending events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::events::{
    event_jti, events_after, events_for, jti_of, log_id, logs, logs_q, newest_log_id, rfc3339_ms, wait_logs,
};
use crate::harness::*;
use crate::receiver::{Format, Item, Receiver, item_of, parse_body};

const API: &str = "https://streams.example.com/";
const RETRY_ENV: &str = "RATION_LOG_STREAM_RETRY_MAX_MS";
const SUSPEND_ENV: &str = "RATION_LOG_STREAM_SUSPEND_AFTER_SECS";
const SUCCESS: &str = "auth.token_exchange.success";
const FAIL: &str = "auth.token_exchange.fail";
const MGMT: &str = "management.success";
const NOTIFY: &str = "system.notification";
const FORM: &str = "application/x-www-form-urlencoded";

// -------------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------------

/// A server with a short backoff cap and the given suspension time.
async fn server(suspend_after_secs: u64) -> TestServer {
    TestServer::builder().env(RETRY_ENV, "500").env(SUSPEND_ENV, &suspend_after_secs.to_string()).start().await
}

/// The API (once per server) and a client granted `read` on it; `extra` goes into the client.
async fn m2m_with(s: &TestServer, extra: Value) -> (String, String) {
    let body = json!({ "identifier": API, "name": "Streams API", "scopes": [{ "value": "read", "description": "r" }] });
    let r = s.mgmt(Method::POST, "/resource-servers", Some(body)).await;
    assert!(r.status == 201 || r.status == 409, "create API: {} {}", r.status, r.json);
    let (id, secret) = s.create_client(&unique("stream-client-"), extra).await;
    s.create_grant(&id, API, &["read"]).await;
    (id, secret)
}

async fn m2m(s: &TestServer) -> (String, String) {
    m2m_with(s, json!({})).await
}

fn filters(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({ "type": "category", "name": n })).collect())
}

fn http_stream(endpoint: &str, format: Format, cats: &[&str]) -> Value {
    let mut v = json!({
        "name": unique("stream-"),
        "type": "http",
        "sink": { "httpEndpoint": endpoint, "httpContentFormat": format.name() },
    });
    if !cats.is_empty() {
        v["filters"] = filters(cats);
    }
    v
}

async fn create_stream(s: &TestServer, body: Value) -> Value {
    let r = s.mgmt(Method::POST, "/log-streams", Some(body.clone())).await;
    assert_eq!(r.status, 201, "POST /log-streams {body}: {}", r.json);
    r.json
}

fn sid(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("stream id in {v}")).to_owned()
}

async fn get_stream(s: &TestServer, id: &str) -> Value {
    s.mgmt(Method::GET, &format!("/log-streams/{id}"), None).await.expect(200)
}

/// Polls the stream object until `done` holds.
async fn wait_stream(s: &TestServer, id: &str, timeout: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = get_stream(s, id).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "stream {id}: {what} not within {timeout:?}; stream: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` sequential tokens; their jtis.
async fn tokens(s: &TestServer, id: &str, secret: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(jti_of(&s.access_token(id, secret, API).await));
    }
    out
}

/// `n` tokens from `tasks` concurrent tasks; every response must be 200. Their jtis, and the
/// slowest response time.
async fn tokens_concurrent(s: &TestServer, id: &str, secret: &str, n: usize, tasks: usize) -> (Vec<String>, Duration) {
    let url = s.url("/oauth/token");
    let body = form_body(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("audience", API),
    ]);
    let mut handles = Vec::new();
    for i in 0..tasks {
        let per = n / tasks + usize::from(i < n % tasks);
        let (http, url, body) = (s.http.clone(), url.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut slowest = Duration::ZERO;
            for _ in 0..per {
                let t = Instant::now();
                let r = http.post(&url).header("content-type", FORM).body(body.clone()).send().await.expect("token");
                let status = r.status().as_u16();
                let v: Value = r.json().await.expect("token response JSON");
                slowest = slowest.max(t.elapsed());
                assert_eq!(status, 200, "every token request succeeds while the sink is unhealthy: {v}");
                out.push(jti_of(v["access_token"].as_str().expect("access_token")));
            }
            (out, slowest)
        }));
    }
    let mut all = Vec::with_capacity(n);
    let mut slowest = Duration::ZERO;
    for h in handles {
        let (v, d) = h.await.expect("token task");
        all.extend(v);
        slowest = slowest.max(d);
    }
    assert_eq!(all.len(), n);
    (all, slowest)
}

/// jtis of the seccft events among `items` for `client_id`.
fn seccft_jtis(items: &[Item], client_id: &str) -> BTreeSet<String> {
    items
        .iter()
        .filter(|i| i.data["type"] == "seccft" && i.data["client_id"] == client_id)
        .map(|i| event_jti(&i.data))
        .collect()
}

fn has_all(got: &BTreeSet<String>, want: &[String]) -> bool {
    want.iter().all(|j| got.contains(j))
}

/// The first-arrival sequence of `log_id`s (duplicates removed) is strictly increasing.
#[track_caller]
fn assert_in_order(items: &[Item]) {
    let mut seen = BTreeSet::new();
    let mut firsts: Vec<&str> = Vec::new();
    for it in items {
        if seen.insert(it.log_id.clone()) {
            firsts.push(&it.log_id);
        }
    }
    for w in firsts.windows(2) {
        assert!(w[0] < w[1], "events are delivered in log_id order: {} arrived before {}", w[0], w[1]);
    }
}

/// Every member of the event as the logs API returns it is in the delivered `data`.
async fn assert_matches_log(s: &TestServer, item: &Item) {
    let api = s.mgmt(Method::GET, &format!("/logs/{}", item.log_id), None).await.expect(200);
    for (k, v) in api.as_object().expect("event object") {
        assert_eq!(
            &item.data[k], v,
            "delivered event member {k} differs from GET /logs/{}: {}",
            item.log_id, item.data
        );
    }
}

#[track_caller]
fn assert_fresh_delivery(v: &Value) {
    let d = &v["delivery"];
    assert!(d.is_object(), "delivery object on the stream: {v}");
    for k in ["last_delivered_log_id", "last_error", "last_error_at", "failing_since"] {
        assert!(d.get(k).is_some_and(Value::is_null), "delivery.{k} is null on a new stream: {v}");
    }
    assert_eq!(d["backlog"], 0, "delivery.backlog is 0 on a new stream: {v}");
}

// -------------------------------------------------------------------------------------------
// Formats and headers
// -------------------------------------------------------------------------------------------

/// One stream in `format` with the given headers; 8 tokens; every request and body checked.
async fn delivery_in_format(
    format: Format,
    content_type: Option<&str>,
    authorization: Option<&str>,
    custom: &[(&str, &str)],
) {
    let s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let rx = Receiver::start().await;
    let path = "/ingest/auth0?src=ration";
    let mut body = http_stream(&rx.url(path), format, &[SUCCESS]);
    if let Some(ct) = content_type {
        body["sink"]["httpContentType"] = json!(ct);
    }
    if let Some(a) = authorization {
        body["sink"]["httpAuthorization"] = json!(a);
    }
    if !custom.is_empty() {
        body["sink"]["httpCustomHeaders"] =
            Value::Array(custom.iter().map(|(h, v)| json!({ "header": h, "value": v })).collect());
    }
    let st = create_stream(&s, body.clone()).await;
    assert_eq!(st["sink"]["httpContentFormat"], format.name(), "{st}");
    assert!(st["sink"].get("httpAuthorization").is_none(), "httpAuthorization is write-only: {st}");

    let (jtis, _) = tokens_concurrent(&s, &id, &secret, 8, 4).await;
    rx.wait_until(Duration::from_secs(10), "8 seccft", |r| has_all(&seccft_jtis(&r.items_to(path), &id), &jtis)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let reqs = rx.requests();
    assert!(!reqs.is_empty());
    let mut items = Vec::new();
    for r in &reqs {
        assert_eq!(r.status, 200, "the receiver answered every request with 200");
        assert_eq!(r.method, "POST", "deliveries are POSTs");
        assert_eq!(r.path, path, "deliveries go to httpEndpoint");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some(content_type.unwrap_or("application/json")),
            "Content-Type is httpContentType (default application/json)"
        );
        assert_eq!(r.header("authorization").as_deref(), authorization, "Authorization is httpAuthorization verbatim");
        for (h, v) in custom {
            assert_eq!(r.header(h).as_deref(), Some(*v), "custom header {h}");
        }
        let batch = parse_body(&r.body, format);
        assert!(batch.len() <= 100, "batches of at most 100: {}", batch.len());
        if format == Format::Object {
            assert_eq!(batch.len(), 1, "JSONOBJECT: one event per request");
        }
        items.extend(batch);
    }
    for it in &items {
        assert_eq!(it.data["type"], "seccft", "filter auth.token_exchange.success delivers only seccft: {}", it.data);
        assert_eq!(it.data["client_id"], id.as_str(), "{}", it.data);
    }
    assert_in_order(&items);
    let got = seccft_jtis(&items, &id);
    assert_eq!(got, jtis.iter().cloned().collect::<BTreeSet<_>>(), "exactly the 8 exchanges are delivered");
    let unique: BTreeMap<String, Item> = items.iter().map(|i| (i.log_id.clone(), i.clone())).collect();
    for it in unique.values() {
        assert_matches_log(&s, it).await;
    }
}

#[tokio::test]
async fn jsonlines_delivery_with_configured_headers() {
    delivery_in_format(
        Format::Lines,
        Some("application/x-ndjson"),
        Some("Splunk 8f14e45f-ceea-467e-9a75-3c6fd1d2e1a1"),
        &[("X-Source", "ration"), ("X-Tenant-Label", "acceptance")],
    )
    .await;
}

#[tokio::test]
async fn jsonarray_delivery_with_default_content_type() {
    delivery_in_format(Format::Array, None, Some("Bearer array-token-123"), &[("X-Array", "yes")]).await;
}

#[tokio::test]
async fn jsonobject_delivery_one_event_per_request() {
    delivery_in_format(Format::Object, Some("application/vnd.ration.event+json"), None, &[("X-Obj", "1")]).await;
}

#[tokio::test]
async fn a_healthy_sink_receives_events_within_a_second() {
    let s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let rx = Receiver::start().await;
    create_stream(&s, http_stream(&rx.url("/rt"), Format::Lines, &[SUCCESS])).await;
    let mut lat = Vec::new();
    for _ in 0..10 {
        let jti = jti_of(&s.access_token(&id, &secret, API).await);
        let t = Instant::now();
        rx.wait_until(Duration::from_secs(5), "the token's seccft", |r| seccft_jtis(&r.items(), &id).contains(&jti))
            .await;
        lat.push(t.elapsed());
    }
    let within = lat.iter().filter(|d| **d <= Duration::from_secs(1)).count();
    assert!(within >= 9, "p95: at least 9 of 10 events delivered within 1 s of the 200: {lat:?}");
    assert!(lat.iter().all(|d| *d <= Duration::from_secs(3)), "every event within 3 s: {lat:?}");
}

// -------------------------------------------------------------------------------------------
// Filters, pause, start point
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn category_filters_select_events() {
    let s = server(60).await;
    let rx = Receiver::start().await;
    api_only(&s).await;
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("/success", vec![SUCCESS], vec!["seccft"]),
        ("/fail", vec![FAIL], vec!["feccft"]),
        ("/mgmt", vec![MGMT], vec!["sapi"]),
        ("/notify", vec![NOTIFY], vec!["token_quota_consumption_warning"]),
        ("/both", vec![SUCCESS, FAIL], vec!["seccft", "feccft"]),
        ("/all", vec![], vec!["seccft", "feccft", "sapi", "token_quota_consumption_warning"]),
    ];
    for (path, cats, _) in &cases {
        let st = create_stream(&s, http_stream(&rx.url(path), Format::Array, cats)).await;
        let want: Value = if cats.is_empty() { json!([]) } else { filters(cats) };
        let got = if st["filters"].is_null() { json!([]) } else { st["filters"].clone() };
        assert_eq!(got, want, "filters echoed: {st}");
    }
    let checkpoint = newest_log_id(&s).await;

    // After the checkpoint: 3 writes (client, grant, patch), 3 tokens (60 % of a per_day quota of
    // 5: one warning), 2 failed exchanges.
    let quota = json!({ "token_quota": { "client_credentials": { "per_day": 5, "enforce": false } } });
    let (id, secret) = s.create_client(&unique("filtered-"), quota).await;
    s.create_grant(&id, API, &["read"]).await;
    s.mgmt(Method::PATCH, &format!("/clients/{id}"), Some(json!({ "description": "filtered" }))).await.expect(200);
    tokens(&s, &id, &secret, 3).await;
    for _ in 0..2 {
        let r = s
            .token_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "wrong-secret"),
                ("audience", API),
            ])
            .await;
        assert_eq!(r.status, 401, "{}", r.json);
    }
    wait_logs(&s, &format!("type:feccft AND client_id:\"{id}\""), Duration::from_secs(3), "2 feccft", |e| e.len() == 2)
        .await;
    wait_logs(&s, "type:token_quota_consumption_warning", Duration::from_secs(3), "1 warning", |e| e.len() == 1).await;

    let after = events_after(&s, &checkpoint, 100).await;
    let count = |t: &str| after.iter().filter(|e| e["type"] == t).count();
    assert_eq!(
        (count("sapi"), count("seccft"), count("token_quota_consumption_warning"), count("feccft"), after.len()),
        (3, 3, 1, 2, 9),
        "the events written after the checkpoint: {after:?}"
    );

    for (path, _, types) in &cases {
        let want: BTreeSet<String> =
            after.iter().filter(|e| types.iter().any(|t| e["type"] == *t)).map(log_id).collect();
        rx.wait_until(Duration::from_secs(10), &format!("{} events on {path}", want.len()), |r| {
            let got = r.unique_items_to(path);
            want.iter().all(|id| got.contains_key(id))
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (path, _, types) in &cases {
        let want: BTreeSet<String> =
            after.iter().filter(|e| types.iter().any(|t| e["type"] == *t)).map(log_id).collect();
        let got = rx.unique_items_to(path);
        for (id, data) in &got {
            assert!(
                types.iter().any(|t| data["type"] == *t),
                "{path} (types {types:?}) received an event of another category: {data}"
            );
            let _ = id;
        }
        let got_after: BTreeSet<String> = got.keys().filter(|id| **id > checkpoint).cloned().collect();
        assert_eq!(got_after, want, "{path}: exactly the matching events after the checkpoint");
    }
}

/// The API alone (no client).
async fn api_only(s: &TestServer) {
    let body = json!({ "identifier": API, "name": "Streams API", "scopes": [{ "value": "read", "description": "r" }] });
    s.mgmt(Method::POST, "/resource-servers", Some(body)).await.expect(201);
}

#[tokio::test]
async fn a_paused_stream_queues_and_a_new_stream_starts_at_its_creation() {
    let s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let rx = Receiver::start().await;
    let before = tokens(&s, &id, &secret, 2).await;

    let mut paused = http_stream(&rx.url("/paused"), Format::Lines, &[SUCCESS]);
    paused["status"] = json!("paused");
    let p = create_stream(&s, paused).await;
    assert_eq!(p["status"], "paused", "{p}");
    let a = create_stream(&s, http_stream(&rx.url("/active"), Format::Lines, &[SUCCESS])).await;
    assert_eq!(a["status"], "active", "status defaults to active: {a}");

    let jtis = tokens(&s, &id, &secret, 3).await;
    rx.wait_until(Duration::from_secs(10), "3 seccft on /active", |r| {
        has_all(&seccft_jtis(&r.items_to("/active"), &id), &jtis)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let active = seccft_jtis(&rx.items_to("/active"), &id);
    assert_eq!(active, jtis.iter().cloned().collect(), "a new stream delivers events from its creation on only");
    assert!(before.iter().all(|j| !active.contains(j)), "events older than the stream are not delivered");
    assert!(rx.requests().iter().all(|r| r.path != "/paused"), "a paused stream delivers nothing");
    let pv = get_stream(&s, &sid(&p)).await;
    assert_eq!(pv["status"], "paused", "{pv}");
    assert_eq!(pv["delivery"]["backlog"], 3, "backlog counts the undelivered matching events: {pv}");

    let r = s.mgmt(Method::PATCH, &format!("/log-streams/{}", sid(&p)), Some(json!({ "status": "active" }))).await;
    assert_eq!(r.expect(200)["status"], "active");
    rx.wait_until(Duration::from_secs(10), "the queued events on /paused", |r| {
        has_all(&seccft_jtis(&r.items_to("/paused"), &id), &jtis)
    })
    .await;
    let got = seccft_jtis(&rx.items_to("/paused"), &id);
    assert_eq!(got, jtis.iter().cloned().collect(), "after resume: the queued events, none older than the stream");
    let last = events_for(&s, "seccft", &id).await.iter().map(log_id).max().unwrap();
    wait_stream(&s, &sid(&p), Duration::from_secs(5), "backlog 0 and last_delivered_log_id", |v| {
        v["delivery"]["backlog"] == 0 && v["delivery"]["last_delivered_log_id"] == last.as_str()
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// CRUD, validation, delivery fields
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_stream_configs_are_refused_naming_the_field() {
    let s = server(60).await;
    let ok = "https://logs.example.com/ingest";
    let http = |sink: Value| json!({ "name": "bad", "type": "http", "sink": sink });
    #[rustfmt::skip]
    let cases: Vec<(&[&str], Value)> = vec![
        (&["httpEndpoint"], http(json!({ "httpEndpoint": "ftp://x" }))),
        (&["httpEndpoint"], http(json!({ "httpEndpoint": "not a url" }))),
        (&["httpEndpoint"], http(json!({ "httpEndpoint": "" }))),
        (&["httpEndpoint"], http(json!({ "httpEndpoint": "/relative/path" }))),
        (&["httpEndpoint"], http(json!({ "httpContentFormat": "JSONLINES" }))),
        (&["httpEndpoint"], http(json!({ "httpEndpoint": 42 }))),
        (&["httpContentFormat"], http(json!({ "httpEndpoint": ok, "httpContentFormat": "XML" }))),
        (&["httpContentFormat"], http(json!({ "httpEndpoint": ok, "httpContentFormat": "jsonlines-ish" }))),
        (&["sink"], json!({ "name": "bad", "type": "http" })),
        (&["sink"], json!({ "name": "bad", "type": "http", "sink": null })),
        (&["sink", "httpEndpoint"], http(json!({}))),
        (&["filter"], json!({ "name": "bad", "type": "http", "sink": { "httpEndpoint": ok },
                              "filters": [{ "type": "category", "name": "auth.bogus" }] })),
        (&["type"], json!({ "name": "bad", "type": "carrier-pigeon", "sink": { "httpEndpoint": ok } })),
        (&["path"], json!({ "name": "bad", "type": "file", "sink": { "path": "relative/events.log" } })),
        (&["path"], json!({ "name": "bad", "type": "file", "sink": {} })),
        (&["status"], json!({ "name": "bad", "type": "http", "sink": { "httpEndpoint": ok }, "status": "sleeping" })),
    ];
    for (fields, body) in &cases {
        let r = s.mgmt(Method::POST, "/log-streams", Some(body.clone())).await;
        assert_eq!(r.status, 400, "POST {body}: {}", r.json);
        let msg = assert_mgmt_error(&r, 400, "Bad Request", None);
        assert!(fields.iter().any(|f| msg.contains(f)), "the message for {body} names {fields:?}: {msg:?}");
    }
    let list = s.mgmt(Method::GET, "/log-streams", None).await.expect(200);
    assert_eq!(list, json!([]), "no stream was created by a refused POST");
    let sapi = logs_q(&s, "type:sapi").await;
    assert!(sapi.is_empty(), "refused writes write no sapi: {sapi:?}");

    // PATCH validates the same way and changes nothing on error.
    let st = create_stream(&s, http_stream(ok, Format::Lines, &[SUCCESS])).await;
    let id = sid(&st);
    let before = get_stream(&s, &id).await;
    #[rustfmt::skip]
    let patches: Vec<(&[&str], Value)> = vec![
        (&["httpEndpoint"], json!({ "sink": { "httpEndpoint": "ftp://x", "httpContentFormat": "JSONLINES" } })),
        (&["httpEndpoint"], json!({ "sink": { "httpEndpoint": "not a url" } })),
        (&["httpContentFormat"], json!({ "sink": { "httpEndpoint": ok, "httpContentFormat": "CSV" } })),
        (&["status"], json!({ "status": "bogus" })),
        (&["filter"], json!({ "filters": [{ "type": "category", "name": "nope.nope" }] })),
    ];
    for (fields, body) in &patches {
        let r = s.mgmt(Method::PATCH, &format!("/log-streams/{id}"), Some(body.clone())).await;
        let msg = assert_mgmt_error(&r, 400, "Bad Request", None);
        assert!(fields.iter().any(|f| msg.contains(f)), "the message for PATCH {body} names {fields:?}: {msg:?}");
        assert_eq!(get_stream(&s, &id).await, before, "a refused PATCH {body} changed the stream");
    }

    // Unknown ids and missing credentials.
    for m in [Method::GET, Method::DELETE] {
        let r = s.mgmt(m.clone(), "/log-streams/lst_doesnotexist", None).await;
        assert_mgmt_error(&r, 404, "Not Found", None);
    }
    let r = s.mgmt(Method::PATCH, "/log-streams/lst_doesnotexist", Some(json!({ "name": "x" }))).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
    let r = s.mgmt_with(None, Method::GET, "/log-streams", None).await;
    assert_eq!(r.status, 401, "{}", r.json);
}

#[tokio::test]
async fn stream_crud_and_delivery_fields() {
    let s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let rx = Receiver::start().await;
    let auth = format!("Bearer stream-secret-{}", unique("a"));
    let headers = json!([{ "header": "X-A", "value": "1" }]);
    let name = unique("crud-");
    let body = json!({
        "name": name, "type": "http", "filters": filters(&[SUCCESS]),
        "sink": { "httpEndpoint": rx.url("/crud"), "httpContentType": "application/json",
                  "httpContentFormat": "JSONARRAY", "httpAuthorization": auth, "httpCustomHeaders": headers },
    });
    let st = create_stream(&s, body).await;
    let sid = sid(&st);
    assert!(!sid.is_empty());
    assert_eq!(st["name"], name.as_str(), "{st}");
    assert_eq!(st["type"], "http", "{st}");
    assert_eq!(st["status"], "active", "{st}");
    assert_eq!(st["filters"], filters(&[SUCCESS]), "{st}");
    assert_eq!(st["sink"]["httpEndpoint"], rx.url("/crud").as_str(), "{st}");
    assert_eq!(st["sink"]["httpContentType"], "application/json", "{st}");
    assert_eq!(st["sink"]["httpContentFormat"], "JSONARRAY", "{st}");
    assert_eq!(st["sink"]["httpCustomHeaders"], headers, "{st}");
    assert!(st["sink"].get("httpAuthorization").is_none(), "httpAuthorization is write-only: {st}");
    assert!(!st.to_string().contains(&auth), "the authorization value is never returned: {st}");
    assert!(st["delivery"].is_object(), "delivery object on the stream: {st}");
    assert_eq!(get_stream(&s, &sid).await, st, "GET returns what POST returned");
    let list = s.mgmt(Method::GET, "/log-streams", None).await.expect(200);
    let list = list.as_array().unwrap_or_else(|| panic!("GET /log-streams is an array: {list}")).clone();
    assert_eq!(list, vec![st.clone()], "the list holds the stream");

    // The sapi for the creation never holds the authorization value.
    let sapi = logs_q(&s, "type:sapi").await;
    let ev = sapi
        .iter()
        .find(|e| e["details"]["request"]["path"] == "/api/v2/log-streams")
        .unwrap_or_else(|| panic!("sapi for POST /api/v2/log-streams right after the 201: {sapi:?}"));
    assert!(crate::events::sapi_method(ev).eq_ignore_ascii_case("POST"), "{ev}");
    assert_eq!(ev["details"]["request"]["body"]["sink"]["httpAuthorization"], "[REDACTED]", "{ev}");
    assert_eq!(ev["details"]["response"]["statusCode"], 201, "{ev}");

    // Healthy delivery.
    let jti1 = tokens(&s, &id, &secret, 1).await.remove(0);
    rx.wait_until(Duration::from_secs(10), "token 1", |r| seccft_jtis(&r.items(), &id).contains(&jti1)).await;
    let log1 = rx.items().iter().find(|i| i.data["type"] == "seccft").expect("delivered").log_id.clone();
    assert_eq!(rx.requests()[0].header("authorization").as_deref(), Some(auth.as_str()));
    assert_eq!(rx.requests()[0].header("x-a").as_deref(), Some("1"));
    let v = wait_stream(&s, &sid, Duration::from_secs(5), "last_delivered_log_id", |v| {
        v["delivery"]["last_delivered_log_id"] == log1.as_str()
    })
    .await;
    assert_eq!(v["delivery"]["backlog"], 0, "{v}");
    assert!(v["delivery"]["last_error"].is_null(), "{v}");
    assert!(v["delivery"]["failing_since"].is_null(), "{v}");

    // Failing: the receiver answers 500.
    rx.set_500();
    let jti2 = tokens(&s, &id, &secret, 1).await.remove(0);
    let log2 =
        log_id(events_for(&s, "seccft", &id).await.iter().find(|e| event_jti(e) == jti2).expect("seccft for token 2"));
    let v = wait_stream(&s, &sid, Duration::from_secs(5), "last_error and failing_since", |v| {
        v["delivery"]["last_error"].as_str().is_some_and(|e| !e.is_empty())
            && v["delivery"]["failing_since"].is_string()
    })
    .await;
    assert_eq!(v["delivery"]["backlog"], 1, "one matching event is undelivered: {v}");
    assert_eq!(v["delivery"]["last_delivered_log_id"], log1.as_str(), "{v}");
    assert_eq!(v["status"], "active", "not suspended yet: {v}");
    let fs = rfc3339_ms(v["delivery"]["failing_since"].as_str().unwrap());
    let la = rfc3339_ms(v["delivery"]["last_error_at"].as_str().unwrap_or_else(|| panic!("last_error_at: {v}")));
    assert!(fs <= la, "failing_since is not after last_error_at: {v}");
    assert!(rx.requests().iter().any(|r| r.status == 500), "the stream tried and got 500");

    // Recovery.
    rx.set_ok();
    let v = wait_stream(&s, &sid, Duration::from_secs(10), "recovery", |v| {
        v["delivery"]["last_delivered_log_id"] == log2.as_str()
            && v["delivery"]["backlog"] == 0
            && v["delivery"]["failing_since"].is_null()
    })
    .await;
    assert_eq!(v["status"], "active", "{v}");
    assert!(seccft_jtis(&rx.items(), &id).contains(&jti2));

    // PATCH name, filters, sink (format and authorization).
    let new_name = unique("renamed-");
    let new_auth = "Basic bmV3OmF1dGg=";
    let patch = json!({
        "name": new_name, "filters": filters(&[SUCCESS, FAIL]),
        "sink": { "httpEndpoint": rx.url("/crud2"), "httpContentType": "application/json",
                  "httpContentFormat": "JSONLINES", "httpAuthorization": new_auth, "httpCustomHeaders": headers },
    });
    let v = s.mgmt(Method::PATCH, &format!("/log-streams/{sid}"), Some(patch)).await.expect(200);
    assert_eq!(v["name"], new_name.as_str(), "{v}");
    assert_eq!(v["filters"], filters(&[SUCCESS, FAIL]), "{v}");
    assert_eq!(v["sink"]["httpContentFormat"], "JSONLINES", "{v}");
    assert_eq!(v["sink"]["httpEndpoint"], rx.url("/crud2").as_str(), "{v}");
    assert!(v["sink"].get("httpAuthorization").is_none(), "{v}");
    assert_eq!(get_stream(&s, &sid).await["name"], new_name.as_str());
    let jti3 = tokens(&s, &id, &secret, 1).await.remove(0);
    rx.wait_until(Duration::from_secs(10), "token 3 on /crud2", |r| {
        seccft_jtis(&r.items_to("/crud2"), &id).contains(&jti3)
    })
    .await;
    let req = rx.ok_requests_to("/crud2").into_iter().last().unwrap();
    assert_eq!(req.header("authorization").as_deref(), Some(new_auth), "the patched authorization is used");
    parse_body(&req.body, Format::Lines);

    // Pause; delete.
    let v = s.mgmt(Method::PATCH, &format!("/log-streams/{sid}"), Some(json!({ "status": "paused" }))).await;
    assert_eq!(v.expect(200)["status"], "paused");
    let r = s.mgmt(Method::DELETE, &format!("/log-streams/{sid}"), None).await;
    assert_eq!(r.status, 204, "{}", r.json);
    assert!(r.raw.is_empty(), "204 has no body");
    let r = s.mgmt(Method::GET, &format!("/log-streams/{sid}"), None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
    let r = s.mgmt(Method::DELETE, &format!("/log-streams/{sid}"), None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
    assert_eq!(s.mgmt(Method::GET, "/log-streams", None).await.expect(200), json!([]));

    // A deleted stream delivers nothing.
    let n = rx.requests().len();
    tokens(&s, &id, &secret, 2).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(rx.requests().len(), n, "a deleted stream delivers nothing");

    // No sapi ever holds either authorization value.
    let text = serde_json::to_string(&logs(&s, "per_page=100").await).unwrap();
    assert!(!text.contains(&auth) && !text.contains(new_auth), "an httpAuthorization value is in the event log");

    // Checked last so that the checks above run regardless: a new stream has delivered nothing.
    assert_fresh_delivery(&st);
}

#[tokio::test]
async fn file_stream_appends_json_lines() {
    let s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ration-events.jsonl");
    let path_s = path.display().to_string();
    let st = create_stream(
        &s,
        json!({ "name": unique("file-"), "type": "file", "sink": { "path": path_s }, "filters": filters(&[SUCCESS]) }),
    )
    .await;
    assert_eq!(st["type"], "file", "{st}");
    assert_eq!(st["sink"]["path"], path_s.as_str(), "{st}");
    assert_eq!(st["status"], "active", "{st}");

    let jtis = tokens(&s, &id, &secret, 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let items = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // Only complete lines.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let items: Vec<Item> = complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| item_of(&serde_json::from_str(l).unwrap_or_else(|e| panic!("file line is JSON ({e}): {l:?}"))))
            .collect();
        if has_all(&seccft_jtis(&items, &id), &jtis) {
            break items;
        }
        assert!(Instant::now() < deadline, "the file stream did not receive the 5 events: {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(items.iter().all(|i| i.data["type"] == "seccft"), "filter honoured");
    assert_eq!(seccft_jtis(&items, &id), jtis.iter().cloned().collect(), "exactly the 5 exchanges");
    assert_in_order(&items);
    let last = items.iter().map(|i| i.log_id.clone()).max().unwrap();
    wait_stream(&s, &sid(&st), Duration::from_secs(5), "last_delivered_log_id", |v| {
        v["delivery"]["last_delivered_log_id"] == last.as_str() && v["delivery"]["backlog"] == 0
    })
    .await;
    // Checked last so that the checks above run regardless: a new stream has delivered nothing.
    assert_fresh_delivery(&st);
}

// -------------------------------------------------------------------------------------------
// Failures: outage, suspension, kill -9
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn receiver_down_then_500s_then_recovers_nothing_is_lost() {
    let s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let mut rx = Receiver::start().await;
    let st = create_stream(&s, http_stream(&rx.url("/ingest"), Format::Lines, &[SUCCESS])).await;
    let mut expected: Vec<String> = Vec::new();

    // Healthy first.
    expected.extend(tokens(&s, &id, &secret, 5).await);
    rx.wait_until(Duration::from_secs(10), "the first 5", |r| has_all(&seccft_jtis(&r.items(), &id), &expected)).await;

    // Down: connections refused.
    rx.down().await;
    let t = Instant::now();
    let (jtis, slowest_down) = tokens_concurrent(&s, &id, &secret, 150, 6).await;
    expected.extend(jtis);
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(t.elapsed())).await;

    // Up, answering 500.
    rx.set_500();
    rx.up().await;
    let t = Instant::now();
    let (jtis, slowest_500) = tokens_concurrent(&s, &id, &secret, 150, 6).await;
    expected.extend(jtis);
    rx.wait_until(Duration::from_secs(5), "a retry answered 500", |r| r.requests().iter().any(|q| q.status == 500))
        .await;
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(t.elapsed())).await;
    let during = get_stream(&s, &sid(&st)).await;
    assert!(during["delivery"]["backlog"].as_u64().unwrap_or(0) > 0, "a backlog while failing: {during}");
    assert!(during["delivery"]["last_error"].is_string(), "last_error while failing: {during}");

    // Recovery.
    rx.set_ok();
    rx.wait_until(Duration::from_secs(20), "all 305 seccft", |r| has_all(&seccft_jtis(&r.items(), &id), &expected))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let items = rx.items();
    let unique = rx.unique_items_to("/ingest");
    assert!(unique.values().all(|d| d["type"] == "seccft"), "only seccft (filter)");
    let got: BTreeSet<String> = unique.values().filter(|d| d["client_id"] == id.as_str()).map(event_jti).collect();
    let want: BTreeSet<String> = expected.iter().cloned().collect();
    assert_eq!(want.len(), 305, "305 distinct tokens issued");
    assert_eq!(got, want, "every seccft for every 200 arrives, none missing, none invented");
    assert_in_order(&items);
    let ok = rx.ok_requests();
    let sizes: Vec<usize> = ok.iter().map(|r| parse_body(&r.body, Format::Lines).len()).collect();
    assert!(sizes.iter().all(|n| *n <= 100), "batches of at most 100: {sizes:?}");
    assert!(sizes.iter().any(|n| *n > 1), "the backlog is delivered in batches: {sizes:?}");
    let v = wait_stream(&s, &sid(&st), Duration::from_secs(5), "backlog 0", |v| {
        v["delivery"]["backlog"] == 0 && v["delivery"]["failing_since"].is_null()
    })
    .await;
    assert_eq!(v["status"], "active", "{v}");
    // The dead sink did not hold up the token endpoint.
    assert!(
        slowest_down < Duration::from_secs(2) && slowest_500 < Duration::from_secs(2),
        "token latency with an unhealthy sink: {slowest_down:?} / {slowest_500:?}"
    );
}

#[tokio::test]
async fn continuous_failure_suspends_and_patch_resumes() {
    let s = server(3).await;
    let (id, secret) = m2m(&s).await;
    let rx = Receiver::start().await;
    rx.set_500();
    let st = create_stream(&s, http_stream(&rx.url("/sus"), Format::Array, &[SUCCESS])).await;
    let sid = sid(&st);
    let mut jtis = tokens(&s, &id, &secret, 1).await;
    let t = Instant::now();
    rx.wait_until(Duration::from_secs(3), "a first attempt", |r| !r.requests().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let v = get_stream(&s, &sid).await;
    assert_eq!(v["status"], "active", "not suspended after ~1 s of failure: {v}");
    assert!(v["delivery"]["failing_since"].is_string(), "failing_since set while failing: {v}");

    let v = wait_stream(&s, &sid, Duration::from_secs(10), "status suspended", |v| v["status"] == "suspended").await;
    assert!(t.elapsed() >= Duration::from_millis(2500), "suspended only after ~3 s of failure ({:?})", t.elapsed());
    assert!(v["delivery"]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(v["delivery"]["failing_since"].is_string(), "{v}");
    assert_eq!(v["delivery"]["backlog"], 1, "{v}");

    // Suspended: delivery stops even though the receiver is healthy again.
    rx.set_ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = rx.requests().len();
    jtis.extend(tokens(&s, &id, &secret, 2).await);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(rx.requests().len(), n, "a suspended stream delivers nothing");
    let v = get_stream(&s, &sid).await;
    assert_eq!(v["status"], "suspended", "{v}");
    assert_eq!(v["delivery"]["backlog"], 3, "{v}");

    // PATCH resumes; the backlog is delivered.
    let v = s.mgmt(Method::PATCH, &format!("/log-streams/{sid}"), Some(json!({ "status": "active" }))).await;
    assert_eq!(v.expect(200)["status"], "active");
    rx.wait_until(Duration::from_secs(10), "the backlog after resume", |r| {
        has_all(&seccft_jtis(&r.items(), &id), &jtis)
    })
    .await;
    assert_eq!(seccft_jtis(&rx.items(), &id), jtis.iter().cloned().collect());
    let v = wait_stream(&s, &sid, Duration::from_secs(5), "backlog 0", |v| {
        v["delivery"]["backlog"] == 0 && v["delivery"]["failing_since"].is_null()
    })
    .await;
    assert_eq!(v["status"], "active", "{v}");
}

#[tokio::test]
async fn kill_9_with_pending_events_then_restart_delivers_them() {
    let mut s = server(60).await;
    let (id, secret) = m2m(&s).await;
    let mut rx = Receiver::start().await;
    let st = create_stream(&s, http_stream(&rx.url("/k9"), Format::Lines, &[SUCCESS])).await;
    rx.down().await;
    let (jtis, _) = tokens_concurrent(&s, &id, &secret, 80, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill9();

    s.restart().await;
    // The events were durable before their 200s.
    let stored: BTreeSet<String> = events_for(&s, "seccft", &id).await.iter().map(event_jti).collect();
    assert_eq!(stored, jtis.iter().cloned().collect(), "every seccft survived kill -9");
    let v = get_stream(&s, &sid(&st)).await;
    assert_eq!(v["status"], "active", "{v}");
    let pending: BTreeSet<String> = events_for(&s, "seccft", &id).await.iter().map(log_id).collect();
    let last = v["delivery"]["last_delivered_log_id"].as_str().map(str::to_owned);
    assert!(
        last.as_ref().is_none_or(|l| pending.iter().all(|p| p > l)),
        "nothing was delivered before the kill, so no pending event is at or before last_delivered_log_id: {v}"
    );
    assert!(v["delivery"]["backlog"].as_u64().unwrap_or(0) >= 80, "the 80 pending events are the backlog: {v}");

    rx.set_ok();
    rx.up().await;
    rx.wait_until(Duration::from_secs(20), "all 80 seccft after restart", |r| {
        has_all(&seccft_jtis(&r.items(), &id), &jtis)
    })
    .await;
    assert_eq!(seccft_jtis(&rx.items(), &id), jtis.iter().cloned().collect());
    assert_in_order(&rx.items());
}
