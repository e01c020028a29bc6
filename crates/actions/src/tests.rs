//! End-to-end tests: real QuickJS workers, real Action source, a real local HTTP server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_767_225_600_000;

fn limits(timeout_ms: u64) -> Limits {
    Limits { timeout: Duration::from_millis(timeout_ms), ..Limits::default() }
}

fn pool() -> ActionPool {
    ActionPool::start(2, limits(2_000), FetchPolicy::default()).unwrap()
}

fn action(name: &str, code: &str) -> Arc<ActionCode> {
    Arc::new(ActionCode {
        id: format!("act_{name}"),
        name: name.to_owned(),
        code: Arc::from(code),
        secrets: Vec::new(),
    })
}

fn with_secrets(name: &str, code: &str, secrets: &[(&str, &str)]) -> Arc<ActionCode> {
    let mut a = (*action(name, code)).clone();
    a.secrets = secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Arc::new(a)
}

/// The event the server builds for a client-credentials exchange.
fn event() -> Value {
    json!({
        "client": {"client_id": "cid_1", "name": "Nightly billing job", "metadata": {"tier": "free"}},
        "resource_server": {"identifier": "https://billing.example.com"},
        "request": {
            "ip": "203.0.113.7", "hostname": "auth.example.com", "user_agent": "curl/8.0",
            "method": "POST",
            "body": {"grant_type": "client_credentials", "audience": "https://billing.example.com"}
        },
        "transaction": {"requested_scopes": ["read:invoices", "admin"]},
        "tenant": {"id": "ration"},
        "accessToken": {"customClaims": {}, "scope": ["read:invoices"]}
    })
}

fn job(actions: Vec<Arc<ActionCode>>) -> Job {
    Job { actions, event: event(), now_millis: NOW }
}

async fn run_one(pool: &ActionPool, code: &str) -> JobOutcome {
    pool.run(job(vec![action("a", code)])).await
}

fn claims(outcome: &JobOutcome) -> &serde_json::Map<String, Value> {
    match outcome {
        JobOutcome::Allowed { custom_claims, .. } => custom_claims,
        other => panic!("expected Allowed, got {other:?}"),
    }
}

fn failure(outcome: &JobOutcome) -> &str {
    match outcome {
        JobOutcome::Failed { error, .. } => error,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn lines(outcome: &JobOutcome) -> Vec<String> {
    let logs = match outcome {
        JobOutcome::Allowed { logs, .. } | JobOutcome::Denied { logs, .. } | JobOutcome::Failed { logs, .. } => logs,
    };
    logs.iter().flat_map(|l| l.lines.clone()).collect()
}

#[tokio::test]
async fn deny_with_each_code() {
    let pool = pool();
    for (code, expected) in [
        ("invalid_scope", DenyCode::InvalidScope),
        ("invalid_request", DenyCode::InvalidRequest),
        ("server_error", DenyCode::ServerError),
    ] {
        let src = format!(
            "exports.onExecuteCredentialsExchange = async (event, api) => {{
               const same = api.access.deny('{code}', 'no ' + event.client.name);
               console.log(same === api);
             }};"
        );
        let outcome = run_one(&pool, &src).await;
        assert_eq!(
            outcome,
            JobOutcome::Denied {
                action: "a".into(),
                code: expected,
                reason: "no Nightly billing job".into(),
                logs: vec![ActionLog { action: "a".into(), lines: vec!["true".into()] }],
            }
        );
        assert_eq!(expected.as_str(), code);
    }
}

#[tokio::test]
async fn deny_with_an_unknown_code_fails_even_if_caught() {
    let outcome = run_one(
        &pool(),
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           try { api.access.deny('access_denied', 'x'); } catch (e) {}
         };",
    )
    .await;
    let error = failure(&outcome);
    assert!(error.contains("Action 'a' failed"), "{error}");
    assert!(error.contains("invalid code 'access_denied'"), "{error}");
}

#[tokio::test]
async fn custom_claims_keep_their_types() {
    let outcome = run_one(
        &pool(),
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           api.accessToken
             .setCustomClaim('https://example.com/n', 42)
             .accessToken.setCustomClaim('https://example.com/f', 1.5);
           api.accessToken.setCustomClaim('https://example.com/o', {plan: 'pro', seats: [1, 2]});
           api.accessToken.setCustomClaim('https://example.com/a', ['x', true, null]);
           api.accessToken.setCustomClaim('tier', 'free');
           api.accessToken.setCustomClaim('gone', 1);
           api.accessToken.setCustomClaim('gone', undefined);
         };",
    )
    .await;
    assert_eq!(
        Value::Object(claims(&outcome).clone()),
        json!({
            "https://example.com/n": 42,
            "https://example.com/f": 1.5,
            "https://example.com/o": {"plan": "pro", "seats": [1, 2]},
            "https://example.com/a": ["x", true, null],
            "tier": "free"
        })
    );
}

#[tokio::test]
async fn reserved_and_auth0_namespace_claims_are_ignored() {
    let outcome = run_one(
        &pool(),
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           for (const name of ['sub', 'aud', 'scope', 'permissions', 'x5t#S256', 'internalService',
                               'https://auth0.com/x', 'https://my.auth0.com/x', 'https://webtask.io/y',
                               'http://a.webtask.run/z', 'urn:auth0:thing']) {
             api.accessToken.setCustomClaim(name, 'nope');
           }
           api.accessToken.setCustomClaim('https://example.com/ok', 'yes');
         };",
    )
    .await;
    assert_eq!(Value::Object(claims(&outcome).clone()), json!({"https://example.com/ok": "yes"}));
}

#[tokio::test]
async fn oversized_claims_fail_the_execution() {
    let outcome = run_one(
        &pool(),
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           const big = 'x'.repeat(60 * 1024);
           api.accessToken.setCustomClaim('https://example.com/a', big);
           try { api.accessToken.setCustomClaim('https://example.com/b', big); } catch (e) {}
         };",
    )
    .await;
    let error = failure(&outcome);
    assert!(error.contains("the limit is 102400"), "{error}");
}

#[tokio::test]
async fn secrets_are_visible_only_to_their_own_action() {
    let code = "exports.onExecuteCredentialsExchange = async (event, api) => {
                  console.log(JSON.stringify(event.secrets));
                };";
    let outcome = pool()
        .run(job(vec![
            with_secrets("one", code, &[("API_KEY", "k1")]),
            with_secrets("two", code, &[("OTHER", "k2")]),
            action("three", code),
        ]))
        .await;
    assert_eq!(lines(&outcome), [r#"{"API_KEY":"k1"}"#, r#"{"OTHER":"k2"}"#, "{}"]);
}

#[tokio::test]
async fn cache_persists_across_executions_and_expires_by_job_time() {
    let pool = pool();
    let set = action(
        "set",
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           console.log(JSON.stringify(api.cache.set('count', '1')));
           console.log(JSON.stringify(api.cache.set('short', 's', {ttl: 1000, expires_at: Date.now() + 1e9})));
         };",
    );
    let get = action(
        "get",
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           console.log(JSON.stringify(api.cache.get('count') ?? null));
           console.log(JSON.stringify(api.cache.get('short') ?? null));
           console.log(String(api.cache.get('missing')));
         };",
    );
    let outcome = pool.run(job(vec![set])).await;
    assert_eq!(lines(&outcome), [r#"{"type":"success"}"#; 2]);

    let at = |now_millis| Job { actions: vec![get.clone()], event: event(), now_millis };
    // Another execution (possibly on the other worker) sees the values.
    let outcome = pool.run(at(NOW + 500)).await;
    let expected_count = format!(r#"{{"value":"1","expires_at":{}}}"#, NOW + 15 * 60 * 1000);
    let expected_short = format!(r#"{{"value":"s","expires_at":{}}}"#, NOW + 1000);
    assert_eq!(lines(&outcome), [expected_count.as_str(), expected_short.as_str(), "undefined"]);
    // The ttl wins over the later expires_at; the default lifetime is 15 minutes.
    let outcome = pool.run(at(NOW + 1000)).await;
    assert_eq!(lines(&outcome), [expected_count.as_str(), "null", "undefined"]);
    let outcome = pool.run(at(NOW + 15 * 60 * 1000)).await;
    assert_eq!(lines(&outcome), ["null", "null", "undefined"]);
}

#[tokio::test]
async fn cache_limits_and_delete() {
    let outcome = run_one(
        &pool(),
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           const show = (r) => console.log(JSON.stringify(r));
           show(api.cache.set('k'.repeat(65), 'v'));
           show(api.cache.set('k', 'v'.repeat(4097)));
           show(api.cache.set('k', 42));
           show(api.cache.set('k', 'v', {ttl: -1}));
           for (let i = 0; i < 20; i++) api.cache.set('n' + i, 'v');
           show(api.cache.set('n20', 'v'));
           show(api.cache.delete('n0'));
           show(api.cache.delete('n0'));
           api.cache.delete('n1');
           show(api.cache.set('big', 'x'.repeat(4096)));
           show(api.cache.set('big2', 'x'.repeat(4096)));
         };",
    )
    .await;
    assert_eq!(
        lines(&outcome),
        [
            r#"{"type":"error","code":"key_too_large"}"#,
            r#"{"type":"error","code":"value_too_large"}"#,
            r#"{"type":"error","code":"invalid_value"}"#,
            r#"{"type":"error","code":"invalid_options"}"#,
            r#"{"type":"error","code":"too_many_entries"}"#,
            r#"{"type":"success"}"#,
            r#"{"type":"error","code":"not_found"}"#,
            r#"{"type":"success"}"#,
            r#"{"type":"error","code":"cache_full"}"#,
        ]
    );
}

#[tokio::test]
async fn thrown_errors_and_rejections_fail_with_message_and_line() {
    let pool = pool();
    let outcome = run_one(
        &pool,
        "exports.onExecuteCredentialsExchange = async (event, api) => {\n  throw new Error('boom');\n};",
    )
    .await;
    let error = failure(&outcome);
    assert!(error.starts_with("Action 'a' failed: Error: boom\n"), "{error}");
    assert!(error.contains("action.js:2"), "{error}");

    let outcome =
        run_one(&pool, "exports.onExecuteCredentialsExchange = (event, api) => Promise.reject('nope');").await;
    assert_eq!(failure(&outcome), "Action 'a' failed: nope");

    let outcome = run_one(&pool, "exports.onExecuteCredentialsExchange = function (event, api) { null.x; };").await;
    assert!(failure(&outcome).contains("TypeError"), "{outcome:?}");
}

#[tokio::test]
async fn infinite_loop_times_out_while_another_worker_serves() {
    let pool = ActionPool::start(2, limits(200), FetchPolicy::default()).unwrap();
    // Warm both workers so runtime creation is not part of the timing.
    let ok = "exports.onExecuteCredentialsExchange = async () => {};";
    let _ = tokio::join!(run_one(&pool, ok), run_one(&pool, ok));

    let start = Instant::now();
    let looping = async {
        let outcome = run_one(&pool, "exports.onExecuteCredentialsExchange = async () => { while (true) {} };").await;
        (outcome, start.elapsed())
    };
    let quick = async {
        // Let the loop take its worker first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut done = Vec::new();
        for _ in 0..5 {
            done.push(run_one(&pool, ok).await);
        }
        (done, start.elapsed())
    };
    let ((outcome, loop_time), (done, quick_time)) = tokio::join!(looping, quick);
    assert_eq!(failure(&outcome), "Action 'a' timed out after 200 ms");
    assert!(loop_time >= Duration::from_millis(200), "{loop_time:?}");
    assert!(loop_time < Duration::from_millis(1500), "{loop_time:?}");
    assert!(done.iter().all(|o| matches!(o, JobOutcome::Allowed { .. })));
    assert!(quick_time < loop_time, "{quick_time:?} vs {loop_time:?}");
    // The worker that timed out serves again.
    for _ in 0..4 {
        assert!(matches!(run_one(&pool, ok).await, JobOutcome::Allowed { .. }));
    }
}

#[tokio::test]
async fn loop_after_await_times_out_too() {
    let pool = ActionPool::start(1, limits(200), FetchPolicy::default()).unwrap();
    let outcome =
        run_one(&pool, "exports.onExecuteCredentialsExchange = async () => { await null; for (;;) { await 0; } };")
            .await;
    assert_eq!(failure(&outcome), "Action 'a' timed out after 200 ms");
}

#[tokio::test]
async fn allocation_bomb_fails_only_its_job() {
    let pool = ActionPool::start(1, Limits { memory_bytes: 16 * 1024 * 1024, ..limits(5_000) }, FetchPolicy::default())
        .unwrap();
    for bomb in [
        "exports.onExecuteCredentialsExchange = async () => { const a = []; for (;;) a.push({i: a.length, s: 'x' + a.length}); };",
        "exports.onExecuteCredentialsExchange = async () => { const a = []; for (;;) a.push(new Array(1e5).fill(1)); };",
    ] {
        let outcome = run_one(&pool, bomb).await;
        assert_eq!(failure(&outcome), "Action 'a' ran out of memory");
        let outcome = run_one(
            &pool,
            "exports.onExecuteCredentialsExchange = async (e, api) => { api.accessToken.setCustomClaim('ok', 1); };",
        )
        .await;
        assert_eq!(claims(&outcome).get("ok"), Some(&json!(1)));
    }
}

#[tokio::test]
async fn deep_recursion_fails_only_its_job() {
    let pool = ActionPool::start(1, limits(5_000), FetchPolicy::default()).unwrap();
    let outcome = run_one(
        &pool,
        "function down(n) { return down(n + 1) + 1; }
         exports.onExecuteCredentialsExchange = async () => { down(0); };",
    )
    .await;
    let error = failure(&outcome);
    assert!(error.starts_with("Action 'a' failed: RangeError: Maximum call stack size exceeded"), "{error}");
    let outcome = run_one(&pool, "exports.onExecuteCredentialsExchange = async () => {};").await;
    assert!(matches!(outcome, JobOutcome::Allowed { .. }));
}

#[tokio::test]
async fn bindings_run_in_order_and_the_first_deny_ends_the_job() {
    let first = action(
        "first",
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           console.log('first');
           api.accessToken.setCustomClaim('https://example.com/first', 1);
         };",
    );
    let second = action(
        "second",
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           console.log('second sees', event.accessToken.customClaims);
           api.accessToken.setCustomClaim('https://example.com/second', 2);
         };",
    );
    let denier = action(
        "denier",
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           api.access.deny('invalid_scope', 'first reason');
           api.access.deny('server_error', 'second reason');
           console.log('still running after deny');
         };",
    );
    let never = action("never", "exports.onExecuteCredentialsExchange = async () => { console.log('never'); };");
    let pool = pool();
    let outcome = pool.run(job(vec![first.clone(), second.clone()])).await;
    assert_eq!(
        Value::Object(claims(&outcome).clone()),
        json!({"https://example.com/first": 1, "https://example.com/second": 2})
    );
    assert_eq!(lines(&outcome), ["first", r#"second sees {"https://example.com/first":1}"#]);

    let outcome = pool.run(job(vec![first, second, denier, never])).await;
    match &outcome {
        JobOutcome::Denied { action, code, reason, logs } => {
            assert_eq!(action, "denier");
            assert_eq!(*code, DenyCode::InvalidScope);
            assert_eq!(reason, "first reason");
            let names: Vec<_> = logs.iter().map(|l| l.action.as_str()).collect();
            assert_eq!(names, ["first", "second", "denier"]);
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert_eq!(lines(&outcome).last().unwrap(), "still running after deny");
}

#[tokio::test]
async fn every_module_export_form_works() {
    let pool = pool();
    for code in [
        "exports.onExecuteCredentialsExchange = async (event, api) => { api.access.deny('invalid_request', 'x'); };",
        "module.exports = { onExecuteCredentialsExchange: async (event, api) => { await null; api.access.deny('invalid_request', 'x'); } };",
        "module.exports.onExecuteCredentialsExchange = async function (event, api) { api.access.deny('invalid_request', 'x'); };",
        "'use strict';\nasync function handler(event, api) { api.access.deny('invalid_request', 'x'); }\nexports.onExecuteCredentialsExchange = handler;",
        "exports.onExecuteCredentialsExchange = (event, api) => { api.access.deny('invalid_request', 'x'); };",
    ] {
        let outcome = run_one(&pool, code).await;
        assert!(matches!(outcome, JobOutcome::Denied { code: DenyCode::InvalidRequest, .. }), "{code}: {outcome:?}");
    }
    let outcome = run_one(&pool, "exports.onExecuteCredentialsExchange = 42;").await;
    assert_eq!(
        failure(&outcome),
        "Action 'a' failed: TypeError: exports.onExecuteCredentialsExchange is not a function"
    );
}

#[tokio::test]
async fn a_promise_that_never_settles_fails() {
    let outcome = run_one(&pool(), "exports.onExecuteCredentialsExchange = () => new Promise(() => {});").await;
    assert!(failure(&outcome).contains("never settles"), "{outcome:?}");
}

#[tokio::test]
async fn check_reports_where() {
    let pool = pool();
    let ok = "exports.onExecuteCredentialsExchange = async (event, api) => {};";
    assert_eq!(pool.check(ok).await, Ok(()));
    let message = |r: Result<(), CheckError>| r.unwrap_err().message;

    let syntax = "exports.onExecuteCredentialsExchange = async (event, api) => {\n  const x = ;\n};";
    let m = message(pool.check(syntax).await);
    assert!(m.starts_with("line 2: SyntaxError: "), "{m}");

    let require = "// const fs = require('fs');\nconst a = 1;\n\nconst axios = require('axios');\nexports.onExecuteCredentialsExchange = async () => {};";
    assert_eq!(message(pool.check(require).await), "line 4: require('axios'): module not provided");

    let big = format!("{ok}\n//{}", "x".repeat(120_000));
    assert_eq!(message(pool.check(&big).await), format!("code is {} bytes; the limit is 102400", big.len()));

    assert_eq!(
        message(pool.check("exports.somethingElse = async () => {};").await),
        "exports.onExecuteCredentialsExchange is not a function"
    );
    assert_eq!(
        message(pool.check("module.exports = null;").await),
        "exports.onExecuteCredentialsExchange is not a function"
    );

    let throws = "const a = 1;\nthrow new Error('top');\nexports.onExecuteCredentialsExchange = async () => {};";
    assert_eq!(message(pool.check(throws).await), "line 2: Error: top");

    let spins = "while (true) {}\nexports.onExecuteCredentialsExchange = async () => {};";
    let m = message(pool.check(spins).await);
    assert!(m.starts_with("the top level did not finish within"), "{m}");

    // The workers are fine afterwards.
    assert_eq!(pool.check(ok).await, Ok(()));
}

#[tokio::test]
async fn sandbox_has_no_host_globals_and_no_leaks_between_executions() {
    let pool = ActionPool::start(1, limits(2_000), FetchPolicy::default()).unwrap();
    let outcome = run_one(
        &pool,
        "exports.onExecuteCredentialsExchange = async (event, api) => {
           console.log([typeof process, typeof setTimeout, typeof setInterval, typeof fs,
                        typeof Buffer, typeof std, typeof os, typeof globalThis.require,
                        typeof WebAssembly, typeof module, typeof exports].join(','));
           try { require('fs'); } catch (e) { console.log(e.message); }
           console.log(typeof require, typeof fetch, typeof console.log);
           console.log(String(globalThis.leaked));
           globalThis.leaked = 'x';
           Object.prototype.polluted = true;
         };",
    )
    .await;
    assert_eq!(
        lines(&outcome),
        [
            "undefined,undefined,undefined,undefined,undefined,undefined,undefined,undefined,undefined,object,object",
            "Cannot find module 'fs'",
            "function function function",
            "undefined",
        ]
    );
    let outcome = run_one(
        &pool,
        "exports.onExecuteCredentialsExchange = async () => {
           console.log(String(globalThis.leaked), String(({}).polluted));
         };",
    )
    .await;
    assert_eq!(lines(&outcome), ["undefined undefined"]);
}

#[tokio::test]
async fn console_output_is_captured_and_capped() {
    let outcome = run_one(
        &pool(),
        "exports.onExecuteCredentialsExchange = async () => {
           console.log('a', 1, {b: [2]}, null, undefined, true);
           console.info('info'); console.warn('warn'); console.error(new Error('e').message);
           for (let i = 0; i < 100; i++) console.log('y'.repeat(100));
         };",
    )
    .await;
    let lines = lines(&outcome);
    assert_eq!(lines[..4], [r#"a 1 {"b":[2]} null undefined true"#, "info", "warn", "e"]);
    let total: usize = lines[..lines.len() - 1].iter().map(String::len).sum();
    assert_eq!(total, 4096);
    assert!(lines.last().unwrap().contains("truncated"));
}

/// Auth0's credentials-exchange docs, "Access control" example, verbatim.
const AUTH0_DOCS_DENY: &str = r#"/**
 * @param {Event} event - Details about client credentials grant request.
 * @param {CredentialsExchangeAPI} api - Interface whose methods can be used to change the behavior of client credentials grant.
 */
exports.onExecuteCredentialsExchange = async (event, api) => {
  if (event.request.geoip.continentCode === "NA") {
    api.access.deny('invalid_request', "Access from North America is not allowed.");
  }
};
"#;

/// Auth0's credentials-exchange docs, "Add custom claims to the access token" example, verbatim.
const AUTH0_DOCS_CLAIM: &str = r#"/**
 * @param {Event} event - Details about client credentials grant request.
 * @param {CredentialsExchangeAPI} api - Interface whose methods can be used to change the behavior of client credentials grant.
 */
exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim("https://my-api.exampleco.com/request-ip", event.request.ip);
};
"#;

#[tokio::test]
async fn auth0_documentation_examples_run_unchanged() {
    let pool = pool();
    assert_eq!(pool.check(AUTH0_DOCS_DENY).await, Ok(()));
    assert_eq!(pool.check(AUTH0_DOCS_CLAIM).await, Ok(()));

    // Without GeoIP data the exchange is allowed; from North America it is denied.
    let outcome = run_one(&pool, AUTH0_DOCS_DENY).await;
    assert!(matches!(outcome, JobOutcome::Allowed { .. }), "{outcome:?}");
    let mut from_na = job(vec![action("geo", AUTH0_DOCS_DENY)]);
    from_na.event["request"]["geoip"] = json!({"continentCode": "NA", "countryCode": "US"});
    assert_eq!(
        pool.run(from_na).await,
        JobOutcome::Denied {
            action: "geo".into(),
            code: DenyCode::InvalidRequest,
            reason: "Access from North America is not allowed.".into(),
            logs: vec![ActionLog { action: "geo".into(), lines: vec![] }],
        }
    );

    let outcome = run_one(&pool, AUTH0_DOCS_CLAIM).await;
    assert_eq!(
        Value::Object(claims(&outcome).clone()),
        json!({"https://my-api.exampleco.com/request-ip": "203.0.113.7"})
    );
}

/// The shape most quota Actions take: read the client's metadata and the requested scopes.
#[tokio::test]
async fn metadata_and_scope_based_action() {
    let code = r#"
exports.onExecuteCredentialsExchange = async (event, api) => {
  const tier = event.client.metadata.tier || "free";
  const wantsAdmin = (event.transaction.requested_scopes || []).includes("admin");
  if (tier === "free" && wantsAdmin) {
    api.access.deny("invalid_scope", "The free tier cannot request admin.");
    return;
  }
  api.accessToken.setCustomClaim("https://example.com/tier", tier);
  api.accessToken.setCustomClaim("https://example.com/tenant", event.tenant.id);
};
"#;
    let pool = pool();
    let outcome = run_one(&pool, code).await;
    assert!(
        matches!(&outcome, JobOutcome::Denied { code: DenyCode::InvalidScope, reason, .. } if reason == "The free tier cannot request admin."),
        "{outcome:?}"
    );
    let mut pro = job(vec![action("a", code)]);
    pro.event["client"]["metadata"]["tier"] = json!("pro");
    let outcome = pool.run(pro).await;
    assert_eq!(
        Value::Object(claims(&outcome).clone()),
        json!({"https://example.com/tier": "pro", "https://example.com/tenant": "ration"})
    );
}

/// A tiny HTTP server: `/echo` answers JSON describing the request, `/slow` never answers,
/// `/redirect` redirects elsewhere.
async fn test_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let header = request.headers().get("x-quota-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Response::new(Full::new(Bytes::new())))
        }
        "/redirect" => Ok(Response::builder()
            .status(302)
            .header("location", "http://example.com/")
            .body(Full::new(Bytes::new()))
            .unwrap()),
        _ => {
            let reply = json!({
                "method": method, "path": path, "key": header,
                "body": String::from_utf8_lossy(&body), "remaining": 7
            });
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("x-server", "test")
                .body(Full::new(Bytes::from(reply.to_string())))
                .unwrap())
        }
    }
}

#[tokio::test]
async fn fetch_reaches_allowed_hosts_only() {
    let addr = test_server().await;
    let pool =
        ActionPool::start(1, limits(300), FetchPolicy { allow: vec![format!("127.0.0.1:{}", addr.port())] }).unwrap();
    let code = format!(
        r#"exports.onExecuteCredentialsExchange = async (event, api) => {{
  const res = await fetch("http://127.0.0.1:{port}/echo", {{
    method: "post",
    headers: {{ "X-Quota-Key": event.client.client_id, "content-type": "application/json" }},
    body: JSON.stringify({{ client: event.client.client_id }}),
  }});
  const data = await res.json();
  console.log(res.status, res.ok, res.headers.get("X-Server"), data.method, data.path, data.key, data.body);
  if (data.remaining <= 0) api.access.deny("invalid_request", "quota exhausted");
  api.accessToken.setCustomClaim("https://example.com/remaining", data.remaining);
}};"#,
        port = addr.port()
    );
    let outcome = pool.run(job(vec![action("quota", &code)])).await;
    assert_eq!(lines(&outcome), [r#"200 true test POST /echo cid_1 {"client":"cid_1"}"#]);
    assert_eq!(claims(&outcome).get("https://example.com/remaining"), Some(&json!(7)));

    // A host (or port) not on the list: the promise rejects with a TypeError.
    let refused = r#"exports.onExecuteCredentialsExchange = async () => {
  try { await fetch("http://127.0.0.1:1/x"); } catch (e) { console.log(e.name, e.message); }
  await fetch("https://evil.example.com/steal");
};"#;
    let outcome = pool.run(job(vec![action("r", refused)])).await;
    assert_eq!(lines(&outcome), ["TypeError fetch to 127.0.0.1:1 is not allowed"]);
    let error = failure(&outcome);
    assert!(error.starts_with("Action 'r' failed: TypeError: fetch to evil.example.com is not allowed\n"), "{error}");
    assert!(error.contains("action.js:3"), "{error}");

    // Redirects are handed to the Action, not followed.
    let redirect = format!(
        r#"exports.onExecuteCredentialsExchange = async () => {{
  const res = await fetch("http://127.0.0.1:{}/redirect");
  console.log(res.status, res.headers.get("location"));
}};"#,
        addr.port()
    );
    let outcome = pool.run(job(vec![action("r", &redirect)])).await;
    assert_eq!(lines(&outcome), ["302 http://example.com/"]);

    // An awaited fetch counts against the timeout.
    let slow = format!(
        r#"exports.onExecuteCredentialsExchange = async () => {{
  await fetch("http://127.0.0.1:{}/slow");
}};"#,
        addr.port()
    );
    let start = Instant::now();
    let outcome = pool.run(job(vec![action("slow", &slow)])).await;
    assert_eq!(failure(&outcome), "Action 'slow' timed out after 300 ms");
    assert!(start.elapsed() < Duration::from_millis(2000));
}

#[tokio::test]
async fn empty_jobs_need_no_worker_and_pools_need_workers() {
    let pool = pool();
    assert_eq!(
        pool.run(job(vec![])).await,
        JobOutcome::Allowed { custom_claims: serde_json::Map::new(), logs: vec![] }
    );
    assert!(ActionPool::start(0, Limits::default(), FetchPolicy::default()).is_err());
}
