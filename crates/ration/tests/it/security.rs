//! Acceptance tests for issue 9 (security hardening), part 1: `private_key_jwt` client
//! authentication (RFC 7523, Auth0's rules), brute-force defence on the token endpoint, and the
//! transport limits (TLS, head size, slow clients, connection cap, JSON depth).
//!
//! Signing-key rotation and least privilege on the Management API are in `security_keys.rs`.
//!
//! Client keys are generated with the `openssl` CLI in a temporary directory; assertions are
//! signed with `jsonwebtoken`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::*;

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const API: &str = "https://api.example.com/security";
const API_SCOPE: &str = "read:things";
const ASSERTION_PREFIX: &str = "Invalid client assertion: ";

// -------------------------------------------------------------------------------------------
// Keys and assertions
// -------------------------------------------------------------------------------------------

/// Runs `/usr/bin/openssl` with `args` in `dir`, asserting success.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run /usr/bin/openssl");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A client's key pair: the private half signs assertions, the public half is registered.
pub(crate) struct ClientKey {
    pub alg: Algorithm,
    pub enc: EncodingKey,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    pub pub_pem: String,
    /// The public JWK (kty and key members only).
    pub jwk: Value,
}

impl ClientKey {
    /// An RSA-2048 key for `alg` (RS256, RS384 or PS256).
    pub fn rsa(alg: Algorithm) -> ClientKey {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        openssl(d, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "k.pem"]);
        openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
        // aws-lc's RsaKeyPair::from_der wants PKCS#1 RSAPrivateKey.
        openssl(d, &["rsa", "-in", "k.pem", "-traditional", "-outform", "DER", "-out", "k.der"]);
        let der = std::fs::read(d.join("k.der")).expect("read k.der");
        let pub_pem = std::fs::read_to_string(d.join("pub.pem")).expect("read pub.pem");
        Self::finish(alg, EncodingKey::from_rsa_der(&der), pub_pem)
    }

    /// A P-256 key for ES256.
    pub fn ec() -> ClientKey {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k.pem"]);
        openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
        // aws-lc's EcdsaKeyPair::from_pkcs8 wants PKCS#8 (genpkey's DER output is SEC1).
        openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER", "-out", "k.der"]);
        let der = std::fs::read(d.join("k.der")).expect("read k.der");
        let pub_pem = std::fs::read_to_string(d.join("pub.pem")).expect("read pub.pem");
        Self::finish(Algorithm::ES256, EncodingKey::from_ec_der(&der), pub_pem)
    }

    fn finish(alg: Algorithm, enc: EncodingKey, pub_pem: String) -> ClientKey {
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"), "SPKI PEM: {pub_pem}");
        let jwk = Jwk::from_encoding_key(&enc, alg).expect("JWK of the key");
        let mut jwk = serde_json::to_value(&jwk).expect("JWK as JSON");
        // Only the public key members: kty, n/e or crv/x/y.
        let obj = jwk.as_object_mut().unwrap();
        obj.retain(|k, _| ["kty", "n", "e", "crv", "x", "y"].contains(&k.as_str()));
        ClientKey { alg, enc, pub_pem, jwk }
    }

    /// The RFC 7638 thumbprint: the kid the server assigns when none is given.
    pub fn thumbprint(&self) -> String {
        rfc7638_thumbprint(&self.jwk)
    }

    pub fn alg_name(&self) -> String {
        format!("{:?}", self.alg)
    }

    /// Signs `claims` with this key in its own algorithm.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        self.sign_as(self.alg, kid, claims)
    }

    /// Signs `claims` with this key in `alg` (which must fit the key type).
    pub fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.enc).expect("sign assertion")
    }
}

/// Valid assertion claims for `client_id` with audience `aud`, expiring in `exp_in` seconds.
pub(crate) fn assertion_claims(client_id: &str, aud: &str, exp_in: i64) -> Value {
    let now = now_secs();
    json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + exp_in, "jti": unique("jti")})
}

/// `POST /oauth/token` authenticating with a client assertion.
pub(crate) async fn assertion_token(
    server: &TestServer,
    assertion: &str,
    client_id: Option<&str>,
    audience: &str,
) -> Resp {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
        ("audience", audience),
    ];
    if let Some(id) = client_id {
        pairs.push(("client_id", id));
    }
    server.token_form(&pairs).await
}

/// Asserts 401 `invalid_client` "Invalid client assertion: …" for `what`.
#[track_caller]
fn assert_assertion_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: status; body {}", r.json);
    let (error, description) = assert_oauth_error_shape(r);
    assert_eq!(error, "invalid_client", "{what}: error; body {}", r.json);
    assert!(
        description.starts_with(ASSERTION_PREFIX),
        "{what}: error_description starts with {ASSERTION_PREFIX:?}; got {description:?}"
    );
    assert!(r.json.get("access_token").is_none(), "{what}: no token");
}

/// Asserts 401 `access_denied` "Unauthorized" (a wrong or unusable secret).
#[track_caller]
fn assert_unauthorized(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: status; body {}", r.json);
    let (error, description) = assert_oauth_error_shape(r);
    assert_eq!((error.as_str(), description.as_str()), ("access_denied", "Unauthorized"), "{what}: {}", r.json);
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Registers a public key for `client_id`, asserting 201 and the credential object.
async fn register_key(server: &TestServer, client_id: &str, body: Value) -> Value {
    let r = server.mgmt(Method::POST, &format!("/clients/{client_id}/credentials"), Some(body.clone())).await;
    let v = r.expect(201);
    let id = v["id"].as_str().unwrap_or_else(|| panic!("credential id in {v}"));
    assert!(id.starts_with("cred_"), "credential id starts with cred_: {v}");
    assert_eq!(v["credential_type"], "public_key", "{v}");
    assert_eq!(v["alg"], body["alg"], "{v}");
    assert!(v["kid"].is_string(), "kid in {v}");
    assert!(v.get("expires_at").is_some(), "expires_at member in {v}");
    for secret in ["pem", "jwk", "d", "n", "x"] {
        assert!(v.get(secret).is_none(), "the credential object does not echo key material ({secret}): {v}");
    }
    v
}

fn pem_body(key: &ClientKey) -> Value {
    json!({"credential_type": "public_key", "pem": key.pub_pem, "alg": key.alg_name()})
}

/// The credential ids a client object lists under `client_authentication_methods`.
fn listed_credential_ids(client: &Value) -> Vec<String> {
    let mut ids: Vec<String> = client["client_authentication_methods"]["private_key_jwt"]["credentials"]
        .as_array()
        .unwrap_or_else(|| panic!("client_authentication_methods.private_key_jwt.credentials in {client}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_else(|| panic!("credential reference id in {client}")).to_owned())
        .collect();
    ids.sort();
    ids
}

/// A server with the test API; returns it.
async fn server_with_api() -> TestServer {
    let server = TestServer::start().await;
    let scopes = json!([{ "value": API_SCOPE, "description": "things" }]);
    server.create_api(API, json!({ "scopes": scopes })).await;
    server
}

// -------------------------------------------------------------------------------------------
// private_key_jwt
// -------------------------------------------------------------------------------------------

/// Registration (PEM and JWK, RS256 and ES256, at most two), switching a client to
/// private_key_jwt, tokens with either key and either audience form, single-use assertions,
/// the old secret refused, expired credentials refused.
#[tokio::test]
async fn private_key_jwt_registration_switch_and_tokens() {
    let server = server_with_api().await;
    let issuer = server.issuer().to_owned();
    let token_endpoint = format!("{issuer}oauth/token");
    let rsa = ClientKey::rsa(Algorithm::RS256);
    let ec = ClientKey::ec();
    let spare = ClientKey::rsa(Algorithm::RS256);

    let (id, secret) = server.create_client(&unique("pkjwt-"), json!({})).await;
    server.create_grant(&id, API, &[API_SCOPE]).await;

    // A secret client cannot use an assertion, even with a key registered.
    let rs_cred = register_key(&server, &id, pem_body(&rsa)).await;
    assert_eq!(rs_cred["kid"], rsa.thumbprint(), "default kid is the RFC 7638 thumbprint: {rs_cred}");
    assert_eq!(rs_cred["expires_at"], Value::Null, "{rs_cred}");
    let a = rsa.sign(None, &assertion_claims(&id, &issuer, 60));
    assert_assertion_refused(&assertion_token(&server, &a, None, API).await, "assertion of a secret-method client");

    let es_kid = "my-es256-key-0001";
    let es_cred = register_key(
        &server,
        &id,
        json!({"credential_type": "public_key", "jwk": ec.jwk, "alg": "ES256", "kid": es_kid, "name": "ec"}),
    )
    .await;
    assert_eq!(es_cred["kid"], es_kid, "a chosen kid is kept: {es_cred}");

    // At most two keys per client.
    let r = server.mgmt(Method::POST, &format!("/clients/{id}/credentials"), Some(pem_body(&spare))).await;
    assert_mgmt_error(&r, 409, "Conflict", None);
    let listed = server.mgmt(Method::GET, &format!("/clients/{id}/credentials"), None).await.expect(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "two credentials: {listed}");

    // Switch the client to private_key_jwt.
    let rs_id = rs_cred["id"].as_str().unwrap().to_owned();
    let es_id = es_cred["id"].as_str().unwrap().to_owned();
    let patch = json!({
        "token_endpoint_auth_method": null,
        "client_authentication_methods": {"private_key_jwt": {"credentials": [{"id": rs_id}, {"id": es_id}]}},
    });
    server.mgmt(Method::PATCH, &format!("/clients/{id}"), Some(patch)).await.expect(200);
    let client = server.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(client["token_endpoint_auth_method"], Value::Null, "{client}");
    let mut expected = vec![rs_id.clone(), es_id.clone()];
    expected.sort();
    assert_eq!(listed_credential_ids(&client), expected, "{client}");
    assert!(client.get("client_secret").is_none(), "no secret in GET: {client}");

    // RS256, kid given, aud = issuer, no client_id.
    let a = rsa.sign(Some(&rsa.thumbprint()), &assertion_claims(&id, &issuer, 60));
    let r = assertion_token(&server, &a, None, API).await;
    let token = assert_token_response(&r, API_SCOPE, 86_400);
    let (_, claims) = server.verify(&token, API).await;
    assert_cc_claims(&claims, &issuer, &id, API, API_SCOPE, 86_400);

    // The same assertion again: replay.
    assert_assertion_refused(&assertion_token(&server, &a, None, API).await, "replayed assertion");

    // ES256, no kid, aud = the token endpoint, client_id present and equal to iss.
    let a = ec.sign(None, &assertion_claims(&id, &token_endpoint, 60));
    let r = assertion_token(&server, &a, Some(&id), API).await;
    let token = assert_token_response(&r, API_SCOPE, 86_400);
    let (_, claims) = server.verify(&token, API).await;
    assert_cc_claims(&claims, &issuer, &id, API, API_SCOPE, 86_400);
    // …and replaying that one (with client_id) is refused too.
    assert_assertion_refused(&assertion_token(&server, &a, Some(&id), API).await, "replayed ES256 assertion");

    // JSON body works as well.
    let a = ec.sign(Some(es_kid), &assertion_claims(&id, &issuer, 60));
    let r = server
        .token_json(&json!({"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
            "client_assertion": a, "audience": API}))
        .await;
    assert_token_response(&r, API_SCOPE, 86_400);

    // The old secret no longer authenticates the client.
    let r = server
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("audience", API),
        ])
        .await;
    assert_unauthorized(&r, "old client_secret of a private_key_jwt client");

    // An expired credential is inoperable (PATCH answers 201), the other key keeps working, and
    // lifting the expiry restores it.
    let r = server
        .mgmt(
            Method::PATCH,
            &format!("/clients/{id}/credentials/{rs_id}"),
            Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    let v = r.expect(201);
    assert!(v["expires_at"].as_str().is_some_and(|s| s.starts_with("2020-01-01T00:00:00")), "{v}");
    let a = rsa.sign(None, &assertion_claims(&id, &issuer, 60));
    assert_assertion_refused(&assertion_token(&server, &a, None, API).await, "expired credential");
    let a = ec.sign(None, &assertion_claims(&id, &issuer, 60));
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
    let r = server
        .mgmt(
            Method::PATCH,
            &format!("/clients/{id}/credentials/{rs_id}"),
            Some(json!({"expires_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    r.expect(201);
    let a = rsa.sign(None, &assertion_claims(&id, &issuer, 60));
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
}

/// A client created with full credential objects uses private_key_jwt from the start.
#[tokio::test]
async fn private_key_jwt_client_created_with_credentials() {
    let server = server_with_api().await;
    let issuer = server.issuer().to_owned();
    let ec = ClientKey::ec();
    let body = json!({
        "name": unique("pkjwt-created-"),
        "app_type": "non_interactive",
        "grant_types": ["client_credentials"],
        "client_authentication_methods": {"private_key_jwt": {"credentials": [
            {"credential_type": "public_key", "name": "k1", "pem": ec.pub_pem, "alg": "ES256"}
        ]}},
    });
    let created = server.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
    let id = created["client_id"].as_str().unwrap_or_else(|| panic!("client_id in {created}")).to_owned();
    assert_eq!(created["token_endpoint_auth_method"], Value::Null, "{created}");
    assert_eq!(listed_credential_ids(&created).len(), 1, "{created}");
    let got = server.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(got["token_endpoint_auth_method"], Value::Null, "{got}");
    assert_eq!(listed_credential_ids(&got), listed_credential_ids(&created), "{got}");
    let creds = server.mgmt(Method::GET, &format!("/clients/{id}/credentials"), None).await.expect(200);
    assert_eq!(creds[0]["kid"], ec.thumbprint(), "{creds}");
    assert_eq!(creds[0]["alg"], "ES256", "{creds}");

    server.create_grant(&id, API, &[API_SCOPE]).await;
    let a = ec.sign(None, &assertion_claims(&id, &issuer, 60));
    let token = assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
    let (_, claims) = server.verify(&token, API).await;
    assert_eq!(claims["sub"], format!("{id}@clients"));

    // Whatever secret the create answer carried, it does not authenticate this client.
    if let Some(secret) = created["client_secret"].as_str() {
        let r = server
            .token_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", secret),
                ("audience", API),
            ])
            .await;
        assert_unauthorized(&r, "client_secret of a client created with private_key_jwt");
    }
}

/// Two keys of the same algorithm (key rotation on the client side): without a kid both are
/// tried; after deleting the old credential only the new key works.
#[tokio::test]
async fn private_key_jwt_client_key_rotation() {
    let server = server_with_api().await;
    let issuer = server.issuer().to_owned();
    let old = ClientKey::rsa(Algorithm::PS256);
    let new = ClientKey::rsa(Algorithm::PS256);
    let body = json!({
        "name": unique("pkjwt-rot-"),
        "app_type": "non_interactive",
        "grant_types": ["client_credentials"],
        "client_authentication_methods": {"private_key_jwt": {"credentials": [pem_body(&old)]}},
    });
    let created = server.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
    let id = created["client_id"].as_str().unwrap().to_owned();
    let old_id = listed_credential_ids(&created).remove(0);
    server.create_grant(&id, API, &[API_SCOPE]).await;
    let new_cred = register_key(&server, &id, pem_body(&new)).await;
    let client = server.mgmt(Method::GET, &format!("/clients/{id}"), None).await.expect(200);
    assert_eq!(listed_credential_ids(&client).len(), 2, "{client}");

    for (what, key) in [("old key", &old), ("new key", &new)] {
        let a = key.sign(None, &assertion_claims(&id, &issuer, 60));
        let r = assertion_token(&server, &a, None, API).await;
        assert_eq!(r.status, 200, "{what} without kid while both are registered: {}", r.json);
    }
    server.mgmt(Method::DELETE, &format!("/clients/{id}/credentials/{old_id}"), None).await.expect(204);
    let a = old.sign(None, &assertion_claims(&id, &issuer, 60));
    assert_assertion_refused(&assertion_token(&server, &a, None, API).await, "deleted credential");
    let a = new.sign(new_cred["kid"].as_str(), &assertion_claims(&id, &issuer, 60));
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
}

/// Every rejection of Auth0's assertion rules: 401 `invalid_client`, "Invalid client assertion: …".
/// A valid assertion built the same way succeeds before and after, so each row fails for its
/// own defect only.
#[tokio::test]
async fn private_key_jwt_assertion_rejections() {
    let server = server_with_api().await;
    let issuer = server.issuer().to_owned();
    let rsa = ClientKey::rsa(Algorithm::RS256);
    let other_rsa = ClientKey::rsa(Algorithm::RS256);

    let new_pkjwt_client = |key: &ClientKey| {
        let body = json!({
            "name": unique("pkjwt-rej-"),
            "app_type": "non_interactive",
            "grant_types": ["client_credentials"],
            "client_authentication_methods": {"private_key_jwt": {"credentials": [pem_body(key)]}},
        });
        let server = &server;
        async move {
            let v = server.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
            let id = v["client_id"].as_str().unwrap().to_owned();
            server.create_grant(&id, API, &[API_SCOPE]).await;
            id
        }
    };
    let id = new_pkjwt_client(&rsa).await;
    let other_id = new_pkjwt_client(&other_rsa).await;
    let (secret_client, _) = server.create_client(&unique("secret-"), json!({})).await;
    server.create_grant(&secret_client, API, &[API_SCOPE]).await;
    let kid = rsa.thumbprint();

    let valid = || assertion_claims(&id, &issuer, 60);
    // Valid claims with some members replaced (or removed, for `Value::Null`).
    let with = |changes: &[(&str, Value)]| {
        let mut c = valid();
        for (k, v) in changes {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(*k);
            } else {
                c[*k] = v.clone();
            }
        }
        c
    };
    let now = now_secs();

    // Control: a valid assertion works (with kid, and within the clock skew on both sides).
    let a = rsa.sign(Some(&kid), &valid());
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
    let a = rsa.sign(None, &with(&[("exp", json!(now - 5))]));
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
    let a = rsa.sign(None, &with(&[("exp", json!(now + 300))]));
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);

    let signed = rsa.sign(Some(&kid), &valid());
    let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
    let tampered_signature = {
        let sig = parts[2].clone();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        format!("{}.{}.{}{}", parts[0], parts[1], flipped, &sig[1..])
    };
    let tampered_payload = {
        parts[1] = b64(&with(&[("scope", json!("admin"))]));
        parts.join(".")
    };

    let hs256_confusion = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let key = EncodingKey::from_secret(rsa.pub_pem.as_bytes()).expect("HMAC key");
        jsonwebtoken::encode(&header, &valid(), &key).unwrap()
    };
    let alg_none = format!("eyJhbGciOiJub25lIn0.{}.", b64(&valid()));
    let alg_none_with_typ = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})), b64(&valid()));

    let rows: Vec<(&str, String, Option<String>)> = vec![
        ("alg none", alg_none, None),
        ("alg none with typ and kid", alg_none_with_typ, None),
        ("HS256 signed with the public key (algorithm confusion)", hs256_confusion, None),
        ("RS384 with an RS256 credential", rsa.sign_as(Algorithm::RS384, Some(&kid), &valid()), None),
        ("wrong aud", rsa.sign(None, &with(&[("aud", json!("https://evil.example/"))])), None),
        (
            "aud without the trailing slash",
            rsa.sign(None, &with(&[("aud", json!(issuer.trim_end_matches('/')))])),
            None,
        ),
        (
            "another host's token endpoint",
            rsa.sign(None, &with(&[("aud", json!("https://evil.example/oauth/token"))])),
            None,
        ),
        ("missing aud", rsa.sign(None, &with(&[("aud", Value::Null)])), None),
        ("missing exp", rsa.sign(None, &with(&[("exp", Value::Null)])), None),
        ("expired beyond the skew", rsa.sign(None, &with(&[("exp", json!(now - 60))])), None),
        ("exp too far ahead", rsa.sign(None, &with(&[("exp", json!(now + 400))])), None),
        ("exp an hour ahead", rsa.sign(None, &with(&[("exp", json!(now + 3600))])), None),
        ("missing jti", rsa.sign(None, &with(&[("jti", Value::Null)])), None),
        ("unknown kid", rsa.sign(Some("unknown-kid-0000000"), &valid()), None),
        ("iss != sub", rsa.sign(None, &with(&[("sub", json!(other_id))])), None),
        ("missing sub", rsa.sign(None, &with(&[("sub", Value::Null)])), None),
        (
            "unknown client",
            rsa.sign(None, &with(&[("iss", json!("no-such-client-01")), ("sub", json!("no-such-client-01"))])),
            None,
        ),
        (
            "a secret-method client",
            rsa.sign(None, &with(&[("iss", json!(secret_client)), ("sub", json!(secret_client))])),
            None,
        ),
        ("another client's key", other_rsa.sign(None, &valid()), None),
        ("an unregistered key under the registered kid", other_rsa.sign(Some(&kid), &valid()), None),
        (
            "another client's iss, signed with this key",
            rsa.sign(None, &with(&[("iss", json!(other_id)), ("sub", json!(other_id))])),
            None,
        ),
        ("tampered signature", tampered_signature, None),
        ("tampered payload", tampered_payload, None),
        ("longer than 2048 bytes", rsa.sign(None, &with(&[("pad", json!("x".repeat(2100)))])), None),
        ("client_id differs from iss", rsa.sign(None, &valid()), Some(other_id.clone())),
        ("not a JWT", "not.a.jwt".to_owned(), None),
    ];
    for (what, assertion, client_id) in &rows {
        let r = assertion_token(&server, assertion, client_id.as_deref(), API).await;
        assert_assertion_refused(&r, what);
    }

    // The client still works: nothing above was counted against it as a success or broke it.
    let a = rsa.sign(None, &valid());
    assert_token_response(&assertion_token(&server, &a, Some(&id), API).await, API_SCOPE, 86_400);
}

/// `RATION_CLIENT_ASSERTION_MAX_LIFETIME_SECS` widens the accepted `exp` window.
#[tokio::test]
async fn private_key_jwt_max_lifetime_is_configurable() {
    let server = TestServer::start_with(&[], &[("RATION_CLIENT_ASSERTION_MAX_LIFETIME_SECS", "3600")]).await;
    let scopes = json!([{ "value": API_SCOPE, "description": "things" }]);
    server.create_api(API, json!({ "scopes": scopes })).await;
    let issuer = server.issuer().to_owned();
    let ec = ClientKey::ec();
    let body = json!({
        "name": unique("pkjwt-life-"),
        "app_type": "non_interactive",
        "grant_types": ["client_credentials"],
        "client_authentication_methods": {"private_key_jwt": {"credentials": [pem_body(&ec)]}},
    });
    let v = server.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
    let id = v["client_id"].as_str().unwrap().to_owned();
    server.create_grant(&id, API, &[API_SCOPE]).await;

    let a = ec.sign(None, &assertion_claims(&id, &issuer, 3000));
    assert_token_response(&assertion_token(&server, &a, None, API).await, API_SCOPE, 86_400);
    let a = ec.sign(None, &assertion_claims(&id, &issuer, 4000));
    assert_assertion_refused(&assertion_token(&server, &a, None, API).await, "exp beyond the configured lifetime");
}

// -------------------------------------------------------------------------------------------
// Brute force
// -------------------------------------------------------------------------------------------

async fn secret_token(server: &TestServer, id: &str, secret: &str) -> (Resp, Duration) {
    let start = Instant::now();
    let r = server
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("audience", API),
        ])
        .await;
    (r, start.elapsed())
}

/// Ten wrong secrets for one client: slowed from the sixth attempt, locked out from the tenth
/// on (429 + Retry-After, even with the right secret), an event is written; another client from
/// the same address is neither slowed nor locked.
#[tokio::test]
async fn brute_force_locks_out_one_client_only() {
    let server = server_with_api().await;
    let (a, a_secret) = server.create_client(&unique("victim-"), json!({})).await;
    let (b, b_secret) = server.create_client(&unique("bystander-"), json!({})).await;
    server.create_grant(&a, API, &[API_SCOPE]).await;
    server.create_grant(&b, API, &[API_SCOPE]).await;
    let wrong = format!("{a_secret}x");

    for attempt in 1..=10 {
        let (r, elapsed) = secret_token(&server, &a, &wrong).await;
        assert_unauthorized(&r, &format!("wrong secret, attempt {attempt}"));
        if attempt > 5 {
            // Failures 5..9 already counted: the endpoint slows this client down.
            assert!(
                elapsed >= Duration::from_millis(200),
                "attempt {attempt} (after {} failures) answered in {elapsed:?}; expected a delay",
                attempt - 1
            );
        }
        if attempt == 7 {
            // Meanwhile another client is served at once.
            let mut fastest = Duration::MAX;
            for _ in 0..5 {
                let (r, elapsed) = secret_token(&server, &b, &b_secret).await;
                assert_token_response(&r, API_SCOPE, 86_400);
                fastest = fastest.min(elapsed);
            }
            assert!(fastest < Duration::from_millis(250), "client B is not slowed: fastest {fastest:?}");
        }
    }

    // Locked out: even the right secret gets 429 with Retry-After.
    for (what, secret) in [("right secret", a_secret.as_str()), ("wrong secret", wrong.as_str())] {
        let (r, _) = secret_token(&server, &a, secret).await;
        assert_eq!(r.status, 429, "{what} during the lockout: {}", r.json);
        let (error, _) = assert_oauth_error_shape(&r);
        assert_eq!(error, "too_many_requests", "{}", r.json);
        let retry = r.header("retry-after").unwrap_or_else(|| panic!("Retry-After on the 429 ({what})"));
        let secs: u64 = retry.parse().unwrap_or_else(|_| panic!("Retry-After is seconds: {retry:?}"));
        assert!((1..=3600).contains(&secs), "Retry-After {secs}");
        assert!(r.json.get("access_token").is_none());
    }

    // Client B keeps working, without delay.
    let mut fastest = Duration::MAX;
    for _ in 0..5 {
        let (r, elapsed) = secret_token(&server, &b, &b_secret).await;
        assert_token_response(&r, API_SCOPE, 86_400);
        fastest = fastest.min(elapsed);
    }
    assert!(fastest < Duration::from_millis(250), "client B is not slowed after A's lockout: fastest {fastest:?}");

    // The lockout is an event.
    let deadline = Instant::now() + Duration::from_secs(10);
    let q = urlencode("type:client_auth_lockout");
    loop {
        let v = server.mgmt(Method::GET, &format!("/logs?q={q}&per_page=100"), None).await.expect(200);
        let events = v.as_array().unwrap_or_else(|| panic!("logs array: {v}")).clone();
        assert!(events.iter().all(|e| e["type"] == "client_auth_lockout"), "only lockout events: {v}");
        if events.iter().any(|e| e["client_id"] == a.as_str()) {
            assert!(!events.iter().any(|e| e["client_id"] == b.as_str()), "no lockout of B: {v}");
            break;
        }
        assert!(Instant::now() < deadline, "no client_auth_lockout event for {a}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A success before the tenth failure resets the client's count.
#[tokio::test]
async fn brute_force_success_resets_the_count() {
    let server = server_with_api().await;
    let (c, secret) = server.create_client(&unique("flaky-"), json!({})).await;
    server.create_grant(&c, API, &[API_SCOPE]).await;
    let wrong = format!("{secret}x");

    for attempt in 1..=7 {
        let (r, _) = secret_token(&server, &c, &wrong).await;
        assert_unauthorized(&r, &format!("wrong secret, attempt {attempt}"));
    }
    let (r, _) = secret_token(&server, &c, &secret).await;
    assert_token_response(&r, API_SCOPE, 86_400);

    // Without the reset, this would be failures 8..11: slowed, then locked at the tenth.
    for attempt in 1..=4 {
        let (r, elapsed) = secret_token(&server, &c, &wrong).await;
        assert_unauthorized(&r, &format!("wrong secret after the success, attempt {attempt}"));
        assert!(elapsed < Duration::from_millis(600), "not slowed after the reset: {elapsed:?} (attempt {attempt})");
    }
    let (r, _) = secret_token(&server, &c, &secret).await;
    assert_token_response(&r, API_SCOPE, 86_400);
}

// -------------------------------------------------------------------------------------------
// Transport and limits
// -------------------------------------------------------------------------------------------

/// A `ration serve` started without the harness (the harness expects `http://`).
struct RawServer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    base_url: String,
    admin: (String, String),
    _data: tempfile::TempDir,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RawServer {
    async fn start(args: &[&str]) -> RawServer {
        use std::io::{BufRead as _, Read as _};
        let data = tempfile::tempdir().expect("data dir");
        let admin = (unique("adm"), format!("{}{}", unique("S"), unique("x")));
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("RATION_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .env("RATION_BOOTSTRAP_CLIENT_ID", &admin.0)
            .env("RATION_BOOTSTRAP_CLIENT_SECRET", &admin.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ration");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        let e = stderr.clone();
        std::thread::spawn(move || {
            let mut err = err;
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let base_url = loop {
            if let Some(l) = lines.lock().unwrap().iter().find(|l| l.starts_with("listening on ")) {
                break l["listening on ".len()..].trim().to_owned();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ration exited with {status}: {}", String::from_utf8_lossy(&stderr.lock().unwrap()));
            }
            assert!(Instant::now() < deadline, "no listening line within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        RawServer { child, lines, stderr, base_url, admin, _data: data }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

/// `--tls-cert`/`--tls-key`: HTTPS with the certificate as root works, plain HTTP does not.
#[tokio::test]
async fn tls_listener_serves_https_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A self-signed end-entity certificate (CA:FALSE: webpki refuses a CA as a server certificate).
    let config = "[req]\ndistinguished_name=dn\nx509_extensions=v3\nprompt=no\n[dn]\nCN=127.0.0.1\n[v3]\n\
                  subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
                  keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.path().join("req.cnf"), config).expect("write req.cnf");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-config",
            "req.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
        ],
    );
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = RawServer::start(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).await;
    let port = server
        .base_url
        .strip_prefix("https://127.0.0.1:")
        .unwrap_or_else(|| panic!("`listening on https://127.0.0.1:PORT`, got {:?}", server.lines.lock().unwrap()));
    let port: u16 = port.parse().unwrap_or_else(|_| panic!("port in {}", server.base_url));

    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).expect("certificate");
    let https = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(20))
        .build()
        .expect("https client");
    let issuer = format!("https://127.0.0.1:{port}/");
    let audience = format!("{issuer}api/v2/");
    let form = form_body(&[
        ("grant_type", "client_credentials"),
        ("client_id", &server.admin.0),
        ("client_secret", &server.admin.1),
        ("audience", &audience),
    ]);
    let request_token = || {
        https
            .post(format!("https://127.0.0.1:{port}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
    };
    let r = request_token().await.unwrap_or_else(|e| panic!("HTTPS token request: {e:?}; {}", server.stderr()));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let token = v["access_token"].as_str().expect("access_token");
    assert_eq!(raw_claims(token)["iss"], issuer, "the issuer follows the https URL");
    let jwks: Value = https
        .get(format!("https://127.0.0.1:{port}/.well-known/jwks.json"))
        .send()
        .await
        .expect("JWKS over HTTPS")
        .json()
        .await
        .unwrap();
    verify_with_jwks(&jwks, token, &issuer, &audience);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let r = plain
        .post(format!("http://127.0.0.1:{port}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP to the TLS listener must fail, got {:?}", r.map(|r| r.status()));

    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(untrusting.get(format!("https://127.0.0.1:{port}/.well-known/jwks.json")).send().await.is_err());

    // And HTTPS keeps working afterwards.
    let r = request_token().await.expect("HTTPS after a plain-HTTP attempt");
    assert_eq!(r.status(), 200);
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns the status.
async fn read_response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status: {head}"));
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed in the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    status
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
}

fn addr(server: &TestServer) -> String {
    server.base_url().trim_start_matches("http://").to_owned()
}

/// Sends `head` in one write on a fresh connection; returns the status line's code, or `None`
/// when the server closed or reset the connection without answering.
async fn send_head(addr: &str, head: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no answer and no close within 10 s"),
        }
    }
    let line = String::from_utf8_lossy(&buf).lines().next().map(str::to_owned)?;
    line.split(' ').nth(1).and_then(|c| c.parse().ok())
}

/// A request head over 32 KiB is refused (431 or a closed connection), however it arrives; the
/// server keeps serving, and a large head under the limit is fine.
#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let mut server = TestServer::start().await;
    let (id, secret) = server.admin_credentials();
    let mgmt = server.mgmt_audience();
    let pairs = form_body(&[
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("audience", &mgmt),
    ]);
    let r = server
        .http
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-padding", "a".repeat(16 * 1024))
        .body(pairs.clone())
        .send()
        .await
        .expect("16 KiB header");
    assert_eq!(r.status(), 200, "a 16 KiB header is within the limit");

    let addr = addr(&server);
    let start = "GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    let many: String = (0..80).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(512))).collect();
    let heads = [
        ("one 40 KiB header", format!("{start}X-Padding: {}\r\n\r\n", "a".repeat(40 * 1024))),
        ("80 headers of 512 bytes (~42 KiB)", format!("{start}{many}\r\n")),
        ("one 100 KiB header", format!("{start}X-Padding: {}\r\n\r\n", "a".repeat(100 * 1024))),
    ];
    let mut outcomes = Vec::new();
    for (what, head) in &heads {
        let status = send_head(&addr, head).await;
        outcomes.push((format!("{what} ({} bytes)", head.len()), status));
    }
    assert_still_serving(&mut server).await;
    let accepted: Vec<_> = outcomes.iter().filter(|(_, s)| !matches!(s, None | Some(431))).collect();
    assert!(accepted.is_empty(), "heads over 32 KiB must get 431 or a closed connection; got {outcomes:?}");
}

/// Slow clients (`RATION_HEADER_READ_TIMEOUT_MS=500`): silent or dribbling connections are
/// closed within about a second.
#[tokio::test]
async fn slow_clients_are_disconnected() {
    let mut server = TestServer::start_with(&[], &[("RATION_HEADER_READ_TIMEOUT_MS", "500")]).await;
    let addr = addr(&server);

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // e.g. a 408 before closing
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    assert!(read.is_ok(), "a silent connection is still open after 5 s");
    assert!(elapsed < Duration::from_millis(2500), "silent connection closed after {elapsed:?}, expected ~0.5 s");
    assert!(elapsed >= Duration::from_millis(300), "closed after {elapsed:?}: before the 500 ms timeout?");

    // Sends a request head one byte every 100 ms (slowloris).
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    let head = get_request("/.well-known/jwks.json").replace("\r\n\r\n", "\r\nX-Slow: ");
    slow.write_all(head.as_bytes()).await.expect("write head start");
    let start = Instant::now();
    let closed = loop {
        if slow.write_all(b"a").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
        if start.elapsed() > Duration::from_secs(5) {
            break false;
        }
    };
    let elapsed = start.elapsed();
    assert!(closed, "a dribbling request head is still being read after 5 s");
    assert!(elapsed < Duration::from_millis(2500), "dribbling connection closed after {elapsed:?}");

    // A normal client on a fresh connection is unaffected.
    let mut ok = TcpStream::connect(&addr).await.expect("connect");
    ok.write_all(get_request("/.well-known/jwks.json").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut ok).await, 200);
    assert_still_serving(&mut server).await;
}

/// `RATION_MAX_CONNECTIONS=2`: with two connections held open, a third request waits until one
/// of them is closed, then is served.
#[tokio::test]
async fn connection_cap_makes_extra_clients_wait() {
    let server = TestServer::start_with(&[], &[("RATION_MAX_CONNECTIONS", "2")]).await;
    let addr = addr(&server);

    // Two keep-alive connections, each proven served, then held idle.
    let mut first = TcpStream::connect(&addr).await.expect("connect 1");
    first.write_all(get_request("/.well-known/jwks.json").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut first).await, 200);
    let mut second = TcpStream::connect(&addr).await.expect("connect 2");
    second.write_all(get_request("/.well-known/jwks.json").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut second).await, 200);

    // The third connects (kernel backlog) but gets no answer while both are held.
    let mut third = TcpStream::connect(&addr).await.expect("connect 3");
    third.write_all(get_request("/.well-known/jwks.json").as_bytes()).await.unwrap();
    let mut peek = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(1500), third.peek(&mut peek)).await;
    assert!(early.is_err(), "the third connection was answered while two were held: {early:?}");

    // Closing one lets it through.
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(10), read_response(&mut third))
        .await
        .expect("the third request is served once a connection closed");
    assert_eq!(status, 200);

    // The held second connection still works too.
    second.write_all(get_request("/.well-known/jwks.json").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut second).await, 200);
}

/// JSON nested deeper than 32 levels in a Management API body is a 400, also absurdly deep. A
/// JWK's extra members are ignored by the server, so nesting there fails for its depth alone.
#[tokio::test]
async fn deeply_nested_management_json_is_refused() {
    let mut server = TestServer::start().await;
    let ec = ClientKey::ec();
    let (id, _) = server.create_client(&unique("deep-"), json!({})).await;
    let arrays = |k: usize| format!("{}1{}", "[".repeat(k), "]".repeat(k));
    let objects = |k: usize| format!("{}1{}", r#"{"a":"#.repeat(k), "}".repeat(k));
    // Depth = 1 (body) + 1 (jwk) + k.
    let credential = |ext: String| {
        let jwk = ec.jwk.to_string();
        let jwk = format!(r#"{},"ext":{ext}}}"#, jwk.trim_end_matches('}'));
        format!(r#"{{"credential_type":"public_key","alg":"ES256","jwk":{jwk}}}"#).into_bytes()
    };
    let path = format!("/clients/{id}/credentials");
    for (what, body) in [("arrays, depth 33", credential(arrays(31))), ("objects, depth 33", credential(objects(31)))] {
        let r = server.mgmt_raw(Method::POST, &path, Some("application/json"), body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.json);
        assert_mgmt_error(&r, 400, "Bad Request", None);
    }
    let r = server.mgmt_raw(Method::POST, &path, Some("application/json"), credential(arrays(100_000))).await;
    assert_mgmt_error(&r, 400, "Bad Request", None);
    let body = format!(r#"{{"friendly_name":{}}}"#, arrays(100_000));
    let r = server.mgmt_raw(Method::PATCH, "/tenants/settings", Some("application/json"), body.into_bytes()).await;
    assert_mgmt_error(&r, 400, "Bad Request", None);

    // Depth 32 is fine (the extra member is ignored), and brackets inside strings are not nesting.
    let r = server.mgmt_raw(Method::POST, &path, Some("application/json"), credential(arrays(30))).await;
    assert_eq!(r.status, 201, "depth 32 is within the limit: {}", r.json);
    let body = json!({"name": unique("brackets-"), "app_type": "non_interactive", "description": "[".repeat(100)});
    server.mgmt(Method::POST, "/clients", Some(body)).await.expect(201);
    assert_still_serving(&mut server).await;
}
