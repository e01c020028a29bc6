//! `sapi` events: every successful Management API write is recorded with its request and response,
//! secrets redacted, and the event is committed before the response leaves (a stored change always
//! has its audit record).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Principal;
use super::read_body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::token::request_info;

/// JSON keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] =
    &["client_secret", "signing_secret", "httpAuthorization", "authorization", "password", "secret", "private_key"];
pub const REDACTED: &str = "[REDACTED]";

pub async fn record_writes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let now = state.now();
    let (mut parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let info = request_info(&parts.headers, &parts.extensions);
    // Who did it: the same check the handler makes; a failure here means the handler will refuse.
    let caller = <Principal as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .map(|p| p.client_id);
    let method = parts.method.clone();
    // This layer sits on the router nested at `/api/v2`, which strips the prefix from the URI.
    let path = format!("/api/v2{}", parts.uri.path());
    let response = next.run(Request::from_parts(parts, Body::from(bytes.clone()))).await;
    if !response.status().is_success() {
        return response;
    }

    let status = response.status();
    let (response_parts, response_body) = response.into_parts();
    let response_bytes = match axum::body::to_bytes(response_body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("cannot buffer response: {e}")).into_response(),
    };
    let client_name = caller.as_deref().and_then(|id| state.catalog.load().client(id).map(|c| c.name.clone()));
    let event = json!({
        "type": "sapi",
        "description": describe(&method, &path),
        "client_id": caller,
        "client_name": client_name,
        "details": {
            "request": {"method": method.as_str().to_ascii_lowercase(), "path": path, "body": redacted_json(&bytes)},
            "response": {"statusCode": status.as_u16(), "body": redacted_json(&response_bytes)},
        },
    });
    // Other instances reload what changed.
    crate::sync::publish(&state).await;
    if !state.events.emit_durable(now, &info, event).await {
        // The change is stored but its audit record is not: say so rather than pretend success.
        return ApiError::internal("the change was stored but its audit event could not be written").into_response();
    }
    Response::from_parts(response_parts, Body::from(response_bytes))
}

/// Auth0-style descriptions: "Create a client", "Update a resource server", …
fn describe(method: &Method, path: &str) -> String {
    let rest = path.trim_start_matches("/api/v2/");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let noun = |s: &str| match s {
        "clients" => "client",
        "resource-servers" => "resource server",
        "client-grants" => "client grant",
        "organizations" => "organization",
        "log-streams" => "log stream",
        "settings" | "tenants" => "tenant settings",
        "actions" => "action",
        "keys" | "signing" => "signing key",
        _ => "resource",
    };
    match segments.as_slice() {
        ["clients", _, "rotate-secret"] => "Rotate a client secret".into(),
        ["organizations", _, "client-grants", ..] if method == Method::POST => {
            "Add a client grant to an organization".into()
        }
        ["organizations", _, "client-grants", ..] => "Remove a client grant from an organization".into(),
        [first, ..] => {
            let verb = match *method {
                Method::POST => "Create",
                Method::DELETE => "Delete",
                _ => "Update",
            };
            let noun = noun(first);
            if noun == "tenant settings" { format!("{verb} tenant settings") } else { format!("{verb} a {noun}") }
        }
        [] => "Management API write".into(),
    }
}

/// The body as JSON with every secret replaced, or `null` when it is not JSON (bodies that are
/// not JSON are refused by the handlers, so there is nothing to record).
fn redacted_json(bytes: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    redact(&mut value);
    value
}

pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else if key == "secrets" {
                    // Actions' secrets: [{name, value}]
                    if let Value::Array(items) = v {
                        for item in items {
                            if let Some(secret) = item.get_mut("value") {
                                *secret = Value::String(REDACTED.into());
                            }
                        }
                    }
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_nested_secrets() {
        let mut v = json!({"name": "x", "client_secret": "s1", "sink": {"httpAuthorization": "Bearer s2"},
                           "secrets": [{"name": "K", "value": "s3"}], "list": [{"signing_secret": "s4"}]});
        redact(&mut v);
        let text = v.to_string();
        for s in ["s1", "s2", "s3", "s4"] {
            assert!(!text.contains(&format!("\"{s}")), "{text}");
        }
        assert_eq!(v["name"], "x");
        assert_eq!(v["secrets"][0]["name"], "K");
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe(&Method::POST, "/api/v2/clients"), "Create a client");
        assert_eq!(describe(&Method::PATCH, "/api/v2/resource-servers/x"), "Update a resource server");
        assert_eq!(describe(&Method::DELETE, "/api/v2/client-grants/cgr_1"), "Delete a client grant");
        assert_eq!(describe(&Method::POST, "/api/v2/clients/x/rotate-secret"), "Rotate a client secret");
        assert_eq!(describe(&Method::PATCH, "/api/v2/tenants/settings"), "Update tenant settings");
    }
}
