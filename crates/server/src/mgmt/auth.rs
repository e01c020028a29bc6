//! Management API authorization: a bearer token that this server issued for `<issuer>api/v2/`,
//! unexpired, carrying the scope the endpoint needs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use crate::error::ApiError;
use crate::state::AppState;

/// The caller of a Management API endpoint.
#[derive(Debug, Clone)]
pub struct Principal {
    pub client_id: String,
    scopes: Vec<String>,
}

impl Principal {
    /// Fails with Auth0's 403 `insufficient_scope` unless the token carries `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Insufficient scope, expected any of: {scope}"),
                Some("insufficient_scope"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
        let value =
            parts.headers.get(header::AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("Missing authentication"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| ApiError::unauthorized("Bad HTTP authentication header format"))?;
        let claims = state.keys.load().verify(token).ok_or_else(|| ApiError::unauthorized("Invalid token"))?;

        let now = state.now().secs();
        let str_claim = |name: &str| claims.get(name).and_then(|v| v.as_str());
        if str_claim("iss") != Some(state.issuer.as_str()) {
            return Err(ApiError::unauthorized("Invalid token"));
        }
        let audience_ok = match claims.get("aud") {
            Some(serde_json::Value::String(aud)) => aud == &state.mgmt_audience,
            Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&state.mgmt_audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(ApiError::unauthorized("Invalid token"));
        }
        match claims.get("exp").and_then(|v| v.as_i64()) {
            Some(exp) if exp > now => {}
            Some(_) => return Err(ApiError::unauthorized("Expired token")),
            None => return Err(ApiError::unauthorized("Invalid token")),
        }
        let client_id = str_claim("azp").unwrap_or_default().to_owned();
        let scopes =
            str_claim("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Ok(Principal { client_id, scopes })
    }
}
