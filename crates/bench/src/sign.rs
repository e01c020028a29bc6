//! The floor: how many tokens one core can sign per second with aws-lc-rs, with nothing else.
//!
//! Each algorithm signs the same JWS signing input the server would (`base64url(header)` `.`
//! `base64url(claims)` of a ~300-byte Auth0-style claim set) in a tight single-threaded loop. The
//! server's tokens/s divided by this rate says how close the whole request path is to the cost of
//! the signature itself (issue 7).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::scenario::Alg;

/// A typical access token's claims (the server's shape, realistic lengths): about 300 bytes.
fn signing_input(alg: Alg) -> Vec<u8> {
    let header = format!(r#"{{"alg":"{}","typ":"JWT","kid":"Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy"}}"#, alg.jose());
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:8080/",
        "sub": "Vx3kQ9mZr2LpT8sWc4YnB6dHf1JgE7aU@clients",
        "aud": "https://bench-es256.example/",
        "iat": 1_796_404_777,
        "exp": 1_796_491_177,
        "scope": "read:x",
        "gty": "client-credentials",
        "azp": "Vx3kQ9mZr2LpT8sWc4YnB6dHf1JgE7aU",
        "jti": "b3J0aG9ncmFwaGljYWxseQ",
        "org_id": "org_Hk2Lm9Qx8Rt4Vw1Z",
        "org_name": "bench-org",
    });
    let mut out = B64.encode(header);
    out.push('.');
    B64.encode_string(serde_json::to_vec(&claims).unwrap_or_default(), &mut out);
    out.into_bytes()
}

/// A ready-to-use signer; key generation is outside the timed loop.
enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(Box<hmac::Key>),
}

impl Signer {
    fn new(alg: Alg) -> Result<Signer> {
        let fail = |_| anyhow!("cannot generate a {} key", alg.jose());
        Ok(match alg {
            Alg::RS256 => Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(fail)?),
            Alg::ES256 => {
                Signer::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(fail)?)
            }
            Alg::EdDSA => Signer::Ed(Ed25519KeyPair::generate().map_err(fail)?),
            Alg::HS256 => {
                Signer::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef")))
            }
        })
    }

    /// One signature; returns its first byte so the optimizer cannot drop the work.
    fn sign(&self, rng: &SystemRandom, message: &[u8], rsa_buf: &mut [u8]) -> Result<u8> {
        Ok(match self {
            Signer::Rsa(pair) => {
                pair.sign(&signature::RSA_PKCS1_SHA256, rng, message, rsa_buf)
                    .map_err(|_| anyhow!("RSA signing failed"))?;
                rsa_buf[0]
            }
            Signer::Ec(pair) => pair.sign(rng, message).map_err(|_| anyhow!("ECDSA signing failed"))?.as_ref()[0],
            Signer::Ed(pair) => pair.sign(message).as_ref()[0],
            Signer::Hmac(key) => hmac::sign(key, message).as_ref()[0],
        })
    }
}

/// Signatures per second on this thread, over about `budget` of signing.
pub fn rate(alg: Alg, budget: Duration) -> Result<f64> {
    let signer = Signer::new(alg)?;
    let message = signing_input(alg);
    let rng = SystemRandom::new();
    let mut rsa_buf = vec![0u8; 512];
    if let Signer::Rsa(pair) = &signer {
        rsa_buf.truncate(pair.public_modulus_len());
    }
    // Warm caches and lazily initialized tables before timing.
    for _ in 0..10 {
        signer.sign(&rng, &message, &mut rsa_buf).with_context(|| format!("{} warm-up", alg.jose()))?;
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut sink = 0u8;
    // Check the clock every batch only: HS256 signs in well under a microsecond.
    let batch = if alg == Alg::RS256 { 8 } else { 256 };
    while start.elapsed() < budget {
        for _ in 0..batch {
            sink ^= signer.sign(&rng, &message, &mut rsa_buf)?;
        }
        n += batch;
    }
    std::hint::black_box(sink);
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_the_input_is_token_sized() {
        for alg in Alg::ALL {
            let len = signing_input(alg).len();
            assert!((350..600).contains(&len), "{alg:?}: {len}");
            assert!(rate(alg, Duration::from_millis(5)).unwrap() > 0.0);
        }
    }
}
