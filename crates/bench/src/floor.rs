//! The floor of a token endpoint on this machine: a bare axum handler that does only what any
//! client-credentials endpoint must (read the form, check the secret's HMAC, count the token in
//! an atomic, write the claims, sign them with ES256, answer JSON) and nothing Ration adds
//! (catalog, grants, quotas, journals, events, metrics, middleware).
//!
//! Issue 7 sets Ration's ES256 target as a fraction of one core's raw signing rate, saying such a
//! handler reaches about 0.61 of it. Measuring the handler here, under the same load generator,
//! says what that fraction really is on this machine and how far Ration is from the handler.
//!
//! It runs as a child process (`ration-bench --serve-floor`), like the real server, so that its CPU
//! is measured apart from the load generator's.
//!
//! It knows `--floor-clients` clients, each with the least state any such endpoint keeps: its
//! secret's HMAC and its token count, found by its id in one hash map. With 10 000 of them all
//! sending in turn (`floor-10k`), that state no longer fits the CPU's caches and TLB, which tells
//! how much of what 10 000 active clients cost Ration is what they would cost any endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

pub const AUDIENCE: &str = "https://floor.example/";

/// Client `i` of the floor server: its id and secret (32 alphanumerics and a secret of Ration's
/// length, so that the request bodies weigh what Ration's do).
pub fn client(i: usize) -> (String, String) {
    (format!("floorclient{i:021}"), format!("floorsecret-{i:019}-0123456789abcdef0123456789abcdef"))
}

/// What the floor keeps per client.
struct FloorClient {
    /// HMAC of the secret, as a server stores it.
    stored: hmac::Tag,
    issued: AtomicU64,
}

struct Floor {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    pepper: hmac::Key,
    /// foldhash, as Ration's own maps, so that a lookup costs what it costs there.
    clients: HashMap<String, FloorClient, foldhash::fast::RandomState>,
    /// `base64url(JOSE header)`, encoded once like Ration does.
    header: String,
}

/// Runs the floor server on an ephemeral loopback port until killed; prints `listening on …` like
/// `ration serve` so the bench finds the port the same way.
pub fn serve(n_clients: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| anyhow!("cannot generate an ES256 key"))?;
        let kid = B64.encode(&key.public_key().as_ref()[1..33]);
        let pepper = hmac::Key::new(hmac::HMAC_SHA256, b"floor-pepper-0123456789abcdef");
        let clients = (0..n_clients.max(1))
            .map(|i| {
                let (id, secret) = client(i);
                let stored = hmac::sign(&pepper, secret.as_bytes());
                (id, FloorClient { stored, issued: AtomicU64::new(0) })
            })
            .collect();
        let header = B64.encode(format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#));
        let state = Arc::new(Floor { key, rng: SystemRandom::new(), pepper, clients, header });
        let app = axum::Router::new().route("/oauth/token", axum::routing::post(token)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await.context("serving")
    })
}

async fn token(State(floor): State<Arc<Floor>>, body: Bytes) -> Response {
    match issue(&floor, &body) {
        Ok(json) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json).into_response()
        }
        Err(status) => status.into_response(),
    }
}

fn issue(floor: &Floor, body: &[u8]) -> Result<String, StatusCode> {
    let (mut id, mut secret, mut audience, mut grant) = (None, None, None, None);
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "client_id" => id = Some(v),
            "client_secret" => secret = Some(v),
            "audience" => audience = Some(v),
            "grant_type" => grant = Some(v),
            _ => {}
        }
    }
    if grant.as_deref() != Some("client_credentials") || audience.as_deref() != Some(AUDIENCE) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let (id, secret) = id.zip(secret).ok_or(StatusCode::UNAUTHORIZED)?;
    let client = floor.clients.get(id.as_ref()).ok_or(StatusCode::UNAUTHORIZED)?;
    if hmac::verify(&floor.pepper, secret.as_bytes(), client.stored.as_ref()).is_err() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    client.issued.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut jti = [0u8; 16];
    floor.rng.fill(&mut jti).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1/",
        "sub": format!("{id}@clients"),
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 86_400,
        "scope": "",
        "gty": "client-credentials",
        "azp": id,
        "jti": B64.encode(jti),
    });
    let mut jws = floor.header.clone();
    jws.push('.');
    B64.encode_string(serde_json::to_vec(&claims).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?, &mut jws);
    let sig = floor.key.sign(&floor.rng, jws.as_bytes()).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    jws.push('.');
    B64.encode_string(sig.as_ref(), &mut jws);
    Ok(serde_json::json!({"access_token": jws, "token_type": "Bearer", "expires_in": 86_400}).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_look_like_rations() {
        let (id, secret) = super::client(9_999);
        assert_eq!((id.len(), secret.len()), (32, 64), "a client id and secret as long as Ration's");
        assert_ne!(super::client(1), super::client(10), "every client its own");
    }
}
