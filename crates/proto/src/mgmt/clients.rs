//! Clients (applications): `POST/PATCH /api/v2/clients` bodies and the client object (auth0.md
//! §3.1).

use std::collections::BTreeMap;
use std::fmt;

use ration_domain::{CLIENT_CREDENTIALS, Client, DefaultOrganization, TokenEndpointAuthMethod, TokenQuota, UnixTime};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::BodyError;
use super::json::{check_len, check_no_angle_brackets, double_option, non_null, parse_enum};
use super::quota::{TokenQuotaBody, quota_view};

/// The `app_type` values Ration accepts (Auth0's, without the SSO integration types).
pub const APP_TYPES: [&str; 6] =
    ["native", "spa", "regular_web", "non_interactive", "resource_server", "express_configuration"];

/// Shortest client secret an operator may set. Generated secrets are longer; a short one would
/// be guessable.
pub const MIN_CLIENT_SECRET_LEN: usize = 32;

/// Longest client secret an operator may set; bounds what is hashed and stored.
pub const MAX_CLIENT_SECRET_LEN: usize = 1024;

const AUTH_METHODS: [&str; 3] = ["none", "client_secret_post", "client_secret_basic"];
const MAX_NAME_LEN: usize = 255;
const MAX_DESCRIPTION_LEN: usize = 140;
const MAX_METADATA_KEYS: usize = 10;
const MAX_METADATA_LEN: usize = 255;

/// `default_organization`: the organization used when a grant requires one and the request
/// names none.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct DefaultOrganizationBody {
    /// The organization's id (its existence is the server's check).
    pub organization_id: String,
    /// Must be `["client_credentials"]`, the only flow Auth0 supports here.
    pub flows: Vec<String>,
}

impl DefaultOrganizationBody {
    fn into_domain(self) -> Result<DefaultOrganization, BodyError> {
        check_len("default_organization.organization_id", &self.organization_id, 1, 255)?;
        if self.flows.is_empty() {
            return Err(BodyError::field("default_organization.flows", "must not be empty"));
        }
        for (i, flow) in self.flows.iter().enumerate() {
            if flow != CLIENT_CREDENTIALS {
                return Err(BodyError::field(
                    &format!("default_organization.flows[{i}]"),
                    format_args!("must be one of: {CLIENT_CREDENTIALS}"),
                ));
            }
        }
        let mut flows = self.flows;
        flows.dedup();
        Ok(DefaultOrganization { organization_id: self.organization_id, flows })
    }
}

/// `POST /api/v2/clients` body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ClientCreate {
    /// Required: 1 to 255 characters, no `<` or `>`.
    pub name: String,
    /// At most 140 characters.
    pub description: Option<String>,
    /// One of [`APP_TYPES`]; default `non_interactive`.
    #[serde(default, deserialize_with = "non_null")]
    pub app_type: Option<String>,
    /// Non-empty strings; default `["client_credentials"]`.
    #[serde(default, deserialize_with = "non_null")]
    pub grant_types: Option<Vec<String>>,
    /// `none`, `client_secret_post` (default) or `client_secret_basic`.
    pub token_endpoint_auth_method: Option<String>,
    /// At most 10 keys; keys 1 to 255 and values at most 255 characters.
    pub client_metadata: Option<BTreeMap<String, String>>,
    /// The client's own quota.
    pub token_quota: Option<TokenQuotaBody>,
    /// See [`DefaultOrganizationBody`].
    pub default_organization: Option<DefaultOrganizationBody>,
    /// Default `true`.
    #[serde(default, deserialize_with = "non_null")]
    pub is_first_party: Option<bool>,
    /// `{"private_key_jwt": {"credentials": [...]}}`: register keys and authenticate with
    /// `private_key_jwt` (then `token_endpoint_auth_method` must be absent or null).
    #[serde(default, deserialize_with = "non_null")]
    pub client_authentication_methods: Option<super::credentials::ClientAuthMethodsBody>,
}

impl ClientCreate {
    /// Validates the body and builds the client. The caller generates `client_id` and the secret
    /// and passes the secret's hash.
    pub fn into_client(self, client_id: String, secret_hash: String, now: UnixTime) -> Result<Client, BodyError> {
        Ok(Client {
            client_id,
            name: check_name(self.name)?,
            description: self.description.map(check_description).transpose()?,
            app_type: Some(check_app_type(self.app_type.as_deref().unwrap_or("non_interactive"))?),
            grant_types: match self.grant_types {
                Some(g) => check_grant_types(g)?,
                None => vec![CLIENT_CREDENTIALS.to_owned()],
            },
            token_endpoint_auth_method: match (&self.token_endpoint_auth_method, &self.client_authentication_methods) {
                (Some(_), Some(_)) => {
                    return Err(BodyError::field(
                        "token_endpoint_auth_method",
                        "cannot be combined with client_authentication_methods",
                    ));
                }
                (Some(m), None) => check_auth_method(m)?,
                (None, Some(cam)) => {
                    cam.new_credentials()?;
                    TokenEndpointAuthMethod::PrivateKeyJwt
                }
                (None, None) => TokenEndpointAuthMethod::ClientSecretPost,
            },
            client_metadata: self.client_metadata.map(check_metadata).transpose()?.unwrap_or_default(),
            secret_hash,
            token_quota: self.token_quota.map(|q| q.into_quota("token_quota")).transpose()?,
            default_organization: self.default_organization.map(DefaultOrganizationBody::into_domain).transpose()?,
            is_first_party: self.is_first_party.unwrap_or(true),
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /api/v2/clients/{id}` body. Absent fields stay unchanged; `null` removes the nullable
/// ones. An empty object is a valid no-op, as in Auth0.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ClientPatch {
    /// New name.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// New description; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    /// New application type.
    #[serde(default, deserialize_with = "non_null")]
    pub app_type: Option<String>,
    /// Replaces the grant types; dropping `client_credentials` pauses the client.
    #[serde(default, deserialize_with = "non_null")]
    pub grant_types: Option<Vec<String>>,
    /// New method. Auth0 allows `null` (to switch to `client_authentication_methods`); Ration
    /// does not support those yet, so `null` is refused with a message saying why.
    #[serde(default, deserialize_with = "double_option")]
    pub token_endpoint_auth_method: Option<Option<String>>,
    /// `{"private_key_jwt": {"credentials": [{"id": …}]}}` switches the client to
    /// `private_key_jwt` (with `token_endpoint_auth_method: null`); `null` switches back to a secret
    /// method (with `token_endpoint_auth_method` set). The server checks the referenced ids.
    #[serde(default, deserialize_with = "double_option")]
    pub client_authentication_methods: Option<Option<super::credentials::ClientAuthMethodsBody>>,
    /// Replaces the metadata wholesale; `null` empties it.
    #[serde(default, deserialize_with = "double_option")]
    pub client_metadata: Option<Option<BTreeMap<String, String>>>,
    /// New quota; `null` removes it (the tenant default applies again).
    #[serde(default, deserialize_with = "double_option")]
    pub token_quota: Option<Option<TokenQuotaBody>>,
    /// New default organization; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub default_organization: Option<Option<DefaultOrganizationBody>>,
    /// New first-party flag.
    #[serde(default, deserialize_with = "non_null")]
    pub is_first_party: Option<bool>,
    /// New plaintext secret ([`MIN_CLIENT_SECRET_LEN`] to [`MAX_CLIENT_SECRET_LEN`] characters).
    /// [`ClientPatch::apply`] validates and returns it; the server hashes and stores it.
    #[serde(default, deserialize_with = "non_null")]
    pub client_secret: Option<String>,
}

/// Hand-written so that the secret never reaches logs through `{:?}`.
impl fmt::Debug for ClientPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPatch")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("app_type", &self.app_type)
            .field("grant_types", &self.grant_types)
            .field("token_endpoint_auth_method", &self.token_endpoint_auth_method)
            .field("client_metadata", &self.client_metadata)
            .field("token_quota", &self.token_quota)
            .field("default_organization", &self.default_organization)
            .field("is_first_party", &self.is_first_party)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientPatch {
    /// Validates every field, then applies them all to `client` (nothing changes on error).
    /// Returns the new plaintext secret when the body sets one; `client.secret_hash` is left to
    /// the caller, which owns the hashing key.
    pub fn apply(self, client: &mut Client, now: UnixTime) -> Result<Option<String>, BodyError> {
        if self == ClientPatch::default() {
            return Ok(None);
        }
        let name = self.name.map(check_name).transpose()?;
        let description = self.description.map(|d| d.map(check_description).transpose()).transpose()?;
        let app_type = self.app_type.as_deref().map(check_app_type).transpose()?;
        let grant_types = self.grant_types.map(check_grant_types).transpose()?;
        // Auth0 keeps the two mutually exclusive: private_key_jwt means the secret method is null.
        let current_is_pkjwt = client.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt;
        let auth_method = match (&self.token_endpoint_auth_method, &self.client_authentication_methods) {
            (Some(Some(_)), Some(Some(_))) => {
                return Err(BodyError::field(
                    "token_endpoint_auth_method",
                    "cannot be combined with client_authentication_methods",
                ));
            }
            (Some(Some(m)), _) => Some(check_auth_method(m)?),
            (Some(None), Some(Some(cam))) | (None, Some(Some(cam))) => {
                cam.referenced_ids()?;
                if self.token_endpoint_auth_method.is_none() && !current_is_pkjwt {
                    return Err(BodyError::field(
                        "token_endpoint_auth_method",
                        "must be set to null to use client_authentication_methods",
                    ));
                }
                Some(TokenEndpointAuthMethod::PrivateKeyJwt)
            }
            (Some(None), _) if current_is_pkjwt => None,
            (Some(None), _) => {
                return Err(BodyError::field(
                    "token_endpoint_auth_method",
                    "can be null only together with client_authentication_methods.private_key_jwt",
                ));
            }
            (None, Some(None)) => Some(TokenEndpointAuthMethod::ClientSecretPost),
            (None, None) => None,
        };
        let metadata = self.client_metadata.map(|m| m.map(check_metadata).transpose()).transpose()?;
        let token_quota: Option<Option<TokenQuota>> =
            self.token_quota.map(|q| q.map(|q| q.into_quota("token_quota")).transpose()).transpose()?;
        let default_organization =
            self.default_organization.map(|d| d.map(DefaultOrganizationBody::into_domain).transpose()).transpose()?;
        if let Some(secret) = &self.client_secret {
            check_len("client_secret", secret, MIN_CLIENT_SECRET_LEN, MAX_CLIENT_SECRET_LEN)?;
        }

        // Everything is valid: apply.
        if let Some(v) = name {
            client.name = v;
        }
        if let Some(v) = description {
            client.description = v;
        }
        if let Some(v) = app_type {
            client.app_type = Some(v);
        }
        if let Some(v) = grant_types {
            client.grant_types = v;
        }
        if let Some(v) = auth_method {
            client.token_endpoint_auth_method = v;
        }
        if let Some(v) = metadata {
            client.client_metadata = v.unwrap_or_default();
        }
        if let Some(v) = token_quota {
            client.token_quota = v;
        }
        if let Some(v) = default_organization {
            client.default_organization = v;
        }
        if let Some(v) = self.is_first_party {
            client.is_first_party = v;
        }
        client.updated_at = now;
        Ok(self.client_secret)
    }
}

fn check_name(name: String) -> Result<String, BodyError> {
    check_len("name", &name, 1, MAX_NAME_LEN)?;
    check_no_angle_brackets("name", &name)?;
    Ok(name)
}

fn check_description(description: String) -> Result<String, BodyError> {
    check_len("description", &description, 0, MAX_DESCRIPTION_LEN)?;
    Ok(description)
}

fn check_app_type(app_type: &str) -> Result<String, BodyError> {
    parse_enum("app_type", app_type, |s| APP_TYPES.contains(&s).then(|| s.to_owned()), &APP_TYPES)
}

fn check_grant_types(grant_types: Vec<String>) -> Result<Vec<String>, BodyError> {
    for (i, g) in grant_types.iter().enumerate() {
        check_len(&format!("grant_types[{i}]"), g, 1, 255)?;
    }
    Ok(grant_types)
}

fn check_auth_method(method: &str) -> Result<TokenEndpointAuthMethod, BodyError> {
    // private_key_jwt is not a value of this field in Auth0's API: it is chosen by setting the
    // field to null and configuring client_authentication_methods.
    let parse = |m: &str| TokenEndpointAuthMethod::parse(m).filter(|m| *m != TokenEndpointAuthMethod::PrivateKeyJwt);
    parse_enum("token_endpoint_auth_method", method, parse, &AUTH_METHODS)
}

fn check_metadata(metadata: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, BodyError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(BodyError::field(
            "client_metadata",
            format_args!("must have at most {MAX_METADATA_KEYS} properties"),
        ));
    }
    for (key, value) in &metadata {
        let path = format!("client_metadata.{key}");
        // A bad key is not echoed in the message: it may be arbitrarily long.
        if key.is_empty() || key.chars().count() > MAX_METADATA_LEN {
            return Err(BodyError::field(
                "client_metadata",
                format_args!("keys must be between 1 and {MAX_METADATA_LEN} characters long"),
            ));
        }
        check_len(&path, value, 0, MAX_METADATA_LEN)?;
    }
    Ok(metadata)
}

fn put(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    map.insert(key.to_owned(), value.into());
}

/// Auth0's client object. `secret` is the plaintext secret, included only right after it was
/// generated or set (create, rotate); the stored hash is never shown.
pub fn client_view(client: &Client, secret: Option<&str>) -> Value {
    client_view_with_credentials(client, secret, &[])
}

/// [`client_view`], listing the ids of a `private_key_jwt` client's credentials under
/// `client_authentication_methods`, as Auth0 does.
pub fn client_view_with_credentials(client: &Client, secret: Option<&str>, credential_ids: &[String]) -> Value {
    let mut o = Map::new();
    put(&mut o, "client_id", client.client_id.as_str());
    put(&mut o, "name", client.name.as_str());
    if let Some(d) = &client.description {
        put(&mut o, "description", d.as_str());
    }
    if let Some(t) = &client.app_type {
        put(&mut o, "app_type", t.as_str());
    }
    put(&mut o, "grant_types", client.grant_types.clone());
    if client.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt {
        o.insert("token_endpoint_auth_method".to_owned(), Value::Null);
        let refs: Vec<Value> = credential_ids.iter().map(|id| serde_json::json!({"id": id})).collect();
        o.insert(
            "client_authentication_methods".to_owned(),
            serde_json::json!({"private_key_jwt": {"credentials": refs}}),
        );
    } else {
        put(&mut o, "token_endpoint_auth_method", client.token_endpoint_auth_method.as_str());
    }
    let metadata: Map<String, Value> =
        client.client_metadata.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    put(&mut o, "client_metadata", metadata);
    if let Some(q) = &client.token_quota {
        put(&mut o, "token_quota", quota_view(q));
    }
    if let Some(d) = &client.default_organization {
        put(
            &mut o,
            "default_organization",
            serde_json::json!({ "organization_id": d.organization_id, "flows": d.flows }),
        );
    }
    put(&mut o, "is_first_party", client.is_first_party);
    // Ration has no global (legacy tenant-wide) client, and every client is OIDC-conformant.
    put(&mut o, "global", false);
    put(&mut o, "oidc_conformant", true);
    if let Some(s) = secret {
        put(&mut o, "client_secret", s);
    }
    put(&mut o, "created_at", client.created_at.to_rfc3339());
    put(&mut o, "updated_at", client.updated_at.to_rfc3339());
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use ration_domain::QuotaLimits;
    use serde_json::json;

    use super::*;
    use crate::mgmt::parse_body;

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn create(body: &str) -> Result<Client, BodyError> {
        parse_body::<ClientCreate>(body.as_bytes())?.into_client("cid".into(), "hash".into(), t(100))
    }

    fn patch(client: &mut Client, body: &str) -> Result<Option<String>, BodyError> {
        parse_body::<ClientPatch>(body.as_bytes())?.apply(client, t(200))
    }

    fn msg(r: Result<impl Sized, BodyError>) -> String {
        match r {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.message.trim_start_matches("Payload validation error: ").to_owned(),
        }
    }

    #[test]
    fn create_applies_defaults() {
        let c = create(r#"{"name":"Billing"}"#).unwrap();
        assert_eq!(c.client_id, "cid");
        assert_eq!(c.secret_hash, "hash");
        assert_eq!(c.app_type.as_deref(), Some("non_interactive"));
        assert_eq!(c.grant_types, vec!["client_credentials"]);
        assert_eq!(c.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretPost);
        assert!(c.client_metadata.is_empty() && c.token_quota.is_none() && c.default_organization.is_none());
        assert!(c.is_first_party);
        assert_eq!((c.created_at, c.updated_at), (t(100), t(100)));
    }

    #[test]
    fn create_full_and_view() {
        let c = create(
            r#"{"name":"Billing","description":"nightly","app_type":"spa","grant_types":["client_credentials","x"],
                "token_endpoint_auth_method":"client_secret_basic","client_metadata":{"team":"billing"},
                "token_quota":{"client_credentials":{"per_hour":10}},
                "default_organization":{"organization_id":"org_1","flows":["client_credentials"]},
                "is_first_party":false}"#,
        )
        .unwrap();
        assert_eq!(
            c.token_quota,
            Some(TokenQuota { enforce: true, limits: QuotaLimits { per_hour: Some(10), ..Default::default() } })
        );
        assert_eq!(
            client_view(&c, Some("s3cret")),
            json!({
                "client_id": "cid", "name": "Billing", "description": "nightly", "app_type": "spa",
                "grant_types": ["client_credentials", "x"], "token_endpoint_auth_method": "client_secret_basic",
                "client_metadata": {"team": "billing"},
                "token_quota": {"client_credentials": {"enforce": true, "per_hour": 10}},
                "default_organization": {"organization_id": "org_1", "flows": ["client_credentials"]},
                "is_first_party": false, "global": false, "oidc_conformant": true, "client_secret": "s3cret",
                "created_at": "1970-01-01T00:01:40.000Z", "updated_at": "1970-01-01T00:01:40.000Z"
            })
        );
        let minimal = client_view(&create(r#"{"name":"a"}"#).unwrap(), None);
        for absent in ["description", "token_quota", "default_organization", "client_secret", "secret_hash"] {
            assert!(minimal.get(absent).is_none(), "{absent}");
        }
        assert_eq!(minimal["client_metadata"], json!({}));
    }

    #[test]
    fn create_validation_names_fields() {
        let long = |n: usize| "x".repeat(n);
        let cases: Vec<(String, String)> = vec![
            (r#"{}"#.into(), "'name' is required".into()),
            (r#"{"name":""}"#.into(), "'name' must be between 1 and 255 characters long".into()),
            (format!(r#"{{"name":"{}"}}"#, long(256)), "'name' must be between 1 and 255 characters long".into()),
            (r#"{"name":"<b>"}"#.into(), "'name' must not contain '<' or '>'".into()),
            (format!(r#"{{"name":"a","description":"{}"}}"#, long(141)), "'description' must be at most 140 characters long".into()),
            (r#"{"name":"a","app_type":"sso"}"#.into(), "'app_type' must be one of: native, spa, regular_web, non_interactive, resource_server, express_configuration".into()),
            (r#"{"name":"a","app_type":null}"#.into(), "'app_type' must be a string".into()),
            (r#"{"name":"a","grant_types":["client_credentials",""]}"#.into(), "'grant_types[1]' must be between 1 and 255 characters long".into()),
            (r#"{"name":"a","grant_types":"client_credentials"}"#.into(), "'grant_types' must be an array".into()),
            (r#"{"name":"a","token_endpoint_auth_method":"private_key_jwt"}"#.into(), "'token_endpoint_auth_method' must be one of: none, client_secret_post, client_secret_basic".into()),
            (r#"{"name":"a","client_metadata":{"k":1}}"#.into(), "'client_metadata.k' must be a string".into()),
            (format!(r#"{{"name":"a","client_metadata":{{"k":"{}"}}}}"#, long(256)), "'client_metadata.k' must be at most 255 characters long".into()),
            (format!(r#"{{"name":"a","client_metadata":{{"{}":"v"}}}}"#, long(256)), "'client_metadata' keys must be between 1 and 255 characters long".into()),
            (
                format!(r#"{{"name":"a","client_metadata":{{{}}}}}"#, (0..11).map(|i| format!(r#""k{i}":"v""#)).collect::<Vec<_>>().join(",")),
                "'client_metadata' must have at most 10 properties".into(),
            ),
            (r#"{"name":"a","token_quota":{"client_credentials":{"per_hour":0}}}"#.into(), "'token_quota.client_credentials.per_hour' must be an integer between 1 and 2147483647".into()),
            (r#"{"name":"a","token_quota":{"client_credentials":{}}}"#.into(), "'token_quota.client_credentials' must have at least 1 property".into()),
            (r#"{"name":"a","default_organization":{"organization_id":"o"}}"#.into(), "'default_organization.flows' is required".into()),
            (r#"{"name":"a","default_organization":{"organization_id":"o","flows":["authorization_code"]}}"#.into(), "'default_organization.flows[0]' must be one of: client_credentials".into()),
            (r#"{"name":"a","default_organization":{"organization_id":"o","flows":[]}}"#.into(), "'default_organization.flows' must not be empty".into()),
            (r#"{"name":"a","default_organization":{"organization_id":"","flows":["client_credentials"]}}"#.into(), "'default_organization.organization_id' must be between 1 and 255 characters long".into()),
            (r#"{"name":"a","is_first_party":"yes"}"#.into(), "'is_first_party' must be a boolean".into()),
            (r#"{"name":"a","client_secret":"x"}"#.into(), "Additional properties not allowed: 'client_secret'".into()),
            (r#"{"name":"a","callbacks":[]}"#.into(), "Additional properties not allowed: 'callbacks'".into()),
        ];
        for (body, want) in cases {
            assert_eq!(msg(create(&body)), want, "{body}");
        }
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let base = create(
            r#"{"name":"a","description":"d","client_metadata":{"k":"v"},"token_quota":{"client_credentials":{"per_day":5}},
                "default_organization":{"organization_id":"o","flows":["client_credentials"]}}"#,
        )
        .unwrap();

        let mut c = base.clone();
        assert_eq!(patch(&mut c, "{}"), Ok(None));
        assert_eq!(c, base, "empty patch is a no-op");

        let mut c = base.clone();
        assert_eq!(patch(&mut c, r#"{"grant_types":[]}"#), Ok(None));
        assert!(!c.allows_client_credentials());
        assert_eq!(c.updated_at, t(200));
        assert_eq!((c.name.as_str(), c.description.as_deref()), ("a", Some("d")));

        let mut c = base.clone();
        patch(
            &mut c,
            r#"{"description":null,"client_metadata":null,"token_quota":null,"default_organization":null,"name":"b",
                "token_endpoint_auth_method":"client_secret_basic","app_type":"native","is_first_party":false}"#,
        )
        .unwrap();
        assert_eq!(c.description, None);
        assert!(c.client_metadata.is_empty());
        assert_eq!((c.token_quota, c.default_organization), (None, None));
        assert_eq!(c.name, "b");
        assert_eq!(c.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert_eq!((c.app_type.as_deref(), c.is_first_party), (Some("native"), false));

        let mut c = base.clone();
        let secret = "s".repeat(32);
        assert_eq!(patch(&mut c, &format!(r#"{{"client_secret":"{secret}"}}"#)), Ok(Some(secret)));
        assert_eq!(c.secret_hash, "hash", "the caller hashes");
    }

    #[test]
    fn patch_rejects_without_partial_changes() {
        let base = create(r#"{"name":"a"}"#).unwrap();
        let cases: &[(&str, &str)] = &[
            (r#"{"name":"ok","client_secret":"short"}"#, "'client_secret' must be between 32 and 1024 characters long"),
            (
                r#"{"name":"ok","token_quota":{"client_credentials":{"per_hour":-1}}}"#,
                "'token_quota.client_credentials.per_hour' must be an integer between 1 and 2147483647",
            ),
            (
                r#"{"name":"ok","token_endpoint_auth_method":null}"#,
                "'token_endpoint_auth_method' can be null only together with client_authentication_methods.private_key_jwt",
            ),
            (r#"{"name":null}"#, "'name' must be a string"),
            (r#"{"grant_types":null}"#, "'grant_types' must be an array"),
            (r#"{"is_first_party":null}"#, "'is_first_party' must be a boolean"),
            (
                r#"{"name":"ok","description":"<ok>","app_type":"nope"}"#,
                "'app_type' must be one of: native, spa, regular_web, non_interactive, resource_server, express_configuration",
            ),
            (r#"{"client_id":"x"}"#, "Additional properties not allowed: 'client_id'"),
        ];
        for (body, want) in cases {
            let mut c = base.clone();
            assert_eq!(msg(patch(&mut c, body)), *want, "{body}");
            assert_eq!(c, base, "{body} changed the client");
        }
    }

    #[test]
    fn debug_redacts_secret() {
        let p = ClientPatch { client_secret: Some("hunter2".repeat(6)), ..Default::default() };
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
