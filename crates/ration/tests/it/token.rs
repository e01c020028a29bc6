//! `POST /oauth/token`: success in every encoding, every error as a table row, claims, JWKS
//! verification for each signing algorithm, discovery.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::harness::*;

const API: &str = "https://api.example.com/orders";
const API_SCOPES: &[&str] = &["read:orders", "write:orders", "admin:orders"];
const GRANTED: &[&str] = &["read:orders", "write:orders"];
const NOT_ALLOWED: &str = "Grant type 'client_credentials' not allowed for the client.";
const NO_AUDIENCE: &str = "No audience parameter was provided, and no default audience has been configured";

/// How the request is encoded and where the client secret goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enc {
    FormPost,
    JsonPost,
    FormBasic,
    JsonBasic,
}

pub const ALL_ENCS: &[Enc] = &[Enc::FormPost, Enc::JsonPost, Enc::FormBasic, Enc::JsonBasic];
const FORM_ENCS: &[Enc] = &[Enc::FormPost, Enc::FormBasic];
const POST_ENCS: &[Enc] = &[Enc::FormPost, Enc::JsonPost];
const JSON_ENCS: &[Enc] = &[Enc::JsonPost, Enc::JsonBasic];

impl Enc {
    pub fn is_basic(self) -> bool {
        matches!(self, Enc::FormBasic | Enc::JsonBasic)
    }

    /// The client's `token_endpoint_auth_method` matching this encoding.
    pub fn auth_method(self) -> &'static str {
        if self.is_basic() { "client_secret_basic" } else { "client_secret_post" }
    }
}

fn json_object(pairs: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        assert!(m.insert(k.to_string(), json!(v)).is_none(), "JSON rows cannot repeat {k}");
    }
    Value::Object(m)
}

/// Builds a request: `params` in the body; credentials (when `creds` is set) in the body for
/// the post encodings and in `Authorization: Basic` for the basic ones.
pub fn build(enc: Enc, creds: Option<(&str, &str)>, params: &[(&str, &str)]) -> TokenReq {
    let mut body: Vec<(&str, &str)> = params.to_vec();
    match enc {
        Enc::FormPost | Enc::JsonPost => {
            if let Some((id, secret)) = creds {
                body.push(("client_id", id));
                body.push(("client_secret", secret));
            }
            if enc == Enc::FormPost { TokenReq::Form(owned_pairs(&body)) } else { TokenReq::Json(json_object(&body)) }
        }
        Enc::FormBasic | Enc::JsonBasic => {
            let (id, secret) = creds.expect("basic rows have credentials");
            if enc == Enc::FormBasic {
                TokenReq::BasicForm { id: id.into(), secret: secret.into(), pairs: owned_pairs(&body) }
            } else {
                TokenReq::BasicJson { id: id.into(), secret: secret.into(), body: json_object(&body) }
            }
        }
    }
}

/// Clients of each kind, one per secret method.
pub struct Fixture {
    pub server: TestServer,
    good: [(String, String); 2],
    paused: [(String, String); 2],
    no_grant: [(String, String); 2],
}

fn idx(enc: Enc) -> usize {
    usize::from(enc.is_basic())
}

impl Fixture {
    pub async fn new() -> Fixture {
        let server = TestServer::start().await;
        let scopes: Vec<Value> = API_SCOPES.iter().map(|s| json!({ "value": s, "description": s })).collect();
        server.create_api(API, json!({ "scopes": scopes })).await;
        let mut good = Vec::new();
        let mut paused = Vec::new();
        let mut no_grant = Vec::new();
        for method in [Enc::FormPost.auth_method(), Enc::FormBasic.auth_method()] {
            let extra = json!({ "token_endpoint_auth_method": method });
            let g = server.create_client(&format!("good {method}"), extra.clone()).await;
            server.create_grant(&g.0, API, GRANTED).await;
            let p = server.create_client(&format!("paused {method}"), extra.clone()).await;
            server.create_grant(&p.0, API, GRANTED).await;
            let r = server.mgmt(Method::PATCH, &format!("/clients/{}", p.0), Some(json!({ "grant_types": [] }))).await;
            assert_eq!(r.expect(200)["grant_types"], json!([]));
            let n = server.create_client(&format!("no grant {method}"), extra).await;
            good.push(g);
            paused.push(p);
            no_grant.push(n);
        }
        let arr = |v: Vec<(String, String)>| -> [(String, String); 2] { v.try_into().unwrap() };
        Fixture { server, good: arr(good), paused: arr(paused), no_grant: arr(no_grant) }
    }

    pub fn good(&self, enc: Enc) -> (&str, &str) {
        let (a, b) = &self.good[idx(enc)];
        (a, b)
    }
    fn paused(&self, enc: Enc) -> (&str, &str) {
        let (a, b) = &self.paused[idx(enc)];
        (a, b)
    }
    fn no_grant(&self, enc: Enc) -> (&str, &str) {
        let (a, b) = &self.no_grant[idx(enc)];
        (a, b)
    }
}

#[tokio::test]
async fn token_success_every_encoding_and_secret_method() {
    let fx = Fixture::new().await;
    let s = &fx.server;
    for &enc in ALL_ENCS {
        let (id, secret) = fx.good(enc);
        // Default scope: everything the grant holds, in the grant's order.
        let r =
            build(enc, Some((id, secret)), &[("grant_type", "client_credentials"), ("audience", API)]).send(s).await;
        let t = assert_token_response(&r, "read:orders write:orders", 86400);
        assert_jose_header(&t, "RS256");
        let (_, claims) = s.verify(&t, API).await;
        assert_cc_claims(&claims, s.issuer(), id, API, "read:orders write:orders", 86400);

        // A subset on request.
        let r = build(
            enc,
            Some((id, secret)),
            &[("grant_type", "client_credentials"), ("audience", API), ("scope", "write:orders")],
        )
        .send(s)
        .await;
        let t = assert_token_response(&r, "write:orders", 86400);
        let (_, claims) = s.verify(&t, API).await;
        assert_cc_claims(&claims, s.issuer(), id, API, "write:orders", 86400);
    }
}

#[tokio::test]
async fn token_ids_are_unique_per_token() {
    let fx = Fixture::new().await;
    let s = &fx.server;
    let (id, secret) = fx.good(Enc::FormPost);
    let a = raw_claims(&s.access_token(id, secret, API).await);
    let b = raw_claims(&s.access_token(id, secret, API).await);
    assert_ne!(a["jti"], b["jti"], "jti differs between tokens");
}

/// (name, credentials, body parameters, status, error, error_description).
type Row<'a> = (&'a str, Option<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, u16, &'a str, Desc);

#[tokio::test]
async fn token_errors_table() {
    let fx = Fixture::new().await;
    let s = &fx.server;
    let cc = ("grant_type", "client_credentials");
    let aud = ("audience", API);
    let nope = "https://nope.example.com/";

    for &enc in ALL_ENCS {
        let (id, secret) = fx.good(enc);
        let (pid, psecret) = fx.paused(enc);
        let (nid, nsecret) = fx.no_grant(enc);
        let wrong = format!("{secret}x");
        let no_grant_desc = format!("Client \"{nid}\" is not authorized to access resource server \"{API}\"");

        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("wrong secret", Some((id, &wrong)), vec![cc, aud], 401, "access_denied", Desc::is("Unauthorized")),
            ("unknown client", Some(("no-such-client", secret)), vec![cc, aud], 401, "access_denied", Desc::is("Unauthorized")),
            ("wrong secret beats unknown audience", Some((id, &wrong)), vec![cc, ("audience", nope)], 401, "access_denied", Desc::is("Unauthorized")),
            ("paused client", Some((pid, psecret)), vec![cc, aud], 403, "unauthorized_client", Desc::is(NOT_ALLOWED)),
            ("paused client, unknown audience", Some((pid, psecret)), vec![cc, ("audience", nope)], 403, "unauthorized_client", Desc::is(NOT_ALLOWED)),
            ("unknown audience", Some((id, secret)), vec![cc, ("audience", nope)], 403, "access_denied", Desc::is(format!("Service not enabled within domain: {nope}"))),
            ("no client grant", Some((nid, nsecret)), vec![cc, aud], 403, "access_denied", Desc::starts(no_grant_desc.clone())),
            ("ungranted scope", Some((id, secret)), vec![cc, aud, ("scope", "read:orders admin:orders")], 403, "access_denied", Desc::is("Client has not been granted scopes: admin:orders")),
            ("undefined scopes", Some((id, secret)), vec![cc, aud, ("scope", "delete:everything read:orders admin:orders")], 403, "access_denied", Desc::is("Client has not been granted scopes: delete:everything admin:orders")),
            ("no audience, no default", Some((id, secret)), vec![cc], 403, "access_denied", Desc::is(NO_AUDIENCE)),
            ("missing grant_type", Some((id, secret)), vec![aud], 400, "invalid_request", Desc::is("Missing required parameter: grant_type")),
            ("password grant", Some((id, secret)), vec![("grant_type", "password"), aud], 400, "unsupported_grant_type", Desc::is("Grant type not supported")),
            ("authorization_code grant", Some((id, secret)), vec![("grant_type", "authorization_code"), aud], 400, "unsupported_grant_type", Desc::is("Grant type not supported")),
            ("unknown grant", Some((id, secret)), vec![("grant_type", "urn:example:nope"), aud], 400, "unsupported_grant_type", Desc::is("Grant type not supported")),
        ];
        for (name, creds, params, status, error, desc) in rows {
            eprintln!("row: {name} / {enc:?}");
            check_token_error(s, &build(enc, creds, &params), status, error, &desc).await;
        }
    }

    // Repeated parameters: form bodies only (JSON objects are checked in bad_input).
    for &enc in FORM_ENCS {
        let (id, secret) = fx.good(enc);
        for (name, params) in [
            ("audience", vec![cc, aud, aud]),
            ("audience", vec![cc, aud, ("audience", "https://other.example.com/")]),
            ("grant_type", vec![cc, cc, aud]),
            ("scope", vec![cc, aud, ("scope", "read:orders"), ("scope", "write:orders")]),
        ] {
            eprintln!("row: duplicate {name} / {enc:?}");
            let req = build(enc, Some((id, secret)), &params);
            check_token_error(s, &req, 400, "invalid_request", &Desc::is(format!("Duplicate parameter: {name}"))).await;
        }
    }
    let (id, secret) = fx.good(Enc::FormPost);
    for (name, pairs) in [
        ("client_id", vec![cc, aud, ("client_id", id), ("client_id", id), ("client_secret", secret)]),
        ("client_secret", vec![cc, aud, ("client_id", id), ("client_secret", secret), ("client_secret", secret)]),
    ] {
        let req = TokenReq::Form(owned_pairs(&pairs));
        check_token_error(s, &req, 400, "invalid_request", &Desc::is(format!("Duplicate parameter: {name}"))).await;
    }

    // Missing credentials in the body.
    for &enc in POST_ENCS {
        let to = |p: &[(&str, &str)]| {
            if enc == Enc::FormPost { TokenReq::Form(owned_pairs(p)) } else { TokenReq::Json(json_object(p)) }
        };
        eprintln!("row: missing client_id / {enc:?}");
        check_token_error(s, &to(&[cc, aud]), 400, "invalid_request", &Desc::contains("client_id")).await;
        // A client_id without any secret is a failed client authentication (other methods, e.g.
        // Basic or private_key_jwt, carry no client_secret parameter), not a malformed request.
        eprintln!("row: missing client_secret / {enc:?}");
        check_token_error(s, &to(&[cc, aud, ("client_id", id)]), 401, "access_denied", &Desc::is("Unauthorized")).await;
    }

    // Malformed JSON parameter types name the parameter.
    for &enc in JSON_ENCS {
        let (id, secret) = fx.good(enc);
        for (param, value) in
            [("audience", json!(123)), ("scope", json!(5)), ("grant_type", json!(["client_credentials"]))]
        {
            let mut body = json!({ "grant_type": "client_credentials", "audience": API });
            body[param] = value;
            let req = if enc == Enc::JsonPost {
                body["client_id"] = json!(id);
                body["client_secret"] = json!(secret);
                TokenReq::Json(body)
            } else {
                TokenReq::BasicJson { id: id.into(), secret: secret.into(), body }
            };
            eprintln!("row: malformed {param} / {enc:?}");
            check_token_error(s, &req, 400, "invalid_request", &Desc::contains(param)).await;
        }
    }
}

#[tokio::test]
async fn default_audience_from_tenant_settings() {
    let fx = Fixture::new().await;
    let s = &fx.server;
    let r = s.mgmt(Method::PATCH, "/tenants/settings", Some(json!({ "default_audience": API }))).await;
    assert_eq!(r.expect(200)["default_audience"], API);
    for &enc in ALL_ENCS {
        let (id, secret) = fx.good(enc);
        let r = build(enc, Some((id, secret)), &[("grant_type", "client_credentials")]).send(s).await;
        let t = assert_token_response(&r, "read:orders write:orders", 86400);
        let (_, claims) = s.verify(&t, API).await;
        assert_cc_claims(&claims, s.issuer(), id, API, "read:orders write:orders", 86400);
    }
}

#[tokio::test]
async fn token_lifetime_comes_from_the_api() {
    let s = TestServer::start().await;
    let aud = "https://short-lived.example.com/";
    let api =
        s.create_api(aud, json!({ "token_lifetime": 3600, "scopes": [{ "value": "x:y", "description": "x" }] })).await;
    assert_eq!(api["token_lifetime"], 3600);
    let (id, secret) = s.create_client("short", json!({})).await;
    s.create_grant(&id, aud, &["x:y"]).await;
    let r = s
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("audience", aud),
        ])
        .await;
    let t = assert_token_response(&r, "x:y", 3600);
    let (_, claims) = s.verify(&t, aud).await;
    assert_cc_claims(&claims, s.issuer(), &id, aud, "x:y", 3600);
}

#[tokio::test]
async fn tokens_verify_against_jwks_for_each_algorithm() {
    let s = TestServer::start().await;
    let (id, secret) = s.create_client("alg tester", json!({})).await;

    // Default signing_alg is RS256, default lifetime 86400.
    let default_aud = "https://default-alg.example.com/";
    let api = s.create_api(default_aud, json!({ "scopes": [{ "value": "read:x", "description": "r" }] })).await;
    assert_eq!(api["signing_alg"], "RS256");
    assert_eq!(api["token_lifetime"], 86400);
    s.create_grant(&id, default_aud, &["read:x"]).await;
    let t = s.access_token(&id, &secret, default_aud).await;
    assert_jose_header(&t, "RS256");
    let (h, claims) = s.verify(&t, default_aud).await;
    assert_eq!(h.alg, jsonwebtoken::Algorithm::RS256);
    assert_cc_claims(&claims, s.issuer(), &id, default_aud, "read:x", 86400);

    for (alg, kty, crv) in [
        ("RS256", "RSA", None),
        ("RS512", "RSA", None),
        ("PS256", "RSA", None),
        ("ES256", "EC", Some("P-256")),
        ("EdDSA", "OKP", Some("Ed25519")),
    ] {
        let aud = format!("https://{}.example.com/", alg.to_lowercase());
        let api = s
            .create_api(&aud, json!({ "signing_alg": alg, "scopes": [{ "value": "read:x", "description": "r" }] }))
            .await;
        assert_eq!(api["signing_alg"], alg);
        s.create_grant(&id, &aud, &["read:x"]).await;
        let r = s
            .token_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("audience", &aud),
            ])
            .await;
        let t = assert_token_response(&r, "read:x", 86400);
        assert_jose_header(&t, alg);
        let (h, claims) = s.verify(&t, &aud).await;
        assert_eq!(format!("{:?}", h.alg), alg);
        assert_cc_claims(&claims, s.issuer(), &id, &aud, "read:x", 86400);
        let jwks = s.jwks().await;
        let kid = raw_header(&t)["kid"].as_str().unwrap().to_owned();
        let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap();
        assert_eq!(jwk["kty"], kty, "key type for {alg}: {jwk}");
        if let Some(crv) = crv {
            assert_eq!(jwk["crv"], crv, "curve for {alg}: {jwk}");
        }
    }

    // HS256 with a generated secret: read it back from the Management API.
    let hs_aud = "https://hs256.example.com/";
    let api = s
        .create_api(hs_aud, json!({ "signing_alg": "HS256", "scopes": [{ "value": "read:x", "description": "r" }] }))
        .await;
    s.create_grant(&id, hs_aud, &["read:x"]).await;
    let got =
        s.mgmt(Method::GET, &format!("/resource-servers/{}", api["id"].as_str().unwrap()), None).await.expect(200);
    let hs_secret = got["signing_secret"].as_str().unwrap_or_else(|| panic!("HS256 API has a signing_secret: {got}"));
    assert!(hs_secret.len() >= 16, "signing_secret at least 16 chars");
    let t = s.access_token(&id, &secret, hs_aud).await;
    assert_jose_header(&t, "HS256");
    let (_, claims) = verify_hs256(&t, hs_secret, s.issuer(), hs_aud);
    assert_cc_claims(&claims, s.issuer(), &id, hs_aud, "read:x", 86400);

    // HS256 with a secret chosen by the operator.
    let hs2_aud = "https://hs256-own.example.com/";
    let own = "an-operator-chosen-secret-0123456789";
    s.create_api(
        hs2_aud,
        json!({ "signing_alg": "HS256", "signing_secret": own, "scopes": [{ "value": "read:x", "description": "r" }] }),
    )
    .await;
    s.create_grant(&id, hs2_aud, &["read:x"]).await;
    let t = s.access_token(&id, &secret, hs2_aud).await;
    assert_jose_header(&t, "HS256");
    let (_, claims) = verify_hs256(&t, own, s.issuer(), hs2_aud);
    assert_cc_claims(&claims, s.issuer(), &id, hs2_aud, "read:x", 86400);

    // The JWKS never publishes symmetric or private material.
    let jwks = s.jwks().await;
    assert_public_jwks(&jwks);
    for k in jwks["keys"].as_array().unwrap() {
        assert_ne!(k["kty"], "oct", "no symmetric keys in the JWKS");
    }
}

#[tokio::test]
async fn admin_token_carries_every_management_scope() {
    let s = TestServer::start().await;
    let (id, secret) = s.admin_credentials();
    let r = s
        .token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("audience", &s.mgmt_audience()),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let scope = r.json["scope"].as_str().expect("scope").to_owned();
    let granted: Vec<&str> = scope.split(' ').collect();
    for m in MANAGEMENT_SCOPES {
        assert!(granted.contains(m), "admin token lacks {m}: {scope}");
    }
    let t = r.json["access_token"].as_str().unwrap();
    let (_, claims) = s.verify(t, &s.mgmt_audience()).await;
    assert_cc_claims(&claims, s.issuer(), &id, &s.mgmt_audience(), &scope, 86400);
    assert!(s.issuer().starts_with("http://127.0.0.1:"), "default issuer is http://<listen>/");
    assert_eq!(s.issuer(), format!("{}/", s.base_url()));
}

#[tokio::test]
async fn discovery_documents_and_jwks() {
    let s = TestServer::start().await;
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.json);
        r.assert_json_content_type();
        let d = &r.json;
        assert_eq!(d["issuer"], s.issuer(), "{path}");
        assert_eq!(d["token_endpoint"], format!("{}oauth/token", s.issuer()), "{path}");
        assert_eq!(d["jwks_uri"], format!("{}.well-known/jwks.json", s.issuer()), "{path}");
        let grants: Vec<&str> = d["grant_types_supported"]
            .as_array()
            .expect("grant_types_supported")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(grants.contains(&"client_credentials"), "{path}: {d}");
        let methods: Vec<&str> = d["token_endpoint_auth_methods_supported"]
            .as_array()
            .expect("token_endpoint_auth_methods_supported")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(methods.contains(&"client_secret_basic"), "{path}: {d}");
        assert!(methods.contains(&"client_secret_post"), "{path}: {d}");
        // The advertised endpoints work.
        let jwks = s.http.get(d["jwks_uri"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(jwks.status(), 200);
    }
    let jwks = s.jwks().await;
    assert_public_jwks(&jwks);
}
