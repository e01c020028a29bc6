//! Acceptance tests for issue 9 (security hardening), part 2: signing-key rotation and
//! revocation (`/api/v2/keys/signing`), and least privilege on every Management API route.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

/// Verifies `token` against a JWKS without panicking; returns the kid that signed it.
fn verify_result(jwks: &Value, token: &str, issuer: &str, audience: &str) -> Result<String, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| format!("kid {kid} not in the cached JWKS"))?;
    let jwk: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("JWK: {e}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.leeway = 5;
    jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| format!("kid {kid}: {e}"))?;
    Ok(kid)
}

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid").to_owned()).collect()
}

/// `GET /api/v2/keys/signing` with `token`: the RS256 keys.
async fn rs256_keys(server: &TestServer, token: &str) -> Vec<Value> {
    let v = server.mgmt_with(Some(token), Method::GET, "/keys/signing", None).await.expect(200);
    let all = v.as_array().unwrap_or_else(|| panic!("an array of keys: {v}")).clone();
    for k in &all {
        let flags: Vec<bool> =
            ["current", "next", "previous", "revoked"].iter().map(|f| k[*f].as_bool().expect("flag")).collect();
        assert_eq!(flags.iter().filter(|f| **f).count(), 1, "exactly one state flag per key: {k}");
        assert!(k["kid"].is_string(), "{k}");
    }
    all.into_iter().filter(|k| k["alg"] == "RS256").collect()
}

fn with_flag(keys: &[Value], flag: &str) -> Vec<String> {
    keys.iter().filter(|k| k[flag] == true).map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// A fresh Management API token for the bootstrap admin (never the harness's cached one).
async fn fresh_admin_token(server: &TestServer) -> String {
    let (id, secret) = server.admin_credentials();
    server.access_token(&id, &secret, &server.mgmt_audience()).await
}

/// Tokens issued continuously while the keys rotate twice all verify with a JWKS the client
/// refreshes every 200 ms; old tokens keep verifying; then revocation of a previous key takes it
/// out of the JWKS and out of the Management API's trust, and the current key cannot be revoked.
#[tokio::test]
async fn rotation_without_failed_verification_then_revocation() {
    let server = TestServer::start().await;
    let issuer = server.issuer().to_owned();
    let audience = server.mgmt_audience();
    let (admin_id, admin_secret) = server.admin_credentials();

    let t0 = fresh_admin_token(&server).await;
    let keys = rs256_keys(&server, &t0).await;
    let initial_current = with_flag(&keys, "current");
    assert_eq!(initial_current.len(), 1, "one current RS256 key: {keys:?}");
    assert!(!with_flag(&keys, "next").is_empty(), "a next RS256 key is pre-published: {keys:?}");
    let jwks = server.jwks().await;
    for kid in with_flag(&keys, "next") {
        assert!(kids(&jwks).contains(&kid), "the next key {kid} is in the JWKS before it signs");
    }
    assert_eq!(verify_result(&jwks, &t0, &issuer, &audience), Ok(initial_current[0].clone()));

    // The verifier: caches the JWKS, refreshes it every 200 ms.
    let cache = Arc::new(RwLock::new(jwks));
    let stop = AtomicBool::new(false);
    let verifier = async {
        let mut refreshes = 0u32;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = server.get("/.well-known/jwks.json").await;
            assert_eq!(r.status, 200, "JWKS: {}", r.json);
            *cache.write().unwrap() = r.json;
            refreshes += 1;
        }
        refreshes
    };
    // Issues tokens back to back; each is checked against the cache as it arrives.
    let issuer_loop = async {
        let mut issued: Vec<(String, String)> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let r = server
                .token_form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &admin_id),
                    ("client_secret", &admin_secret),
                    ("audience", &audience),
                ])
                .await;
            if r.status != 200 {
                failures.push(format!("token request {}: {}", r.status, r.json));
                continue;
            }
            let token = r.json["access_token"].as_str().unwrap().to_owned();
            let cached = cache.read().unwrap().clone();
            match verify_result(&cached, &token, &issuer, &audience) {
                Ok(kid) => issued.push((kid, token)),
                Err(e) => failures.push(e),
            }
            tokio::task::yield_now().await;
        }
        (issued, failures)
    };
    let rotator = async {
        let mut rotated = Vec::new();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let token = fresh_admin_token(&server).await;
            let r = server.mgmt_with(Some(&token), Method::POST, "/keys/signing/rotate", None).await;
            rotated.push(r.expect(201));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
        rotated
    };
    let (refreshes, (issued, failures), rotated) = tokio::join!(verifier, issuer_loop, rotator);

    assert!(failures.is_empty(), "{} of {} tokens failed: {failures:?}", failures.len(), issued.len() + failures.len());
    assert!(issued.len() >= 10, "enough tokens were issued during the rotations: {}", issued.len());
    assert!(refreshes >= 5, "the verifier refreshed: {refreshes}");
    let signing_kids: Vec<&String> = issued.iter().map(|(k, _)| k).collect();
    let distinct: BTreeSet<&String> = signing_kids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "two rotations → three signing keys over time: {distinct:?}");
    assert_eq!(signing_kids.first().copied(), Some(&initial_current[0]));
    let promoted: Vec<String> = rotated.iter().map(|v| v["kid"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(promoted.iter().all(|k| distinct.contains(k)), "rotate answers the new current kid: {rotated:?}");

    // Every token, also those from before the rotations, still verifies against today's JWKS.
    let jwks = server.jwks().await;
    assert_public_jwks(&jwks);
    for (kid, token) in &issued {
        assert_eq!(verify_result(&jwks, token, &issuer, &audience).as_deref(), Ok(kid.as_str()));
    }
    let keys = rs256_keys(&server, &t0).await;
    let current = with_flag(&keys, "current");
    let previous = with_flag(&keys, "previous");
    assert_eq!(current.len(), 1, "{keys:?}");
    assert_eq!(&current[0], &issued.last().unwrap().0, "the newest tokens are signed by the current key");
    assert_eq!(previous.len(), 2, "two previous keys after two rotations: {keys:?}");
    assert!(previous.contains(&initial_current[0]), "{keys:?}");
    assert!(!with_flag(&keys, "next").is_empty(), "a fresh next key: {keys:?}");
    for kid in current.iter().chain(&previous).chain(&with_flag(&keys, "next")) {
        assert!(kids(&jwks).contains(kid), "{kid} is published");
    }
    // t0 (signed by what is now a previous key) still opens the Management API.
    server.mgmt_with(Some(&t0), Method::GET, "/clients", None).await.expect(200);

    // Revocation.
    let admin = fresh_admin_token(&server).await;
    let r = server.mgmt_with(Some(&admin), Method::PUT, &format!("/keys/signing/{}/revoke", current[0]), None).await;
    assert_mgmt_error(&r, 400, "Bad Request", None);
    let old = &initial_current[0];
    let r = server.mgmt_with(Some(&admin), Method::PUT, &format!("/keys/signing/{old}/revoke"), None).await;
    let v = r.expect(200);
    assert_eq!((v["kid"].as_str(), v["revoked"].as_bool()), (Some(old.as_str()), Some(true)), "{v}");
    let jwks = server.jwks().await;
    assert!(!kids(&jwks).contains(old), "a revoked key leaves the JWKS: {jwks}");
    let r = server.mgmt_with(Some(&t0), Method::GET, "/clients", None).await;
    assert_mgmt_error(&r, 401, "Unauthorized", None);
    // A token of the other previous key is still good, and so is a fresh one.
    let other_previous = previous.iter().find(|k| *k != old).unwrap();
    let (_, by_other) = issued.iter().find(|(k, _)| k == other_previous).unwrap();
    server.mgmt_with(Some(by_other), Method::GET, "/clients", None).await.expect(200);
    server.mgmt_with(Some(&admin), Method::GET, "/clients", None).await.expect(200);
    let keys = rs256_keys(&server, &admin).await;
    assert_eq!(with_flag(&keys, "revoked"), vec![old.clone()], "{keys:?}");
    // Revoking twice, or an unknown kid.
    let r = server.mgmt_with(Some(&admin), Method::PUT, &format!("/keys/signing/{old}/revoke"), None).await;
    assert_mgmt_error(&r, 409, "Conflict", None);
    let r = server.mgmt_with(Some(&admin), Method::PUT, "/keys/signing/no-such-kid/revoke", None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
}

/// A revoked key stays revoked across a restart (it is not republished, its tokens stay refused).
#[tokio::test]
async fn revoked_key_stays_revoked_after_restart() {
    let mut server = TestServer::start_fixed_issuer().await;
    let t0 = fresh_admin_token(&server).await;
    let old = raw_header(&t0)["kid"].as_str().unwrap().to_owned();
    server.mgmt_with(Some(&t0), Method::POST, "/keys/signing/rotate", None).await.expect(201);
    let admin = fresh_admin_token(&server).await;
    assert_ne!(raw_header(&admin)["kid"], old.as_str(), "a rotation changes the signing key");
    server.mgmt_with(Some(&admin), Method::PUT, &format!("/keys/signing/{old}/revoke"), None).await.expect(200);
    server.restart().await;
    assert!(!kids(&server.jwks().await).contains(&old), "revoked key republished after a restart");
    let r = server.mgmt_with(Some(&t0), Method::GET, "/clients", None).await;
    assert_mgmt_error(&r, 401, "Unauthorized", None);
    server.mgmt_with(Some(&admin), Method::GET, "/clients", None).await.expect(200);
}

// -------------------------------------------------------------------------------------------
// Least privilege
// -------------------------------------------------------------------------------------------

/// Every Management API route (crates/server/src/mgmt/mod.rs) with the scope it needs. Ids are
/// made up: the scope is checked before anything is looked up.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/clients", "read:clients"),
    ("POST", "/clients", "create:clients"),
    ("GET", "/clients/nosuch", "read:clients"),
    ("PATCH", "/clients/nosuch", "update:clients"),
    ("DELETE", "/clients/nosuch", "delete:clients"),
    ("POST", "/clients/nosuch/rotate-secret", "update:clients"),
    ("GET", "/clients/nosuch/quota-usage", "read:clients"),
    ("GET", "/clients/nosuch/credentials", "read:client_credentials"),
    ("POST", "/clients/nosuch/credentials", "create:client_credentials"),
    ("GET", "/clients/nosuch/credentials/cred_nosuch", "read:client_credentials"),
    ("PATCH", "/clients/nosuch/credentials/cred_nosuch", "update:client_credentials"),
    ("DELETE", "/clients/nosuch/credentials/cred_nosuch", "delete:client_credentials"),
    ("GET", "/organizations", "read:organizations"),
    ("POST", "/organizations", "create:organizations"),
    ("GET", "/organizations/org_nosuch", "read:organizations"),
    ("PATCH", "/organizations/org_nosuch", "update:organizations"),
    ("DELETE", "/organizations/org_nosuch", "delete:organizations"),
    ("GET", "/organizations/org_nosuch/client-grants", "read:organization_client_grants"),
    ("POST", "/organizations/org_nosuch/client-grants", "create:organization_client_grants"),
    ("DELETE", "/organizations/org_nosuch/client-grants/cgr_nosuch", "delete:organization_client_grants"),
    ("GET", "/organizations/org_nosuch/quota-usage", "read:organizations"),
    ("GET", "/log-streams", "read:log_streams"),
    ("POST", "/log-streams", "create:log_streams"),
    ("GET", "/log-streams/lst_nosuch", "read:log_streams"),
    ("PATCH", "/log-streams/lst_nosuch", "update:log_streams"),
    ("DELETE", "/log-streams/lst_nosuch", "delete:log_streams"),
    ("GET", "/actions/actions", "read:actions"),
    ("POST", "/actions/actions", "create:actions"),
    ("GET", "/actions/actions/nosuch", "read:actions"),
    ("PATCH", "/actions/actions/nosuch", "update:actions"),
    ("DELETE", "/actions/actions/nosuch", "delete:actions"),
    ("POST", "/actions/actions/nosuch/deploy", "create:actions"),
    ("GET", "/actions/actions/nosuch/versions", "read:actions"),
    ("GET", "/actions/triggers/credentials-exchange/bindings", "read:actions"),
    ("PATCH", "/actions/triggers/credentials-exchange/bindings", "update:actions"),
    ("GET", "/keys/signing", "read:signing_keys"),
    ("POST", "/keys/signing/rotate", "create:signing_keys"),
    ("GET", "/keys/signing/nosuch", "read:signing_keys"),
    ("PUT", "/keys/signing/nosuch/revoke", "update:signing_keys"),
    ("GET", "/logs", "read:logs"),
    ("GET", "/logs/90020250101000000000000000000000000000000000000000000001", "read:logs"),
    ("GET", "/resource-servers", "read:resource_servers"),
    ("POST", "/resource-servers", "create:resource_servers"),
    ("GET", "/resource-servers/nosuch", "read:resource_servers"),
    ("PATCH", "/resource-servers/nosuch", "update:resource_servers"),
    ("DELETE", "/resource-servers/nosuch", "delete:resource_servers"),
    ("GET", "/client-grants", "read:client_grants"),
    ("POST", "/client-grants", "create:client_grants"),
    ("GET", "/client-grants/cgr_nosuch", "read:client_grants"),
    ("PATCH", "/client-grants/cgr_nosuch", "update:client_grants"),
    ("DELETE", "/client-grants/cgr_nosuch", "delete:client_grants"),
    ("GET", "/tenants/settings", "read:tenant_settings"),
    ("PATCH", "/tenants/settings", "update:tenant_settings"),
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

/// Calls `route` with `token`; write methods get an empty JSON object.
async fn call(server: &TestServer, token: Option<&str>, m: &str, path: &str) -> Resp {
    let body = matches!(m, "POST" | "PATCH" | "PUT").then(|| json!({}));
    let body = if path.ends_with("/rotate") || path.ends_with("/revoke") || path.ends_with("/rotate-secret") {
        None
    } else {
        body
    };
    server.mgmt_with(token, method(m), path, body).await
}

/// For every route: a token with one unrelated scope → 403 `insufficient_scope`; a token with
/// exactly the needed scope gets past authorization (neither 401 nor 403).
#[tokio::test]
async fn every_management_route_checks_its_scope() {
    let server = TestServer::start().await;
    let mgmt = server.mgmt_audience();
    let all_scopes: BTreeSet<&str> = ROUTES.iter().map(|(_, _, s)| *s).collect();

    // Narrow clients: one scope each, unrelated to most routes.
    let (logs_only, logs_secret) = server.create_client(&unique("only-logs-"), json!({})).await;
    server.create_grant(&logs_only, &mgmt, &["read:logs"]).await;
    let (settings_only, settings_secret) = server.create_client(&unique("only-settings-"), json!({})).await;
    server.create_grant(&settings_only, &mgmt, &["read:tenant_settings"]).await;
    let logs_token = server.access_token(&logs_only, &logs_secret, &mgmt).await;
    let settings_token = server.access_token(&settings_only, &settings_secret, &mgmt).await;
    assert_eq!(raw_claims(&logs_token)["scope"], "read:logs");

    for (m, path, scope) in ROUTES {
        let token = if *scope == "read:logs" { &settings_token } else { &logs_token };
        let r = call(&server, Some(token), m, path).await;
        assert_eq!(r.status, 403, "{m} {path} without {scope}: {}", r.json);
        assert_mgmt_error(&r, 403, "Forbidden", Some("insufficient_scope"));
        let message = r.json["message"].as_str().unwrap();
        assert!(message.contains(scope), "{m} {path}: the message names {scope}: {message}");
    }

    // A client granted every scope, asking for exactly one per token.
    let (wide, wide_secret) = server.create_client(&unique("wide-"), json!({})).await;
    let scopes: Vec<&str> = all_scopes.iter().copied().collect();
    server.create_grant(&wide, &mgmt, &scopes).await;
    let mut tokens = std::collections::BTreeMap::new();
    for scope in &scopes {
        let v = server.token(&wide, &wide_secret, &mgmt, Some(scope)).await;
        assert_eq!(v["scope"], *scope);
        tokens.insert(*scope, v["access_token"].as_str().unwrap().to_owned());
    }
    for (m, path, scope) in ROUTES {
        let r = call(&server, Some(&tokens[scope]), m, path).await;
        assert!(
            r.status != 401 && r.status != 403,
            "{m} {path} with exactly {scope} must pass authorization, got {}: {}",
            r.status,
            r.json
        );
    }
}

/// Tokens the Management API must refuse with 401: none, garbage, tampered, another audience
/// (RS256 and HS256), and a token of another server.
#[tokio::test]
async fn management_api_refuses_foreign_and_broken_tokens() {
    let server = TestServer::start().await;
    let api = "https://other.example.com/api";
    let scopes: Vec<Value> = ["read:clients", "read:logs"].iter().map(|s| json!({"value": s})).collect();
    server.create_api(api, json!({"scopes": scopes})).await;
    let hs_api = "https://other.example.com/hs";
    let hs = server.create_api(hs_api, json!({"scopes": [{"value": "read:clients"}], "signing_alg": "HS256"})).await;
    assert_eq!(hs["signing_alg"], "HS256");
    let (id, secret) = server.create_client(&unique("other-aud-"), json!({})).await;
    server.create_grant(&id, api, &["read:clients", "read:logs"]).await;
    server.create_grant(&id, hs_api, &["read:clients"]).await;
    let other_aud = server.access_token(&id, &secret, api).await;
    let hs_token = server.access_token(&id, &secret, hs_api).await;
    assert_eq!(raw_claims(&other_aud)["scope"], "read:clients read:logs");

    let admin = fresh_admin_token(&server).await;
    let mut parts: Vec<&str> = admin.split('.').collect();
    let payload = {
        let mut c = raw_claims(&admin);
        c["aud"] = json!(server.mgmt_audience());
        c["scope"] = json!("read:clients");
        c["sub"] = json!("intruder@clients");
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
    };
    parts[1] = &payload;
    let tampered = parts.join(".");

    let other_server = TestServer::start().await;
    let foreign = fresh_admin_token(&other_server).await;

    let bad: Vec<(&str, Option<&str>)> = vec![
        ("no token", None),
        ("garbage", Some("garbage")),
        ("another audience (RS256)", Some(&other_aud)),
        ("another audience (HS256)", Some(&hs_token)),
        ("tampered payload", Some(&tampered)),
        ("another server's admin token", Some(&foreign)),
    ];
    for (what, token) in &bad {
        for (m, path) in [("GET", "/clients"), ("GET", "/logs"), ("POST", "/keys/signing/rotate")] {
            let r = call(&server, *token, m, path).await;
            assert_eq!(r.status, 401, "{what}: {m} {path}: {}", r.json);
            assert_mgmt_error(&r, 401, "Unauthorized", None);
        }
    }
    server.mgmt_with(Some(&admin), Method::GET, "/clients", None).await.expect(200);
}

/// A Management API token past its `exp` is refused: the token comes from one process, the next
/// process on the same data (same keys) runs two days later.
#[tokio::test]
async fn expired_management_token_is_refused() {
    let data = tempfile::tempdir().expect("shared data dir");
    let dir = data.path().to_str().unwrap().to_owned();
    let builder = || {
        TestServer::builder().issuer(FIXED_ISSUER).data_dir_via(DataDirVia::Nothing).arg("--data-dir").arg(dir.clone())
    };
    let mut first = builder().start().await;
    let token = fresh_admin_token(&first).await;
    first.mgmt_with(Some(&token), Method::GET, "/clients", None).await.expect(200);
    let exp = raw_claims(&token)["exp"].as_i64().unwrap();
    assert!(exp - now_secs() <= 86_400 + 60, "a Management API token lives at most a day: exp {exp}");
    let status = first.sigterm(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    drop(first);

    let later = builder().env("RATION_TEST_CLOCK_OFFSET_MS", &(2 * 86_400 * 1000).to_string()).start().await;
    let r = later.mgmt_with(Some(&token), Method::GET, "/clients", None).await;
    assert_mgmt_error(&r, 401, "Unauthorized", None);
    // The same key still signs there: only the time differs.
    let fresh = fresh_admin_token(&later).await;
    assert_eq!(raw_header(&fresh)["kid"], raw_header(&token)["kid"], "same signing key after the restart");
    later.mgmt_with(Some(&fresh), Method::GET, "/clients", None).await.expect(200);
}
