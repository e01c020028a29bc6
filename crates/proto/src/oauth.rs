//! The token endpoint's wire format (`POST /oauth/token`): request parsing with client-credential
//! extraction, the success body, and OAuth error bodies with their HTTP statuses.
//!
//! This is the hot path. The parser makes one pass over the body, borrows parameter values from it
//! whenever nothing needed decoding, and allocates only for the values it returns.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ration_domain::{CLIENT_CREDENTIALS, TokenError, TokenRequest};
use serde::Serialize;
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::form;
use crate::json::write_string;

/// Longest accepted parameter value, in bytes after decoding. Far above any real client id,
/// secret, audience or scope list, and low enough that one request cannot make the server hold
/// large strings.
pub const MAX_PARAM_LEN: usize = 4096;

/// OAuth 2.0 error body (RFC 6749 §5.2), as Auth0 sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OAuthErrorBody {
    /// The OAuth error code, e.g. `invalid_request`.
    pub error: String,
    /// Human-readable explanation; for `invalid_request` it names the parameter.
    pub error_description: String,
    /// Link to documentation; Auth0 sends it only for `unauthorized_client`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

/// Successful token response (RFC 6749 §5.1). Field order matches Auth0's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenResponse {
    /// The signed JWT.
    pub access_token: String,
    /// Always [`TokenResponse::BEARER`].
    pub token_type: &'static str,
    /// Seconds until the token expires (the API's `token_lifetime`).
    pub expires_in: u32,
    /// Granted scopes, space-separated (possibly empty).
    pub scope: String,
}

impl TokenResponse {
    /// The only token type this server issues.
    pub const BEARER: &'static str = "Bearer";

    /// A bearer-token response; `scopes` are joined with spaces.
    pub fn bearer(access_token: String, expires_in: u32, scopes: &[String]) -> TokenResponse {
        TokenResponse { access_token, token_type: Self::BEARER, expires_in, scope: scopes.join(" ") }
    }

    /// The JSON body, byte for byte what `serde_json::to_vec` gives, written without scanning the
    /// access token for characters to escape: a compact JWS is base64url and dots only, and that
    /// scan was about 1.5 % of a token's instructions. Strings that may need escaping still go
    /// through serde_json.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.access_token.len() + self.scope.len() + 80);
        out.extend_from_slice(b"{\"access_token\":");
        if is_jws_compact(&self.access_token) {
            out.push(b'"');
            out.extend_from_slice(self.access_token.as_bytes());
            out.push(b'"');
        } else {
            write_string(&mut out, &self.access_token);
        }
        out.extend_from_slice(b",\"token_type\":");
        write_string(&mut out, self.token_type);
        out.extend_from_slice(b",\"expires_in\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.expires_in).as_bytes());
        out.extend_from_slice(b",\"scope\":");
        write_string(&mut out, &self.scope);
        out.push(b'}');
        out
    }
}

/// Base64url and dots: nothing JSON must escape.
///
/// Checks every byte without stopping at the first bad one: a branch-free loop the compiler turns
/// into vector compares, where `all()` with its early exit cost ~7 k instructions per token (about
/// as much as the escape scan it replaces).
fn is_jws_compact(s: &str) -> bool {
    let bad = s.bytes().fold(0u8, |bad, b| {
        let ok = b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.');
        bad | u8::from(!ok)
    });
    bad == 0
}

/// How the client presented its credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post {
        /// The client id from the body.
        client_id: String,
        /// The plaintext secret from the body.
        client_secret: String,
    },
    /// `client_secret_basic`: `Authorization: Basic base64(client_id:client_secret)`.
    Basic {
        /// The form-decoded client id from the header.
        client_id: String,
        /// The form-decoded secret from the header (may be empty; authentication then fails).
        client_secret: String,
    },
    /// No secret was presented at all (a public client, which cannot use this grant).
    None {
        /// The `client_id` from the body, when present.
        client_id: Option<String>,
    },
    /// `private_key_jwt` (RFC 7523): a JWT signed with one of the client's registered keys.
    Assertion {
        /// The `client_id` from the body, when present (must then equal the assertion's `iss`).
        client_id: Option<String>,
        /// The compact JWT.
        assertion: String,
    },
}

/// The only `client_assertion_type` there is (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl ClientAuth {
    /// The client id the request claims, whatever the method.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            ClientAuth::Post { client_id, .. } | ClientAuth::Basic { client_id, .. } => Some(client_id),
            ClientAuth::None { client_id } | ClientAuth::Assertion { client_id, .. } => client_id.as_deref(),
        }
    }
}

/// Hand-written so that secrets never reach logs through `{:?}`.
impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Post { client_id, .. } => {
                f.debug_struct("Post").field("client_id", client_id).field("client_secret", &"<redacted>").finish()
            }
            ClientAuth::Assertion { client_id, .. } => {
                f.debug_struct("Assertion").field("client_id", client_id).field("assertion", &"<redacted>").finish()
            }
            ClientAuth::Basic { client_id, .. } => {
                f.debug_struct("Basic").field("client_id", client_id).field("client_secret", &"<redacted>").finish()
            }
            ClientAuth::None { client_id } => f.debug_struct("None").field("client_id", client_id).finish(),
        }
    }
}

/// A syntactically valid client-credentials request, before client authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedTokenRequest {
    /// Always `client_credentials` (anything else is rejected while parsing).
    pub grant_type: String,
    /// The presented client credentials.
    pub auth: ClientAuth,
    /// Audience, scopes and organization for the domain decision.
    pub request: TokenRequest,
}

/// The body formats the token endpoint accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyFormat {
    Form,
    Json,
}

fn body_format(content_type: Option<&str>) -> Option<BodyFormat> {
    // Parameters such as `charset=UTF-8` are allowed; the body must be UTF-8 regardless.
    let media_type = content_type?.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyFormat::Form)
    } else if media_type.eq_ignore_ascii_case("application/json") {
        Some(BodyFormat::Json)
    } else {
        None
    }
}

fn invalid(text: impl Into<String>) -> TokenError {
    TokenError::InvalidRequest(text.into())
}

/// Parses a `POST /oauth/token` request: its `Content-Type` and `Authorization` header values and
/// its body.
///
/// Checks, in order: content type and body encoding; per parameter duplicates (RFC 6749 §3.2),
/// length and encoding; `grant_type` (an unsupported grant wins over any client-authentication
/// problem, as in Auth0); then the client credentials (HTTP Basic or body, never both).
/// Unknown parameters are ignored, and a parameter with an empty value counts as absent
/// (RFC 6749 §3.1).
pub fn parse_token_request(
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<ParsedTokenRequest, TokenError> {
    let format = body_format(content_type)
        .ok_or_else(|| invalid("Content-Type must be application/x-www-form-urlencoded or application/json"))?;
    let body = std::str::from_utf8(body).map_err(|_| invalid("Request body must be UTF-8"))?;
    let mut params = Params::default();
    match format {
        BodyFormat::Form => params.read_form(body)?,
        BodyFormat::Json => params.read_json(body)?,
    }
    params.finish(authorization)
}

/// The parameters of one request. Values borrow from the body unless decoding changed them.
#[derive(Default)]
struct Params<'a> {
    grant_type: Option<Cow<'a, str>>,
    client_id: Option<Cow<'a, str>>,
    client_secret: Option<Cow<'a, str>>,
    client_assertion: Option<Cow<'a, str>>,
    client_assertion_type: Option<Cow<'a, str>>,
    audience: Option<Cow<'a, str>>,
    scope: Option<Cow<'a, str>>,
    organization: Option<Cow<'a, str>>,
    /// Names of ignored parameters, kept only to detect their repetition. A set, not a list, so
    /// a body of many distinct unknown names costs linear time. It allocates only when used.
    unknown: HashSet<Cow<'a, str>>,
    /// Set by the JSON visitor, which can only return serde errors, to carry the real reason.
    error: Option<TokenError>,
}

impl<'a> Params<'a> {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Cow<'a, str>>> {
        Some(match name {
            "grant_type" => &mut self.grant_type,
            "client_id" => &mut self.client_id,
            "client_secret" => &mut self.client_secret,
            "client_assertion" => &mut self.client_assertion,
            "client_assertion_type" => &mut self.client_assertion_type,
            "audience" => &mut self.audience,
            "scope" => &mut self.scope,
            "organization" => &mut self.organization,
            _ => return None,
        })
    }

    fn add(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) -> Result<(), TokenError> {
        if value.is_empty() {
            // RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were
            // omitted from the request", so they do not count as a repetition either.
            return Ok(());
        }
        if value.len() > MAX_PARAM_LEN {
            return Err(invalid(format!("Parameter too long: {name}")));
        }
        let duplicate = match self.slot(&name) {
            Some(slot) if slot.is_some() => true,
            Some(slot) => {
                *slot = Some(value);
                false
            }
            None => !self.unknown.insert(name.clone()),
        };
        if duplicate {
            return Err(invalid(format!("Duplicate parameter: {name}")));
        }
        Ok(())
    }

    fn read_form(&mut self, body: &'a str) -> Result<(), TokenError> {
        for (raw_name, raw_value) in form::raw_pairs(body) {
            let name = form::decode(raw_name).map_err(|_| {
                invalid("Request body must be UTF-8: a parameter name is not UTF-8 after percent-decoding")
            })?;
            // Decoding never lengthens a value and `%XX` shortens three bytes to one, so a raw
            // value over three times the limit is too long without decoding it.
            if raw_value.len() > 3 * MAX_PARAM_LEN {
                return Err(invalid(format!("Parameter too long: {name}")));
            }
            let value = form::decode(raw_value)
                .map_err(|_| invalid(format!("Parameter {name} is not UTF-8 after percent-decoding")))?;
            self.add(name, value)?;
        }
        Ok(())
    }

    fn read_json(&mut self, body: &'a str) -> Result<(), TokenError> {
        let mut de = serde_json::Deserializer::from_str(body);
        let parsed = de.deserialize_map(JsonParams { params: self }).and_then(|()| de.end());
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        parsed.map_err(|e| match e.classify() {
            serde_json::error::Category::Data => invalid("Request body must be a JSON object"),
            _ => invalid(format!("Request body is not valid JSON: {e}")),
        })
    }

    fn finish(self, authorization: Option<&str>) -> Result<ParsedTokenRequest, TokenError> {
        let grant_type = self.grant_type.ok_or_else(|| invalid("Missing required parameter: grant_type"))?;
        if grant_type != CLIENT_CREDENTIALS {
            return Err(TokenError::UnsupportedGrantType);
        }
        let basic = authorization.map(parse_basic).transpose()?.flatten();
        let asserting = self.client_assertion.is_some() || self.client_assertion_type.is_some();
        if asserting && (basic.is_some() || self.client_secret.is_some()) {
            return Err(multiple_methods());
        }
        let assertion = match (self.client_assertion, self.client_assertion_type) {
            (None, None) => None,
            (Some(a), Some(t)) if t == JWT_BEARER => Some(a.into_owned()),
            (Some(_), Some(_)) => {
                return Err(invalid(format!("Invalid client_assertion_type: it must be {JWT_BEARER}")));
            }
            (Some(_), None) => return Err(invalid("Missing required parameter: client_assertion_type")),
            (None, Some(_)) => return Err(invalid("Missing required parameter: client_assertion")),
        };
        let auth = client_auth(basic, self.client_id, self.client_secret, assertion)?;
        let request = TokenRequest {
            audience: self.audience.map(Cow::into_owned),
            // RFC 6749 §3.3: scopes are separated by single spaces; tolerate runs of them.
            scope: self.scope.map(|s| s.split(' ').filter(|p| !p.is_empty()).map(str::to_owned).collect()),
            organization: self.organization.map(Cow::into_owned),
        };
        Ok(ParsedTokenRequest { grant_type: grant_type.into_owned(), auth, request })
    }
}

/// Decides which client-authentication method a request used. Only one may be used (RFC 6749
/// §2.3: "The client MUST NOT use more than one authentication method in each request").
fn client_auth(
    basic: Option<(String, String)>,
    body_id: Option<Cow<'_, str>>,
    body_secret: Option<Cow<'_, str>>,
    assertion: Option<String>,
) -> Result<ClientAuth, TokenError> {
    if let Some(assertion) = assertion {
        if basic.is_some() || body_secret.is_some() {
            return Err(multiple_methods());
        }
        return Ok(ClientAuth::Assertion { client_id: body_id.map(Cow::into_owned), assertion });
    }
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(multiple_methods()),
        (Some((client_id, client_secret)), None) => {
            if body_id.is_some_and(|id| id != client_id) {
                return Err(invalid("client_id in the body does not match the Authorization header"));
            }
            Ok(ClientAuth::Basic { client_id, client_secret })
        }
        (None, Some(secret)) => match body_id {
            Some(id) => Ok(ClientAuth::Post { client_id: id.into_owned(), client_secret: secret.into_owned() }),
            None => Err(missing_client_id()),
        },
        (None, None) => match body_id {
            Some(id) => Ok(ClientAuth::None { client_id: Some(id.into_owned()) }),
            None => Err(missing_client_id()),
        },
    }
}

fn multiple_methods() -> TokenError {
    invalid("Multiple client authentication methods: use either HTTP Basic or client_secret in the body")
}

fn missing_client_id() -> TokenError {
    invalid("Missing required parameter: client_id")
}

/// Standard base64 that accepts credentials with or without `=` padding: some HTTP clients strip
/// it, and the padding carries no information.
const BASIC_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `Some((client_id, client_secret))` for a Basic header, `None` for other schemes (a stray
/// `Bearer` header does not make a token request fail).
fn parse_basic(header: &str) -> Result<Option<(String, String)>, TokenError> {
    let header = header.trim();
    let (scheme, credentials) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let malformed = || invalid("Malformed Authorization header");
    let decoded = BASIC_B64.decode(credentials.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (raw_id, raw_secret) = decoded.split_once(':').ok_or_else(malformed)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined with the colon.
    let client_id = form::decode(raw_id).map_err(|_| malformed())?;
    let client_secret = form::decode(raw_secret).map_err(|_| malformed())?;
    if client_id.is_empty() {
        return Err(malformed());
    }
    if client_id.len() > MAX_PARAM_LEN || client_secret.len() > MAX_PARAM_LEN {
        return Err(malformed());
    }
    Ok(Some((client_id.into_owned(), client_secret.into_owned())))
}

/// Reads a JSON object into [`Params`], borrowing unescaped strings from the body.
struct JsonParams<'p, 'a> {
    params: &'p mut Params<'a>,
}

impl<'de> Visitor<'de> for JsonParams<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(JsonStr(name)) = map.next_key()? {
            let result = match map.next_value()? {
                JsonValue::Str(value) => self.params.add(name, value),
                // JSON has no "empty parameter" other than "" and null; treat null like "" so
                // that clients serializing an unset optional field as null still work.
                JsonValue::Null => self.params.add(name, Cow::Borrowed("")),
                JsonValue::Other => Err(invalid(format!("Parameter {name} must be a string"))),
            };
            if let Err(error) = result {
                self.params.error = Some(error);
                // Abort parsing; `read_json` reports `params.error` instead of this message.
                return Err(de::Error::custom("invalid parameter"));
            }
        }
        Ok(())
    }
}

/// A JSON string that borrows from the input when it has no escapes.
struct JsonStr<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A parameter value: a string, null, or anything else (which is skipped and reported).
enum JsonValue<'de> {
    Str(Cow<'de, str>),
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for JsonValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonValue::Str(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonValue::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(JsonValue::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(JsonValue::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(JsonValue::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(JsonValue::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JsonValue::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JsonValue::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// HTTP status and OAuth `error` code for a refused token request, as Auth0 answers.
pub fn token_error_status(e: &TokenError) -> (u16, &'static str) {
    match e {
        TokenError::InvalidRequest(_) => (400, "invalid_request"),
        TokenError::BodyTooLarge(_) => (413, "invalid_request"),
        TokenError::TooManyFailedAttempts => (429, "too_many_requests"),
        TokenError::ActionDenied { code: "server_error", .. } => (500, "server_error"),
        TokenError::ActionDenied { code, .. } => (400, code),
        TokenError::ActionFailed(_) => (500, "server_error"),
        TokenError::UnsupportedGrantType => (400, "unsupported_grant_type"),
        TokenError::Unauthorized => (401, "access_denied"),
        TokenError::InvalidClientAssertion(_) => (401, "invalid_client"),
        TokenError::GrantTypeNotAllowed => (403, "unauthorized_client"),
        TokenError::NoAudience
        | TokenError::UnknownAudience(_)
        | TokenError::NoClientGrant { .. }
        | TokenError::ScopesNotGranted(_)
        | TokenError::UnknownOrganization(_)
        | TokenError::OrganizationNotAssociated { .. } => (403, "access_denied"),
        // Organization misuse is a malformed request for this grant, not a missing permission.
        TokenError::OrganizationNotAllowed { .. } | TokenError::OrganizationRequired { .. } => (400, "invalid_request"),
        TokenError::QuotaExceeded(_) => (429, "too_many_requests"),
        TokenError::QuotaStoreUnavailable => (503, "temporarily_unavailable"),
        TokenError::ServerError => (500, "server_error"),
    }
}

/// Where Auth0 points clients whose grant types exclude `client_credentials`.
pub const GRANT_TYPES_DOC_URI: &str = "https://auth0.com/docs/clients/client-grant-types";

/// The OAuth error body for a refused token request.
pub fn token_error_body(e: &TokenError) -> OAuthErrorBody {
    let (_, code) = token_error_status(e);
    OAuthErrorBody {
        error: code.to_owned(),
        error_description: e.description(),
        error_uri: matches!(e, TokenError::GrantTypeNotAllowed).then(|| GRANT_TYPES_DOC_URI.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hand_written_token_json_equals_serde() {
        for (token, scope) in [
            ("eyJh.eyJz.c2ln-_", "read:x write:y"),
            ("eyJh.eyJz.c2ln", ""),
            ("not \"a\" jws", "odd\\scope \"quoted\" \u{7}"),
        ] {
            let r = super::TokenResponse::bearer(token.into(), 86_400, &[scope.to_owned()]);
            assert_eq!(String::from_utf8(r.to_json()).unwrap(), serde_json::to_string(&r).unwrap());
        }
    }

    use ration_domain::EntityKind;

    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const JSON: Option<&str> = Some("application/json");

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    }

    fn parse(ct: Option<&str>, auth: Option<&str>, body: &str) -> Result<ParsedTokenRequest, TokenError> {
        parse_token_request(ct, auth, body.as_bytes())
    }

    fn err(text: &str) -> Result<ParsedTokenRequest, TokenError> {
        Err(TokenError::InvalidRequest(text.to_owned()))
    }

    fn post(id: &str, secret: &str) -> ClientAuth {
        ClientAuth::Post { client_id: id.into(), client_secret: secret.into() }
    }

    fn basic_auth(id: &str, secret: &str) -> ClientAuth {
        ClientAuth::Basic { client_id: id.into(), client_secret: secret.into() }
    }

    fn ok(auth: ClientAuth, aud: Option<&str>, scope: Option<&[&str]>, org: Option<&str>) -> ParsedTokenRequest {
        ParsedTokenRequest {
            grant_type: CLIENT_CREDENTIALS.into(),
            auth,
            request: TokenRequest {
                audience: aud.map(str::to_owned),
                scope: scope.map(|s| s.iter().map(|x| x.to_string()).collect()),
                organization: org.map(str::to_owned),
            },
        }
    }

    #[test]
    fn parses_valid_requests() {
        let b = basic("my%20id", "s%3Acr+t");
        // (name, content type, authorization, body, expected)
        type Case<'a> = (&'a str, Option<&'a str>, Option<String>, &'a str, ParsedTokenRequest);
        let cases: Vec<Case> = vec![
            (
                "form post",
                FORM,
                None,
                "grant_type=client_credentials&client_id=c1&client_secret=s1&audience=https%3A%2F%2Fapi&scope=read%20write",
                ok(post("c1", "s1"), Some("https://api"), Some(&["read", "write"]), None),
            ),
            (
                "charset parameter and upper-case media type",
                Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
                None,
                "grant_type=client_credentials&client_id=c1&client_secret=s1",
                ok(post("c1", "s1"), None, None, None),
            ),
            (
                "plus means space, runs of spaces dropped",
                FORM,
                None,
                "grant_type=client_credentials&client_id=c1&client_secret=s1&scope=+read++write+&organization=org_1",
                ok(post("c1", "s1"), None, Some(&["read", "write"]), Some("org_1")),
            ),
            (
                "empty values are absent; unknown params ignored",
                FORM,
                None,
                "grant_type=client_credentials&client_id=c1&client_secret=s1&audience=&scope=&resource=x&&foo",
                ok(post("c1", "s1"), None, None, None),
            ),
            (
                "basic with form-encoded id and secret",
                FORM,
                Some(b.clone()),
                "grant_type=client_credentials&audience=a",
                ok(basic_auth("my id", "s:cr t"), Some("a"), None, None),
            ),
            (
                "basic scheme case-insensitive, matching body client_id",
                FORM,
                Some(b.replacen("Basic", "bAsIc", 1)),
                "grant_type=client_credentials&client_id=my%20id",
                ok(basic_auth("my id", "s:cr t"), None, None, None),
            ),
            (
                "bearer authorization ignored",
                FORM,
                Some("Bearer abc".into()),
                "grant_type=client_credentials&client_id=c1&client_secret=s1",
                ok(post("c1", "s1"), None, None, None),
            ),
            (
                "no secret at all",
                FORM,
                None,
                "grant_type=client_credentials&client_id=c1",
                ok(ClientAuth::None { client_id: Some("c1".into()) }, None, None, None),
            ),
            (
                "json",
                Some("application/json; charset=utf-8"),
                None,
                r#"{"grant_type":"client_credentials","client_id":"c1","client_secret":"s\"1","audience":"https://api","organization":"acme","scope":"a b"}"#,
                ok(post("c1", "s\"1"), Some("https://api"), Some(&["a", "b"]), Some("acme")),
            ),
            (
                "json null and empty are absent, unknown ignored",
                JSON,
                None,
                r#"{"grant_type":"client_credentials","client_id":"c1","client_secret":"s1","audience":null,"scope":"","x":"y"}"#,
                ok(post("c1", "s1"), None, None, None),
            ),
            (
                "json with basic",
                JSON,
                Some(b.clone()),
                r#"{"grant_type":"client_credentials"}"#,
                ok(basic_auth("my id", "s:cr t"), None, None, None),
            ),
        ];
        for (name, ct, auth, body, want) in cases {
            assert_eq!(parse(ct, auth.as_deref(), body), Ok(want), "{name}");
        }
    }

    #[test]
    fn rejects_invalid_requests() {
        let long = "x".repeat(MAX_PARAM_LEN + 1);
        let at_limit = "x".repeat(MAX_PARAM_LEN);
        let long_encoded = "%41".repeat(MAX_PARAM_LEN + 1);
        let b = basic("c1", "s1");
        let gt = "grant_type=client_credentials";
        // (name, content type, authorization, body, expected)
        type Case<'a> = (&'a str, Option<&'a str>, Option<String>, String, Result<ParsedTokenRequest, TokenError>);
        let cases: Vec<Case> = vec![
            (
                "no content type",
                None,
                None,
                gt.into(),
                err("Content-Type must be application/x-www-form-urlencoded or application/json"),
            ),
            (
                "text/plain",
                Some("text/plain"),
                None,
                gt.into(),
                err("Content-Type must be application/x-www-form-urlencoded or application/json"),
            ),
            (
                "json prefix is not json",
                Some("application/jsonx"),
                None,
                "{}".into(),
                err("Content-Type must be application/x-www-form-urlencoded or application/json"),
            ),
            (
                "missing grant_type",
                FORM,
                None,
                "client_id=c1&client_secret=s".into(),
                err("Missing required parameter: grant_type"),
            ),
            (
                "empty grant_type",
                FORM,
                None,
                "grant_type=&client_id=c1".into(),
                err("Missing required parameter: grant_type"),
            ),
            (
                "unsupported grant",
                FORM,
                None,
                "grant_type=password&client_id=c1".into(),
                Err(TokenError::UnsupportedGrantType),
            ),
            (
                "unsupported grant before auth problems",
                FORM,
                Some("Basic !!!".into()),
                "grant_type=authorization_code&client_secret=s".into(),
                Err(TokenError::UnsupportedGrantType),
            ),
            (
                "duplicate known",
                FORM,
                None,
                format!("{gt}&client_id=a&client_id=a"),
                err("Duplicate parameter: client_id"),
            ),
            ("duplicate grant_type", FORM, None, format!("{gt}&{gt}"), err("Duplicate parameter: grant_type")),
            ("duplicate unknown", FORM, None, format!("{gt}&foo=1&client_id=c&foo=2"), err("Duplicate parameter: foo")),
            (
                "duplicate via encoded name",
                FORM,
                None,
                format!("{gt}&scope=a&%73cope=b"),
                err("Duplicate parameter: scope"),
            ),
            (
                "duplicate json",
                JSON,
                None,
                r#"{"grant_type":"client_credentials","audience":"a","audience":"b"}"#.into(),
                err("Duplicate parameter: audience"),
            ),
            ("too long", FORM, None, format!("{gt}&client_id=c&audience={long}"), err("Parameter too long: audience")),
            (
                "too long after decoding",
                FORM,
                None,
                format!("{gt}&client_id=c&scope={long_encoded}"),
                err("Parameter too long: scope"),
            ),
            ("too long unknown", FORM, None, format!("{gt}&client_id=c&junk={long}"), err("Parameter too long: junk")),
            (
                "too long json",
                JSON,
                None,
                format!(r#"{{"grant_type":"client_credentials","client_secret":"{long}"}}"#),
                err("Parameter too long: client_secret"),
            ),
            (
                "at limit is fine but no client",
                FORM,
                None,
                format!("{gt}&audience={at_limit}"),
                err("Missing required parameter: client_id"),
            ),
            (
                "bad utf-8 escape in value",
                FORM,
                None,
                format!("{gt}&client_id=%FF"),
                err("Parameter client_id is not UTF-8 after percent-decoding"),
            ),
            (
                "bad utf-8 escape in name",
                FORM,
                None,
                format!("{gt}&%C3=x"),
                err("Request body must be UTF-8: a parameter name is not UTF-8 after percent-decoding"),
            ),
            ("json not an object", JSON, None, r#"["grant_type"]"#.into(), err("Request body must be a JSON object")),
            ("json string body", JSON, None, r#""x""#.into(), err("Request body must be a JSON object")),
            (
                "json number value",
                JSON,
                None,
                r#"{"grant_type":"client_credentials","client_id":5}"#.into(),
                err("Parameter client_id must be a string"),
            ),
            (
                "json object value of unknown param",
                JSON,
                None,
                r#"{"grant_type":"client_credentials","x":{"y":[1]}}"#.into(),
                err("Parameter x must be a string"),
            ),
            (
                "json array value",
                JSON,
                None,
                r#"{"grant_type":"client_credentials","scope":["a"]}"#.into(),
                err("Parameter scope must be a string"),
            ),
            (
                "basic and body secret",
                FORM,
                Some(b.clone()),
                format!("{gt}&client_secret=s1"),
                err("Multiple client authentication methods: use either HTTP Basic or client_secret in the body"),
            ),
            (
                "basic with other body client_id",
                FORM,
                Some(b.clone()),
                format!("{gt}&client_id=c2"),
                err("client_id in the body does not match the Authorization header"),
            ),
            (
                "secret without id",
                FORM,
                None,
                format!("{gt}&client_secret=s1"),
                err("Missing required parameter: client_id"),
            ),
            ("nothing", FORM, None, gt.into(), err("Missing required parameter: client_id")),
            ("basic bad base64", FORM, Some("Basic %%%".into()), gt.into(), err("Malformed Authorization header")),
            (
                "basic no colon",
                FORM,
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("c1"))),
                gt.into(),
                err("Malformed Authorization header"),
            ),
            (
                "basic not utf-8",
                FORM,
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x']))),
                gt.into(),
                err("Malformed Authorization header"),
            ),
            ("basic escape not utf-8", FORM, Some(basic("%FF", "x")), gt.into(), err("Malformed Authorization header")),
            ("basic empty id", FORM, Some(basic("", "x")), gt.into(), err("Malformed Authorization header")),
            ("basic without credentials", FORM, Some("Basic".into()), gt.into(), err("Malformed Authorization header")),
            (
                "assertion",
                FORM,
                None,
                format!(
                    "{gt}&client_assertion=x&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                ),
                Ok(ParsedTokenRequest {
                    grant_type: "client_credentials".into(),
                    auth: ClientAuth::Assertion { client_id: None, assertion: "x".into() },
                    request: TokenRequest::default(),
                }),
            ),
            (
                "assertion of another type",
                FORM,
                None,
                format!("{gt}&client_assertion=x&client_assertion_type=saml"),
                err("Invalid client_assertion_type: it must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ),
            (
                "assertion without type",
                FORM,
                None,
                format!("{gt}&client_assertion=x"),
                err("Missing required parameter: client_assertion_type"),
            ),
            (
                "assertion plus secret",
                FORM,
                None,
                format!("{gt}&client_id=c&client_secret=s&client_assertion=x"),
                err("Multiple client authentication methods: use either HTTP Basic or client_secret in the body"),
            ),
        ];
        for (name, ct, auth, body, want) in cases {
            assert_eq!(parse(ct, auth.as_deref(), &body), want, "{name}");
        }
    }

    #[test]
    fn rejects_invalid_bodies() {
        let cases: &[(Option<&str>, &[u8], &str)] = &[
            (FORM, b"grant_type=client_credentials&client_id=\xff", "Request body must be UTF-8"),
            (JSON, b"{\"grant_type\":\"\xfe\"}", "Request body must be UTF-8"),
        ];
        for (ct, body, want) in cases {
            assert_eq!(parse_token_request(*ct, None, body), err(want));
        }
        let e = parse(JSON, None, r#"{"grant_type": "#).unwrap_err();
        assert!(e.description().starts_with("Request body is not valid JSON: "), "{e}");
        let e = parse(JSON, None, r#"{"grant_type":"client_credentials"} x"#).unwrap_err();
        assert!(e.description().starts_with("Request body is not valid JSON: "), "{e}");
    }

    #[test]
    fn literal_replacement_character_is_kept() {
        // U+FFFD in the input (raw or escaped) is data, not a decoding failure.
        let p = parse(FORM, None, "grant_type=client_credentials&client_id=a%EF%BF%BD\u{FFFD}").unwrap();
        assert_eq!(p.auth.client_id(), Some("a\u{FFFD}\u{FFFD}"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", post("c1", "hunter2-secret"));
        assert!(text.contains("c1") && !text.contains("hunter2"), "{text}");
        let text = format!("{:?}", basic_auth("c1", "hunter2-secret"));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn maps_errors_to_status_and_code() {
        let cases: Vec<(TokenError, u16, &str)> = vec![
            (TokenError::InvalidRequest("x".into()), 400, "invalid_request"),
            (TokenError::UnsupportedGrantType, 400, "unsupported_grant_type"),
            (TokenError::Unauthorized, 401, "access_denied"),
            (TokenError::GrantTypeNotAllowed, 403, "unauthorized_client"),
            (TokenError::NoAudience, 403, "access_denied"),
            (TokenError::UnknownAudience("a".into()), 403, "access_denied"),
            (TokenError::NoClientGrant { client_id: "c".into(), audience: "a".into() }, 403, "access_denied"),
            (TokenError::ScopesNotGranted(vec!["s".into()]), 403, "access_denied"),
            (TokenError::UnknownOrganization("o".into()), 403, "access_denied"),
            (
                TokenError::OrganizationNotAssociated { organization_id: "o".into(), audience: "a".into() },
                403,
                "access_denied",
            ),
            (TokenError::OrganizationNotAllowed { audience: "a".into() }, 400, "invalid_request"),
            (TokenError::OrganizationRequired { audience: "a".into() }, 400, "invalid_request"),
            (TokenError::QuotaExceeded(EntityKind::Client), 429, "too_many_requests"),
            (TokenError::QuotaStoreUnavailable, 503, "temporarily_unavailable"),
            (TokenError::ServerError, 500, "server_error"),
        ];
        for (e, status, code) in cases {
            assert_eq!(token_error_status(&e), (status, code), "{e:?}");
            let body = token_error_body(&e);
            assert_eq!(body.error, code);
            assert_eq!(body.error_description, e.description());
            assert_eq!(body.error_uri.is_some(), e == TokenError::GrantTypeNotAllowed);
        }
    }

    #[test]
    fn serializes_bodies_like_auth0() {
        let body = token_error_body(&TokenError::GrantTypeNotAllowed);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"unauthorized_client","error_description":"Grant type 'client_credentials' not allowed for the client.","error_uri":"https://auth0.com/docs/clients/client-grant-types"}"#
        );
        let body = token_error_body(&TokenError::QuotaExceeded(EntityKind::Client));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"too_many_requests","error_description":"Client quota exceeded"}"#
        );
        let ok = TokenResponse::bearer("t".into(), 60, &["a".into(), "b".into()]);
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"access_token":"t","token_type":"Bearer","expires_in":60,"scope":"a b"}"#
        );
    }
}

/// What a token request said, read leniently: for the failure event of a request that
/// [`parse_token_request`] refused. First values win, errors are ignored, and values longer than
/// [`FACT_MAX_LEN`] are dropped (an event log is no place for a 4 KiB "client_id").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// From the body or HTTP Basic.
    pub client_id: Option<String>,
    /// As requested.
    pub audience: Option<String>,
    /// As requested (space-separated).
    pub scope: Option<String>,
    /// As requested.
    pub organization: Option<String>,
}

/// Longest value [`peek_request`] keeps.
pub const FACT_MAX_LEN: usize = 256;

/// Reads [`RequestFacts`] from a request that may be malformed.
pub fn peek_request(content_type: Option<&str>, authorization: Option<&str>, body: &[u8]) -> RequestFacts {
    let mut facts = RequestFacts::default();
    let mut set = |name: &str, value: &str| {
        let slot = match name {
            "client_id" => &mut facts.client_id,
            "audience" => &mut facts.audience,
            "scope" => &mut facts.scope,
            "organization" => &mut facts.organization,
            _ => return,
        };
        if slot.is_none() && !value.is_empty() && value.len() <= FACT_MAX_LEN {
            *slot = Some(value.to_owned());
        }
    };
    if let Ok(text) = std::str::from_utf8(body) {
        match body_format(content_type) {
            Some(BodyFormat::Form) => {
                for (name, value) in form::raw_pairs(text) {
                    if let (Ok(name), Ok(value)) = (form::decode(name), form::decode(value)) {
                        set(&name, &value);
                    }
                }
            }
            Some(BodyFormat::Json) => {
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
                    for (name, value) in &map {
                        if let Some(value) = value.as_str() {
                            set(name, value);
                        }
                    }
                }
            }
            None => {}
        }
    }
    if facts.client_id.is_none()
        && let Some(Ok(Some((client_id, _)))) = authorization.map(parse_basic)
        && client_id.len() <= FACT_MAX_LEN
    {
        facts.client_id = Some(client_id);
    }
    facts
}

#[cfg(test)]
mod peek_tests {
    use super::*;

    #[test]
    fn peeks_even_when_parsing_fails() {
        let f = peek_request(
            Some("application/x-www-form-urlencoded"),
            None,
            b"grant_type=password&client_id=abc&audience=https%3A%2F%2Fapi&client_id=dup",
        );
        assert_eq!(f.client_id.as_deref(), Some("abc"));
        assert_eq!(f.audience.as_deref(), Some("https://api"));
        let f = peek_request(Some("application/json"), Some("Basic YWJjOnNlY3JldA=="), br#"{"grant_type": 1}"#);
        assert_eq!(f.client_id.as_deref(), Some("abc"));
        let long = format!("client_id={}", "x".repeat(FACT_MAX_LEN + 1));
        assert_eq!(peek_request(Some("application/x-www-form-urlencoded"), None, long.as_bytes()).client_id, None);
    }
}
