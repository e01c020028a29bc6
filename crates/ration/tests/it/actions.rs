//! Acceptance tests for issue 5: credentials-exchange Actions. Real Action code is created,
//! deployed and bound through the Management API, then exercised over `/oauth/token`: deny (each
//! code), custom claims verified in the signed token, reserved claims, the `event` object,
//! secrets, the cache, console output in the exchange's events, thrown errors, an infinite loop
//! and an allocation bomb, binding order, editing without deploy, quotas, and Auth0's own
//! documentation examples. `fetch` is in `actions_fetch.rs`.
//!
//! Every bound Action runs for every exchange on its server (the admin's Management API token
//! too), so Actions that must not affect other clients are conditional on `event.client.name`;
//! the admin token is cached by the harness on the first Management API call, before any binding.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::events::{logs_q, wait_logs};
use crate::harness::*;
use crate::quota::parse_quota_header;

pub(crate) const API: &str = "https://actions.example.com/";
pub(crate) const LIFETIME: i64 = 86400;
const QUOTA_H: &str = "auth0-client-quota-limit";

// -------------------------------------------------------------------------------------------
// Helpers (also used by actions_fetch.rs)
// -------------------------------------------------------------------------------------------

/// A JavaScript string literal for `s`.
pub(crate) fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `exports.onExecuteCredentialsExchange = async (event, api) => { <body> };`
pub(crate) fn handler(body: &str) -> String {
    format!("exports.onExecuteCredentialsExchange = async (event, api) => {{\n{body}\n}};\n")
}

pub(crate) fn triggers() -> Value {
    json!([{ "id": "credentials-exchange", "version": "v2" }])
}

pub(crate) fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("id string in {v}")).to_owned()
}

/// `POST /api/v2/actions/actions` with `extra` fields, expecting 201; returns the action.
pub(crate) async fn create_action(s: &TestServer, name: &str, code: &str, extra: Value) -> Value {
    let mut body = json!({ "name": name, "supported_triggers": triggers(), "code": code });
    merge(&mut body, extra);
    let r = s.mgmt(Method::POST, "/actions/actions", Some(body)).await;
    r.assert_json_content_type();
    r.expect(201)
}

/// `POST /api/v2/actions/actions/{id}/deploy`, expecting 202; returns the version.
pub(crate) async fn deploy(s: &TestServer, id: &str) -> Value {
    let r = s.mgmt(Method::POST, &format!("/actions/actions/{id}/deploy"), None).await;
    r.expect(202)
}

/// Creates and deploys (`deploy: true`) an action; returns the action.
pub(crate) async fn deployed_action(s: &TestServer, name: &str, code: &str, extra: Value) -> Value {
    let mut extra = extra;
    if extra.is_null() {
        extra = json!({});
    }
    extra["deploy"] = json!(true);
    let a = create_action(s, name, code, extra).await;
    assert!(a["deployed_version"].is_object(), "deploy: true deploys at once: {a}");
    a
}

const BINDINGS: &str = "/actions/triggers/credentials-exchange/bindings";

/// `PATCH …/bindings` with `[{ref: {type, value}}]`, raw response.
pub(crate) async fn patch_bindings(s: &TestServer, refs: &[(&str, &str)]) -> Resp {
    let bindings: Vec<Value> = refs.iter().map(|(t, v)| json!({ "ref": { "type": t, "value": v } })).collect();
    s.mgmt(Method::PATCH, BINDINGS, Some(json!({ "bindings": bindings }))).await
}

/// Binds the named actions, in this order, expecting 200.
pub(crate) async fn bind(s: &TestServer, names: &[&str]) -> Value {
    let refs: Vec<(&str, &str)> = names.iter().map(|n| ("action_name", *n)).collect();
    patch_bindings(s, &refs).await.expect(200)
}

pub(crate) async fn get_bindings(s: &TestServer) -> Value {
    s.mgmt(Method::GET, BINDINGS, None).await.expect(200)
}

/// Deploys and binds (alone) one action; returns it.
pub(crate) async fn bound_action(s: &TestServer, name: &str, code: &str) -> Value {
    let a = deployed_action(s, name, code, json!({})).await;
    bind(s, &[name]).await;
    a
}

/// The test API with scopes `read` and `write`.
pub(crate) async fn setup_api(s: &TestServer) {
    s.create_api(
        API,
        json!({ "scopes": [{ "value": "read", "description": "r" }, { "value": "write", "description": "w" }] }),
    )
    .await;
}

/// A client named `name` with `extra` fields and a grant for `read write` on [`API`].
pub(crate) async fn client(s: &TestServer, name: &str, extra: Value) -> (String, String) {
    let (id, secret) = s.create_client(name, extra).await;
    s.create_grant(&id, API, &["read", "write"]).await;
    (id, secret)
}

/// A token request (form, client_secret_post) for [`API`].
pub(crate) async fn tok(s: &TestServer, id: &str, secret: &str, scope: Option<&str>) -> Resp {
    tok_aud(s, id, secret, API, scope).await
}

pub(crate) async fn tok_aud(s: &TestServer, id: &str, secret: &str, audience: &str, scope: Option<&str>) -> Resp {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("audience", audience),
    ];
    if let Some(sc) = scope {
        pairs.push(("scope", sc));
    }
    s.token_form(&pairs).await
}

/// Asserts a 200 token response for `read` on [`API`], verifies the token against the JWKS and
/// the Auth0 profile claims; returns the claims.
pub(crate) async fn verified_claims(s: &TestServer, r: &Resp, client_id: &str) -> Value {
    let token = assert_token_response(r, "read", LIFETIME);
    let (_, claims) = s.verify(&token, API).await;
    assert_cc_claims(&claims, s.issuer(), client_id, API, "read", LIFETIME);
    claims
}

/// Asserts an OAuth error with exact status, code and description; no token.
#[track_caller]
pub(crate) fn assert_denied(r: &Resp, status: u16, error: &str, description: &str) {
    assert_eq!(r.status, status, "status; body {}", r.json);
    let (e, d) = assert_oauth_error_shape(r);
    assert_eq!(e, error, "error; body {}", r.json);
    assert_eq!(d, description, "error_description; body {}", r.json);
    assert!(r.json.get("access_token").is_none());
}

/// Asserts a 500 `server_error` whose description contains every one of `needles`; returns it.
#[track_caller]
pub(crate) fn assert_server_error(r: &Resp, needles: &[&str]) -> String {
    assert_eq!(r.status, 500, "status; body {}", r.json);
    let (e, d) = assert_oauth_error_shape(r);
    assert_eq!(e, "server_error", "error; body {}", r.json);
    for n in needles {
        assert!(d.contains(n), "error_description {d:?} should mention {n:?}");
    }
    assert!(r.json.get("access_token").is_none());
    d
}

/// The events of type `ty` for `client_id`, waiting until there are at least `n`.
pub(crate) async fn wait_client_events(s: &TestServer, ty: &str, client_id: &str, n: usize) -> Vec<Value> {
    wait_logs(
        s,
        &format!("type:{ty} AND client_id:\"{client_id}\""),
        Duration::from_secs(5),
        &format!("{n} {ty} for {client_id}"),
        |e| e.len() >= n,
    )
    .await
}

/// `details.actions.logs` of an event, as text (must be present).
#[track_caller]
pub(crate) fn action_logs_text(ev: &Value) -> String {
    let logs = &ev["details"]["actions"]["logs"];
    assert!(!logs.is_null(), "event has details.actions.logs: {ev}");
    logs.to_string()
}

/// Management API error message for a 400.
#[track_caller]
fn bad_request(r: &Resp) -> String {
    assert_mgmt_error(r, 400, "Bad Request", None)
}

async fn actions_total(s: &TestServer) -> u64 {
    let v = s.mgmt(Method::GET, "/actions/actions", None).await.expect(200);
    v["total"].as_u64().unwrap_or_else(|| panic!("total in {v}"))
}

// -------------------------------------------------------------------------------------------
// Management API
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn actions_crud_and_validation() {
    let s = TestServer::start().await;
    let name = unique("crud-");
    let secret_value = unique("very-secret-value-");
    let code = handler("api.accessToken.setCustomClaim('https://example.com/x', 1);");
    let a = create_action(
        &s,
        &name,
        &code,
        json!({ "runtime": "node22", "secrets": [{ "name": "API_KEY", "value": secret_value }] }),
    )
    .await;
    let id = id_of(&a);
    assert!(!id.is_empty());
    assert_eq!(a["name"], name.as_str(), "{a}");
    assert_eq!(a["supported_triggers"], triggers(), "{a}");
    assert_eq!(a["code"], code.as_str(), "{a}");
    assert_eq!(a["runtime"], "node22", "{a}");
    assert_eq!(a["status"], "built", "{a}");
    assert_eq!(a["all_changes_deployed"], false, "{a}");
    assert!(a["deployed_version"].is_null(), "not deployed yet: {a}");
    assert!(a["created_at"].is_string() && a["updated_at"].is_string(), "{a}");
    let secrets = a["secrets"].as_array().unwrap_or_else(|| panic!("secrets array in {a}"));
    assert_eq!(secrets.len(), 1, "{a}");
    assert_eq!(secrets[0]["name"], "API_KEY");
    assert!(secrets[0]["updated_at"].is_string(), "{a}");
    assert!(secrets[0].get("value").is_none(), "secret values are never returned: {a}");
    assert!(!a.to_string().contains(&secret_value), "secret value in the create response: {a}");

    // GET one, GET list.
    let got = s.mgmt(Method::GET, &format!("/actions/actions/{id}"), None).await.expect(200);
    assert_eq!(got, a, "GET returns what POST returned");
    let list = s.mgmt(Method::GET, "/actions/actions", None).await.expect(200);
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["page"], 0, "{list}");
    assert!(list["per_page"].as_u64().is_some_and(|n| n >= 1), "{list}");
    assert_eq!(list["actions"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["actions"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&secret_value));
    let r = s.mgmt(Method::GET, "/actions/actions/act_doesnotexist", None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);

    // Duplicate name: 409, nothing stored.
    let body = json!({ "name": name, "supported_triggers": triggers(), "code": code });
    let r = s.mgmt(Method::POST, "/actions/actions", Some(body)).await;
    assert_mgmt_error(&r, 409, "Conflict", None);
    assert_eq!(actions_total(&s).await, 1);

    // Validation: each refused with a 400 that names the problem; nothing stored.
    let big = format!("{}//{}", handler(""), "x".repeat(100 * 1024));
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "syntax error on line 2",
            json!({ "code": "exports.onExecuteCredentialsExchange = async (event, api) => {\n  const x = ;\n};\n" }),
            vec!["line 2"],
        ),
        (
            "require of a module on line 3",
            json!({ "code": format!("// a comment\nconst one = 1;\nconst axios = require('axios');\n{}", handler("")) }),
            vec!["axios", "line 3"],
        ),
        (
            "require of a node built-in",
            json!({ "code": format!("const fs = require(\"fs\");\n{}", handler("")) }),
            vec!["fs", "line 1"],
        ),
        ("code over 100 KB", json!({ "code": big }), vec!["102400"]),
        (
            "no onExecuteCredentialsExchange export",
            json!({ "code": "exports.onExecutePostLogin = async (event, api) => {};\n" }),
            vec!["onExecuteCredentialsExchange"],
        ),
        (
            "unsupported trigger",
            json!({ "supported_triggers": [{ "id": "post-login", "version": "v3" }] }),
            vec!["supported_triggers"],
        ),
        ("npm dependency", json!({ "dependencies": [{ "name": "lodash", "version": "4.17.21" }] }), vec!["lodash"]),
    ];
    for (what, extra, needles) in &cases {
        let mut body = json!({ "name": unique("bad-"), "supported_triggers": triggers(), "code": handler("") });
        merge(&mut body, extra.clone());
        let r = s.mgmt(Method::POST, "/actions/actions", Some(body)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.json);
        let msg = bad_request(&r);
        for n in needles {
            assert!(msg.contains(n), "{what}: message {msg:?} should mention {n:?}");
        }
    }
    assert_eq!(actions_total(&s).await, 1, "no refused action was stored");

    // Exactly 100 KB is accepted (Auth0: ≤ 100 kB).
    let h = handler("");
    let exact = format!("{h}//{}", "x".repeat(100 * 1024 - h.len() - 2));
    assert_eq!(exact.len(), 100 * 1024);
    create_action(&s, &unique("exact-"), &exact, json!({})).await;
    // The `module.exports` form is accepted too, and the runtime defaults.
    let m = create_action(
        &s,
        &unique("module-"),
        "module.exports = { onExecuteCredentialsExchange: async (event, api) => {} };\n",
        json!({}),
    )
    .await;
    assert!(m["runtime"].as_str().is_some_and(|r| !r.is_empty()), "a default runtime: {m}");
    assert_eq!(actions_total(&s).await, 3);

    // PATCH: name and code; an invalid code is refused and changes nothing.
    let renamed = unique("renamed-");
    let code2 = handler("api.accessToken.setCustomClaim('https://example.com/x', 2);");
    let p = s
        .mgmt(Method::PATCH, &format!("/actions/actions/{id}"), Some(json!({ "name": renamed, "code": code2 })))
        .await
        .expect(200);
    assert_eq!(p["name"], renamed.as_str(), "{p}");
    assert_eq!(p["code"], code2.as_str(), "{p}");
    assert_eq!(p["secrets"][0]["name"], "API_KEY", "PATCH without secrets keeps them: {p}");
    let r = s
        .mgmt(Method::PATCH, &format!("/actions/actions/{id}"), Some(json!({ "code": "const x = require('got');\n" })))
        .await;
    assert!(bad_request(&r).contains("got"), "{}", r.json);
    let r = s.mgmt(Method::PATCH, &format!("/actions/actions/{id}"), Some(json!({ "code": "}{" }))).await;
    bad_request(&r);
    let r = s
        .mgmt(
            Method::PATCH,
            &format!("/actions/actions/{id}"),
            Some(json!({ "dependencies": [{ "name": "axios", "version": "1.0.0" }] })),
        )
        .await;
    assert!(bad_request(&r).contains("axios"), "{}", r.json);
    let other = id_of(&create_action(&s, &unique("other-"), &code, json!({})).await);
    let r = s.mgmt(Method::PATCH, &format!("/actions/actions/{other}"), Some(json!({ "name": renamed }))).await;
    assert_mgmt_error(&r, 409, "Conflict", None);
    let got = s.mgmt(Method::GET, &format!("/actions/actions/{id}"), None).await.expect(200);
    assert_eq!(got["name"], renamed.as_str());
    assert_eq!(got["code"], code2.as_str(), "refused PATCHes changed nothing: {got}");

    // Deploy at create; a bound action is not deleted without force.
    let bname = unique("bound-");
    let b = deployed_action(&s, &bname, &code, json!({})).await;
    assert_eq!(b["all_changes_deployed"], true, "{b}");
    assert_eq!(b["deployed_version"]["number"], 1, "{b}");
    assert_eq!(b["deployed_version"]["deployed"], true, "{b}");
    assert_eq!(b["deployed_version"]["code"], code.as_str(), "{b}");
    let bid = id_of(&b);
    bind(&s, &[&bname]).await;
    let r = s.mgmt(Method::DELETE, &format!("/actions/actions/{bid}"), None).await;
    bad_request(&r);
    s.mgmt(Method::GET, &format!("/actions/actions/{bid}"), None).await.expect(200);
    assert_eq!(get_bindings(&s).await["bindings"].as_array().map(Vec::len), Some(1));
    let r = s.mgmt(Method::DELETE, &format!("/actions/actions/{bid}?force=true"), None).await;
    assert!(r.status == 204 || r.status == 200, "forced delete: {} {}", r.status, r.json);
    let r = s.mgmt(Method::GET, &format!("/actions/actions/{bid}"), None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
    let bs = get_bindings(&s).await;
    assert_eq!(bs["bindings"], json!([]), "a forced delete removes the binding: {bs}");
    assert_eq!(bs["total"], 0, "{bs}");

    // Unbound delete.
    let r = s.mgmt(Method::DELETE, &format!("/actions/actions/{other}"), None).await;
    assert!(r.status == 204 || r.status == 200, "delete: {} {}", r.status, r.json);
    let r = s.mgmt(Method::DELETE, &format!("/actions/actions/{other}"), None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
    assert_eq!(actions_total(&s).await, 3);

    // Scopes: read:actions reads; writes need create/update/delete:actions.
    let (rid, rsecret) = s.create_client(&unique("reader-"), json!({})).await;
    s.create_grant(&rid, &s.mgmt_audience(), &["read:actions"]).await;
    let r = tok_aud(&s, &rid, &rsecret, &s.mgmt_audience(), None).await;
    let reader = assert_token_response(&r, "read:actions", LIFETIME);
    s.mgmt_with(Some(&reader), Method::GET, "/actions/actions", None).await.expect(200);
    s.mgmt_with(Some(&reader), Method::GET, &format!("/actions/actions/{id}"), None).await.expect(200);
    s.mgmt_with(Some(&reader), Method::GET, BINDINGS, None).await.expect(200);
    let forbidden = [
        (
            Method::POST,
            "/actions/actions".to_owned(),
            Some(json!({ "name": unique("x"), "supported_triggers": triggers(), "code": code })),
            "create:actions",
        ),
        (Method::PATCH, format!("/actions/actions/{id}"), Some(json!({ "name": unique("y") })), "update:actions"),
        (Method::DELETE, format!("/actions/actions/{id}"), None, "delete:actions"),
        (Method::POST, format!("/actions/actions/{id}/deploy"), None, "actions"),
        (Method::PATCH, BINDINGS.to_owned(), Some(json!({ "bindings": [] })), "update:actions"),
    ];
    for (method, path, body, scope) in forbidden {
        let r = s.mgmt_with(Some(&reader), method.clone(), &path, body).await;
        let msg = assert_mgmt_error(&r, 403, "Forbidden", Some("insufficient_scope"));
        assert!(msg.contains(scope), "{method} {path}: message names the scope: {msg}");
    }
    s.mgmt(Method::GET, &format!("/actions/actions/{id}"), None).await.expect(200);
    assert_eq!(actions_total(&s).await, 3);
}

#[tokio::test]
async fn deploy_versions_and_editing_without_deploy() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (cid, csecret) = client(&s, &unique("ver-"), json!({})).await;
    let name = unique("versioned-");
    let code1 = handler("api.accessToken.setCustomClaim('https://example.com/v', 1);");
    let code2 = handler("api.accessToken.setCustomClaim('https://example.com/v', 2);");
    let code3 = handler("api.accessToken.setCustomClaim('https://example.com/v', 3);");
    let a = create_action(&s, &name, &code1, json!({})).await;
    let id = id_of(&a);

    // An undeployed action cannot be bound.
    let r = patch_bindings(&s, &[("action_name", &name)]).await;
    bad_request(&r);
    let r = patch_bindings(&s, &[("action_id", &id)]).await;
    bad_request(&r);
    assert_eq!(get_bindings(&s).await["bindings"], json!([]));
    let c = verified_claims(&s, &tok(&s, &cid, &csecret, Some("read")).await, &cid).await;
    assert!(c.get("https://example.com/v").is_none(), "nothing bound yet: {c}");

    let v1 = deploy(&s, &id).await;
    assert!(v1["id"].as_str().is_some_and(|v| !v.is_empty()), "{v1}");
    assert_eq!(v1["action_id"], id.as_str(), "{v1}");
    assert_eq!(v1["number"], 1, "{v1}");
    assert_eq!(v1["code"], code1.as_str(), "{v1}");
    assert_eq!(v1["deployed"], true, "{v1}");
    bind(&s, &[&name]).await;
    let c = verified_claims(&s, &tok(&s, &cid, &csecret, Some("read")).await, &cid).await;
    assert_eq!(c["https://example.com/v"], 1, "{c}");

    // Editing does not change what runs.
    let p = s.mgmt(Method::PATCH, &format!("/actions/actions/{id}"), Some(json!({ "code": code2 }))).await.expect(200);
    assert_eq!(p["code"], code2.as_str());
    assert_eq!(p["all_changes_deployed"], false, "{p}");
    assert_eq!(p["deployed_version"]["number"], 1, "{p}");
    assert_eq!(p["deployed_version"]["code"], code1.as_str(), "{p}");
    for _ in 0..2 {
        let c = verified_claims(&s, &tok(&s, &cid, &csecret, Some("read")).await, &cid).await;
        assert_eq!(c["https://example.com/v"], 1, "edited but not deployed: the old version runs: {c}");
    }
    let v2 = deploy(&s, &id).await;
    assert_eq!(v2["number"], 2, "{v2}");
    assert_eq!(v2["code"], code2.as_str(), "{v2}");
    assert_eq!(v2["deployed"], true, "{v2}");
    assert_ne!(v2["id"], v1["id"]);
    let c = verified_claims(&s, &tok(&s, &cid, &csecret, Some("read")).await, &cid).await;
    assert_eq!(c["https://example.com/v"], 2, "the new deploy runs at once (the action is bound): {c}");
    let got = s.mgmt(Method::GET, &format!("/actions/actions/{id}"), None).await.expect(200);
    assert_eq!(got["all_changes_deployed"], true, "{got}");
    assert_eq!(got["deployed_version"]["number"], 2, "{got}");

    // Edit again, no deploy: still 2.
    s.mgmt(Method::PATCH, &format!("/actions/actions/{id}"), Some(json!({ "code": code3 }))).await.expect(200);
    let c = verified_claims(&s, &tok(&s, &cid, &csecret, Some("read")).await, &cid).await;
    assert_eq!(c["https://example.com/v"], 2, "{c}");

    let vs = s.mgmt(Method::GET, &format!("/actions/actions/{id}/versions"), None).await.expect(200);
    let versions = vs["versions"].as_array().unwrap_or_else(|| panic!("versions array in {vs}"));
    let mut seen: Vec<(u64, String, bool)> = versions
        .iter()
        .map(|v| {
            assert_eq!(v["action_id"], id.as_str(), "{v}");
            (v["number"].as_u64().unwrap(), v["code"].as_str().unwrap().to_owned(), v["deployed"].as_bool().unwrap())
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![(1, code1.clone(), false), (2, code2.clone(), true)], "versions: {vs}");
    assert_eq!(vs["total"], 2, "{vs}");
}

// -------------------------------------------------------------------------------------------
// Runtime: deny, claims, event
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn deny_codes_map_to_oauth_errors_and_write_feccft() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let code = handler(
        "console.log('checking ' + event.client.name);\n\
         const m = event.client.metadata || {};\n\
         if (m.deny) { api.access.deny(m.deny, m.reason); }",
    );
    let name = unique("denier-");
    bound_action(&s, &name, &code).await;

    let cases = [
        ("invalid_request", 400, "Requests from this client are not accepted."),
        ("invalid_scope", 400, "This scope is not available on your plan."),
        ("server_error", 500, "The quota store is down."),
    ];
    let mut denied = Vec::new();
    for (code, status, reason) in cases {
        let cname = unique("deny-");
        let (id, secret) = client(&s, &cname, json!({ "client_metadata": { "deny": code, "reason": reason } })).await;
        let r = tok(&s, &id, &secret, Some("read")).await;
        assert_denied(&r, status, code, reason);
        denied.push((id, cname, code, reason));
    }
    // A client the Action allows.
    let (ok_id, ok_secret) = client(&s, &unique("allowed-"), json!({})).await;
    verified_claims(&s, &tok(&s, &ok_id, &ok_secret, Some("read")).await, &ok_id).await;

    // Actions run for every audience: the Management API too.
    let mname = unique("mgmt-denied-");
    let (mid, msecret) = s
        .create_client(
            &mname,
            json!({ "client_metadata": { "deny": "invalid_scope", "reason": "No Management API." } }),
        )
        .await;
    s.create_grant(&mid, &s.mgmt_audience(), &["read:actions"]).await;
    let r = tok_aud(&s, &mid, &msecret, &s.mgmt_audience(), None).await;
    assert_denied(&r, 400, "invalid_scope", "No Management API.");
    denied.push((mid, mname, "invalid_scope", "No Management API."));

    for (id, cname, code, reason) in &denied {
        let evs = wait_client_events(&s, "feccft", id, 1).await;
        assert_eq!(evs.len(), 1, "one feccft per denied exchange: {evs:?}");
        let ev = &evs[0];
        assert_eq!(ev["type"], "feccft");
        assert_eq!(ev["client_id"], id.as_str());
        assert!(ev.to_string().contains(reason), "feccft carries the reason {reason:?}: {ev}");
        assert_eq!(ev["details"]["error"], *code, "{ev}");
        let logs = action_logs_text(ev);
        assert!(logs.contains(&format!("checking {cname}")), "the Action's console output: {logs}");
        assert!(logs.contains(&name), "logs name the action: {logs}");
    }
    wait_client_events(&s, "seccft", &ok_id, 1).await;
    for (id, ..) in &denied {
        let evs = logs_q(&s, &format!("type:seccft AND client_id:\"{id}\"")).await;
        assert!(evs.is_empty(), "a denied exchange writes no seccft: {evs:?}");
    }
}

#[tokio::test]
async fn custom_claims_are_in_the_signed_token_and_reserved_ones_are_ignored() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) = client(&s, &unique("claims-"), json!({})).await;
    let reserved = [
        "sub",
        "aud",
        "scope",
        "org_id",
        "org_name",
        "iss",
        "iat",
        "exp",
        "nbf",
        "azp",
        "gty",
        "jti",
        "client_id",
        "permissions",
        "roles",
        "amr",
    ];
    let auth0_ns = ["https://auth0.com/plan", "https://tenant.auth0.com/plan", "http://x.webtask.io/plan"];
    let mut body = String::from(
        "api.accessToken.setCustomClaim('https://example.com/tier', 'gold');\n\
         api.accessToken.setCustomClaim('https://example.com/limit', 42);\n\
         api.accessToken.setCustomClaim('https://example.com/ratio', 0.5);\n\
         api.accessToken.setCustomClaim('https://example.com/plan', { name: 'pro', limits: { rpm: 10, burst: [1, 2] } });\n\
         api.accessToken.setCustomClaim('https://example.com/flags', ['a', 2, true, null]);\n\
         api.accessToken.setCustomClaim('https://example.com/enabled', false);\n\
         const r = api.accessToken.setCustomClaim('https://example.com/overwritten', 'first');\n\
         api.accessToken.setCustomClaim('https://example.com/overwritten', 'second');\n",
    );
    for n in reserved.iter().chain(auth0_ns.iter()) {
        body.push_str(&format!("api.accessToken.setCustomClaim({}, 'hijacked');\n", js(n)));
    }
    let name = unique("claimer-");
    deployed_action(&s, &name, &handler(&body), json!({})).await;
    let mname = unique("module-form-");
    deployed_action(
        &s,
        &mname,
        "module.exports = {\n  onExecuteCredentialsExchange: async (event, api) => {\n    \
         api.accessToken.setCustomClaim('urn:example:form', 'module.exports');\n  },\n};\n",
        json!({}),
    )
    .await;
    bind(&s, &[&name, &mname]).await;

    let r = tok(&s, &id, &secret, Some("read")).await;
    let claims = verified_claims(&s, &r, &id).await;
    assert_eq!(claims["https://example.com/tier"], "gold");
    assert_eq!(claims["https://example.com/limit"], 42);
    assert_eq!(claims["https://example.com/ratio"], 0.5);
    assert_eq!(claims["https://example.com/plan"], json!({ "name": "pro", "limits": { "rpm": 10, "burst": [1, 2] } }));
    assert_eq!(claims["https://example.com/flags"], json!(["a", 2, true, null]));
    assert_eq!(claims["https://example.com/enabled"], false);
    assert_eq!(claims["https://example.com/overwritten"], "second");
    assert_eq!(claims["urn:example:form"], "module.exports", "the module.exports form runs: {claims}");
    // Reserved names and Auth0 namespaces were silently dropped; the standard claims are ours.
    let keys: BTreeSet<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "iss",
        "sub",
        "aud",
        "iat",
        "exp",
        "scope",
        "gty",
        "azp",
        "jti",
        "https://example.com/tier",
        "https://example.com/limit",
        "https://example.com/ratio",
        "https://example.com/plan",
        "https://example.com/flags",
        "https://example.com/enabled",
        "https://example.com/overwritten",
        "urn:example:form",
    ]
    .into();
    assert_eq!(keys, want, "claims: {claims}");
    assert!(!claims.to_string().contains("hijacked"), "{claims}");
    // The raw payload carries each claim once (no duplicate `sub`, `aud`, …).
    let token = r.json["access_token"].as_str().unwrap();
    let payload = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for k in ["\"sub\"", "\"aud\"", "\"scope\"", "\"iss\""] {
        assert_eq!(payload.matches(k).count(), 1, "{k} once in {payload}");
    }
}

#[tokio::test]
async fn event_object_has_auth0_shape_without_secrets() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let cname = unique("evented-");
    let metadata = json!({ "tier": "gold", "team": "billing" });
    let (id, secret) = s.create_client(&cname, json!({ "client_metadata": metadata })).await;
    let grant = json!({
        "client_id": id, "audience": API, "scope": ["read", "write"],
        "organization_usage": "allow", "allow_any_organization": true,
    });
    s.mgmt(Method::POST, "/client-grants", Some(grant)).await.expect(201);
    let org_name = unique("acme");
    let org = s
        .mgmt(Method::POST, "/organizations", Some(json!({ "name": org_name, "display_name": "Acme Inc" })))
        .await
        .expect(201);
    let org_id = id_of(&org);
    let name = unique("event-dumper-");
    bound_action(&s, &name, &handler("api.accessToken.setCustomClaim('https://example.com/event', event);")).await;

    const UA: &str = "ration-actions-test/1.0";
    let host = s.base_url().trim_start_matches("http://").to_owned();
    // client_secret_post (form), scope requested.
    let body = form_body(&[
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("audience", API),
        ("scope", "read"),
    ]);
    let r = s
        .post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), body.into_bytes(), &[("user-agent", UA)])
        .await;
    let claims = verified_claims(&s, &r, &id).await;
    let ev = &claims["https://example.com/event"];
    assert!(!ev.to_string().contains(&secret), "the client secret is nowhere in the event: {ev}");
    assert_eq!(ev["client"], json!({ "client_id": id, "name": cname, "metadata": metadata }), "{ev}");
    assert_eq!(ev["resource_server"], json!({ "identifier": API }), "{ev}");
    assert_eq!(ev["request"]["ip"], "127.0.0.1", "{ev}");
    assert_eq!(ev["request"]["hostname"], host.as_str(), "{ev}");
    assert_eq!(ev["request"]["user_agent"], UA, "{ev}");
    assert_eq!(ev["request"]["method"], "POST", "{ev}");
    assert!(ev["request"]["geoip"].is_object(), "request.geoip exists (Auth0's docs read it unguarded): {ev}");
    let rb = &ev["request"]["body"];
    assert_eq!(rb["grant_type"], "client_credentials", "{ev}");
    assert_eq!(rb["client_id"], id.as_str(), "{ev}");
    assert_eq!(rb["audience"], API, "{ev}");
    assert_eq!(rb["scope"], "read", "{ev}");
    assert!(rb.get("client_secret").is_none(), "{ev}");
    assert_eq!(ev["transaction"]["requested_scopes"], json!(["read"]), "{ev}");
    assert_eq!(ev["accessToken"]["scope"], json!(["read"]), "{ev}");
    assert!(ev["tenant"]["id"].as_str().is_some_and(|t| !t.is_empty()), "tenant.id: {ev}");
    assert_eq!(ev["secrets"], json!({}), "an action without secrets sees none: {ev}");
    assert!(ev.get("organization").is_none(), "no organization in this exchange: {ev}");
    assert!(ev.get("access_token").is_none(), "only accessToken exists: {ev}");

    // client_secret_basic with a JSON body and an organization, no scope requested.
    let body = json!({ "grant_type": "client_credentials", "audience": API, "organization": org_id });
    let r = s.token_basic_json(&id, &secret, &body).await;
    let token = assert_token_response(&r, "read write", LIFETIME);
    let (_, claims) = s.verify(&token, API).await;
    assert_eq!(claims["org_id"], org_id.as_str(), "{claims}");
    let ev = &claims["https://example.com/event"];
    assert!(!ev.to_string().contains(&secret), "the client secret is nowhere in the event: {ev}");
    assert_eq!(ev["organization"]["id"], org_id.as_str(), "{ev}");
    assert_eq!(ev["organization"]["name"], org_name.as_str(), "{ev}");
    assert_eq!(ev["organization"]["display_name"], "Acme Inc", "{ev}");
    assert_eq!(ev["request"]["body"]["client_id"], id.as_str(), "{ev}");
    assert_eq!(ev["request"]["body"]["audience"], API, "{ev}");
    assert!(ev["request"]["body"].get("client_secret").is_none(), "{ev}");
    let requested = &ev["transaction"]["requested_scopes"];
    assert!(requested.is_null() || *requested == json!([]), "no scope requested: {ev}");
    let mut scopes: Vec<String> =
        serde_json::from_value(ev["accessToken"]["scope"].clone()).unwrap_or_else(|_| panic!("scope array: {ev}"));
    scopes.sort();
    assert_eq!(scopes, ["read", "write"], "{ev}");
}

#[tokio::test]
async fn secrets_are_write_only_and_reach_only_their_action() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let v1 = unique("first-secret-");
    let v2 = format!("{}-longer", unique("second-secret-"));
    assert_ne!(v1.len(), v2.len());
    // The client's metadata holds the expected value, so the code never contains the secret.
    let (id, secret) = client(&s, &unique("sec-"), json!({ "client_metadata": { "expected": v1 } })).await;
    let name = unique("with-secrets-");
    let code = handler(
        "const k = event.secrets.API_KEY;\n\
         api.accessToken.setCustomClaim('https://example.com/key_matches', k === event.client.metadata.expected);\n\
         api.accessToken.setCustomClaim('https://example.com/key_length', k.length);\n\
         api.accessToken.setCustomClaim('https://example.com/names', Object.keys(event.secrets).sort());",
    );
    let a = deployed_action(
        &s,
        &name,
        &code,
        json!({ "secrets": [{ "name": "API_KEY", "value": v1 }, { "name": "OTHER", "value": "o" }] }),
    )
    .await;
    let aid = id_of(&a);
    let other = unique("no-secrets-");
    deployed_action(
        &s,
        &other,
        &handler("api.accessToken.setCustomClaim('https://example.com/other_sees', Object.keys(event.secrets));"),
        json!({}),
    )
    .await;
    bind(&s, &[&name, &other]).await;

    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/key_matches"], true, "{c}");
    assert_eq!(c["https://example.com/key_length"], v1.len(), "{c}");
    assert_eq!(c["https://example.com/names"], json!(["API_KEY", "OTHER"]), "{c}");
    assert_eq!(c["https://example.com/other_sees"], json!([]), "another action's secrets are not visible: {c}");

    // A new value, not deployed: the old one is still what runs.
    let p = s
        .mgmt(
            Method::PATCH,
            &format!("/actions/actions/{aid}"),
            Some(json!({ "secrets": [{ "name": "API_KEY", "value": v2 }, { "name": "OTHER", "value": "o" }] })),
        )
        .await
        .expect(200);
    assert_eq!(p["all_changes_deployed"], false, "{p}");
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/key_matches"], true, "{c}");
    assert_eq!(c["https://example.com/key_length"], v1.len(), "{c}");
    deploy(&s, &aid).await;
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/key_matches"], false, "{c}");
    assert_eq!(c["https://example.com/key_length"], v2.len(), "{c}");

    // No read returns a value.
    let reads = [
        format!("/actions/actions/{aid}"),
        "/actions/actions".to_owned(),
        format!("/actions/actions/{aid}/versions"),
        BINDINGS.to_owned(),
    ];
    for path in reads {
        let r = s.mgmt(Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.json);
        let text = String::from_utf8_lossy(&r.raw);
        assert!(!text.contains(&v1) && !text.contains(&v2), "GET {path} returns a secret value: {text}");
        assert!(text.contains("API_KEY"), "GET {path} lists secret names: {text}");
    }
    let got = s.mgmt(Method::GET, &format!("/actions/actions/{aid}"), None).await.expect(200);
    for sec in got["secrets"].as_array().unwrap() {
        let keys: BTreeSet<&str> = sec.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["name", "updated_at"]), "{got}");
    }
    // Nor does the log of Management API writes to actions (the client's metadata holds v1 on
    // purpose, so client writes are left out).
    let sapi = wait_logs(&s, "type:sapi", Duration::from_secs(5), "sapi events", |e| e.len() >= 7).await;
    let on_actions: Vec<Value> = sapi
        .into_iter()
        .filter(|e| e["details"]["request"]["path"].as_str().is_some_and(|p| p.contains("/actions/")))
        .collect();
    assert!(on_actions.len() >= 4, "sapi for the action writes: {on_actions:?}");
    let text = Value::Array(on_actions).to_string();
    assert!(!text.contains(&v1) && !text.contains(&v2), "sapi events carry a secret value: {text}");
}

#[tokio::test]
async fn cache_persists_across_executions() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) = client(&s, &unique("cache-"), json!({})).await;
    let (del_id, del_secret) =
        client(&s, &unique("cache-del-"), json!({ "client_metadata": { "op": "delete" } })).await;
    let code = handler(
        "if ((event.client.metadata || {}).op === 'delete') {\n\
           api.accessToken.setCustomClaim('https://example.com/deleted', api.cache.delete('counter'));\n\
           return;\n\
         }\n\
         const prev = api.cache.get('counter');\n\
         const n = prev ? Number(prev.value) + 1 : 1;\n\
         const written = api.cache.set('counter', String(n));\n\
         api.accessToken.setCustomClaim('https://example.com/n', n);\n\
         api.accessToken.setCustomClaim('https://example.com/prev', prev === undefined ? 'none' : prev);\n\
         api.accessToken.setCustomClaim('https://example.com/written', written);",
    );
    bound_action(&s, &unique("cacher-"), &code).await;

    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/n"], 1, "{c}");
    assert_eq!(c["https://example.com/prev"], "none", "{c}");
    assert_eq!(c["https://example.com/written"], json!({ "type": "success" }), "{c}");
    let before = now_secs() * 1000;
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/n"], 2, "the value set by the previous exchange was read: {c}");
    let prev = &c["https://example.com/prev"];
    assert_eq!(prev["value"], "1", "{c}");
    let expires = prev["expires_at"].as_i64().unwrap_or_else(|| panic!("expires_at (ms) in {prev}"));
    let fifteen = 15 * 60 * 1000;
    assert!(
        (before + fifteen - 120_000..=before + fifteen + 120_000).contains(&expires),
        "default lifetime 15 min: expires_at {expires}, now {before}"
    );
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/n"], 3, "{c}");

    let c = verified_claims(&s, &tok(&s, &del_id, &del_secret, Some("read")).await, &del_id).await;
    assert_eq!(c["https://example.com/deleted"], json!({ "type": "success" }), "{c}");
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/n"], 1, "deleted: starts over: {c}");
    assert_eq!(c["https://example.com/prev"], "none", "{c}");
}

#[tokio::test]
async fn console_output_is_in_the_exchange_events() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let cname = unique("logged-");
    let (id, secret) = client(&s, &cname, json!({})).await;
    let name = unique("logger-");
    bound_action(
        &s,
        &name,
        &handler(
            "console.log('hello from', event.client.name);\n\
             console.info('requested', event.transaction.requested_scopes.length, 'scope(s)');\n\
             console.log({ a: 1 });",
        ),
    )
    .await;
    let token = assert_token_response(&tok(&s, &id, &secret, Some("read")).await, "read", LIFETIME);
    let evs = wait_client_events(&s, "seccft", &id, 1).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["details"]["access_token_jti"], raw_claims(&token)["jti"], "{}", evs[0]);
    let logs = action_logs_text(&evs[0]);
    assert!(logs.contains(&format!("hello from {cname}")), "console.log line in seccft: {logs}");
    assert!(logs.contains("requested 1 scope(s)"), "console.info line in seccft: {logs}");
    assert!(logs.contains("\\\"a\\\":1") || logs.contains("a: 1"), "the object is shown: {logs}");
    assert!(logs.contains(&name), "logs name the action: {logs}");
    assert!(logs.find("hello from").unwrap() < logs.find("requested 1").unwrap(), "in call order: {logs}");
}

// -------------------------------------------------------------------------------------------
// Runtime: failures and isolation
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn thrown_errors_are_server_errors_naming_the_action() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) = client(&s, &unique("thrown-"), json!({ "client_metadata": { "how": "throw" } })).await;
    let (rid, rsecret) = client(&s, &unique("rejected-"), json!({ "client_metadata": { "how": "reject" } })).await;
    let (ok_id, ok_secret) = client(&s, &unique("fine-"), json!({})).await;
    let name = unique("thrower-");
    bound_action(
        &s,
        &name,
        &handler(
            "const how = (event.client.metadata || {}).how;\n\
             console.log('about to fail: ' + how);\n\
             if (how === 'throw') { throw new Error('kaboom-sync'); }\n\
             if (how === 'reject') { await Promise.resolve(); throw new TypeError('kaboom-async'); }",
        ),
    )
    .await;
    let r = tok(&s, &id, &secret, Some("read")).await;
    assert_server_error(&r, &[&name, "kaboom-sync"]);
    let r = tok(&s, &rid, &rsecret, Some("read")).await;
    assert_server_error(&r, &[&name, "kaboom-async"]);
    verified_claims(&s, &tok(&s, &ok_id, &ok_secret, Some("read")).await, &ok_id).await;

    for (cid, what) in [(&id, "throw"), (&rid, "reject")] {
        let evs = wait_client_events(&s, "feccft", cid, 1).await;
        assert_eq!(evs.len(), 1, "{evs:?}");
        assert_eq!(evs[0]["details"]["error"], "server_error", "{}", evs[0]);
        let logs = action_logs_text(&evs[0]);
        assert!(logs.contains(&format!("about to fail: {what}")), "{logs}");
        assert!(logs_q(&s, &format!("type:seccft AND client_id:\"{cid}\"")).await.is_empty(), "no seccft");
    }
}

#[tokio::test]
async fn infinite_loop_times_out_while_other_clients_are_served() {
    let mut s = TestServer::start_with(&[], &[("RATION_ACTIONS_TIMEOUT_MS", "500")]).await;
    setup_api(&s).await;
    let looper = unique("looper-");
    let (lid, lsecret) = client(&s, &looper, json!({})).await;
    let (oid, osecret) = client(&s, &unique("other-"), json!({})).await;
    let name = unique("spinner-");
    bound_action(
        &s,
        &name,
        &handler(&format!(
            "if (event.client.name === {}) {{ while (true) {{}} }}\n\
             api.accessToken.setCustomClaim('https://example.com/ok', true);",
            js(&looper)
        )),
    )
    .await;
    let c = verified_claims(&s, &tok(&s, &oid, &osecret, Some("read")).await, &oid).await;
    assert_eq!(c["https://example.com/ok"], true);

    for round in 0..2 {
        let http = s.http.clone();
        let url = s.url("/oauth/token");
        let body = form_body(&[
            ("grant_type", "client_credentials"),
            ("client_id", &lid),
            ("client_secret", &lsecret),
            ("audience", API),
            ("scope", "read"),
        ]);
        let started = Instant::now();
        let looping = tokio::spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("looping request");
            let status = r.status().as_u16();
            let json: Value = r.json().await.unwrap_or(Value::Null);
            (status, json, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(60)).await;
        let r = tok(&s, &oid, &osecret, Some("read")).await;
        let other_done = Instant::now();
        let c = verified_claims(&s, &r, &oid).await;
        assert_eq!(c["https://example.com/ok"], true);
        let (status, json, loop_done) = looping.await.unwrap();
        let took = loop_done - started;
        assert!(
            other_done < loop_done,
            "round {round}: the other client's request finished only after the loop ended ({:?} vs {:?})",
            other_done - started,
            took
        );
        assert_eq!(status, 500, "round {round}: {json}");
        assert_eq!(json["error"], "server_error", "{json}");
        let d = json["error_description"].as_str().unwrap_or_default();
        assert!(d.contains(&name), "description names the action: {d:?}");
        assert!(d.contains("time"), "description says it timed out: {d:?}");
        assert!(
            took >= Duration::from_millis(400) && took <= Duration::from_secs(5),
            "round {round}: failed after {took:?}, the timeout is 500 ms"
        );
    }
    let evs = wait_client_events(&s, "feccft", &lid, 2).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert!(logs_q(&s, &format!("type:seccft AND client_id:\"{lid}\"")).await.is_empty());
    // And afterwards everything is served as before.
    let c = verified_claims(&s, &tok(&s, &oid, &osecret, Some("read")).await, &oid).await;
    assert_eq!(c["https://example.com/ok"], true);
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn allocation_bomb_fails_only_its_request() {
    // A short timeout so that a bomb the memory limit misses fails the assertion on time.
    let mut s = TestServer::start_with(&[], &[("RATION_ACTIONS_TIMEOUT_MS", "8000")]).await;
    setup_api(&s).await;
    let bomber = unique("bomber-");
    let (bid, bsecret) = client(&s, &bomber, json!({})).await;
    let (oid, osecret) = client(&s, &unique("bystander-"), json!({})).await;
    let name = unique("bomb-");
    bound_action(
        &s,
        &name,
        &handler(&format!(
            "if (event.client.name === {}) {{ let a = []; while (true) a.push(new Array(1e6).fill(1)); }}\n\
             api.accessToken.setCustomClaim('https://example.com/ok', true);",
            js(&bomber)
        )),
    )
    .await;
    for _ in 0..3 {
        let t = Instant::now();
        let r = tok(&s, &bid, &bsecret, Some("read")).await;
        let took = t.elapsed();
        let d = assert_server_error(&r, &[&name]);
        assert!(d.contains("memory"), "description says it ran out of memory: {d:?}");
        assert!(took < Duration::from_secs(6), "the memory limit stopped it, not the timeout: {took:?}");
        let c = verified_claims(&s, &tok(&s, &oid, &osecret, Some("read")).await, &oid).await;
        assert_eq!(c["https://example.com/ok"], true);
    }
    let evs = wait_client_events(&s, "feccft", &bid, 3).await;
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_still_serving(&mut s).await;
    assert_eq!(s.get("/.well-known/jwks.json").await.status, 200);
}

// -------------------------------------------------------------------------------------------
// Bindings order; quotas
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn bindings_run_in_order_and_the_first_deny_ends_the_exchange() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) = client(&s, &unique("ordered-"), json!({})).await;
    let mk = |tag: &str| {
        handler(&format!(
            "console.log({});\napi.accessToken.setCustomClaim('https://example.com/last', {});",
            js(&format!("{tag} ran")),
            js(tag)
        ))
    };
    let a = unique("a-");
    let b = unique("b-");
    let aid = id_of(&deployed_action(&s, &a, &mk("A"), json!({})).await);
    let bid = id_of(&deployed_action(&s, &b, &mk("B"), json!({})).await);

    let v = s
        .mgmt(
            Method::PATCH,
            BINDINGS,
            Some(json!({ "bindings": [
                { "ref": { "type": "action_name", "value": a }, "display_name": "first" },
                { "ref": { "type": "action_id", "value": bid }, "display_name": "second" },
            ] })),
        )
        .await
        .expect(200);
    let listed = get_bindings(&s).await;
    assert_eq!(listed["total"], 2, "{listed}");
    assert!(listed["page"].is_number() && listed["per_page"].is_number(), "{listed}");
    let bs = listed["bindings"].as_array().unwrap_or_else(|| panic!("bindings array: {listed}"));
    assert_eq!(bs.len(), 2);
    for (binding, (action_id, display)) in bs.iter().zip([(&aid, "first"), (&bid, "second")]) {
        assert!(binding["id"].as_str().is_some_and(|i| !i.is_empty()), "{binding}");
        assert_eq!(binding["trigger_id"], "credentials-exchange", "{binding}");
        assert_eq!(binding["display_name"], display, "{binding}");
        assert_eq!(binding["action"]["id"], action_id.as_str(), "{binding}");
    }
    let returned: Vec<&Value> = v["bindings"].as_array().unwrap().iter().map(|b| &b["id"]).collect();
    assert_eq!(returned, bs.iter().map(|b| &b["id"]).collect::<Vec<_>>(), "PATCH returns the new list: {v}");
    let binding_b = bs[1]["id"].as_str().unwrap().to_owned();

    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/last"], "B", "A ran, then B: {c}");
    let ev = wait_client_events(&s, "seccft", &id, 1).await;
    let logs = action_logs_text(&ev[0]);
    let (pa, pb) = (logs.find("A ran").expect("A's log"), logs.find("B ran").expect("B's log"));
    assert!(pa < pb, "logs in binding order: {logs}");

    // Reorder: B (by binding id, keeping its id), then A.
    patch_bindings(&s, &[("binding_id", &binding_b), ("action_id", &aid)]).await.expect(200);
    let listed = get_bindings(&s).await;
    assert_eq!(listed["bindings"][0]["id"], binding_b.as_str(), "binding_id keeps the binding: {listed}");
    assert_eq!(listed["bindings"][0]["action"]["id"], bid.as_str(), "{listed}");
    assert_eq!(listed["bindings"][1]["action"]["id"], aid.as_str(), "{listed}");
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/last"], "A", "B ran, then A: {c}");

    // Bad references change nothing.
    let r = patch_bindings(&s, &[("action_name", "no-such-action")]).await;
    bad_request(&r);
    let r = patch_bindings(&s, &[("action_id", &aid), ("binding_id", "bnd_nope")]).await;
    bad_request(&r);
    assert_eq!(get_bindings(&s).await["total"], 2);

    // The first deny ends the exchange: the second action would set a claim and log.
    let denier = unique("denier-");
    deployed_action(
        &s,
        &denier,
        &handler("console.log('denier ran'); api.access.deny('invalid_request', 'Denied by the first action.');"),
        json!({}),
    )
    .await;
    bind(&s, &[&denier, &a]).await;
    let (did, dsecret) = client(&s, &unique("denied-"), json!({})).await;
    assert_denied(&tok(&s, &did, &dsecret, Some("read")).await, 400, "invalid_request", "Denied by the first action.");
    let ev = wait_client_events(&s, "feccft", &did, 1).await;
    let logs = action_logs_text(&ev[0]);
    assert!(logs.contains("denier ran"), "{logs}");
    assert!(!logs.contains("A ran"), "the action after the deny did not run: {logs}");
    // A deny after a claim-setting action still denies.
    bind(&s, &[&a, &denier]).await;
    let (eid, esecret) = client(&s, &unique("denied2-"), json!({})).await;
    assert_denied(&tok(&s, &eid, &esecret, Some("read")).await, 400, "invalid_request", "Denied by the first action.");
    let ev = wait_client_events(&s, "feccft", &eid, 1).await;
    let logs = action_logs_text(&ev[0]);
    let (pa, pd) = (logs.find("A ran").expect("A ran first"), logs.find("denier ran").expect("denier's log"));
    assert!(pa < pd, "{logs}");

    // Unbinding everything: no action runs.
    patch_bindings(&s, &[]).await.expect(200);
    assert_eq!(get_bindings(&s).await["total"], 0);
    let c = verified_claims(&s, &tok(&s, &did, &dsecret, Some("read")).await, &did).await;
    assert!(c.get("https://example.com/last").is_none(), "{c}");
}

#[tokio::test]
async fn denied_exchanges_consume_no_quota_and_over_quota_runs_no_action() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) =
        client(&s, &unique("quota-act-"), json!({ "token_quota": { "client_credentials": { "per_hour": 2 } } })).await;
    bound_action(
        &s,
        &unique("scope-guard-"),
        &handler(
            "console.log('guard ran');\n\
             if (event.transaction.requested_scopes.includes('write')) {\n\
               api.access.deny('invalid_scope', 'write is not on your plan');\n\
             }",
        ),
    )
    .await;
    let usage = |v: &Value| -> Vec<(String, u64, u64)> {
        v["buckets"]
            .as_array()
            .unwrap_or_else(|| panic!("buckets in {v}"))
            .iter()
            .map(|b| {
                (
                    b["bucket"].as_str().unwrap().to_owned(),
                    b["used"].as_u64().unwrap(),
                    b["remaining"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let usage_path = format!("/clients/{id}/quota-usage");

    for _ in 0..3 {
        assert_denied(&tok(&s, &id, &secret, Some("write")).await, 400, "invalid_scope", "write is not on your plan");
    }
    let u = s.mgmt(Method::GET, &usage_path, None).await.expect(200);
    assert_eq!(usage(&u), vec![("per_hour".to_owned(), 0, 2)], "denied exchanges consumed nothing: {u}");
    for remaining in [1, 0] {
        let r = tok(&s, &id, &secret, Some("read")).await;
        verified_claims(&s, &r, &id).await;
        let h = r.header(QUOTA_H).unwrap_or_else(|| panic!("{QUOTA_H} on a 200"));
        let b = parse_quota_header(&h);
        assert_eq!((b[0].b.as_str(), b[0].q, b[0].r), ("per_hour", 2, remaining), "{h}");
    }
    // Over quota: the pre-check answers before any action runs (a deny would say 400).
    for scope in ["write", "read"] {
        let r = tok(&s, &id, &secret, Some(scope)).await;
        assert_eq!(r.status, 429, "over quota, scope {scope}: {}", r.json);
        assert_eq!(r.json["error"], "too_many_requests", "{}", r.json);
    }
    let u = s.mgmt(Method::GET, &usage_path, None).await.expect(200);
    assert_eq!(usage(&u), vec![("per_hour".to_owned(), 2, 0)], "{u}");

    let evs = wait_client_events(&s, "feccft", &id, 5).await;
    assert_eq!(evs.len(), 5, "3 denied + 2 over quota: {evs:?}");
    let (quota_evs, denied_evs): (Vec<&Value>, Vec<&Value>) =
        evs.iter().partition(|e| e["details"]["error"] == "too_many_requests");
    assert_eq!(quota_evs.len(), 2, "{evs:?}");
    for e in denied_evs {
        assert!(action_logs_text(e).contains("guard ran"), "{e}");
    }
    for e in quota_evs {
        assert!(!e.to_string().contains("guard ran"), "no action ran for an over-quota client: {e}");
    }
    let seccft = wait_client_events(&s, "seccft", &id, 2).await;
    assert_eq!(seccft.len(), 2, "one seccft per issued token only: {seccft:?}");
}

// -------------------------------------------------------------------------------------------
// Auth0's documentation examples, unchanged
// -------------------------------------------------------------------------------------------

/// https://auth0.com/docs/customize/actions/explore-triggers/credentials-exchange (deny).
const DOC_EXAMPLE_DENY: &str = r#"exports.onExecuteCredentialsExchange = async (event, api) => {
  if (event.request.geoip.continentCode === "NA") {
    api.access.deny('invalid_request', "Access from North America is not allowed.");
  }
};
"#;

/// Same page (custom claim).
const DOC_EXAMPLE_CLAIM: &str = r#"exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim("https://my-api.exampleco.com/request-ip", event.request.ip);
};
"#;

#[tokio::test]
async fn auth0_documentation_examples_run_unchanged() {
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) = client(&s, &unique("docs-"), json!({})).await;
    let deny = unique("doc-geoip-deny-");
    let claim = unique("doc-request-ip-");
    deployed_action(&s, &deny, DOC_EXAMPLE_DENY, json!({})).await;
    deployed_action(&s, &claim, DOC_EXAMPLE_CLAIM, json!({})).await;

    bind(&s, &[&deny]).await;
    let r = tok(&s, &id, &secret, Some("read")).await;
    assert_eq!(r.status, 200, "the geoip example runs (no GeoIP data: not North America): {}", r.json);
    verified_claims(&s, &r, &id).await;

    bind(&s, &[&claim]).await;
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://my-api.exampleco.com/request-ip"], "127.0.0.1", "{c}");

    bind(&s, &[&deny, &claim]).await;
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://my-api.exampleco.com/request-ip"], "127.0.0.1", "{c}");
}
