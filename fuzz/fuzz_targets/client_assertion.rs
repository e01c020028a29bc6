//! `private_key_jwt` (RFC 7523): key registration and the assertion path up to the first I/O.
//!
//! `ration_server::client_keys::authenticate` needs the server state (catalog, store) and awaits
//! the single-use `jti` record, so its steps before any I/O are repeated here exactly as it takes
//! them: size cap, `jsonwebtoken::decode_header`, the alg allow-list, the unverified payload
//! decode for `iss`, then signature verification against keys produced by the real
//! `client_keys::register`, with the server's `Validation`.
//!
//! Byte 0: low 3 bits pick the mode, bits 4-5 the algorithm for modes 3 and 4.
//! - 0: the rest is a compact JWT (`client_assertion`);
//! - 1: a `POST /api/v2/clients/{id}/credentials` body (`CredentialBody` via `parse_body`,
//!   `into_new`, `register`), also parsed as a `CredentialPatch` and applied;
//! - 2: a `client_authentication_methods` body (`ClientAuthMethodsBody`);
//! - 3: PEM text registered as a key;
//! - 4: JSON registered as a JWK;
//! - 5: a JWT payload, signed here with the fixture's private key: a correctly signed assertion
//!   must verify whatever its claims, as long as they are a JSON object.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use libfuzzer_sys::fuzz_target;
use ration_domain::{ClientCredential, UnixTime};
use ration_proto::mgmt::{
    CREDENTIAL_ALGS, ClientAuthMethodsBody, CredentialBody, CredentialPatch, KeyMaterial, NewCredential,
    credential_view, parse_body,
};
use ration_server::client_keys::register;
use serde_json::{Map, Value};

/// Test keys, generated for this fuzz target only (never used anywhere else).
const EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJcwUifin+HDdH+ox
dg5or77s+TQAqoR54GtxOij4gFmhRANCAAQ2Z+xzvPU/hHk6yK8Q8gupX4sACTiG
7z5SQV8apvlI7NaBXXiIAWmNpFJO+rpeWwEEhAt4cf2xn/1q791zfbAG
-----END PRIVATE KEY-----
";
const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENmfsc7z1P4R5OsivEPILqV+LAAk4
hu8+UkFfGqb5SOzWgV14iAFpjaRSTvq6XlsBBIQLeHH9sZ/9au/dc32wBg==
-----END PUBLIC KEY-----
";
const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvt8QYahEZ+sF8BZQqAfn
VNgeEKXx5qQdfNRnraCgCqrJqdgMNI5XCcPdd+d6ybW+xzF3rueK8A4V2kNR2RYz
h5QM1eonsrvfrYPRy3t1JtvPjDo9CSdtXCYfo9AY5XpQDadbZsLcHAdeQvL8lQTx
mjN76Wf3h222F9yKTAAjXIqBAd0lsSLE26LGtLCkz6Nup+bNO3fBsKt28S7uygeE
KoErJ+Sii/YeOcZUeJiTbCZNy65IMRsU0Pxu9IFoQ5aakN0S3txi6A5Z6LkDhmlR
KCbVM5MgyILez4BSm7c0uVMCZMpz+F6ddlWIJc8XKmInI7HtRr9qz5VXDdFmXl7p
bQIDAQAB
-----END PUBLIC KEY-----
";

/// `client_keys::MAX_ASSERTION_BYTES` and `MAX_CLAIM_LEN` (private there).
const MAX_ASSERTION_BYTES: usize = 2048;
const MAX_CLAIM_LEN: usize = 64;
const CLIENT_ID: &str = "fuzzclient0000000000000000000000";

fn now() -> UnixTime {
    UnixTime::from_secs(1_767_225_600) // 2026-01-01T00:00:00Z
}

struct Fixture {
    /// The client's registered keys: ES256 and, for RS256/RS384/PS256, the same RSA key.
    credentials: Vec<ClientCredential>,
    ec_signer: EncodingKey,
    ec_kid: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let credentials: Vec<ClientCredential> = [("ES256", EC_PUBLIC_PEM)]
            .into_iter()
            .chain(["RS256", "RS384", "PS256"].map(|alg| (alg, RSA_PUBLIC_PEM)))
            .enumerate()
            .map(|(i, (alg, pem))| {
                let new = new_credential(alg, KeyMaterial::Pem(pem.to_owned()));
                register(new, format!("cred_{i}"), CLIENT_ID, now())
                    .unwrap_or_else(|e| panic!("fixture key {alg} refused: {}", e.0))
            })
            .collect();
        let ec_kid = credentials[0].kid.clone();
        let pkcs8: String = EC_PRIVATE_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
        let ec_signer = EncodingKey::from_ec_der(&STANDARD.decode(pkcs8).expect("fixture EC key is base64"));
        Fixture { credentials, ec_signer, ec_kid }
    })
}

fn new_credential(alg: &str, key: KeyMaterial) -> NewCredential {
    NewCredential { name: "fuzz".to_owned(), alg: alg.to_owned(), key, expires_at: None, kid: None }
}

/// `register`, plus what must hold for anything it accepts: the stored JWK is one the verifier
/// can load, in the credential's algorithm, and the credential's view renders.
fn register_checked(new: NewCredential) -> Option<ClientCredential> {
    let alg = new.alg.clone();
    let credential = register(new, "cred_fuzz".to_owned(), CLIENT_ID, now()).ok()?;
    assert_eq!(credential.alg, alg);
    assert!(CREDENTIAL_ALGS.contains(&credential.alg.as_str()));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&credential.jwk)
        .unwrap_or_else(|e| panic!("stored JWK does not load ({e}): {}", credential.jwk));
    let stored: Value = serde_json::from_str(&credential.jwk).expect("stored JWK is JSON");
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(stored.get(private).is_none(), "stored JWK keeps private member {private}: {stored}");
    }
    DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("registered key is unusable ({e}): {}", credential.jwk));
    let _ = credential_view(&credential).to_string();
    Some(credential)
}

/// What `client_keys::authenticate` does before its first I/O; `Some(claims)` when the
/// signature verifies with one of the client's keys.
fn authenticate_offline(assertion: &str, claimed_id: Option<&str>) -> Option<Value> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return None;
    }
    let header = jsonwebtoken::decode_header(assertion).ok()?;
    let alg = format!("{:?}", header.alg);
    if !CREDENTIAL_ALGS.contains(&alg.as_str()) {
        return None;
    }
    let unverified: Value =
        assertion.split('.').nth(1).and_then(|p| B64.decode(p).ok()).and_then(|b| serde_json::from_slice(&b).ok())?;
    let iss = unverified.get("iss").and_then(Value::as_str)?;
    if iss.len() > MAX_CLAIM_LEN || claimed_id.is_some_and(|id| id != iss) || iss != CLIENT_ID {
        return None;
    }
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    fixture()
        .credentials
        .iter()
        .filter(|c| !c.is_expired(now()) && c.alg == alg)
        .filter(|c| header.kid.as_deref().is_none_or(|kid| kid == c.kid))
        .find_map(|c| {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&c.jwk).ok()?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            jsonwebtoken::decode::<Value>(assertion, &key, &validation).ok().map(|d| d.claims)
        })
}

/// How many names a JSON object has, repeats included.
fn top_level_names(json: &[u8]) -> Option<usize> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
    use serde::Deserializer as _;
    serde_json::Deserializer::from_slice(json).deserialize_map(Count).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let alg = CREDENTIAL_ALGS[usize::from(selector >> 4) % CREDENTIAL_ALGS.len()];
    match selector & 0x07 {
        0 => {
            let assertion = String::from_utf8_lossy(rest);
            let _ = authenticate_offline(&assertion, None);
            let _ = authenticate_offline(&assertion, Some(CLIENT_ID));
        }
        1 => {
            if let Ok(body) = parse_body::<CredentialBody>(rest)
                && let Ok(new) = body.into_new("")
            {
                register_checked(new);
            }
            if let Ok(patch) = parse_body::<CredentialPatch>(rest) {
                let mut credential = fixture().credentials[0].clone();
                let before = credential.clone();
                if patch.apply(&mut credential, now()).is_err() {
                    assert_eq!(credential, before, "a refused credential PATCH changed the credential");
                }
                let _ = credential_view(&credential).to_string();
            }
        }
        2 => {
            if let Ok(methods) = parse_body::<ClientAuthMethodsBody>(rest) {
                if let Ok(new) = methods.new_credentials() {
                    assert!((1..=ration_proto::mgmt::MAX_CREDENTIALS).contains(&new.len()));
                    for n in new {
                        register_checked(n);
                    }
                }
                let _ = methods.referenced_ids();
            }
        }
        3 => {
            let pem = String::from_utf8_lossy(rest).into_owned();
            register_checked(new_credential(alg, KeyMaterial::Pem(pem)));
        }
        4 => {
            if let Ok(jwk) = serde_json::from_slice::<Value>(rest) {
                register_checked(new_credential(alg, KeyMaterial::Jwk(jwk)));
            }
        }
        5 => {
            let f = fixture();
            let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, f.ec_kid);
            let message = format!("{}.{}", B64.encode(header), B64.encode(rest));
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &f.ec_signer, Algorithm::ES256)
                .expect("signing with the fixture key");
            let assertion = format!("{message}.{signature}");
            let claims = authenticate_offline(&assertion, Some(CLIENT_ID));
            // A correctly signed assertion from the client gets past verification whenever its
            // payload is a JSON object naming the client (the claim rules come after). An object
            // that repeats a name is refused (RFC 7519 §4 allows either), so it proves nothing.
            let payload = serde_json::from_slice::<Map<String, Value>>(rest).ok();
            let names_client = payload.as_ref().and_then(|p| p.get("iss")).and_then(Value::as_str) == Some(CLIENT_ID);
            let unique = payload.as_ref().is_some_and(|p| top_level_names(rest) == Some(p.len()));
            // jsonwebtoken 12 also refuses an `exp`, `nbf` or `sub` that is a non-empty array or
            // object (its lenient claim parsing loses its place in the JSON). The server needs a
            // number there (a string for `sub`) and refuses such an assertion anyway.
            let container = |name: &str| match payload.as_ref().and_then(|p| p.get(name)) {
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                _ => false,
            };
            let plain = !["exp", "nbf", "sub"].into_iter().any(container);
            if assertion.len() <= MAX_ASSERTION_BYTES && names_client && unique && plain {
                let claims =
                    claims.unwrap_or_else(|| panic!("a correctly signed assertion did not verify: {assertion}"));
                assert_eq!(Some(&claims), payload.map(Value::Object).as_ref());
            }
        }
        _ => {}
    }
});
