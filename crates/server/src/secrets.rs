//! Client secrets and random identifiers.
//!
//! Why HMAC and not a password hash: generated secrets carry 384 random bits, so a slow KDF adds
//! nothing against brute force, while at ~28 ms per argon2 check it would cap the token endpoint at
//! a few dozen requests per second and hand attackers a CPU-exhaustion lever. A keyed hash (the
//! pepper lives outside the database) costs well under a microsecond and a stolen database alone
//! allows no offline guessing.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

const SCHEME: &str = "hmac-sha256$v1$";

/// Hashes and checks client secrets with the installation's pepper.
pub struct SecretHasher {
    key: hmac::Key,
}

impl SecretHasher {
    pub fn new(pepper: &[u8; 32]) -> SecretHasher {
        SecretHasher { key: hmac::Key::new(hmac::HMAC_SHA256, pepper) }
    }

    /// The stored form: the scheme name travels with the hash so it can change later.
    pub fn hash(&self, secret: &str) -> String {
        let tag = hmac::sign(&self.key, secret.as_bytes());
        let mut out = String::with_capacity(SCHEME.len() + 43);
        out.push_str(SCHEME);
        B64.encode_string(tag.as_ref(), &mut out);
        out
    }

    /// Constant-time check of a presented secret against a stored hash.
    pub fn verify(&self, secret: &str, stored: &str) -> bool {
        let Some(encoded) = stored.strip_prefix(SCHEME) else { return false };
        // Decoded on the stack: this runs on every token request, and a `Vec` per check was an
        // allocation and a free on the hot path for 32 bytes. A longer (corrupt) hash fails to
        // decode into the buffer and is rejected like any mismatch.
        let mut expected = [0u8; 64];
        let Ok(len) = B64.decode_slice(encoded, &mut expected) else { return false };
        hmac::verify(&self.key, secret.as_bytes(), &expected[..len]).is_ok()
    }
}

/// Random bytes from the OS. The OS generator failing is not recoverable in a meaningful way, but
/// we still surface it as an error rather than panic.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], aws_lc_rs::error::Unspecified> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out)?;
    Ok(out)
}

/// A new client secret: 48 random bytes (384 bits) as 64 base64url characters, like Auth0's.
pub fn new_client_secret() -> Result<String, aws_lc_rs::error::Unspecified> {
    Ok(B64.encode(random_bytes::<48>()?))
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random alphanumeric characters, uniformly (rejection sampling avoids modulo bias).
pub fn random_alnum(len: usize) -> Result<String, aws_lc_rs::error::Unspecified> {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<32>()? {
            // 248 = 4 * 62: values at or above it would favour the first characters.
            if b < 248 && out.len() < len {
                out.push(char::from(ALNUM[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Auth0-shaped identifiers.
pub fn new_client_id() -> Result<String, aws_lc_rs::error::Unspecified> {
    random_alnum(32)
}

pub fn new_prefixed_id(prefix: &str) -> Result<String, aws_lc_rs::error::Unspecified> {
    Ok(format!("{prefix}{}", random_alnum(16)?))
}

/// Resource server ids are 24 hex characters in Auth0.
pub fn new_hex_id() -> Result<String, aws_lc_rs::error::Unspecified> {
    Ok(random_bytes::<12>()?.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_secret_and_pepper() {
        let h = SecretHasher::new(&[7u8; 32]);
        let stored = h.hash("s3cret");
        assert!(stored.starts_with("hmac-sha256$v1$"));
        assert!(h.verify("s3cret", &stored));
        assert!(!h.verify("s3cret ", &stored));
        assert!(!SecretHasher::new(&[8u8; 32]).verify("s3cret", &stored));
        assert!(!h.verify("s3cret", "garbage"));
        // Corrupt stored forms: too long for the decode buffer, truncated, not base64.
        let long = format!("{SCHEME}{}", "A".repeat(200));
        assert!(!h.verify("s3cret", &long));
        assert!(!h.verify("s3cret", &stored[..stored.len() - 4]));
        assert!(!h.verify("s3cret", &format!("{SCHEME}!!!!")));
    }

    #[test]
    fn ids_have_the_right_shape() {
        let id = new_client_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(new_client_secret().unwrap().len(), 64);
        assert!(new_prefixed_id("cgr_").unwrap().starts_with("cgr_"));
        assert_eq!(new_hex_id().unwrap().len(), 24);
    }
}
