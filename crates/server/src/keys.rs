//! Key material: the master key, token-signing keys, the JWKS, and JWT signing and verification.
//!
//! Why aws-lc-rs directly rather than a JWT crate: key pairs are parsed once and kept, and the JOSE
//! header of each key is encoded once, so minting a token is one JSON write, one base64 pass and
//! one signature. Verification is only needed for our own Management API tokens.
//!
//! Each asymmetric algorithm has its own key (so each JWKS entry carries the exact `alg` that
//! strict verifiers match on); `kid` is the key's RFC 7638 thumbprint. `HS256` tokens are signed
//! with the API's own `signing_secret` and have no `kid`.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::aead::{self, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use foldhash::HashMap;
use ration_domain::{SigningAlg, UnixTime};
use ration_store::StoredKey;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("master key: {0}")]
    Master(String),
    #[error("cryptographic operation failed")]
    Crypto,
    #[error("stored signing key {kid} cannot be opened (wrong RATION_MASTER_KEY?)")]
    Unseal { kid: String },
    #[error("no signing key for {0}")]
    NoKey(&'static str),
}

impl From<aws_lc_rs::error::Unspecified> for KeyError {
    fn from(_: aws_lc_rs::error::Unspecified) -> KeyError {
        KeyError::Crypto
    }
}

/// The root secret of an installation. Private signing keys are sealed with a key derived from it,
/// and client secrets are hashed with a pepper derived from it, so a copy of the database alone
/// neither reveals signing keys nor allows offline guessing of secrets.
pub struct MasterKey {
    sealing: LessSafeKey,
    pepper: [u8; 32],
}

const MASTER_KEY_FILE: &str = "master.key";

impl MasterKey {
    /// From 64 hex characters (`RATION_MASTER_KEY`).
    pub fn from_hex(hex: &str) -> Result<MasterKey, KeyError> {
        let bytes = decode_hex(hex.trim())
            .filter(|b| b.len() == 32)
            .ok_or_else(|| KeyError::Master("RATION_MASTER_KEY must be 64 hex characters (32 bytes)".into()))?;
        MasterKey::from_bytes(&bytes)
    }

    /// Reads `<data_dir>/master.key`, creating it (mode 0600) with fresh random bytes if missing.
    pub fn load_or_create(data_dir: &Path) -> Result<MasterKey, KeyError> {
        let path = data_dir.join(MASTER_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => MasterKey::from_hex(&text)
                .map_err(|_| KeyError::Master(format!("{} is corrupt: expected 64 hex characters", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new().fill(&mut bytes)?;
                crate::files::write_private(&path, encode_hex(&bytes).as_bytes())
                    .map_err(|e| KeyError::Master(format!("cannot write {}: {e}", path.display())))?;
                MasterKey::from_bytes(&bytes)
            }
            Err(e) => Err(KeyError::Master(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn from_bytes(master: &[u8]) -> Result<MasterKey, KeyError> {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let derive = |label: &[u8]| -> [u8; 32] {
            let tag = hmac::sign(&root, label);
            let mut out = [0u8; 32];
            out.copy_from_slice(tag.as_ref());
            out
        };
        let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derive(b"ration/v1/key-sealing"))?);
        Ok(MasterKey { sealing, pepper: derive(b"ration/v1/client-secret-pepper") })
    }

    pub fn pepper(&self) -> &[u8; 32] {
        &self.pepper
    }

    /// AES-256-GCM with a random nonce, bound to `aad` (the key id) so sealed blobs cannot be
    /// swapped between rows. Output: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce)?;
        let mut buf = plaintext.to_vec();
        self.sealing.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (nonce, body) = sealed.split_at_checked(aead::NONCE_LEN).ok_or(KeyError::Crypto)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)?;
        let mut buf = body.to_vec();
        let plain = self.sealing.open_in_place(nonce, Aad::from(aad), &mut buf)?;
        Ok(plain.to_vec())
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One asymmetric signing key, parsed and ready.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: UnixTime,
    pair: Pair,
    /// Public JWK as published in the JWKS.
    jwk: serde_json::Value,
    /// base64url of the JOSE header `{"alg":…,"typ":"JWT","kid":…}`, encoded once.
    header_b64: String,
}

impl SigningKey {
    /// Generates a key for `alg` (not `HS256`) and returns it with its PKCS#8 encoding.
    pub fn generate(alg: SigningAlg, now: UnixTime) -> Result<(SigningKey, Vec<u8>), KeyError> {
        let pkcs8 = match alg {
            SigningAlg::RS256 | SigningAlg::RS512 | SigningAlg::PS256 => {
                let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?;
                pair.as_der()?.as_ref().to_vec()
            }
            SigningAlg::ES256 => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())?;
                doc.as_ref().to_vec()
            }
            SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())?.as_ref().to_vec(),
            SigningAlg::HS256 => return Err(KeyError::NoKey("HS256 (uses the API's signing_secret)")),
        };
        let key = SigningKey::from_pkcs8(alg, &pkcs8, now)?;
        Ok((key, pkcs8))
    }

    pub fn from_pkcs8(alg: SigningAlg, pkcs8: &[u8], created_at: UnixTime) -> Result<SigningKey, KeyError> {
        let (pair, thumbprint_input, mut jwk) = match alg {
            SigningAlg::RS256 | SigningAlg::RS512 | SigningAlg::PS256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto)?;
                let public = pair.public_key();
                let n = B64.encode(public.modulus().big_endian_without_leading_zero());
                let e = B64.encode(public.exponent().big_endian_without_leading_zero());
                // RFC 7638: required members only, lexicographic order, no whitespace.
                let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (Pair::Rsa(pair), input, json!({"kty": "RSA", "n": n, "e": e}))
            }
            SigningAlg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| KeyError::Crypto)?;
                // Uncompressed point: 0x04 ‖ x ‖ y.
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..33).zip(point.get(33..65)).ok_or(KeyError::Crypto)?;
                let (x, y) = (B64.encode(x), B64.encode(y));
                let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (Pair::Ec(pair), input, json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}))
            }
            SigningAlg::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Crypto)?;
                let x = B64.encode(pair.public_key().as_ref());
                let input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
                (Pair::Ed(pair), input, json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
            }
            SigningAlg::HS256 => return Err(KeyError::NoKey("HS256 (uses the API's signing_secret)")),
        };
        let kid = B64.encode(digest::digest(&digest::SHA256, thumbprint_input.as_bytes()));
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), json!(kid));
            obj.insert("use".into(), json!("sig"));
            obj.insert("alg".into(), json!(alg.as_str()));
        }
        let header = json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
        let header_b64 = B64.encode(header.to_string());
        Ok(SigningKey { kid, alg, created_at, pair, jwk, header_b64 })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    SigningAlg::RS512 => &signature::RSA_PKCS1_SHA512,
                    SigningAlg::PS256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut sig)?;
                Ok(sig)
            }
            Pair::Ec(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    fn verification_alg(&self) -> &'static dyn signature::VerificationAlgorithm {
        match self.alg {
            SigningAlg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            SigningAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            SigningAlg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            SigningAlg::EdDSA => &signature::ED25519,
            _ => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }

    fn public_key_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Ec(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Ed(pair) => pair.public_key().as_ref().to_vec(),
        }
    }
}

/// Every signing key this server knows, with the one to sign with per algorithm.
#[derive(Default)]
pub struct KeyRing {
    // foldhash rather than SipHash: `sign` looks the current key up on every token, and only the
    // server's own key rotation inserts.
    by_kid: HashMap<String, Arc<SigningKey>>,
    current: HashMap<SigningAlg, Arc<SigningKey>>,
    /// Published ahead of use: the key the next rotation makes current.
    next: HashMap<SigningAlg, Arc<SigningKey>>,
    /// `/.well-known/jwks.json`, rendered once per change.
    jwks: Arc<str>,
}

impl KeyRing {
    /// Opens stored keys. The newest `current` key of each algorithm signs. Published and accepted
    /// for verification: `current` and `next` keys, and `previous` keys until `max_token_lifetime`
    /// after they were retired (every token they signed has expired by then). Revoked keys are
    /// neither.
    pub fn open(
        stored: &[StoredKey],
        master: &MasterKey,
        now: UnixTime,
        max_token_lifetime_secs: i64,
    ) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing::default();
        for s in stored {
            let live = match s.state.as_str() {
                "current" | "next" => true,
                "previous" => s.state_changed_at.secs() + max_token_lifetime_secs > now.secs(),
                _ => false,
            };
            if !live {
                continue;
            }
            let pkcs8 = master
                .open(&s.sealed_private_key, s.kid.as_bytes())
                .map_err(|_| KeyError::Unseal { kid: s.kid.clone() })?;
            let key = Arc::new(SigningKey::from_pkcs8(s.alg, &pkcs8, s.created_at)?);
            if key.kid != s.kid {
                return Err(KeyError::Unseal { kid: s.kid.clone() });
            }
            match s.state.as_str() {
                "current" => {
                    ring.current.insert(key.alg, key.clone());
                }
                "next" => {
                    ring.next.insert(key.alg, key.clone());
                }
                _ => {}
            }
            ring.by_kid.insert(key.kid.clone(), key);
        }
        let mut keys: Vec<&Arc<SigningKey>> = ring.by_kid.values().collect();
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        ring.jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string().into();
        Ok(ring)
    }

    pub fn has_current(&self, alg: SigningAlg) -> bool {
        self.current.contains_key(&alg)
    }

    pub fn has_next(&self, alg: SigningAlg) -> bool {
        self.next.contains_key(&alg)
    }

    /// Whether `kid` is published (and so accepted for verification).
    pub fn publishes(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn jwks(&self) -> Arc<str> {
        self.jwks.clone()
    }

    /// Signs `claims_json` as a compact JWS. `hs_secret` is the API's secret for `HS256`.
    pub fn sign(&self, alg: SigningAlg, hs_secret: Option<&str>, claims_json: &[u8]) -> Result<String, KeyError> {
        let mut out;
        let signature = if alg == SigningAlg::HS256 {
            let secret = hs_secret.ok_or(KeyError::NoKey("HS256 secret"))?;
            out = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            out.push('.');
            B64.encode_string(claims_json, &mut out);
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            hmac::sign(&key, out.as_bytes()).as_ref().to_vec()
        } else {
            let key = self.current.get(&alg).ok_or(KeyError::NoKey(alg.as_str()))?;
            out = String::with_capacity(key.header_b64.len() + claims_json.len() * 4 / 3 + 400);
            out.push_str(&key.header_b64);
            out.push('.');
            B64.encode_string(claims_json, &mut out);
            key.sign(out.as_bytes())?
        };
        out.push('.');
        B64.encode_string(signature, &mut out);
        Ok(out)
    }

    /// Verifies a compact JWS signed by one of our asymmetric keys and returns its claims.
    /// Expiry, audience and the rest are the caller's business.
    pub fn verify(&self, token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        let mut parts = token.split('.');
        let (header_b64, claims_b64, sig_b64) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value = serde_json::from_slice(&B64.decode(header_b64).ok()?).ok()?;
        let key = self.by_kid.get(header.get("kid")?.as_str()?)?;
        // The header's alg must be the key's own: no algorithm confusion.
        if header.get("alg")?.as_str()? != key.alg.as_str() {
            return None;
        }
        let signature = B64.decode(sig_b64).ok()?;
        let signed_len = header_b64.len() + 1 + claims_b64.len();
        let message = token.get(..signed_len)?;
        signature::UnparsedPublicKey::new(key.verification_alg(), key.public_key_bytes())
            .verify(message.as_bytes(), &signature)
            .ok()?;
        match serde_json::from_slice(&B64.decode(claims_b64).ok()?).ok()? {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_hex(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn seal_round_trips_and_binds_aad() {
        let m = master();
        let sealed = m.seal(b"secret", b"kid1").unwrap();
        assert_eq!(m.open(&sealed, b"kid1").unwrap(), b"secret");
        assert!(m.open(&sealed, b"kid2").is_err());
        assert!(MasterKey::from_hex(&"cd".repeat(32)).unwrap().open(&sealed, b"kid1").is_err());
        assert!(MasterKey::from_hex("abc").is_err());
    }

    #[test]
    fn sign_and_verify_each_algorithm() {
        let m = master();
        let now = UnixTime::from_secs(1_800_000_000);
        let mut stored = Vec::new();
        for alg in [SigningAlg::RS256, SigningAlg::RS512, SigningAlg::PS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let (key, pkcs8) = SigningKey::generate(alg, now).unwrap();
            stored.push(StoredKey {
                kid: key.kid.clone(),
                alg,
                sealed_private_key: m.seal(&pkcs8, key.kid.as_bytes()).unwrap(),
                state: "current".into(),
                created_at: now,
                state_changed_at: now,
            });
        }
        let ring = KeyRing::open(&stored, &m, now, 86_400).unwrap();
        for alg in [SigningAlg::RS256, SigningAlg::RS512, SigningAlg::PS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let token = ring.sign(alg, None, br#"{"sub":"x"}"#).unwrap();
            let claims = ring.verify(&token).unwrap();
            assert_eq!(claims["sub"], "x");
            let mut tampered = token.clone();
            tampered.push('A');
            assert!(ring.verify(&tampered).is_none(), "{alg:?}");
        }
        let jwks: serde_json::Value = serde_json::from_str(&ring.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 5);
        // HS256 tokens are not ours to verify by kid.
        let hs = ring.sign(SigningAlg::HS256, Some("0123456789abcdef"), b"{}").unwrap();
        assert!(ring.verify(&hs).is_none());
    }
}
