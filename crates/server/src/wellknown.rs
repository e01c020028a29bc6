//! Discovery, JWKS and health endpoints.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.load().jwks().to_string();
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Short, so that verifiers pick up a new key soon after a rotation.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}

/// OpenID Provider / OAuth 2.0 Authorization Server metadata (RFC 8414), served at both paths.
pub async fn discovery(State(state): State<AppState>) -> Response {
    let issuer = &state.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}oauth/token"),
        "jwks_uri": format!("{issuer}.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "PS256", "ES256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": [],
    }))
    .into_response()
}

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the configuration store and the quota counters answer.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.get_meta("bootstrap_client_id").await;
    let counters = state.counters.ping().await;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: configuration store unreachable");
    }
    if let Err(e) = &counters {
        tracing::warn!(error = %e, "readiness: quota counters unreachable");
    }
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let body = json!({
        "status": if store.is_ok() && counters.is_ok() { "ok" } else { "unavailable" },
        "store": word(store.is_ok()),
        "counters": word(counters.is_ok()),
    });
    let status = if store.is_ok() && counters.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}
