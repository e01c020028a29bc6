//! Custom claims set by Actions, on their way into the access token.
//!
//! The rules for claim names (`ration_actions` `claims.rs`) are private to the crate, so they
//! are reached through the real pool: an Action calls `api.accessToken.setCustomClaim` for every
//! entry of a fuzzed JSON object, and a second Action sets them again from
//! `event.accessToken.customClaims` (as chained Actions see them). What comes out goes through
//! a copy of the token path's claims assembly (`server::token::mint`, private: its `Claims`
//! struct with the custom claims flattened in, and its `STANDARD_CLAIMS` filter) and is signed
//! and verified with the server's real `KeyRing` (ES256 and HS256).
//!
//! Byte 0, bit 0: through the Action pool (slow, about a millisecond) or straight into the
//! claims assembly (every JSON object an Action could produce, reserved names included). The
//! rest is JSON.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use ration_actions::{ActionCode, ActionPool, FetchPolicy, Job, JobOutcome, Limits};
use ration_domain::{SigningAlg, UnixTime};
use ration_server::keys::{KeyRing, MasterKey, SigningKey};
use ration_store::StoredKey;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// `server::token::STANDARD_CLAIMS`.
const STANDARD_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "iat", "exp", "scope", "gty", "azp", "jti", "org_id", "org_name"];
/// `ration_actions::claims::MAX_CLAIMS_BYTES`.
const MAX_CLAIMS_BYTES: usize = 100 * 1024;
const HS_SECRET: &str = "fuzz-hs256-secret-0123456789abcdef";

/// `server::token::Claims`, field for field.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
    scope: &'a str,
    gty: &'static str,
    azp: &'a str,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_name: Option<&'a str>,
    #[serde(flatten)]
    custom: &'a Map<String, Value>,
}

const FILL_CLAIMS: &str = r#"
exports.onExecuteCredentialsExchange = async (event, api) => {
  const claims = event.request.body.fuzz;
  if (claims !== null && typeof claims === 'object' && !Array.isArray(claims)) {
    for (const [name, value] of Object.entries(claims)) api.accessToken.setCustomClaim(name, value);
  }
};
"#;

const COPY_CLAIMS: &str = r#"
exports.onExecuteCredentialsExchange = async (event, api) => {
  for (const [name, value] of Object.entries(event.accessToken.customClaims || {})) {
    api.accessToken.setCustomClaim(name, value);
  }
};
"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    pool: ActionPool,
    actions: Vec<Arc<ActionCode>>,
    keys: KeyRing,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let limits = Limits { timeout: Duration::from_secs(5), ..Limits::default() };
        let pool = runtime.block_on(async { ActionPool::start(1, limits, FetchPolicy::default()) }).expect("pool");
        let action = |id: &str, code: &str| {
            Arc::new(ActionCode { id: id.into(), name: id.into(), code: Arc::from(code), secrets: Vec::new() })
        };
        let actions = vec![action("fill", FILL_CLAIMS), action("copy", COPY_CLAIMS)];

        let now = UnixTime::from_secs(1_767_225_600);
        let master = MasterKey::from_hex(&"42".repeat(32)).expect("master key");
        let (key, pkcs8) = SigningKey::generate(SigningAlg::ES256, now).expect("ES256 key");
        let stored = StoredKey {
            kid: key.kid.clone(),
            alg: SigningAlg::ES256,
            sealed_private_key: master.seal(&pkcs8, key.kid.as_bytes()).expect("seal"),
            state: "current".into(),
            created_at: now,
            state_changed_at: now,
        };
        let keys = KeyRing::open(&[stored], &master, now, 86_400).expect("key ring");
        Fixture { runtime, pool, actions, keys }
    })
}

/// Runs the two Actions over `claims`, as the token path would.
fn through_actions(claims: Value) -> Option<Map<String, Value>> {
    let f = fixture();
    let event = json!({
        "accessToken": {"customClaims": {}, "scope": ["read:things"]},
        "client": {"client_id": "client_fuzz", "name": "Fuzz", "metadata": {}},
        "request": {"body": {"grant_type": "client_credentials", "fuzz": claims}, "method": "POST"},
        "resource_server": {"identifier": "https://api.example.com/"},
        "tenant": {"id": "ration"},
        "transaction": {"requested_scopes": [], "target_scopes": ["read:things"]},
    });
    let job = Job { actions: f.actions.clone(), event, now_millis: 1_767_225_600_000 };
    match f.runtime.block_on(f.pool.run(job)) {
        JobOutcome::Allowed { custom_claims, .. } => Some(custom_claims),
        JobOutcome::Denied { .. } => panic!("the Actions never deny"),
        // Over the size cap, or a value JSON cannot carry: the token request fails cleanly.
        JobOutcome::Failed { error, .. } => {
            assert!(!error.contains("worker unavailable"), "the Action worker died: {error}");
            None
        }
    }
}

/// `server::token::mint` up to the signature, then the signature and its verification.
fn mint_and_verify(custom: &Map<String, Value>, with_org: bool) {
    let filtered: Map<String, Value>;
    let custom = if custom.keys().any(|k| STANDARD_CLAIMS.contains(&k.as_str())) {
        filtered = custom
            .iter()
            .filter(|(k, _)| !STANDARD_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        &filtered
    } else {
        custom
    };
    let claims = Claims {
        iss: "https://ration.example.com/",
        sub: "client_fuzz@clients".into(),
        aud: "https://api.example.com/",
        iat: 1_767_225_600,
        exp: 1_767_225_600 + 86_400,
        scope: "read:things write:things",
        gty: "client-credentials",
        azp: "client_fuzz",
        jti: "AAAAAAAAAAAAAAAAAAAAAA",
        org_id: with_org.then_some("org_fuzz"),
        org_name: with_org.then_some("acme"),
        custom,
    };
    let json = serde_json::to_vec(&claims).expect("claims serialize");
    let expected = serde_json::to_value(&claims).expect("claims as a value");
    // Every claim appears exactly once in the token: a custom claim can neither repeat nor
    // replace a standard one.
    let payload: Map<String, Value> = serde_json::from_slice(&json).expect("claims JSON parses");
    let standard = if with_org { 11 } else { 9 };
    assert_eq!(payload.len(), standard + custom.len(), "a claim appears twice: {}", String::from_utf8_lossy(&json));
    for name in &STANDARD_CLAIMS[..standard] {
        assert_eq!(payload.get(*name), expected.get(*name), "{name} was overridden");
    }

    let f = fixture();
    let token = f.keys.sign(SigningAlg::ES256, None, &json).expect("ES256 signature");
    let verified = f.keys.verify(&token).expect("a token we signed verifies");
    assert_eq!(verified, payload, "verify returned other claims");

    let token = f.keys.sign(SigningAlg::HS256, Some(HS_SECRET), &json).expect("HS256 signature");
    let body = token.split('.').nth(1).and_then(|p| B64.decode(p).ok()).expect("payload segment");
    assert_eq!(body, json);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let decoded = jsonwebtoken::decode::<Map<String, Value>>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(HS_SECRET.as_bytes()).expect("HS256 key"),
        &validation,
    )
    .unwrap_or_else(|e| panic!("HS256 token does not verify ({e}): {token}"));
    assert_eq!(decoded.claims, payload);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(value) = serde_json::from_slice::<Value>(rest) else { return };
    let with_org = mode & 2 != 0;
    if mode & 1 == 0 {
        if let Value::Object(custom) = &value {
            mint_and_verify(custom, with_org);
        }
        return;
    }
    let Some(custom) = through_actions(value) else { return };
    for name in custom.keys() {
        assert!(!name.is_empty() && !STANDARD_CLAIMS.contains(&name.as_str()), "Action set reserved claim {name:?}");
        let lower = name.to_ascii_lowercase();
        assert!(lower != "urn:auth0" && !lower.starts_with("urn:auth0:"), "Action set Auth0-namespaced claim {name:?}");
    }
    let size = serde_json::to_string(&custom).map(|t| t.len()).unwrap_or(usize::MAX);
    assert!(size <= MAX_CLAIMS_BYTES, "custom claims of {size} bytes");
    mint_and_verify(&custom, with_org);
});
