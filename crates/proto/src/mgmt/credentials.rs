//! Client credentials for `private_key_jwt`: `POST/PATCH /api/v2/clients/{id}/credentials`
//! bodies, `client_authentication_methods` on clients, and the credential object.
//!
//! Parsing the key itself (PEM or JWK) is cryptography and happens in the server; here the shape,
//! the algorithm and the dates are checked.

use ration_domain::{ClientCredential, UnixTime};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::BodyError;
use super::json::{check_len, double_option, non_null};

/// Algorithms a client may sign assertions with: Auth0's three and ES256 as an extension.
pub const CREDENTIAL_ALGS: &[&str] = &["RS256", "RS384", "PS256", "ES256"];
/// Auth0 keeps at most two keys per client, enough to rotate without downtime.
pub const MAX_CREDENTIALS: usize = 2;

/// A credential to create, or (in a client PATCH) a reference `{"id": …}` to an existing one.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct CredentialBody {
    /// A reference to an existing credential (client PATCH only).
    #[serde(default, deserialize_with = "non_null")]
    pub id: Option<String>,
    /// Must be `public_key`.
    #[serde(default, deserialize_with = "non_null")]
    pub credential_type: Option<String>,
    /// At most 128 characters.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// The public key (or certificate) in PEM.
    #[serde(default, deserialize_with = "non_null")]
    pub pem: Option<String>,
    /// Ration extension: the public key as a JWK.
    #[serde(default, deserialize_with = "non_null")]
    pub jwk: Option<Value>,
    /// `RS256` (default), `RS384`, `PS256`, or `ES256` (extension).
    #[serde(default, deserialize_with = "non_null")]
    pub alg: Option<String>,
    /// RFC 3339; after it the credential is refused.
    #[serde(default, deserialize_with = "non_null")]
    pub expires_at: Option<String>,
    /// A kid of the client's choosing (`[0-9a-zA-Z-_]{10,64}`); default: the RFC 7638 thumbprint.
    #[serde(default, deserialize_with = "non_null")]
    pub kid: Option<String>,
    /// Accepted for compatibility; Ration reads no certificate expiry.
    #[serde(default)]
    pub parse_expiry_from_cert: Option<bool>,
}

/// Key material of a new credential, checked for shape only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A PEM `PUBLIC KEY` block.
    Pem(String),
    /// A public JWK.
    Jwk(Value),
}

/// A validated new credential (the server parses the key and computes the kid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    /// Display name (may be empty).
    pub name: String,
    /// The algorithm assertions must use.
    pub alg: String,
    /// The key as given.
    pub key: KeyMaterial,
    /// Expiry, if any.
    pub expires_at: Option<UnixTime>,
    /// A chosen kid; default: the RFC 7638 thumbprint.
    pub kid: Option<String>,
}

impl CredentialBody {
    /// Validates a credential to create. `path` prefixes field names in errors.
    pub fn into_new(self, path: &str) -> Result<NewCredential, BodyError> {
        let field = |f: &str| if path.is_empty() { f.to_owned() } else { format!("{path}.{f}") };
        if self.id.is_some() {
            return Err(BodyError::field(&field("id"), "is assigned by the server"));
        }
        match self.credential_type.as_deref() {
            Some("public_key") => {}
            _ => return Err(BodyError::field(&field("credential_type"), "must be \"public_key\"")),
        }
        let name = self.name.unwrap_or_default();
        check_len(&field("name"), &name, 0, 128)?;
        let alg = self.alg.unwrap_or_else(|| "RS256".to_owned());
        if !CREDENTIAL_ALGS.contains(&alg.as_str()) {
            return Err(BodyError::field(&field("alg"), format!("must be one of: {}", CREDENTIAL_ALGS.join(", "))));
        }
        let key = match (self.pem, self.jwk) {
            (Some(pem), None) => {
                check_len(&field("pem"), &pem, 1, 16 * 1024)?;
                KeyMaterial::Pem(pem)
            }
            (None, Some(jwk)) if jwk.is_object() => KeyMaterial::Jwk(jwk),
            (None, Some(_)) => return Err(BodyError::field(&field("jwk"), "must be a JWK object")),
            (Some(_), Some(_)) => return Err(BodyError::field(&field("pem"), "give either pem or jwk, not both")),
            (None, None) => return Err(BodyError::field(&field("pem"), "is required (or jwk)")),
        };
        let expires_at = self.expires_at.map(|e| parse_date(&field("expires_at"), &e)).transpose()?;
        if let Some(kid) = &self.kid {
            let ok = (10..=64).contains(&kid.len())
                && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(BodyError::field(&field("kid"), "must match [0-9a-zA-Z-_]{10,64}"));
            }
        }
        Ok(NewCredential { name, alg, key, expires_at, kid: self.kid })
    }
}

fn parse_date(path: &str, text: &str) -> Result<UnixTime, BodyError> {
    UnixTime::parse_rfc3339(text).ok_or_else(|| BodyError::field(path, "must be an RFC 3339 date-time in UTC"))
}

/// `PATCH /api/v2/clients/{id}/credentials/{credential_id}`: only `expires_at` changes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct CredentialPatch {
    /// New expiry; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<String>>,
}

impl CredentialPatch {
    /// Validates, then applies (nothing changes on error).
    pub fn apply(self, credential: &mut ClientCredential, now: UnixTime) -> Result<(), BodyError> {
        let Some(expires_at) = self.expires_at else {
            return Err(BodyError::field("expires_at", "is required"));
        };
        credential.expires_at = expires_at.map(|e| parse_date("expires_at", &e)).transpose()?;
        credential.updated_at = now;
        Ok(())
    }
}

/// `private_key_jwt` inside `client_authentication_methods`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct PrivateKeyJwtBody {
    /// On create: credentials to register. On PATCH: references `{"id": …}` to registered ones.
    pub credentials: Vec<CredentialBody>,
}

/// `client_authentication_methods` (only `private_key_jwt` is supported).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ClientAuthMethodsBody {
    /// RFC 7523 client assertions.
    pub private_key_jwt: PrivateKeyJwtBody,
}

impl ClientAuthMethodsBody {
    /// Credentials to create (client create): validated, at most [`MAX_CREDENTIALS`].
    pub fn new_credentials(&self) -> Result<Vec<NewCredential>, BodyError> {
        let creds = &self.private_key_jwt.credentials;
        if creds.is_empty() || creds.len() > MAX_CREDENTIALS {
            return Err(BodyError::field(
                "client_authentication_methods.private_key_jwt.credentials",
                format!("must hold 1 to {MAX_CREDENTIALS} credentials"),
            ));
        }
        creds
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.clone().into_new(&format!("client_authentication_methods.private_key_jwt.credentials[{i}]"))
            })
            .collect()
    }

    /// Referenced credential ids (client PATCH).
    pub fn referenced_ids(&self) -> Result<Vec<String>, BodyError> {
        let creds = &self.private_key_jwt.credentials;
        if creds.is_empty() || creds.len() > MAX_CREDENTIALS {
            return Err(BodyError::field(
                "client_authentication_methods.private_key_jwt.credentials",
                format!("must reference 1 to {MAX_CREDENTIALS} credentials"),
            ));
        }
        creds
            .iter()
            .enumerate()
            .map(|(i, c)| match (&c.id, c == &CredentialBody { id: c.id.clone(), ..Default::default() }) {
                (Some(id), true) => Ok(id.clone()),
                _ => Err(BodyError::field(
                    &format!("client_authentication_methods.private_key_jwt.credentials[{i}]"),
                    "must be a reference {\"id\": \"cred_…\"}; register keys with POST /api/v2/clients/{id}/credentials",
                )),
            })
            .collect()
    }
}

/// Auth0's credential object (never any key material beyond its kid).
pub fn credential_view(c: &ClientCredential) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "kid": c.kid,
        "alg": c.alg,
        "credential_type": "public_key",
        "created_at": c.created_at.to_rfc3339(),
        "updated_at": c.updated_at.to_rfc3339(),
        "expires_at": c.expires_at.map(UnixTime::to_rfc3339),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_body;

    #[test]
    fn credential_bodies_name_their_errors() {
        let rows = [
            (json!({"credential_type": "x509_cert", "pem": "p"}), "credential_type"),
            (json!({"credential_type": "public_key"}), "pem"),
            (json!({"credential_type": "public_key", "pem": "p", "alg": "HS256"}), "alg"),
            (json!({"credential_type": "public_key", "pem": "p", "expires_at": "tomorrow"}), "expires_at"),
            (json!({"credential_type": "public_key", "pem": "p", "kid": "short"}), "kid"),
            (json!({"credential_type": "public_key", "pem": "p", "jwk": {}}), "pem"),
        ];
        for (body, field) in rows {
            let parsed: CredentialBody = parse_body(body.to_string().as_bytes()).unwrap();
            let err = parsed.into_new("").expect_err(&body.to_string());
            assert!(err.message.contains(field), "{body}: {}", err.message);
        }
        let ok: CredentialBody = parse_body(
            br#"{"credential_type":"public_key","pem":"p","alg":"ES256","expires_at":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let new = ok.into_new("").unwrap();
        assert_eq!((new.alg.as_str(), new.expires_at.is_some()), ("ES256", true));
    }

    #[test]
    fn patch_references_must_be_bare_ids() {
        let body: ClientAuthMethodsBody =
            parse_body(br#"{"private_key_jwt":{"credentials":[{"id":"cred_1"}]}}"#).unwrap();
        assert_eq!(body.referenced_ids().unwrap(), vec!["cred_1".to_owned()]);
        let body: ClientAuthMethodsBody =
            parse_body(br#"{"private_key_jwt":{"credentials":[{"id":"cred_1","pem":"x"}]}}"#).unwrap();
        assert!(body.referenced_ids().is_err());
        let body: ClientAuthMethodsBody = parse_body(br#"{"private_key_jwt":{"credentials":[]}}"#).unwrap();
        assert!(body.new_credentials().is_err());
    }
}
