//! `private_key_jwt` (RFC 7523): registering a client's public keys and verifying its assertions.
//!
//! Registration normalizes a key (PEM SubjectPublicKeyInfo or JWK) into a public JWK and a kid
//! (RFC 7638 thumbprint unless one is given), refusing private keys, small RSA keys and keys that
//! do not fit the algorithm. Verification follows RFC 7523 and Auth0's rules: `iss` = `sub` =
//! the client, `aud` = our issuer or token endpoint, `exp` required and near, single-use `jti`,
//! 10 s of clock skew, signatures only in the credential's algorithm (so neither `none` nor an
//! HMAC "signed" with a public key can pass).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ration_domain::{Catalog, Client, ClientCredential, TokenEndpointAuthMethod, TokenError, UnixTime};
use ration_proto::mgmt::{KeyMaterial, NewCredential};
use serde_json::{Map, Value, json};

use crate::state::AppState;

/// Auth0's limits on assertions.
const MAX_ASSERTION_BYTES: usize = 2048;
const MAX_CLAIM_LEN: usize = 64;
const SKEW_SECS: i64 = 10;
const MIN_RSA_BITS: usize = 2048;

/// Why a key cannot be registered (a 400 naming the field).
pub struct KeyProblem(pub String);

/// Turns registered key material into a stored credential.
pub fn register(
    new: NewCredential,
    id: String,
    client_id: &str,
    now: UnixTime,
) -> Result<ClientCredential, KeyProblem> {
    let jwk = match &new.key {
        KeyMaterial::Pem(pem) => jwk_from_pem(pem)?,
        KeyMaterial::Jwk(value) => public_jwk(value)?,
    };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    match (new.alg.as_str(), kty) {
        ("RS256" | "RS384" | "PS256", "RSA") | ("ES256", "EC") => {}
        (alg, kty) => return Err(KeyProblem(format!("an {kty} key cannot sign {alg}"))),
    }
    let kid = match new.kid {
        Some(kid) => kid,
        None => thumbprint(&jwk)?,
    };
    let mut stored = jwk;
    stored.insert("kid".into(), json!(kid));
    stored.insert("alg".into(), json!(new.alg));
    Ok(ClientCredential {
        id,
        client_id: client_id.to_owned(),
        name: new.name,
        kid,
        alg: new.alg,
        jwk: Value::Object(stored).to_string(),
        expires_at: new.expires_at,
        created_at: now,
        updated_at: now,
    })
}

/// The public members of a JWK; refuses private keys (a client must never send us its private
/// key, and storing one would be worse than refusing it).
fn public_jwk(value: &Value) -> Result<Map<String, Value>, KeyProblem> {
    let obj = value.as_object().ok_or_else(|| KeyProblem("jwk must be an object".into()))?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| obj.contains_key(*m)) {
        return Err(KeyProblem("jwk is a private or symmetric key: register the public key only".into()));
    }
    let text = |m: &str| {
        obj.get(m).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| KeyProblem(format!("jwk lacks '{m}'")))
    };
    match obj.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            let (n, e) = (text("n")?, text("e")?);
            let bits = B64.decode(&n).map_err(|_| KeyProblem("jwk 'n' is not base64url".into()))?.len() * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeyProblem(format!("RSA keys must have at least {MIN_RSA_BITS} bits")));
            }
            B64.decode(&e).map_err(|_| KeyProblem("jwk 'e' is not base64url".into()))?;
            Ok(Map::from_iter([("kty".into(), json!("RSA")), ("n".into(), json!(n)), ("e".into(), json!(e))]))
        }
        Some("EC") => {
            if obj.get("crv").and_then(Value::as_str) != Some("P-256") {
                return Err(KeyProblem("EC keys must be on curve P-256".into()));
            }
            let (x, y) = (text("x")?, text("y")?);
            for c in [&x, &y] {
                if B64.decode(c).map(|b| b.len()) != Ok(32) {
                    return Err(KeyProblem("jwk 'x' and 'y' must be 32-byte base64url values".into()));
                }
            }
            Ok(Map::from_iter([
                ("kty".into(), json!("EC")),
                ("crv".into(), json!("P-256")),
                ("x".into(), json!(x)),
                ("y".into(), json!(y)),
            ]))
        }
        _ => Err(KeyProblem("jwk 'kty' must be RSA or EC".into())),
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order.
fn thumbprint(jwk: &Map<String, Value>) -> Result<String, KeyProblem> {
    let s = |m: &str| jwk.get(m).and_then(Value::as_str).unwrap_or_default().to_owned();
    let input = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        Some("EC") => format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, s("x"), s("y")),
        _ => return Err(KeyProblem("unsupported key type".into())),
    };
    Ok(B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes())))
}

/// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) as a JWK.
fn jwk_from_pem(pem: &str) -> Result<Map<String, Value>, KeyProblem> {
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    use rustls_pki_types::pem::PemObject as _;
    if pem.contains("PRIVATE KEY") {
        return Err(KeyProblem("pem is a private key: register the public key only".into()));
    }
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| KeyProblem("pem must hold a -----BEGIN PUBLIC KEY----- block (SubjectPublicKeyInfo)".into()))?;
    let bad = || KeyProblem("pem public key is malformed or of an unsupported type (RSA or EC P-256)".into());
    let (tag, spki_body, _) = der(spki.as_ref()).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (_, algorithm, rest) = der(spki_body).ok_or_else(bad)?;
    let (bit_tag, bits, _) = der(rest).ok_or_else(bad)?;
    let key = match (bit_tag, bits.split_first()) {
        (0x03, Some((0, key))) => key,
        _ => return Err(bad()),
    };
    const RSA: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    const EC: &[u8] = &[0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    if algorithm.starts_with(RSA) {
        let (_, seq, _) = der(key).ok_or_else(bad)?;
        let (_, n, rest) = der(seq).ok_or_else(bad)?;
        let (_, e, _) = der(rest).ok_or_else(bad)?;
        let strip = |v: &[u8]| -> Vec<u8> { v.iter().skip_while(|b| **b == 0).copied().collect() };
        let jwk = json!({"kty": "RSA", "n": B64.encode(strip(n)), "e": B64.encode(strip(e))});
        public_jwk(&jwk)
    } else if algorithm.starts_with(EC) && algorithm.get(EC.len()..) == Some(P256) {
        match key.split_first() {
            Some((4, xy)) if xy.len() == 64 => {
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&xy[..32]), "y": B64.encode(&xy[32..])});
                public_jwk(&jwk)
            }
            _ => Err(KeyProblem("EC public keys must be uncompressed P-256 points".into())),
        }
    } else {
        Err(bad())
    }
}

/// One DER TLV: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// `exp` (required, not past, not too far ahead) and `nbf`/`iat` (not in the future), with the
/// allowed skew; returns `exp`. Saturating arithmetic: the client signs these values, and near
/// i64's ends plain arithmetic would overflow.
fn check_times(claims: &Value, now: UnixTime, max_lifetime_secs: i64) -> Result<i64, TokenError> {
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let secs = now.secs();
    let exp = number("exp").ok_or_else(|| refuse("exp is required"))?;
    if exp.saturating_add(SKEW_SECS) <= secs {
        return Err(refuse("the assertion has expired"));
    }
    if exp.saturating_sub(secs) > max_lifetime_secs.saturating_add(SKEW_SECS) {
        return Err(refuse(format!("exp is more than {max_lifetime_secs} s ahead")));
    }
    let in_future = |t: i64| t.saturating_sub(SKEW_SECS) > secs;
    if number("nbf").is_some_and(in_future) || number("iat").is_some_and(in_future) {
        return Err(refuse("the assertion is not valid yet (iat/nbf in the future)"));
    }
    Ok(exp)
}

fn refuse(why: impl Into<String>) -> TokenError {
    TokenError::InvalidClientAssertion(why.into())
}

/// Authenticates a client by its assertion. `claimed_id` is the body's `client_id`, if any.
pub async fn authenticate<'c>(
    state: &AppState,
    catalog: &'c Catalog,
    claimed_id: Option<&str>,
    assertion: &str,
    now: UnixTime,
) -> Result<&'c Arc<Client>, TokenError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(refuse(format!("client_assertion is longer than {MAX_ASSERTION_BYTES} bytes")));
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| refuse("malformed JWT (or a disallowed alg such as none)"))?;
    let alg = format!("{:?}", header.alg);
    if !ration_proto::mgmt::CREDENTIAL_ALGS.contains(&alg.as_str()) {
        return Err(refuse(format!("alg {alg} is not allowed; use RS256, RS384, PS256 or ES256")));
    }
    // Who claims to be asking, before any signature is checked: only to find the keys.
    let unverified: Value = assertion
        .split('.')
        .nth(1)
        .and_then(|p| B64.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refuse("malformed JWT payload"))?;
    let iss = unverified.get("iss").and_then(Value::as_str).ok_or_else(|| refuse("iss is required"))?;
    if iss.len() > MAX_CLAIM_LEN {
        return Err(refuse(format!("iss is longer than {MAX_CLAIM_LEN} characters")));
    }
    if claimed_id.is_some_and(|id| id != iss) {
        return Err(refuse("client_id does not match the assertion's iss"));
    }
    // One answer for unknown clients and clients without keys: no probing of client ids.
    let client = catalog
        .client(iss)
        .filter(|c| c.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt)
        .ok_or_else(|| refuse("the client is unknown or does not use private_key_jwt"))?;
    let candidates: Vec<&Arc<ClientCredential>> = catalog
        .credentials(iss)
        .iter()
        .filter(|c| !c.is_expired(now) && c.alg == alg)
        .filter(|c| header.kid.as_deref().is_none_or(|kid| kid == c.kid))
        .collect();
    if candidates.is_empty() {
        return Err(refuse("no registered, unexpired key matches the assertion's kid and alg"));
    }
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    // Time and audience are checked below against our own clock and issuer.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = candidates
        .iter()
        .find_map(|c| {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(&c.jwk).ok()?;
            let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
            jsonwebtoken::decode::<Value>(assertion, &key, &validation).ok().map(|d| d.claims)
        })
        .ok_or_else(|| refuse("signature does not verify with any of the client's keys"))?;

    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("sub") != Some(iss) {
        return Err(refuse("sub must equal iss (the client_id)"));
    }
    let token_endpoint = format!("{}oauth/token", state.issuer);
    let aud_ok = |a: &str| a == state.issuer || a == token_endpoint;
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !audience_ok {
        return Err(refuse(format!("aud must be {} or {token_endpoint}", state.issuer)));
    }
    let exp = check_times(&claims, now, state.assertion_max_lifetime_secs)?;
    let jti = text("jti").filter(|j| !j.is_empty()).ok_or_else(|| refuse("jti is required"))?;
    if jti.len() > MAX_CLAIM_LEN {
        return Err(refuse(format!("jti is longer than {MAX_CLAIM_LEN} characters")));
    }
    // Single use, across instances when the store is shared; remembered until it would have
    // expired anyway.
    let key = format!("jti:{iss}:{jti}");
    let fresh = state.store.claim_once(&key, UnixTime::from_secs(exp + SKEW_SECS), now).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record the assertion jti");
        TokenError::ServerError
    })?;
    if !fresh {
        return Err(refuse("jti has already been used (replay)"));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reads_short_and_long_lengths() {
        assert_eq!(der(&[0x02, 0x01, 0x05, 0xFF]), Some((0x02, &[0x05][..], &[0xFF][..])));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        assert_eq!(der(&long).map(|(t, c, r)| (t, c.len(), r.len())), Some((0x04, 0x80, 0)));
        assert_eq!(der(&[0x04, 0x05, 1, 2]), None, "truncated");
    }

    #[test]
    fn times_at_the_ends_of_i64_are_refused_without_overflow() {
        let now = UnixTime::from_secs(1_800_000_000);
        let ok = |v: Value| check_times(&v, now, 300);
        assert_eq!(ok(json!({"exp": 1_800_000_100})), Ok(1_800_000_100));
        assert!(ok(json!({"exp": 1_800_000_100, "nbf": 1_800_000_005})).is_ok(), "within the skew");
        assert!(ok(json!({"exp": i64::MAX})).is_err());
        assert!(ok(json!({"exp": i64::MIN})).is_err());
        assert!(ok(json!({"exp": 1_800_000_100, "nbf": i64::MIN})).is_ok(), "long past");
        assert!(ok(json!({"exp": 1_800_000_100, "iat": i64::MAX})).is_err());
        assert!(ok(json!({"exp": 1_799_999_989})).is_err(), "expired beyond the skew");
        assert!(ok(json!({"nbf": 1})).is_err(), "exp required");
    }

    #[test]
    fn private_jwks_and_small_keys_are_refused() {
        assert!(public_jwk(&json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "x"})).is_err());
        assert!(public_jwk(&json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})).is_err(), "17-bit modulus");
        assert!(public_jwk(&json!({"kty": "oct", "k": "abc"})).is_err());
    }
}
