//! What an operator configures: clients (applications), resource servers (APIs), client grants,
//! organizations and tenant settings. Plain data; validation of user input happens where the input
//! is parsed (`ration-proto`), so every value here is already valid.

use std::collections::BTreeMap;

use crate::quota::TokenQuota;
use crate::time::UnixTime;

/// The grant type this server issues tokens for.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// An application that asks for tokens. (The token path reads the copies of its fields kept in
/// its catalog entry, `catalog::ClientFacts`, not this.)
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    /// Keyed hash of the client secret (see the server's `secrets` module). Never the secret.
    pub secret_hash: String,
    /// In every token's `seccft` event.
    pub name: String,
    pub token_quota: Option<TokenQuota>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub is_first_party: bool,
    pub client_id: String,
    pub default_organization: Option<DefaultOrganization>,
    pub description: Option<String>,
    /// Auth0 `app_type`, e.g. `non_interactive` for M2M applications.
    pub app_type: Option<String>,
    /// The client may get client-credentials tokens only while this contains
    /// [`CLIENT_CREDENTIALS`]; removing it is how an operator pauses a client.
    pub grant_types: Vec<String>,
    pub client_metadata: BTreeMap<String, String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl Client {
    pub fn allows_client_credentials(&self) -> bool {
        self.grant_types.iter().any(|g| g == CLIENT_CREDENTIALS)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    /// Public client: has no secret and cannot use the client-credentials grant.
    None,
    ClientSecretPost,
    ClientSecretBasic,
    /// RFC 7523 client assertions signed with one of the client's registered public keys
    /// ([`ClientCredential`]); the secret is not accepted. Auth0 shows this as
    /// `token_endpoint_auth_method: null` plus `client_authentication_methods.private_key_jwt`.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::None => "none",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<TokenEndpointAuthMethod> {
        Some(match s {
            "none" => TokenEndpointAuthMethod::None,
            "client_secret_post" => TokenEndpointAuthMethod::ClientSecretPost,
            "client_secret_basic" => TokenEndpointAuthMethod::ClientSecretBasic,
            "private_key_jwt" => TokenEndpointAuthMethod::PrivateKeyJwt,
            _ => return None,
        })
    }
}

/// `default_organization` on a client: used when a request names no organization and the grant
/// requires one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultOrganization {
    pub organization_id: String,
    /// Auth0 only supports `client_credentials` here.
    pub flows: Vec<String>,
}

/// An API: the audience of tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceServer {
    pub id: String,
    pub name: String,
    /// The audience string. Immutable once created.
    pub identifier: String,
    pub scopes: Vec<ResourceServerScope>,
    pub signing_alg: SigningAlg,
    /// HMAC key for `HS256` tokens; `None` for asymmetric algorithms.
    pub signing_secret: Option<String>,
    /// Seconds; `exp = iat + token_lifetime`.
    pub token_lifetime: u32,
    /// Created by Ration itself (the Management API); cannot be changed or deleted.
    pub is_system: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceServerScope {
    pub value: String,
    pub description: Option<String>,
}

/// Token signing algorithms. `RS256`, `RS512`, `PS256` and `HS256` are Auth0's; `ES256` and
/// `EdDSA` are extensions for users who need more tokens per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlg {
    RS256,
    RS512,
    PS256,
    HS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 6] = [
        SigningAlg::RS256,
        SigningAlg::RS512,
        SigningAlg::PS256,
        SigningAlg::HS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::RS256 => "RS256",
            SigningAlg::RS512 => "RS512",
            SigningAlg::PS256 => "PS256",
            SigningAlg::HS256 => "HS256",
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<SigningAlg> {
        SigningAlg::ALL.into_iter().find(|alg| alg.as_str() == s)
    }

    /// The kind of key material that signs with this algorithm.
    pub fn key_kind(self) -> KeyKind {
        match self {
            SigningAlg::RS256 | SigningAlg::RS512 | SigningAlg::PS256 => KeyKind::Rsa,
            SigningAlg::ES256 => KeyKind::EcP256,
            SigningAlg::EdDSA => KeyKind::Ed25519,
            SigningAlg::HS256 => KeyKind::Hmac,
        }
    }
}

/// Families of signing keys. One RSA key serves RS256, RS512 and PS256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    Rsa,
    EcP256,
    Ed25519,
    /// Per-API shared secret; never in the JWKS.
    Hmac,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC-P256",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Hmac => "HMAC",
        }
    }

    pub fn parse(s: &str) -> Option<KeyKind> {
        [KeyKind::Rsa, KeyKind::EcP256, KeyKind::Ed25519, KeyKind::Hmac].into_iter().find(|k| k.as_str() == s)
    }
}

/// Permission for one client to get tokens for one API, with at most these scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientGrant {
    pub id: String,
    pub client_id: String,
    pub audience: String,
    pub scope: Vec<String>,
    pub organization_usage: OrganizationUsage,
    pub allow_any_organization: bool,
    /// Created by Ration (the admin client's Management API grant); cannot be changed or deleted.
    pub is_system: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// Whether tokens for a grant may, must or must not name an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrganizationUsage {
    #[default]
    Deny,
    Allow,
    Require,
}

impl OrganizationUsage {
    pub fn as_str(self) -> &'static str {
        match self {
            OrganizationUsage::Deny => "deny",
            OrganizationUsage::Allow => "allow",
            OrganizationUsage::Require => "require",
        }
    }

    pub fn parse(s: &str) -> Option<OrganizationUsage> {
        Some(match s {
            "deny" => OrganizationUsage::Deny,
            "allow" => OrganizationUsage::Allow,
            "require" => OrganizationUsage::Require,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Organization {
    pub id: String,
    /// Unique, lower-case; may be used instead of the id in token requests.
    pub name: String,
    pub display_name: Option<String>,
    pub token_quota: Option<TokenQuota>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// Tenant-wide settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TenantSettings {
    pub friendly_name: Option<String>,
    pub support_email: Option<String>,
    pub support_url: Option<String>,
    /// Audience used when a token request names none.
    pub default_audience: Option<String>,
    pub default_token_quota: DefaultTokenQuota,
}

/// Tenant defaults for entities that have no quota of their own.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DefaultTokenQuota {
    pub clients: Option<TokenQuota>,
    pub organizations: Option<TokenQuota>,
}

/// A public key a client signs `private_key_jwt` assertions with (Auth0's client credential of
/// type `public_key`). Stored normalized as a public JWK, whatever form it was registered in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCredential {
    /// `cred_…`.
    pub id: String,
    pub client_id: String,
    pub name: String,
    /// RFC 7638 thumbprint of the key, or the kid given at registration.
    pub kid: String,
    /// `RS256`, `RS384`, `PS256` or `ES256`.
    pub alg: String,
    /// The public key as a JWK (JSON text).
    pub jwk: String,
    /// After this the credential is kept but no longer accepted.
    pub expires_at: Option<UnixTime>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl ClientCredential {
    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}
