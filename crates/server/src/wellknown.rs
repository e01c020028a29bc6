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
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": [],
    }))
    .into_response()
}

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the configuration store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.get_meta("bootstrap_client_id").await {
        Ok(_) => axum::Json(json!({"status": "ok", "store": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "unavailable", "store": "unreachable"})))
                .into_response()
        }
    }
}
