//! `/api/v2/keys/signing`: list, rotate and revoke token-signing keys.
//!
//! Every algorithm in use keeps a `next` key in the JWKS ahead of its use. Rotating makes each
//! `next` key current, retires each current key to `previous` (still published until every token
//! it signed has expired) and publishes a fresh `next`. So a verifier that refreshes the JWKS
//! never meets a token signed by a key it has not seen.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_store::StoredKey;
use serde_json::{Value, json};

use super::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

fn view(key: &StoredKey) -> Value {
    let at = key.state_changed_at.to_rfc3339();
    json!({
        "kid": key.kid,
        "alg": key.alg.as_str(),
        "thumbprint": key.kid,
        "current": key.state == "current",
        "next": key.state == "next",
        "previous": key.state == "previous",
        "revoked": key.state == "revoked",
        "current_since": if key.state == "current" { Some(at.clone()) } else { None },
        "revoked_at": if key.state == "revoked" { Some(at) } else { None },
        "created_at": key.created_at.to_rfc3339(),
    })
}

fn no_key() -> ApiError {
    ApiError::not_found("The signing key does not exist", "inexistent_signing_key")
}

pub async fn list(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    principal.require("read:signing_keys")?;
    let keys = state.store.list_signing_keys().await?;
    Ok(Json(keys.iter().map(view).collect::<Vec<_>>()).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(kid): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:signing_keys")?;
    let keys = state.store.list_signing_keys().await?;
    let key = keys.iter().find(|k| k.kid == kid).ok_or_else(no_key)?;
    Ok(Json(view(key)).into_response())
}

/// Auth0 answers with the new current key's `{cert, kid}`; Ration has no certificates, and it
/// rotates every algorithm at once, so it answers with the new current keys.
pub async fn rotate(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    principal.require("create:signing_keys")?;
    let _writes = state.writes.lock().await;
    let keys = state.store.list_signing_keys().await?;
    let mut changes: Vec<(String, String)> = Vec::new();
    let mut promoted = Vec::new();
    let mut algs: Vec<_> = keys.iter().filter(|k| k.state == "current").map(|k| k.alg).collect();
    algs.sort();
    algs.dedup();
    for alg in algs {
        // Publish the fresh next key first: should anything below fail, nothing signs with an
        // unpublished key, and a second next key is harmless.
        state.generate_key(alg, "next").await?;
        let next = keys.iter().filter(|k| k.alg == alg && k.state == "next").max_by_key(|k| k.created_at);
        let Some(next) = next else {
            // No pre-published key (cannot happen after start-up, which makes one): the fresh one
            // becomes current on the next rotation; skip this algorithm now rather than sign with
            // a key verifiers may not have fetched.
            continue;
        };
        for current in keys.iter().filter(|k| k.alg == alg && k.state == "current") {
            changes.push((current.kid.clone(), "previous".into()));
        }
        changes.push((next.kid.clone(), "current".into()));
        promoted.push(next.kid.clone());
    }
    state.store.set_signing_key_states(&changes, state.now()).await?;
    state.reload_keys().await?;
    let keys = state.store.list_signing_keys().await?;
    let current: Vec<Value> = keys.iter().filter(|k| promoted.contains(&k.kid)).map(view).collect();
    Ok((StatusCode::CREATED, Json(json!({"kid": promoted.first(), "keys": current}))).into_response())
}

/// Revokes a `previous` or `next` key: it leaves the JWKS at once and tokens it signed are no longer
/// accepted. The current key cannot be revoked: rotate first.
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(kid): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("update:signing_keys")?;
    let _writes = state.writes.lock().await;
    let keys = state.store.list_signing_keys().await?;
    let key = keys.iter().find(|k| k.kid == kid).ok_or_else(no_key)?;
    match key.state.as_str() {
        "current" => {
            return Err(ApiError::bad_request(
                "The current signing key cannot be revoked: rotate first (POST /api/v2/keys/signing/rotate)",
            ));
        }
        "revoked" => return Err(ApiError::conflict("The signing key is already revoked")),
        _ => {}
    }
    state.store.set_signing_key_states(&[(kid.clone(), "revoked".into())], state.now()).await?;
    if key.state == "next" {
        // Keep a published next key for the next rotation.
        state.generate_key(key.alg, "next").await?;
    }
    state.reload_keys().await?;
    let keys = state.store.list_signing_keys().await?;
    let revoked = keys.iter().find(|k| k.kid == kid).ok_or_else(no_key)?;
    Ok(Json(view(revoked)).into_response())
}
