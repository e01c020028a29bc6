//! HTTP to a running server: discovery, the token endpoint, and Management API calls with a
//! cached token that is refreshed when it expires (or when the server no longer accepts it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, Url};
use serde_json::Value;

use super::error::{CliError, CliResult, Exit, describe_transport};
use super::profile::{Profile, Store};

/// A cached token is renewed this many seconds before it expires.
const EXPIRY_MARGIN_SECS: i64 = 30;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The HTTP client every command uses.
pub fn http_client() -> CliResult<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("ration-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| CliError::new(Exit::Server, format!("cannot create the HTTP client: {}", describe_transport(&e))))
}

/// Parses and normalizes a server URL (no trailing slash; http or https only).
pub fn parse_base_url(text: &str) -> CliResult<Url> {
    let url = Url::parse(text.trim()).map_err(|e| {
        CliError::usage(format!("invalid --url {text:?}: {e}")).hint("e.g. --url http://127.0.0.1:8080")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(CliError::usage(format!("invalid --url {text:?}: expected an http:// or https:// URL")));
    }
    Ok(url)
}

/// `base` joined with path segments (each percent-encoded, so ids may contain `/`).
pub fn endpoint(base: &str, segments: &[&str]) -> CliResult<Url> {
    let mut url = parse_base_url(base)?;
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| CliError::usage(format!("invalid server URL {base:?}")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn unreachable(url: &Url, e: &reqwest::Error) -> CliError {
    CliError::new(Exit::Server, format!("cannot reach {url}: {}", describe_transport(e)))
        .hint("check that the server is running and the URL is right")
}

/// Reads a response body as JSON (`Null` when empty, a string when not JSON).
async fn read_json(url: &Url, response: reqwest::Response) -> CliResult<Value> {
    let bytes = response.bytes().await.map_err(|e| unreachable(url, &e))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// The `message` of a Management API error body, or an OAuth `error: error_description`.
pub fn server_message(body: &Value) -> String {
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        return m.to_owned();
    }
    match (body.get("error").and_then(Value::as_str), body.get("error_description").and_then(Value::as_str)) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e.to_owned(),
        _ => match body {
            Value::String(s) => s.chars().take(300).collect(),
            Value::Null => "(empty body)".to_owned(),
            other => other.to_string(),
        },
    }
}

/// The error for a non-success HTTP answer, with the server's message.
pub fn status_error(method: &Method, url: &Url, status: u16, body: &Value) -> CliError {
    let exit = Exit::from_status(status);
    let kind = match exit {
        Exit::Auth if status == 403 => "permission denied",
        Exit::Auth => "authentication failed",
        Exit::NotFound => "not found",
        Exit::Invalid => "rejected",
        Exit::QuotaExceeded => "quota exceeded",
        _ => "server error",
    };
    CliError::new(exit, format!("{kind}: {} (HTTP {status} on {method} {})", server_message(body), url.path()))
}

/// A token response from `/oauth/token`.
pub struct TokenResponse {
    /// The whole JSON body.
    pub body: Value,
    /// The response headers (quota headers among them).
    pub headers: reqwest::header::HeaderMap,
}

impl TokenResponse {
    /// The access token.
    pub fn access_token(&self) -> CliResult<&str> {
        self.body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| CliError::new(Exit::Server, "the token endpoint answered 200 without an access_token"))
    }

    /// `expires_in`, in seconds (0 when absent).
    pub fn expires_in(&self) -> i64 {
        self.body.get("expires_in").and_then(Value::as_i64).unwrap_or(0)
    }
}

/// `POST <base>/oauth/token` with a client-credentials JSON body. Non-2xx answers become errors
/// with the OAuth `error` and `error_description`.
pub async fn request_token(http: &reqwest::Client, base: &str, body: &Value) -> CliResult<TokenResponse> {
    let url = endpoint(base, &["oauth", "token"])?;
    let response = http.post(url.clone()).json(body).send().await.map_err(|e| unreachable(&url, &e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let json = read_json(&url, response).await?;
    if !(200..300).contains(&status) {
        return Err(status_error(&Method::POST, &url, status, &json));
    }
    Ok(TokenResponse { body: json, headers })
}

/// The issuer in `<base>/.well-known/openid-configuration`.
pub async fn discover_issuer(http: &reqwest::Client, base: &str) -> CliResult<String> {
    let url = endpoint(base, &[".well-known", "openid-configuration"])?;
    let response = http.get(url.clone()).send().await.map_err(|e| unreachable(&url, &e))?;
    let status = response.status().as_u16();
    let json = read_json(&url, response).await?;
    let issuer = json.get("issuer").and_then(Value::as_str).filter(|_| status == 200);
    match issuer {
        Some(i) if i.ends_with('/') => Ok(i.to_owned()),
        Some(i) => Ok(format!("{i}/")),
        None => Err(CliError::new(
            Exit::Server,
            format!("{url} answered HTTP {status} without an issuer: is this a Ration server?"),
        )
        .hint("--url is the server's base URL, e.g. http://127.0.0.1:8080")),
    }
}

/// A Management API token for the profile's client.
pub async fn management_token(http: &reqwest::Client, profile: &Profile) -> CliResult<TokenResponse> {
    let body = serde_json::json!({
        "grant_type": "client_credentials",
        "client_id": profile.client_id,
        "client_secret": profile.client_secret,
        "audience": profile.audience(),
    });
    request_token(http, &profile.url, &body).await
}

/// A logged-in profile and the means to call its server's Management API.
pub struct Session {
    http: reqwest::Client,
    store: Store,
    name: String,
    profile: Profile,
}

impl Session {
    /// Opens the profile (`--profile`, `RATION_PROFILE`, the default); exit 3 when there is none.
    pub fn open(requested: Option<&str>) -> CliResult<Session> {
        let store = Store::locate()?;
        let (name, profile) = store.profile(requested)?;
        Ok(Session { http: http_client()?, store, name, profile })
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The profile's name.
    pub fn profile_name(&self) -> &str {
        &self.name
    }

    /// The cached token while it is valid, else a new one (stored back in the profile).
    async fn bearer(&mut self, force_new: bool) -> CliResult<String> {
        let now = unix_now();
        if !force_new
            && let (Some(token), Some(expires_at)) = (&self.profile.access_token, self.profile.token_expires_at)
            && expires_at - EXPIRY_MARGIN_SECS > now
        {
            return Ok(token.clone());
        }
        let login_hint = format!(
            "the credentials of profile {:?} no longer work: run `ration login --profile {} --url {} --client-id <CLIENT_ID> --client-secret <CLIENT_SECRET>`",
            self.name, self.name, self.profile.url
        );
        let response =
            management_token(&self.http, &self.profile).await.map_err(|e| e.hint_if(Exit::Auth, login_hint))?;
        let token = response.access_token()?.to_owned();
        self.profile.access_token = Some(token.clone());
        self.profile.token_expires_at = Some(now + response.expires_in());
        // Caching is an optimization: a read-only config dir must not break the command.
        if let Err(e) = self.store.put_profile(&self.name, self.profile.clone()) {
            eprintln!("warning: cannot cache the Management API token: {e}");
        }
        Ok(token)
    }

    /// A Management API call: `segments` under `/api/v2`, optional query pairs and JSON body.
    /// A 401 with a cached token is retried once with a new token.
    pub async fn call(
        &mut self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> CliResult<Value> {
        let mut path: Vec<&str> = vec!["api", "v2"];
        path.extend_from_slice(segments);
        let mut url = endpoint(&self.profile.url, &path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut force_new = false;
        loop {
            let token = self.bearer(force_new).await?;
            let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(&token);
            if let Some(b) = body {
                request = request.json(b);
            }
            let response = request.send().await.map_err(|e| unreachable(&url, &e))?;
            let status = response.status().as_u16();
            let json = read_json(&url, response).await?;
            if (200..300).contains(&status) {
                return Ok(json);
            }
            if status == 401 && !force_new {
                force_new = true;
                continue;
            }
            let error = status_error(&method, &url, status, &json);
            return Err(if status == 403 {
                error.hint(format!(
                    "the client of profile {:?} ({}) lacks this permission: grant it the scope on the Management API",
                    self.name, self.profile.client_id
                ))
            } else {
                error
            });
        }
    }

    /// `GET` of every page of a list endpoint (`include_totals`, 100 per page).
    pub async fn list_all(&mut self, segments: &[&str], key: &str, filters: &[(&str, &str)]) -> CliResult<Vec<Value>> {
        let mut items = Vec::new();
        for page in 0u32.. {
            let page_text = page.to_string();
            let mut query: Vec<(&str, &str)> =
                vec![("include_totals", "true"), ("per_page", "100"), ("page", &page_text)];
            query.extend_from_slice(filters);
            let body = self.call(Method::GET, segments, &query, None).await?;
            let batch = body.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
            let total = body.get("total").and_then(Value::as_u64).unwrap_or(0);
            let n = batch.len();
            items.extend(batch);
            if n == 0 || items.len() as u64 >= total {
                break;
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_encode_segments() {
        let url = endpoint("http://h:1/base/", &["api", "v2", "resource-servers", "https://x/y"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/base/api/v2/resource-servers/https:%2F%2Fx%2Fy");
        let url = endpoint("http://h:1", &["oauth", "token"]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/oauth/token");
        assert_eq!(parse_base_url("ftp://x").err().map(|e| e.exit), Some(Exit::Usage));
    }

    #[test]
    fn messages_come_from_either_error_shape() {
        let mgmt = serde_json::json!({"statusCode": 404, "error": "Not Found", "message": "The client does not exist"});
        assert_eq!(server_message(&mgmt), "The client does not exist");
        let oauth = serde_json::json!({"error": "access_denied", "error_description": "Unauthorized"});
        assert_eq!(server_message(&oauth), "access_denied: Unauthorized");
    }
}
