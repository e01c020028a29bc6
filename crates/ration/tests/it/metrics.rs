//! Acceptance tests for issue 8, part 2: Prometheus metrics at `GET /metrics`. The exposition is
//! parsed strictly (every line a comment of a known kind or a `name{labels} value` sample, ending
//! with `# EOF`), and the counters are checked to move by exactly what the requests made of them:
//! tokens issued and refused by outcome, quota rejections by entity and bucket, the latency
//! histogram, quota usage gauges, the top-N bound on client series, and log-stream deliveries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;
use crate::receiver::{Format, Receiver};

const API: &str = "https://metrics.example.com/";
const FORM: &str = "application/x-www-form-urlencoded";
const OUTCOMES: [&str; 9] = [
    "issued",
    "invalid_request",
    "unauthorized",
    "forbidden",
    "quota_exceeded",
    "action_denied",
    "action_failed",
    "unavailable",
    "error",
];

// -------------------------------------------------------------------------------------------
// A strict OpenMetrics text parser
// -------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape: the samples and the declared type of every family.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    text: String,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",k2="v2"}` (the braces already removed); values may contain escaped `\\`, `\"`, `\n`.
fn parse_labels(s: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let eq = rest.find('=').unwrap_or_else(|| panic!("label without '=' in {line:?}"));
        let key = &rest[..eq];
        assert!(is_name(key), "bad label name {key:?} in {line:?}");
        rest = rest[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(labels.insert(key.to_owned(), value).is_none(), "label {key} repeated in {line:?}");
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
            assert!(!rest.is_empty(), "trailing comma in {line:?}");
        } else {
            assert!(rest.is_empty(), "garbage after a label value in {line:?}");
        }
    }
    labels
}

fn parse_value(s: &str, line: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse().unwrap_or_else(|_| panic!("bad sample value {s:?} in {line:?}")),
    }
}

/// The family a sample belongs to: its name less an OpenMetrics suffix of a declared family.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_total", "_bucket", "_count", "_sum", "_created"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| types.contains_key(*base))
}

fn parse(text: &str) -> Scrape {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF:\n{text}");
    assert!(text.ends_with("# EOF\n"), "a newline after # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a metric name: {line:?}"));
            assert!(is_name(name), "bad metric name in {line:?}");
            match kind {
                Some("TYPE") => {
                    let t = rest.unwrap_or_else(|| panic!("TYPE without a type: {line:?}"));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"].contains(&t),
                        "unknown type in {line:?}"
                    );
                    assert!(types.insert(name.to_owned(), t.to_owned()).is_none(), "family {name} declared twice");
                }
                Some("HELP") | Some("UNIT") => {}
                _ => panic!("unexpected comment line {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name, parse_labels(labels, line))
            }
            None => (series, BTreeMap::new()),
        };
        assert!(is_name(name), "bad metric name in {line:?}");
        assert!(family_of(name, &types).is_some(), "sample {name} before (or without) its # TYPE line");
        samples.push(Sample { name: name.to_owned(), labels, value: parse_value(value, line) });
    }
    Scrape { samples, types, text: text.to_owned() }
}

impl Scrape {
    /// Samples named `name` whose labels include every pair of `labels`.
    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The one sample named `name` with exactly `labels`.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{}", self.text))
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, labels).filter(|s| s.labels.len() == labels.len());
        let first = found.next().map(|s| s.value);
        assert!(found.next().is_none(), "several samples {name}{labels:?}");
        first
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// A histogram's buckets are cumulative, `+Inf` equals `_count`; returns `_count`.
    #[track_caller]
    fn histogram_count(&self, family: &str) -> f64 {
        assert_eq!(self.types.get(family).map(String::as_str), Some("histogram"), "{family} is a histogram");
        let buckets: Vec<(f64, f64)> = self
            .matching(&format!("{family}_bucket"), &[])
            .map(|s| (parse_value(&s.labels["le"], "le"), s.value))
            .collect();
        assert!(buckets.len() > 5, "{family} has buckets: {buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family} cumulative: {buckets:?}");
        let count = self.value(&format!("{family}_count"), &[]);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, count)), "{family}: +Inf bucket equals _count");
        count
    }
}

async fn scrape(s: &TestServer) -> Scrape {
    let r = s.get("/metrics").await;
    assert_eq!(r.status, 200, "GET /metrics: {}", r.json);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/openmetrics-text") || ct.starts_with("text/plain; version=0.0.4"),
        "a Prometheus content type: {ct:?}"
    );
    parse(std::str::from_utf8(&r.raw).expect("UTF-8 exposition"))
}

/// `after - before` for every outcome of `ration_token_requests_total`.
fn outcome_deltas(before: &Scrape, after: &Scrape) -> BTreeMap<&'static str, f64> {
    OUTCOMES
        .iter()
        .map(|o| {
            let l = [("outcome", *o)];
            (*o, after.value("ration_token_requests_total", &l) - before.value("ration_token_requests_total", &l))
        })
        .collect()
}

// -------------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------------

async fn api(s: &TestServer) {
    s.create_api(API, json!({ "scopes": [{ "value": "read", "description": "r" }] })).await;
}

/// A client (with `extra` fields) granted `read` on the API.
async fn client(s: &TestServer, extra: Value) -> (String, String) {
    let (id, secret) = s.create_client(&unique("metrics-"), extra).await;
    s.create_grant(&id, API, &["read"]).await;
    (id, secret)
}

async fn token_status(s: &TestServer, pairs: &[(&str, &str)]) -> u16 {
    s.token_form(pairs).await.status
}

async fn cc(s: &TestServer, id: &str, secret: &str) -> u16 {
    token_status(
        s,
        &[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret), ("audience", API)],
    )
    .await
}

// -------------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_issued_and_refused_token_requests_exactly() {
    let s = TestServer::start().await;
    api(&s).await;
    let (id, secret) = client(&s, json!({ "token_quota": { "client_credentials": { "per_hour": 3 } } })).await;
    // An organization with a daily quota of 1, used by a client without a quota of its own.
    let org = s
        .mgmt(
            Method::POST,
            "/organizations",
            Some(json!({ "name": unique("org-").to_lowercase(), "token_quota": { "client_credentials": { "per_day": 1 } } })),
        )
        .await
        .expect(201);
    let org_id = org["id"].as_str().expect("organization id").to_owned();
    let (org_client, org_secret) = s.create_client(&unique("metrics-org-"), json!({})).await;
    let grant = s
        .mgmt(
            Method::POST,
            "/client-grants",
            Some(json!({ "client_id": org_client, "audience": API, "scope": ["read"],
                         "organization_usage": "allow", "allow_any_organization": true })),
        )
        .await
        .expect(201);
    s.mgmt(Method::POST, &format!("/organizations/{org_id}/client-grants"), Some(json!({ "grant_id": grant["id"] })))
        .await
        .expect(201);

    let before = scrape(&s).await;
    // Families with series from the start (usage gauges and log-stream families appear with
    // their first bucket in use and first stream).
    for family in [
        "ration_token_requests",
        "ration_tokens_issued",
        "ration_quota_rejections",
        "ration_token_request_duration_seconds",
        "ration_action_duration_seconds",
        "ration_action_failures",
        "ration_counter_store_errors",
    ] {
        assert!(before.types.contains_key(family), "family {family} declared in\n{}", before.text);
    }
    // Every outcome is exported from the start, so rate() works from the first scrape.
    for o in OUTCOMES {
        before.value("ration_token_requests_total", &[("outcome", o)]);
    }
    assert_eq!(before.find("ration_tokens_issued_total", &[("client", &id)]), None, "no tokens for {id} yet");
    let latency_before = before.histogram_count("ration_token_request_duration_seconds");

    // 3 issued, then the 4th is over the hourly quota.
    for i in 0..3 {
        assert_eq!(cc(&s, &id, &secret).await, 200, "token {i}");
    }
    assert_eq!(cc(&s, &id, &secret).await, 429, "4th token over per_hour=3");
    // Bad secret, unknown audience, missing grant_type.
    assert_eq!(cc(&s, &id, "wrong-secret").await, 401);
    let unknown_aud = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("audience", "https://nowhere.example.com/"),
    ];
    assert_eq!(token_status(&s, &unknown_aud).await, 403);
    assert_eq!(token_status(&s, &[("client_id", &id), ("client_secret", &secret), ("audience", API)]).await, 400);
    // The organization's daily quota: one token, then a 429 on the organization bucket.
    let with_org = [
        ("grant_type", "client_credentials"),
        ("client_id", org_client.as_str()),
        ("client_secret", org_secret.as_str()),
        ("audience", API),
        ("organization", org_id.as_str()),
    ];
    assert_eq!(token_status(&s, &with_org).await, 200);
    assert_eq!(token_status(&s, &with_org).await, 429);

    let after = scrape(&s).await;
    let deltas = outcome_deltas(&before, &after);
    let expected: BTreeMap<&str, f64> = [
        ("issued", 4.0),
        ("invalid_request", 1.0),
        ("unauthorized", 1.0),
        ("forbidden", 1.0),
        ("quota_exceeded", 2.0),
        ("action_denied", 0.0),
        ("action_failed", 0.0),
        ("unavailable", 0.0),
        ("error", 0.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(deltas, expected, "ration_token_requests_total moved by exactly the requests made");

    let latency_after = after.histogram_count("ration_token_request_duration_seconds");
    assert_eq!(latency_after - latency_before, 9.0, "one latency observation per token request");
    let sum = |sc: &Scrape| sc.value("ration_token_request_duration_seconds_sum", &[]);
    assert!(sum(&after) > sum(&before), "latency sum grows");

    assert_eq!(after.value("ration_tokens_issued_total", &[("client", &id)]), 3.0);
    assert_eq!(after.value("ration_tokens_issued_total", &[("client", &org_client)]), 1.0);
    assert_eq!(
        after.sum("ration_tokens_issued_total", &[]),
        after.value("ration_token_requests_total", &[("outcome", "issued")]),
        "per-client series sum to the tokens issued"
    );

    let rejections = |sc: &Scrape, entity: &str, bucket: &str| {
        sc.value("ration_quota_rejections_total", &[("entity", entity), ("bucket", bucket)])
    };
    for entity in ["client", "organization"] {
        for bucket in ["per_minute", "per_hour", "per_day"] {
            let expected = match (entity, bucket) {
                ("client", "per_hour") | ("organization", "per_day") => 1.0,
                _ => 0.0,
            };
            assert_eq!(
                rejections(&after, entity, bucket) - rejections(&before, entity, bucket),
                expected,
                "ration_quota_rejections_total{{entity={entity},bucket={bucket}}}"
            );
        }
    }

    // Usage gauges: the client's hour bucket and the organization's day bucket are both full.
    let usage = |entity: &str, eid: &str, bucket: &str| {
        after.find("ration_quota_usage_ratio", &[("entity", entity), ("id", eid), ("bucket", bucket)])
    };
    assert_eq!(usage("client", &id, "per_hour"), Some(1.0), "{}", after.text);
    assert_eq!(usage("organization", &org_id, "per_day"), Some(1.0), "{}", after.text);

    assert_eq!(after.value("ration_counter_store_errors_total", &[]), 0.0);
    assert_eq!(after.value("ration_action_failures_total", &[]), 0.0);
    assert_eq!(after.histogram_count("ration_action_duration_seconds"), 0.0, "no Action is bound");
}

#[tokio::test]
async fn metrics_client_series_are_bounded_to_the_top_n() {
    let s = TestServer::builder().env("RATION_METRICS_TOP_CLIENTS", "2").start().await;
    api(&s).await;
    let mut clients = Vec::new();
    for n in [4usize, 2, 5, 3] {
        clients.push((client(&s, json!({})).await, n));
    }
    for ((id, secret), n) in &clients {
        for _ in 0..*n {
            assert_eq!(cc(&s, id, secret).await, 200);
        }
    }
    let m = scrape(&s).await;
    let series: BTreeSet<String> = m
        .matching("ration_tokens_issued_total", &[])
        .map(|sample| sample.labels.get("client").cloned().unwrap_or_default())
        .collect();
    let top: BTreeSet<String> = [&clients[2].0.0, &clients[0].0.0].into_iter().cloned().collect();
    let expected: BTreeSet<String> = top.iter().cloned().chain(["other".to_owned()]).collect();
    assert_eq!(series, expected, "only the top 2 clients (5 and 4 tokens) and `other`:\n{}", m.text);
    assert_eq!(m.value("ration_tokens_issued_total", &[("client", &clients[2].0.0)]), 5.0);
    assert_eq!(m.value("ration_tokens_issued_total", &[("client", &clients[0].0.0)]), 4.0);
    let issued = m.value("ration_token_requests_total", &[("outcome", "issued")]);
    // `other`: the 3 + 2 tokens of the others, and the admin client's Management API token(s).
    let other = m.value("ration_tokens_issued_total", &[("client", "other")]);
    assert!(other >= 5.0, "other holds the rest: {other}");
    assert_eq!(5.0 + 4.0 + other, issued, "the series sum to every token issued");
    assert!(m.matching("ration_quota_usage_ratio", &[]).count() <= 2, "usage gauges bounded by the same N");
}

#[tokio::test]
async fn metrics_count_log_stream_deliveries_failures_and_backlog() {
    let s = TestServer::builder().env("RATION_LOG_STREAM_RETRY_MAX_MS", "300").start().await;
    api(&s).await;
    let (id, secret) = client(&s, json!({})).await;
    let rx = Receiver::start().await;
    let body = json!({
        "name": unique("stream-"),
        "type": "http",
        "sink": { "httpEndpoint": rx.url("/hook"), "httpContentFormat": Format::Lines.name() },
    });
    let stream = s.mgmt(Method::POST, "/log-streams", Some(body)).await.expect(201);
    let sid = stream["id"].as_str().expect("stream id").to_owned();
    let delivered =
        |m: &Scrape| m.find("ration_log_stream_deliveries_total", &[("stream", &sid), ("outcome", "delivered")]);
    let failed = |m: &Scrape| m.find("ration_log_stream_deliveries_total", &[("stream", &sid), ("outcome", "failed")]);
    let backlog = |m: &Scrape| m.find("ration_log_stream_backlog", &[("stream", &sid)]);

    let m = scrape(&s).await;
    assert_eq!(failed(&m), Some(0.0), "a new stream has no failures:\n{}", m.text);

    for _ in 0..3 {
        assert_eq!(cc(&s, &id, &secret).await, 200);
    }
    // Delivered events counted by the server equal what the receiver accepted, once settled.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = scrape(&s).await;
        let received = rx.items_to("/hook").len() as f64;
        if received >= 3.0 && delivered(&m) == Some(received) && backlog(&m) == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries {:?} vs {received} received, backlog {:?}",
            delivered(&m),
            backlog(&m)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The sink fails: failed attempts are counted and the backlog shows the pending event.
    rx.set_500();
    let before = delivered(&scrape(&s).await);
    assert_eq!(cc(&s, &id, &secret).await, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = scrape(&s).await;
        if failed(&m).is_some_and(|n| n >= 2.0) && backlog(&m).is_some_and(|n| n >= 1.0) {
            assert_eq!(delivered(&m), before, "nothing delivered while failing");
            break;
        }
        assert!(Instant::now() < deadline, "failed {:?}, backlog {:?}:\n{}", failed(&m), backlog(&m), m.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back up: the backlog drains and the delivered count catches up.
    rx.set_ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = scrape(&s).await;
        if backlog(&m) == Some(0.0) && delivered(&m) > before {
            break;
        }
        assert!(Instant::now() < deadline, "backlog {:?} delivered {:?}", backlog(&m), delivered(&m));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_endpoint_needs_no_token_and_refuses_other_methods() {
    let s = TestServer::start().await;
    let m = scrape(&s).await;
    assert!(m.samples.len() > 20, "a full exposition without any request made:\n{}", m.text);
    let r = s.post_raw("/metrics", Some(FORM), Vec::new(), &[]).await;
    assert_eq!(r.status, 405, "POST /metrics: {}", r.json);
}

#[tokio::test]
async fn metrics_count_action_runs_denials_and_failures() {
    let s = TestServer::start().await;
    api(&s).await;
    let code = "exports.onExecuteCredentialsExchange = async (event, api) => {\n\
                  const how = (event.client.metadata || {}).how;\n\
                  if (how === 'throw') { throw new Error('metrics-kaboom'); }\n\
                  if (how === 'deny') { api.access.deny('invalid_request', 'denied for the metrics test'); }\n\
                };\n";
    let name = unique("metrics-action-");
    let body = json!({
        "name": name,
        "supported_triggers": [{ "id": "credentials-exchange", "version": "v2" }],
        "code": code,
        "deploy": true,
    });
    s.mgmt(Method::POST, "/actions/actions", Some(body)).await.expect(201);
    let bindings = json!({ "bindings": [{ "ref": { "type": "action_name", "value": name } }] });
    s.mgmt(Method::PATCH, "/actions/triggers/credentials-exchange/bindings", Some(bindings)).await.expect(200);
    let (ok_id, ok_secret) = client(&s, json!({})).await;
    let (deny_id, deny_secret) = client(&s, json!({ "client_metadata": { "how": "deny" } })).await;
    let (throw_id, throw_secret) = client(&s, json!({ "client_metadata": { "how": "throw" } })).await;

    let before = scrape(&s).await;
    let runs_before = before.histogram_count("ration_action_duration_seconds");
    assert_eq!(cc(&s, &ok_id, &ok_secret).await, 200);
    assert_eq!(cc(&s, &deny_id, &deny_secret).await, 400);
    assert_eq!(cc(&s, &throw_id, &throw_secret).await, 500);
    let after = scrape(&s).await;

    let deltas = outcome_deltas(&before, &after);
    for (outcome, n) in deltas {
        let expected = if ["issued", "action_denied", "action_failed"].contains(&outcome) { 1.0 } else { 0.0 };
        assert_eq!(n, expected, "ration_token_requests_total{{outcome={outcome}}}");
    }
    assert_eq!(after.histogram_count("ration_action_duration_seconds") - runs_before, 3.0, "one run per exchange");
    let failures = |m: &Scrape| m.value("ration_action_failures_total", &[]);
    assert_eq!(failures(&after) - failures(&before), 1.0, "the throw is a failure, the deny is not");
}
