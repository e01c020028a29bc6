//! `POST /oauth/token`: the client-credentials grant.
//!
//! Architecture invariant: nothing here reads the configuration store or the clock more than once.
//! The catalog and key ring are in memory; `now` is read at the start and passed down.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ration_domain::{Catalog, Client, Decision, TokenError, UnixTime};
use ration_proto::oauth::{ClientAuth, TokenResponse, parse_token_request};
use serde::Serialize;

use crate::error::OAuthError;
use crate::events::RequestInfo;
use crate::secrets::random_bytes;
use crate::state::AppState;

/// Token requests are a few hundred bytes; anything near this is abuse.
pub const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// Auth0-profile access token claims, in Auth0's order.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
    scope: String,
    gty: &'static str,
    azp: &'a str,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_name: Option<&'a str>,
}

pub async fn post_token(State(state): State<AppState>, request: Request) -> Response {
    let now = state.now();
    let (parts, body) = request.into_parts();
    match issue(&state, &parts.headers, &parts.extensions, body, now).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Auth0's event fields about the caller.
pub fn request_info(headers: &HeaderMap, extensions: &axum::http::Extensions) -> RequestInfo {
    let text =
        |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    RequestInfo {
        ip: extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default(),
        user_agent: text(header::USER_AGENT),
        hostname: text(header::HOST),
    }
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    body: Body,
    now: UnixTime,
) -> Result<Response, OAuthError> {
    let body = read_body(body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let parsed = parse_token_request(content_type, authorization, &body)?;

    let catalog = state.catalog.load();
    let client = authenticate(state, &catalog, &parsed.auth)?;
    let decision = ration_domain::token::decide(&catalog, client, &parsed.request)?;
    let plan = decision.quota_plan(&catalog, now);
    let quota_headers = if plan.is_empty() {
        Vec::new()
    } else {
        crate::quota::consume(state, &decision, &plan, now, &request_info(headers, extensions)).await?
    };
    let (access_token, expires_in, scope) = mint(state, &decision, now)?;

    let body = TokenResponse { access_token, token_type: "Bearer", expires_in, scope };
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    for (name, value) in quota_headers {
        h.insert(name, value);
    }
    Ok(response)
}

async fn read_body(body: Body) -> Result<Bytes, OAuthError> {
    axum::body::to_bytes(body, TOKEN_BODY_LIMIT).await.map_err(|_| TokenError::BodyTooLarge(TOKEN_BODY_LIMIT).into())
}

/// Unknown client, wrong secret and a public client all get the same answer, so that the endpoint
/// does not reveal which client ids exist.
fn authenticate<'c>(state: &AppState, catalog: &'c Catalog, auth: &ClientAuth) -> Result<&'c Arc<Client>, TokenError> {
    let (client_id, secret) = match auth {
        ClientAuth::Post { client_id, client_secret } | ClientAuth::Basic { client_id, client_secret } => {
            (client_id, client_secret)
        }
        ClientAuth::None { .. } => return Err(TokenError::Unauthorized),
    };
    let client = catalog.client(client_id).ok_or(TokenError::Unauthorized)?;
    if client.token_endpoint_auth_method == ration_domain::TokenEndpointAuthMethod::None
        || !state.secrets.verify(secret, &client.secret_hash)
    {
        return Err(TokenError::Unauthorized);
    }
    Ok(client)
}

fn mint(state: &AppState, decision: &Decision, now: UnixTime) -> Result<(String, u32, String), OAuthError> {
    let rs = &decision.resource_server;
    let iat = now.secs();
    let scope = decision.scopes.join(" ");
    let jti = random_bytes::<16>().map(|b| B64.encode(b)).map_err(|_| internal("random generator failed"))?;
    let claims = Claims {
        iss: &state.issuer,
        sub: format!("{}@clients", decision.client.client_id),
        aud: &rs.identifier,
        iat,
        exp: iat + i64::from(rs.token_lifetime),
        scope: scope.clone(),
        gty: "client-credentials",
        azp: &decision.client.client_id,
        jti,
        org_id: decision.organization.as_ref().map(|o| o.id.as_str()),
        org_name: decision.organization.as_ref().map(|o| o.name.as_str()),
    };
    let json = serde_json::to_vec(&claims).map_err(|e| internal(&e.to_string()))?;
    let token = state
        .keys
        .load()
        .sign(rs.signing_alg, rs.signing_secret.as_deref(), &json)
        .map_err(|e| internal(&e.to_string()))?;
    Ok((token, rs.token_lifetime, scope))
}

/// A failure that is ours, not the client's. OAuth has `server_error` for it.
fn internal(detail: &str) -> OAuthError {
    tracing::error!(error = detail, "token endpoint internal error");
    TokenError::ServerError.into()
}
