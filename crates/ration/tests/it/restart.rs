//! Persistence across restarts, `kill -9` after acknowledged writes, graceful SIGTERM, and the
//! bootstrap credentials.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const API_RS: &str = "https://rs.example.com/";
const API_ES: &str = "https://es.example.com/";
const API_ED: &str = "https://ed.example.com/";
const API_HS: &str = "https://hs.example.com/";
const HS_SECRET: &str = "restart-test-hs256-secret-0123456789";

fn set(items: &[Value], key: &str) -> BTreeSet<String> {
    items.iter().map(|v| v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")).to_owned()).collect()
}

/// What a tenant looks like through the Management API, for before/after comparisons.
async fn snapshot(s: &TestServer) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>, Value) {
    let clients = set(&s.all_clients().await, "client_id");
    let apis = s.mgmt(Method::GET, "/resource-servers", None).await.expect(200);
    let apis = set(apis.as_array().expect("array"), "identifier");
    let grants = s.all_pages("/client-grants", "client_grants", "").await;
    let grants: BTreeSet<String> = grants
        .iter()
        .map(|g| format!("{} {} {}", g["client_id"].as_str().unwrap(), g["audience"].as_str().unwrap(), g["scope"]))
        .collect();
    let settings = s.mgmt(Method::GET, "/tenants/settings", None).await.expect(200);
    (clients, apis, grants, settings)
}

#[tokio::test]
async fn restart_keeps_clients_grants_keys_and_credentials() {
    let mut s = TestServer::start_fixed_issuer().await;
    let scopes = json!([{ "value": "read:x", "description": "r" }]);
    s.create_api(API_RS, json!({ "scopes": scopes })).await;
    s.create_api(API_ES, json!({ "scopes": scopes, "signing_alg": "ES256" })).await;
    s.create_api(API_ED, json!({ "scopes": scopes, "signing_alg": "EdDSA" })).await;
    s.create_api(API_HS, json!({ "scopes": scopes, "signing_alg": "HS256", "signing_secret": HS_SECRET })).await;
    let (id, secret) = s.create_client("survivor", json!({ "client_metadata": { "k": "v" } })).await;
    for aud in [API_RS, API_ES, API_ED, API_HS] {
        s.create_grant(&id, aud, &["read:x"]).await;
    }
    s.mgmt(
        Method::PATCH,
        "/tenants/settings",
        Some(json!({ "friendly_name": "Before Restart", "default_audience": API_RS })),
    )
    .await
    .expect(200);
    let old_tokens: Vec<(&str, String)> = {
        let mut v = Vec::new();
        for aud in [API_RS, API_ES, API_ED, API_HS] {
            v.push((aud, s.access_token(&id, &secret, aud).await));
        }
        v
    };
    let old_admin = s.admin_token().await;
    let old_jwks = s.jwks().await;
    let before = snapshot(&s).await;

    s.restart().await;
    assert_eq!(s.issuer(), FIXED_ISSUER);

    // Keys: every old token verifies against the new JWKS; the old admin token is still accepted.
    let new_jwks = s.jwks().await;
    for (aud, t) in &old_tokens {
        if *aud == API_HS {
            let (_, claims) = verify_hs256(t, HS_SECRET, FIXED_ISSUER, aud);
            assert_eq!(claims["azp"], id.as_str());
        } else {
            let (_, claims) = verify_with_jwks(&new_jwks, t, FIXED_ISSUER, aud);
            assert_cc_claims(&claims, FIXED_ISSUER, &id, aud, "read:x", 86400);
        }
    }
    let r = s.mgmt_with(Some(&old_admin), Method::GET, "/clients", None).await;
    assert_eq!(r.status, 200, "admin token issued before the restart still works: {}", r.json);
    for k in old_jwks["keys"].as_array().unwrap() {
        assert!(new_jwks["keys"].as_array().unwrap().contains(k), "key {} kept across restart", k["kid"]);
    }
    // New tokens are signed with the same keys.
    for (aud, old) in &old_tokens {
        let new = s.access_token(&id, &secret, aud).await;
        assert_eq!(raw_header(&new)["kid"], raw_header(old)["kid"], "same signing key for {aud}");
        if *aud == API_HS {
            verify_hs256(&new, HS_SECRET, FIXED_ISSUER, aud);
        } else {
            verify_with_jwks(&new_jwks, &new, FIXED_ISSUER, aud);
        }
    }

    // Configuration: same clients, APIs, grants, settings; nothing bootstrapped twice.
    let after = snapshot(&s).await;
    assert_eq!(after, before, "tenant unchanged by restart");
    assert_eq!(after.3["friendly_name"], "Before Restart");
    let got = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(got["name"], "survivor");
    assert_eq!(got["client_metadata"], json!({ "k": "v" }));
    let hs = s.mgmt(Method::GET, "/resource-servers", None).await.expect(200);
    let hs = hs.as_array().unwrap().iter().find(|r| r["identifier"] == API_HS).unwrap().clone();
    assert_eq!(hs["signing_secret"], HS_SECRET);
    let mgmt_apis = s
        .mgmt(Method::GET, "/resource-servers", None)
        .await
        .expect(200)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["identifier"] == s.mgmt_audience().as_str())
        .count();
    assert_eq!(mgmt_apis, 1, "one Management API after restart");
    // Default audience still applies.
    let r = s.token_form(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)]).await;
    let t = assert_token_response(&r, "read:x", 86400);
    assert_eq!(raw_claims(&t)["aud"], API_RS);
    // The env bootstrap secret was never printed or logged, in either run.
    let admin_secret = s.admin_credentials().1;
    for run in s.runs() {
        assert!(!run.all().contains(&admin_secret), "bootstrap secret from env appears in the output");
        assert!(!run.all().contains(&secret), "client secret appears in the output");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut s = TestServer::start_fixed_issuer().await;
    let api = "https://durable.example.com/";
    s.create_api(api, json!({ "scopes": [{ "value": "a:b", "description": "a" }, { "value": "c:d", "description": "c" }], "token_lifetime": 1234 }))
        .await;
    let (id, old_secret) = s.create_client("durable", json!({})).await;
    let gid = s.create_grant(&id, api, &["a:b"]).await;
    let (gone, _) = s.create_client("to be deleted", json!({})).await;
    let (paused, paused_secret) = s.create_client("paused", json!({})).await;
    s.create_grant(&paused, api, &["a:b"]).await;
    s.mgmt(Method::PATCH, &format!("/clients/{paused}"), Some(json!({ "grant_types": [] }))).await.expect(200);
    s.mgmt(Method::PATCH, &format!("/client-grants/{gid}"), Some(json!({ "scope": ["a:b", "c:d"] }))).await.expect(200);
    s.mgmt(Method::PATCH, "/tenants/settings", Some(json!({ "friendly_name": "Durable" }))).await.expect(200);
    assert_eq!(s.mgmt(Method::DELETE, &format!("/clients/{gone}"), None).await.status, 204);
    let rotated = s.mgmt(Method::POST, &format!("/clients/{id}/rotate-secret"), None).await.expect(200);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    // The last write was acknowledged: kill -9 right away.
    s.kill9();
    s.restart().await;

    let r = s
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &new_secret),
            ("audience", api),
        ])
        .await;
    let t = assert_token_response(&r, "a:b c:d", 1234);
    let (_, claims) = s.verify(&t, api).await;
    assert_cc_claims(&claims, FIXED_ISSUER, &id, api, "a:b c:d", 1234);
    check_token_error(
        &s,
        &TokenReq::Form(owned_pairs(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &old_secret),
            ("audience", api),
        ])),
        401,
        "access_denied",
        &Desc::is("Unauthorized"),
    )
    .await;
    check_token_error(
        &s,
        &TokenReq::Form(owned_pairs(&[
            ("grant_type", "client_credentials"),
            ("client_id", &paused),
            ("client_secret", &paused_secret),
            ("audience", api),
        ])),
        403,
        "unauthorized_client",
        &Desc::is("Grant type 'client_credentials' not allowed for the client."),
    )
    .await;
    let r = s.mgmt(Method::GET, &format!("/clients/{gone}"), None).await;
    assert_mgmt_error(&r, 404, "Not Found", None);
    let settings = s.mgmt(Method::GET, "/tenants/settings", None).await.expect(200);
    assert_eq!(settings["friendly_name"], "Durable");
}

#[tokio::test]
async fn sigterm_exits_with_status_zero() {
    let mut s = TestServer::start().await;
    assert_still_serving(&mut s).await;
    let status = s.sigterm(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn generated_bootstrap_credentials_file_is_private_and_idempotent() {
    let mut s = TestServer::builder().issuer(FIXED_ISSUER).generated_bootstrap().start().await;
    let path = s.bootstrap_file_path();
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{} exists: {e}", path.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "bootstrap-credentials.json is 0600");
    let bytes = std::fs::read(&path).unwrap();
    let v = s.bootstrap_file();
    let keys: BTreeSet<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["client_id", "client_secret"]), "file members: {v}");
    let (id, secret) = s.admin_credentials();
    assert!(!id.is_empty());
    assert!(secret.len() >= 43, "generated secret carries >= 256 bits");
    assert!(s.output().all().contains(&secret), "generated credentials are printed on first start");

    // They work, with every management scope.
    let t = s.token(&id, &secret, &s.mgmt_audience(), None).await;
    let granted: Vec<&str> = t["scope"].as_str().unwrap().split(' ').collect();
    for m in MANAGEMENT_SCOPES {
        assert!(granted.contains(m), "bootstrap admin lacks {m}");
    }
    let before = snapshot(&s).await;

    s.restart().await;
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "bootstrap file unchanged by restart");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!s.output().all().contains(&secret), "credentials are printed only once (not on restart)");
    s.token(&id, &secret, &s.mgmt_audience(), None).await;
    assert_eq!(snapshot(&s).await, before, "nothing bootstrapped twice");
}

#[tokio::test]
async fn env_bootstrap_credentials_are_idempotent_and_never_printed() {
    let mut s = TestServer::start_fixed_issuer().await;
    let (id, secret) = s.admin_credentials();
    let t = s.token(&id, &secret, &s.mgmt_audience(), None).await;
    assert!(t["scope"].as_str().unwrap().split(' ').any(|x| x == "create:clients"));
    let before = snapshot(&s).await;
    let admin = s.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(admin["client_id"], id.as_str());
    s.restart().await;
    s.token(&id, &secret, &s.mgmt_audience(), None).await;
    assert_eq!(snapshot(&s).await, before, "nothing bootstrapped twice");
    for run in s.runs() {
        assert!(!run.all().contains(&secret), "bootstrap secret from env appears in the output");
    }
}
