//! `POST /oauth/token`: the client-credentials grant.
//!
//! Architecture invariant: nothing here reads the configuration store or the clock more than once.
//! The catalog and key ring are in memory; `now` is read at the start and passed down.

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ration_domain::{Catalog, Decision, TokenError, UnixTime};
use ration_proto::oauth::{ClientAuth, ParsedTokenRequest, TokenResponse, parse_token_request, token_error_status};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::OAuthError;
use crate::events::{RequestInfo, Seccft};
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
    scope: &'a str,
    gty: &'static str,
    azp: &'a str,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_name: Option<&'a str>,
    /// Set by Actions; reserved names never reach here (see [`STANDARD_CLAIMS`]).
    #[serde(flatten)]
    custom: &'a Map<String, Value>,
}

/// Claims this server sets itself. Actions already cannot set them (Auth0's reserved list); this
/// second check guarantees a token never carries a claim twice.
const STANDARD_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "iat", "exp", "scope", "gty", "azp", "jti", "org_id", "org_name"];

/// What is known about a request when it fails, for its `feccft` event.
#[derive(Default)]
struct Attempt {
    client_id: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    organization: Option<String>,
    /// Console output of Actions that ran.
    action_logs: Option<Value>,
}

pub async fn post_token(State(state): State<AppState>, request: Request) -> Response {
    // Metrics: latency from here to the response, whatever the outcome.
    let started = std::time::Instant::now();
    let now = state.now();
    let (parts, body) = request.into_parts();
    let info = request_info(&parts.headers, &parts.extensions);
    let mut attempt = Attempt::default();
    match issue(&state, &parts.headers, body, now, &info, &mut attempt).await {
        Ok(response) => {
            state.metrics.token_issued(started);
            response
        }
        Err(e) => {
            state.metrics.token_refused(&e.error, started);
            record_failure(&state, now, &info, &attempt, &e.error);
            e.into_response()
        }
    }
}

/// Auth0's event fields about the caller.
pub fn request_info(headers: &HeaderMap, extensions: &axum::http::Extensions) -> RequestInfo {
    let text =
        |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    RequestInfo {
        ip: extensions.get::<ConnectInfo<SocketAddr>>().map(|c| ip_text(c.0.ip())).unwrap_or_default(),
        user_agent: text(header::USER_AGENT),
        hostname: text(header::HOST),
    }
}

/// The peer's address as text, as `to_string` writes it. IPv4 goes through `itoa`: `to_string`
/// went through `fmt`'s machinery (`pad_integral` per octet), ~0.9 k instructions on every token
/// request in a callgrind profile (docs/benchmarks.md, session 17).
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            let mut n = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(n.format(octet));
            }
            out
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    now: UnixTime,
    info: &RequestInfo,
    attempt: &mut Attempt,
) -> Result<Response, OAuthError> {
    let body = read_body(body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let parsed = parse_token_request(content_type, authorization, &body).inspect_err(|_| {
        let facts = ration_proto::oauth::peek_request(content_type, authorization, &body);
        attempt.client_id = facts.client_id;
        attempt.audience = facts.audience;
        attempt.scope = facts.scope;
        attempt.organization = facts.organization;
    })?;
    // What a failure's event says of the request, copied only when the exchange fails (an issued
    // token is counted for its client by the exchange itself).
    exchange(state, &parsed, now, info, attempt).await.inspect_err(|_| {
        attempt.client_id = parsed.auth.client_id().map(str::to_owned);
        attempt.audience = parsed.request.audience.clone();
        attempt.scope = parsed.request.scope.as_ref().map(|s| s.join(" "));
        attempt.organization = parsed.request.organization.clone();
    })
}

/// Everything after parsing: authentication, decision, quotas, Actions, signing, durable writes.
async fn exchange(
    state: &AppState,
    parsed: &ParsedTokenRequest,
    now: UnixTime,
    info: &RequestInfo,
    attempt: &mut Attempt,
) -> Result<Response, OAuthError> {
    let client_id = parsed.auth.client_id();
    match state.bruteforce.check(client_id, &info.ip, now) {
        crate::bruteforce::Verdict::Allow => {}
        crate::bruteforce::Verdict::Slow(delay) => tokio::time::sleep(delay).await,
        crate::bruteforce::Verdict::Locked { retry_after } => {
            let mut e = OAuthError::from(TokenError::TooManyFailedAttempts);
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                e.headers.push((header::RETRY_AFTER, v));
            }
            return Err(e);
        }
    }
    let catalog = state.catalog.load();
    let authenticated = match &parsed.auth {
        ClientAuth::Assertion { client_id, assertion } => {
            crate::client_keys::authenticate(state, &catalog, client_id.as_deref(), assertion, now)
                .await
                .map(|client| client.client_id.as_str())
        }
        other => authenticate(state, &catalog, other),
    };
    let authenticated_id = match authenticated {
        Ok(id) => {
            state.bruteforce.success(id);
            id
        }
        Err(e) => {
            for lockout in state.bruteforce.failure(client_id, &info.ip, now) {
                record_lockout(state, now, info, &lockout);
            }
            return Err(e.into());
        }
    };
    let decision = ration_domain::token::decide(&catalog, authenticated_id, &parsed.request)?;
    let plan = decision.quota_plan(&catalog, now);
    // Actions run before anything is consumed (a denied exchange consumes nothing), and after a
    // pre-check, so that a client over its quota does not run them. Without Actions the consume
    // step below is the check: a separate look first cost a second Redis round trip per token in
    // distributed mode (and a second lock here) for nothing. The bound Actions are read once, so
    // that the pre-check and the run agree on whether there are any.
    let actions = state.bound_actions.load_full();
    if !actions.is_empty() {
        crate::quota::precheck(state, &plan, now).await?;
    }
    let ran = crate::actions::run(state, &actions, &decision, &parsed.request, &parsed.grant_type, info, now)
        .await
        .map_err(|(error, logs)| {
            attempt.action_logs = Some(crate::actions::logs_json(&logs));
            OAuthError::from(error)
        })?;
    let no_claims = Map::new();
    let custom = ran.as_ref().map_or(&no_claims, |r| &r.custom_claims);
    // Consume before signing: a client over its quota costs a count, not a signature. Should
    // signing then fail, the count stays, the safe direction (as after a crash).
    // Also the 200's headers, fixed ones and the plan's quota headers.
    let (counted, headers) = crate::quota::consume(state, &decision, &plan, now, info).await?;
    let minted = mint(state, &decision, now, custom)?;

    // The token exists only once its count and its event are durable: an operator counting
    // seccft events never sees fewer than the tokens that went out, and a crash never forgets a
    // token a client received. The event is awaited first: the embedded counters write their
    // journal with the event log's groups, so the count is then usually durable already, and its
    // wait costs nothing (with the two awaited together, every token joined a second group).
    let action_logs = ran.as_ref().map(|ran| crate::actions::logs_json(&ran.logs));
    let event = Seccft {
        client_id: decision.client_id,
        client_name: &decision.facts.name,
        audience: &decision.resource_server.identifier,
        // The token's own `scope` claim, joined once in `mint`.
        scope: &minted.scope,
        jti: &minted.jti,
        organization: decision.organization.as_ref().map(|org| (org.id.as_str(), org.name.as_str())),
        action_logs: action_logs.as_ref(),
    };
    let recorded = state.events.emit_seccft(now, info, &event).await;
    let counted = counted.await;
    if let Err(e) = counted {
        // The count may not have reached the disk: the token must not go out. The seccft just
        // written then records a token nobody received, the safe direction (as after a crash).
        tracing::error!(error = %e, "quota count not durable; refusing the token");
        let mut e = OAuthError::from(TokenError::QuotaStoreUnavailable);
        e.headers.push((header::RETRY_AFTER, HeaderValue::from_static("1")));
        return Err(e);
    }
    if !recorded {
        return Err(TokenError::ServerError.into());
    }

    let body = TokenResponse {
        access_token: minted.token,
        token_type: TokenResponse::BEARER,
        expires_in: minted.expires_in,
        scope: minted.scope,
    };
    state.metrics.client_issued(decision.client_id, decision.issued);
    let mut response = Response::new(Body::from(body.to_json()));
    *response.headers_mut() = headers;
    Ok(response)
}

/// `feccft`: written for every refused exchange, without waiting (a flood of bad requests must not
/// slow the endpoint down on the disk).
fn record_failure(state: &AppState, now: UnixTime, info: &RequestInfo, attempt: &Attempt, error: &TokenError) {
    let (status, code) = token_error_status(error);
    let client_name =
        attempt.client_id.as_deref().and_then(|id| state.catalog.load().client(id).map(|c| c.name.clone()));
    let description = error.description();
    let mut event = json!({
        "type": "feccft",
        "description": description,
        "details": {"error": code, "error_description": description, "status": status},
    });
    if let Some(logs) = &attempt.action_logs {
        event["details"]["actions"] = json!({"logs": logs});
    }
    for (key, value) in [
        ("client_id", &attempt.client_id),
        ("client_name", &client_name),
        ("audience", &attempt.audience),
        ("scope", &attempt.scope),
        ("organization_id", &attempt.organization),
    ] {
        if let Some(v) = value {
            event[key] = json!(v);
        }
    }
    state.events.emit(now, info, event);
}

/// Every lockout is an event, so operators see guessing attempts.
fn record_lockout(state: &AppState, now: UnixTime, info: &RequestInfo, lockout: &crate::bruteforce::Lockout) {
    let mut event = json!({
        "type": "client_auth_lockout",
        "description": format!(
            "Client authentication locked for {} {} after {} failures",
            lockout.key_type, lockout.key, lockout.failures
        ),
        "details": {"key_type": lockout.key_type, "key": lockout.key, "failures": lockout.failures,
                    "locked_until": lockout.until.to_rfc3339()},
    });
    if lockout.key_type == "client_id" {
        event["client_id"] = json!(lockout.key);
    }
    state.events.emit(now, info, event);
}

async fn read_body(body: Body) -> Result<Bytes, OAuthError> {
    crate::body::read_limited(body, TOKEN_BODY_LIMIT).await.map_err(|e| match e {
        crate::body::ReadError::TooLarge => TokenError::BodyTooLarge(TOKEN_BODY_LIMIT).into(),
        crate::body::ReadError::Broken => {
            TokenError::InvalidRequest("The request body could not be read".into()).into()
        }
    })
}

/// Unknown client, wrong secret and a public client all get the same answer, so that the endpoint
/// does not reveal which client ids exist. Returns the client's id as the request sent it (the
/// copy `decide` reads; see there).
fn authenticate<'c>(state: &AppState, catalog: &Catalog, auth: &'c ClientAuth) -> Result<&'c str, TokenError> {
    let (client_id, secret) = match auth {
        ClientAuth::Post { client_id, client_secret } | ClientAuth::Basic { client_id, client_secret } => {
            (client_id, client_secret)
        }
        ClientAuth::None { .. } | ClientAuth::Assertion { .. } => return Err(TokenError::Unauthorized),
    };
    // The entry's copies of the client's fields (see `ClientFacts`), not `Client` itself.
    let client = catalog.client_grants(client_id).ok_or(TokenError::Unauthorized)?.facts;
    // Public clients have no secret, and private_key_jwt clients must sign (Auth0 keeps the two
    // methods mutually exclusive).
    if matches!(
        client.token_endpoint_auth_method,
        ration_domain::TokenEndpointAuthMethod::None | ration_domain::TokenEndpointAuthMethod::PrivateKeyJwt
    ) || !state.secrets.verify(secret, &client.secret_hash)
    {
        return Err(TokenError::Unauthorized);
    }
    Ok(client_id)
}

struct Minted {
    token: String,
    expires_in: u32,
    scope: String,
    jti: String,
}

fn mint(
    state: &AppState,
    decision: &Decision<'_>,
    now: UnixTime,
    custom: &Map<String, Value>,
) -> Result<Minted, OAuthError> {
    let filtered;
    let custom = if custom.keys().any(|k| STANDARD_CLAIMS.contains(&k.as_str())) {
        filtered = custom
            .iter()
            .filter(|(k, _)| !STANDARD_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        &filtered
    } else {
        custom
    };
    let rs = &decision.resource_server;
    let iat = now.secs();
    let scope = decision.scopes.joined().to_owned();
    let jti = random_bytes::<16>().map(|b| B64.encode(b)).map_err(|_| internal("random generator failed"))?;
    let claims = Claims {
        iss: &state.issuer,
        sub: [decision.client_id, "@clients"].concat(),
        aud: &rs.identifier,
        iat,
        exp: iat + i64::from(rs.token_lifetime),
        scope: &scope,
        gty: "client-credentials",
        azp: decision.client_id,
        jti: &jti,
        org_id: decision.organization.as_ref().map(|o| o.id.as_str()),
        org_name: decision.organization.as_ref().map(|o| o.name.as_str()),
        custom,
    };
    let json = serde_json::to_vec(&claims).map_err(|e| internal(&e.to_string()))?;
    let token = state
        .keys
        .load()
        .sign(rs.signing_alg, rs.signing_secret.as_deref(), &json)
        .map_err(|e| internal(&e.to_string()))?;
    Ok(Minted { token, expires_in: rs.token_lifetime, scope, jti })
}

/// A failure that is ours, not the client's. OAuth has `server_error` for it.
fn internal(detail: &str) -> OAuthError {
    tracing::error!(error = detail, "token endpoint internal error");
    TokenError::ServerError.into()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn an_address_reads_as_to_string_writes_it() {
        let mut addresses: Vec<IpAddr> = [0u32, 1, 0x7f00_0001, 0x0a00_c803, 0xc0a8_0064, 0xffff_ffff]
            .into_iter()
            .chain((0..2_000u32).map(|i| i.wrapping_mul(2_654_435_761)))
            .map(|bits| IpAddr::V4(Ipv4Addr::from(bits)))
            .collect();
        addresses.extend([IpAddr::V6(Ipv6Addr::LOCALHOST), "::ffff:10.1.2.3".parse().unwrap()]);
        for ip in addresses {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
