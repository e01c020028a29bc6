//! The guarded tenant's Management API, as far as the guard needs it: a Management API token by
//! client credentials (cached, refreshed before it expires), `GET` a client's `grant_types` and
//! `PATCH` them.
//!
//! Every failure is a [`TenantError`] the pauser retries with backoff: 429 and 5xx are the
//! tenant's own "try later", a network error may be a blip, and a 401/403 is a configuration the
//! operator can fix while the pause waits. Only "the client does not exist" is final, and it is
//! an answer (`None`/`false`), not an error.

use std::time::{Duration, Instant};

use ration_domain::CLIENT_CREDENTIALS;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::{Value, json};

/// A tenant request failed; try again later.
#[derive(Debug, Clone)]
pub struct TenantError {
    pub message: String,
    /// The tenant's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The longest `Retry-After` honoured: a tenant asking for more still gets a retry this soon.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// A cached token is replaced this long before it expires (a request in flight must not carry an
/// expired one).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// A connection to the tenant's Management API.
pub struct TenantApi {
    http: reqwest::Client,
    base: String,
    audience: String,
    client_id: String,
    client_secret: String,
    /// The cached token and when to stop using it (monotonic: a test clock offset or a stepped
    /// wall clock must not make a valid token look expired, or the reverse).
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl TenantApi {
    pub fn new(base: &str, audience: &str, client_id: &str, client_secret: &str) -> Result<TenantApi, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            // Following a redirect could carry the bearer token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("guard: cannot build the HTTP client: {e}"))?;
        Ok(TenantApi {
            http,
            base: base.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A Management API token, from the cache when it is still fresh.
    async fn token(&self) -> Result<String, TenantError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let body = json!({
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "audience": self.audience,
        });
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| network("token request", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(failure("token request", status, &headers, &answer));
        }
        let Some(token) = answer.get("access_token").and_then(Value::as_str) else {
            return Err(TenantError { message: "token response without access_token".into(), retry_after: None });
        };
        let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        // Short-lived tokens are refreshed at half their life rather than never being cached.
        let keep = if lifetime > TOKEN_MARGIN * 2 { lifetime - TOKEN_MARGIN } else { lifetime / 2 };
        *cached = Some((token.to_owned(), Instant::now() + keep));
        Ok(token.to_owned())
    }

    /// Forgets the cached token (the tenant refused it: revoked, or its signing key rotated).
    async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    fn client_url(&self, client_id: &str) -> Result<reqwest::Url, TenantError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v2/clients", self.base))
            .map_err(|e| TenantError { message: format!("invalid tenant URL: {e}"), retry_after: None })?;
        // As a path segment, so that an odd client id is escaped rather than changing the path.
        url.path_segments_mut()
            .map_err(|()| TenantError { message: "invalid tenant URL".into(), retry_after: None })?
            .push(client_id);
        Ok(url)
    }

    /// The client's `grant_types`, or `None` when the tenant has no such client.
    pub async fn grant_types(&self, client_id: &str) -> Result<Option<Vec<String>>, TenantError> {
        let token = self.token().await?;
        let mut url = self.client_url(client_id)?;
        // Only what the guard needs: nothing secret comes back.
        url.query_pairs_mut().append_pair("fields", "client_id,grant_types").append_pair("include_fields", "true");
        let response = self.http.get(url).bearer_auth(token).send().await.map_err(|e| network("GET client", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            if status == StatusCode::UNAUTHORIZED {
                self.drop_token().await;
            }
            return Err(failure("GET client", status, &headers, &answer));
        }
        Ok(Some(grant_types_of(&answer)))
    }

    /// Replaces the client's `grant_types`; `false` when the tenant has no such client.
    pub async fn set_grant_types(&self, client_id: &str, grant_types: &[String]) -> Result<bool, TenantError> {
        let token = self.token().await?;
        let url = self.client_url(client_id)?;
        let response = self
            .http
            .patch(url)
            .bearer_auth(token)
            .json(&json!({ "grant_types": grant_types }))
            .send()
            .await
            .map_err(|e| network("PATCH client", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !status.is_success() {
            if status == StatusCode::UNAUTHORIZED {
                self.drop_token().await;
            }
            return Err(failure("PATCH client", status, &headers, &answer));
        }
        Ok(true)
    }
}

/// `grant_types` of a client object; a client without the field has none.
fn grant_types_of(client: &Value) -> Vec<String> {
    client
        .get("grant_types")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `grant_types` with `client_credentials` removed, the rest kept in order.
pub fn without_client_credentials(grant_types: &[String]) -> Vec<String> {
    grant_types.iter().filter(|g| *g != CLIENT_CREDENTIALS).cloned().collect()
}

fn network(what: &str, e: reqwest::Error) -> TenantError {
    // Without the URL: it is the tenant's, known to the operator, and keeps the message short.
    TenantError { message: format!("{what}: tenant unreachable: {}", e.without_url()), retry_after: None }
}

fn failure(what: &str, status: StatusCode, headers: &HeaderMap, answer: &Value) -> TenantError {
    let detail = ["message", "error_description", "error"]
        .iter()
        .find_map(|k| answer.get(*k).and_then(Value::as_str))
        .unwrap_or_default();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    let hint = match status {
        StatusCode::FORBIDDEN => " (does the guard's Management API client have read:clients and update:clients?)",
        _ => "",
    };
    TenantError { message: format!("{what}: tenant answered HTTP {}: {detail}{hint}", status.as_u16()), retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_client_credentials_keeps_the_rest_in_order() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            without_client_credentials(&g(&["authorization_code", "client_credentials", "refresh_token"])),
            g(&["authorization_code", "refresh_token"])
        );
        assert!(without_client_credentials(&g(&["client_credentials"])).is_empty());
        assert_eq!(grant_types_of(&json!({"grant_types": ["a", 1, "b"]})), g(&["a", "b"]));
        assert!(grant_types_of(&json!({})).is_empty());
    }
}
