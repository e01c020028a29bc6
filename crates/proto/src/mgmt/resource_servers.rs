//! Resource servers (APIs): `POST/PATCH /api/v2/resource-servers` bodies and the object (auth0.md
//! §3.2).

use std::fmt;

use ration_domain::{ResourceServer, ResourceServerScope, SigningAlg, UnixTime};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::BodyError;
use super::json::{BoundedU32, check_len, check_no_angle_brackets, check_unique, immutable, non_null, parse_enum};

const DEFAULT_TOKEN_LIFETIME: u32 = 86_400;
const MAX_IDENTIFIER_LEN: usize = 600;
const MAX_NAME_LEN: usize = 200;
const MAX_SCOPE_LEN: usize = 280;
const MAX_SCOPE_DESCRIPTION_LEN: usize = 500;
const MIN_SIGNING_SECRET_LEN: usize = 16;
/// Bounds what is stored; HMAC keys beyond the hash block size add nothing.
const MAX_SIGNING_SECRET_LEN: usize = 1024;
const SIGNING_ALGS: [&str; 6] = ["RS256", "RS512", "PS256", "HS256", "ES256", "EdDSA"];
/// The only dialect Ration issues; Auth0's `*_authz` and RFC 9068 dialects are not implemented.
const TOKEN_DIALECT: &str = "access_token";

/// One permission an API defines.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ScopeBody {
    /// 1 to 280 characters, no whitespace (scopes are space-separated in requests and tokens).
    pub value: String,
    /// At most 500 characters.
    #[serde(default, deserialize_with = "non_null")]
    pub description: Option<String>,
}

/// `POST /api/v2/resource-servers` body.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ResourceServerCreate {
    /// The audience: 1 to 600 characters, immutable once created.
    pub identifier: String,
    /// At most 200 characters, no `<` or `>`; default: the identifier.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// Unique scope values.
    #[serde(default, deserialize_with = "non_null")]
    pub scopes: Option<Vec<ScopeBody>>,
    /// `RS256` (default), `RS512`, `PS256`, `HS256`, `ES256` or `EdDSA`.
    #[serde(default, deserialize_with = "non_null")]
    pub signing_alg: Option<String>,
    /// HMAC key for `HS256`, at least 16 characters; generated when `HS256` has none.
    #[serde(default, deserialize_with = "non_null")]
    pub signing_secret: Option<String>,
    /// Seconds, 0 to 2592000; default 86400.
    #[serde(default, deserialize_with = "non_null")]
    pub token_lifetime: Option<BoundedU32<0, 2_592_000>>,
    /// Accepted for Auth0 compatibility and ignored: this server issues no refresh tokens.
    #[serde(default, deserialize_with = "non_null")]
    pub allow_offline_access: Option<bool>,
    /// Accepted for Auth0 compatibility and ignored: there is no consent screen.
    #[serde(default, deserialize_with = "non_null")]
    pub skip_consent_for_verifiable_first_party_clients: Option<bool>,
    /// Only `access_token` is accepted.
    #[serde(default, deserialize_with = "non_null")]
    pub token_dialect: Option<String>,
}

/// `PATCH /api/v2/resource-servers/{id}` body. `identifier` may not appear.
// The private `_identifier` field only makes serde reject `identifier` by name; it is not a
// non-exhaustiveness marker, and the struct may well be built with `..Default::default()`.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ResourceServerPatch {
    /// New name.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// Replaces all scopes.
    #[serde(default, deserialize_with = "non_null")]
    pub scopes: Option<Vec<ScopeBody>>,
    /// New signing algorithm.
    #[serde(default, deserialize_with = "non_null")]
    pub signing_alg: Option<String>,
    /// New HMAC key.
    #[serde(default, deserialize_with = "non_null")]
    pub signing_secret: Option<String>,
    /// New token lifetime in seconds.
    #[serde(default, deserialize_with = "non_null")]
    pub token_lifetime: Option<BoundedU32<0, 2_592_000>>,
    /// Accepted and ignored, as on create.
    #[serde(default, deserialize_with = "non_null")]
    pub allow_offline_access: Option<bool>,
    /// Accepted and ignored, as on create.
    #[serde(default, deserialize_with = "non_null")]
    pub skip_consent_for_verifiable_first_party_clients: Option<bool>,
    /// Only `access_token` is accepted.
    #[serde(default, deserialize_with = "non_null")]
    pub token_dialect: Option<String>,
    /// The audience is immutable: tokens already issued carry it.
    #[serde(default, rename = "identifier", deserialize_with = "immutable")]
    _identifier: (),
}

/// Hand-written so that the HMAC key never reaches logs through `{:?}`.
impl fmt::Debug for ResourceServerCreate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServerCreate")
            .field("identifier", &self.identifier)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("signing_alg", &self.signing_alg)
            .field("signing_secret", &self.signing_secret.as_ref().map(|_| "<redacted>"))
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

/// Hand-written so that the HMAC key never reaches logs through `{:?}`.
impl fmt::Debug for ResourceServerPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServerPatch")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("signing_alg", &self.signing_alg)
            .field("signing_secret", &self.signing_secret.as_ref().map(|_| "<redacted>"))
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

impl ResourceServerCreate {
    /// Validates the body and builds the API. `generated_secret` becomes the HMAC key when the
    /// algorithm is `HS256` and the body gives none.
    pub fn into_resource_server(
        self,
        id: String,
        generated_secret: String,
        now: UnixTime,
    ) -> Result<ResourceServer, BodyError> {
        check_len("identifier", &self.identifier, 1, MAX_IDENTIFIER_LEN)?;
        let name = self.name.map(check_name).transpose()?;
        let scopes = self.scopes.map(check_scopes).transpose()?.unwrap_or_default();
        let signing_alg = self.signing_alg.as_deref().map(check_alg).transpose()?.unwrap_or(SigningAlg::RS256);
        let given_secret = self.signing_secret.map(check_secret).transpose()?;
        check_ignored(self.token_dialect.as_deref())?;
        let signing_secret = match (given_secret, signing_alg) {
            (Some(s), _) => Some(s),
            (None, SigningAlg::HS256) => Some(generated_secret),
            (None, _) => None,
        };
        Ok(ResourceServer {
            id,
            name: name.unwrap_or_else(|| self.identifier.clone()),
            identifier: self.identifier,
            scopes,
            signing_alg,
            signing_secret,
            token_lifetime: self.token_lifetime.map_or(DEFAULT_TOKEN_LIFETIME, |v| v.0),
            is_system: false,
            created_at: now,
            updated_at: now,
        })
    }
}

impl ResourceServerPatch {
    /// Validates every field, then applies them all (nothing changes on error). Switching to
    /// `HS256` while the API has no HMAC key and the body gives none installs `generated_secret`.
    /// Whether the API may be changed at all (`is_system`) is the caller's check.
    pub fn apply(self, rs: &mut ResourceServer, generated_secret: String, now: UnixTime) -> Result<(), BodyError> {
        if self == ResourceServerPatch::default() {
            return Ok(());
        }
        let name = self.name.map(check_name).transpose()?;
        let scopes = self.scopes.map(check_scopes).transpose()?;
        let signing_alg = self.signing_alg.as_deref().map(check_alg).transpose()?;
        let given_secret = self.signing_secret.map(check_secret).transpose()?;
        check_ignored(self.token_dialect.as_deref())?;

        if let Some(v) = name {
            rs.name = v;
        }
        if let Some(v) = scopes {
            rs.scopes = v;
        }
        if let Some(v) = signing_alg {
            rs.signing_alg = v;
        }
        if let Some(v) = given_secret {
            rs.signing_secret = Some(v);
        } else if rs.signing_alg == SigningAlg::HS256 && rs.signing_secret.is_none() {
            rs.signing_secret = Some(generated_secret);
        }
        // A key kept after switching away from HS256 is harmless (never shown nor used) and
        // comes back if the API switches back, so clients holding it keep working.
        if let Some(v) = self.token_lifetime {
            rs.token_lifetime = v.0;
        }
        rs.updated_at = now;
        Ok(())
    }
}

fn check_name(name: String) -> Result<String, BodyError> {
    check_len("name", &name, 1, MAX_NAME_LEN)?;
    check_no_angle_brackets("name", &name)?;
    Ok(name)
}

fn check_scopes(scopes: Vec<ScopeBody>) -> Result<Vec<ResourceServerScope>, BodyError> {
    for (i, scope) in scopes.iter().enumerate() {
        let path = format!("scopes[{i}].value");
        check_len(&path, &scope.value, 1, MAX_SCOPE_LEN)?;
        if scope.value.contains(char::is_whitespace) {
            return Err(BodyError::field(&path, "must not contain whitespace"));
        }
        if let Some(d) = &scope.description {
            check_len(&format!("scopes[{i}].description"), d, 0, MAX_SCOPE_DESCRIPTION_LEN)?;
        }
    }
    check_unique(scopes.iter().map(|s| s.value.as_str()), |i| format!("scopes[{i}].value"))?;
    Ok(scopes.into_iter().map(|s| ResourceServerScope { value: s.value, description: s.description }).collect())
}

fn check_alg(alg: &str) -> Result<SigningAlg, BodyError> {
    parse_enum("signing_alg", alg, SigningAlg::parse, &SIGNING_ALGS)
}

fn check_secret(secret: String) -> Result<String, BodyError> {
    check_len("signing_secret", &secret, MIN_SIGNING_SECRET_LEN, MAX_SIGNING_SECRET_LEN)?;
    Ok(secret)
}

fn check_ignored(token_dialect: Option<&str>) -> Result<(), BodyError> {
    match token_dialect {
        Some(d) if d != TOKEN_DIALECT => {
            Err(BodyError::field("token_dialect", format_args!("must be one of: {TOKEN_DIALECT}")))
        }
        _ => Ok(()),
    }
}

/// Auth0's resource-server object. The HMAC key is shown only for `HS256` APIs (Auth0 shows it
/// to holders of `read:resource_servers`, who need it to verify tokens).
pub fn resource_server_view(rs: &ResourceServer) -> Value {
    let scopes: Vec<Value> = rs
        .scopes
        .iter()
        .map(|s| {
            let mut o = Map::new();
            o.insert("value".to_owned(), Value::from(s.value.as_str()));
            if let Some(d) = &s.description {
                o.insert("description".to_owned(), Value::from(d.as_str()));
            }
            Value::Object(o)
        })
        .collect();
    let mut v = json!({
        "id": rs.id,
        "name": rs.name,
        "identifier": rs.identifier,
        "is_system": rs.is_system,
        "scopes": scopes,
        "signing_alg": rs.signing_alg.as_str(),
        "token_lifetime": rs.token_lifetime,
        "token_dialect": TOKEN_DIALECT,
        "allow_offline_access": false,
        "skip_consent_for_verifiable_first_party_clients": true,
    });
    if let (SigningAlg::HS256, Some(secret), Some(o)) = (rs.signing_alg, &rs.signing_secret, v.as_object_mut()) {
        o.insert("signing_secret".to_owned(), Value::from(secret.as_str()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_body;

    const GEN: &str = "generated-secret-0123456789";

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn create(body: &str) -> Result<ResourceServer, BodyError> {
        parse_body::<ResourceServerCreate>(body.as_bytes())?.into_resource_server("rs_1".into(), GEN.into(), t(1))
    }

    fn patch(rs: &mut ResourceServer, body: &str) -> Result<(), BodyError> {
        parse_body::<ResourceServerPatch>(body.as_bytes())?.apply(rs, GEN.into(), t(2))
    }

    fn msg<T>(r: Result<T, BodyError>) -> String {
        match r {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.message.trim_start_matches("Payload validation error: ").to_owned(),
        }
    }

    #[test]
    fn create_defaults_and_view() {
        let rs = create(r#"{"identifier":"https://api"}"#).unwrap();
        assert_eq!(rs.name, "https://api");
        assert_eq!((rs.signing_alg, rs.signing_secret.as_deref()), (SigningAlg::RS256, None));
        assert_eq!(rs.token_lifetime, 86_400);
        assert!(!rs.is_system);
        assert_eq!(
            resource_server_view(&rs),
            json!({
                "id": "rs_1", "name": "https://api", "identifier": "https://api", "is_system": false,
                "scopes": [], "signing_alg": "RS256", "token_lifetime": 86400, "token_dialect": "access_token",
                "allow_offline_access": false, "skip_consent_for_verifiable_first_party_clients": true
            })
        );

        let rs = create(
            r#"{"identifier":"https://api","name":"API","scopes":[{"value":"read","description":"Read"},{"value":"write"}],
                "signing_alg":"HS256","token_lifetime":0,"allow_offline_access":true,
                "skip_consent_for_verifiable_first_party_clients":false,"token_dialect":"access_token"}"#,
        )
        .unwrap();
        assert_eq!(rs.signing_secret.as_deref(), Some(GEN));
        assert_eq!(rs.token_lifetime, 0);
        let view = resource_server_view(&rs);
        assert_eq!(view["signing_secret"], json!(GEN));
        assert_eq!(view["scopes"], json!([{"value": "read", "description": "Read"}, {"value": "write"}]));

        let rs = create(r#"{"identifier":"a","signing_alg":"ES256","signing_secret":"0123456789abcdef"}"#).unwrap();
        assert_eq!(rs.signing_secret.as_deref(), Some("0123456789abcdef"));
        assert!(resource_server_view(&rs).get("signing_secret").is_none(), "not HS256");
        let rs = create(r#"{"identifier":"a","signing_alg":"HS256","signing_secret":"0123456789abcdef"}"#).unwrap();
        assert_eq!(rs.signing_secret.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn create_validation_names_fields() {
        let cases: Vec<(String, String)> = vec![
            (r#"{}"#.into(), "'identifier' is required".into()),
            (r#"{"identifier":""}"#.into(), "'identifier' must be between 1 and 600 characters long".into()),
            (
                format!(r#"{{"identifier":"{}"}}"#, "i".repeat(601)),
                "'identifier' must be between 1 and 600 characters long".into(),
            ),
            (
                format!(r#"{{"identifier":"a","name":"{}"}}"#, "n".repeat(201)),
                "'name' must be between 1 and 200 characters long".into(),
            ),
            (r#"{"identifier":"a","name":"a>b"}"#.into(), "'name' must not contain '<' or '>'".into()),
            (
                r#"{"identifier":"a","scopes":[{"value":""}]}"#.into(),
                "'scopes[0].value' must be between 1 and 280 characters long".into(),
            ),
            (
                format!(r#"{{"identifier":"a","scopes":[{{"value":"{}"}}]}}"#, "s".repeat(281)),
                "'scopes[0].value' must be between 1 and 280 characters long".into(),
            ),
            (
                r#"{"identifier":"a","scopes":[{"value":"a b"}]}"#.into(),
                "'scopes[0].value' must not contain whitespace".into(),
            ),
            (
                format!(r#"{{"identifier":"a","scopes":[{{"value":"x","description":"{}"}}]}}"#, "d".repeat(501)),
                "'scopes[0].description' must be at most 500 characters long".into(),
            ),
            (
                r#"{"identifier":"a","scopes":[{"value":"x"},{"value":"y"},{"value":"x"}]}"#.into(),
                "'scopes[2].value' duplicates 'x'".into(),
            ),
            (r#"{"identifier":"a","scopes":[{"description":"x"}]}"#.into(), "'scopes[0].value' is required".into()),
            (
                r#"{"identifier":"a","scopes":[{"value":"x","extra":1}]}"#.into(),
                "Additional properties not allowed: 'scopes[0].extra'".into(),
            ),
            (
                r#"{"identifier":"a","signing_alg":"none"}"#.into(),
                "'signing_alg' must be one of: RS256, RS512, PS256, HS256, ES256, EdDSA".into(),
            ),
            (
                r#"{"identifier":"a","signing_alg":"HS256","signing_secret":"short"}"#.into(),
                "'signing_secret' must be between 16 and 1024 characters long".into(),
            ),
            (
                r#"{"identifier":"a","token_lifetime":2592001}"#.into(),
                "'token_lifetime' must be an integer between 0 and 2592000".into(),
            ),
            (
                r#"{"identifier":"a","token_lifetime":-1}"#.into(),
                "'token_lifetime' must be an integer between 0 and 2592000".into(),
            ),
            (
                r#"{"identifier":"a","token_lifetime":3600.5}"#.into(),
                "'token_lifetime' must be an integer between 0 and 2592000".into(),
            ),
            (
                r#"{"identifier":"a","token_dialect":"rfc9068_profile"}"#.into(),
                "'token_dialect' must be one of: access_token".into(),
            ),
            (
                r#"{"identifier":"a","allow_offline_access":"no"}"#.into(),
                "'allow_offline_access' must be a boolean".into(),
            ),
            (
                r#"{"identifier":"a","enforce_policies":true}"#.into(),
                "Additional properties not allowed: 'enforce_policies'".into(),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(msg(create(&body)), want, "{body}");
        }
    }

    #[test]
    fn patch_rules() {
        let base = create(r#"{"identifier":"https://api","name":"API"}"#).unwrap();

        let mut rs = base.clone();
        patch(&mut rs, "{}").unwrap();
        assert_eq!(rs, base);

        let mut rs = base.clone();
        patch(&mut rs, r#"{"signing_alg":"HS256","token_lifetime":60,"scopes":[{"value":"x"}],"name":"New"}"#).unwrap();
        assert_eq!(rs.signing_secret.as_deref(), Some(GEN), "switching to HS256 installs the generated key");
        assert_eq!((rs.token_lifetime, rs.name.as_str(), rs.scopes.len()), (60, "New", 1));
        assert_eq!(rs.updated_at, t(2));
        // Switching again keeps the key rather than generating another one.
        patch(&mut rs, r#"{"signing_alg":"RS256"}"#).unwrap();
        let mut rs2 = rs.clone();
        rs2.signing_secret = Some("kept-0123456789ab".into());
        parse_body::<ResourceServerPatch>(br#"{"signing_alg":"HS256"}"#)
            .unwrap()
            .apply(&mut rs2, "other-generated-secret".into(), t(3))
            .unwrap();
        assert_eq!(rs2.signing_secret.as_deref(), Some("kept-0123456789ab"));

        let mut rs = base.clone();
        patch(&mut rs, r#"{"signing_alg":"HS256","signing_secret":"given-0123456789"}"#).unwrap();
        assert_eq!(rs.signing_secret.as_deref(), Some("given-0123456789"));

        let cases: &[(&str, &str)] = &[
            (r#"{"identifier":"https://other"}"#, "'identifier' cannot be changed"),
            (r#"{"name":"ok","identifier":null}"#, "'identifier' cannot be changed"),
            (
                r#"{"name":"ok","signing_alg":"HS512"}"#,
                "'signing_alg' must be one of: RS256, RS512, PS256, HS256, ES256, EdDSA",
            ),
            (r#"{"name":"ok","scopes":[{"value":"a"},{"value":"a"}]}"#, "'scopes[1].value' duplicates 'a'"),
            (r#"{"name":null}"#, "'name' must be a string"),
            (r#"{"name":"ok","token_lifetime":null}"#, "'token_lifetime' must be an integer between 0 and 2592000"),
            (
                r#"{"name":"ok","signing_secret":"short"}"#,
                "'signing_secret' must be between 16 and 1024 characters long",
            ),
            (r#"{"is_system":true}"#, "Additional properties not allowed: 'is_system'"),
        ];
        for (body, want) in cases {
            let mut rs = base.clone();
            assert_eq!(msg(patch(&mut rs, body)), *want, "{body}");
            assert_eq!(rs, base, "{body} changed the API");
        }
    }

    #[test]
    fn debug_redacts_secret() {
        let p: ResourceServerPatch = parse_body(br#"{"signing_secret":"hunter2-hunter2-hunter2"}"#).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
