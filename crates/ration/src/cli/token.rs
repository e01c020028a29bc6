//! `ration token`: a client-credentials token for an application, for testing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use serde_json::{Map, Value, json};

use super::GlobalArgs;
use super::client::{self, TokenResponse};
use super::error::{CliError, CliResult, Exit};
use super::output::{duration, emit, emit_json, key_values, text};
use super::profile::Store;

/// `ration token` flags. `Debug` is written by hand so that the secret never shows.
#[derive(Args)]
pub struct TokenArgs {
    /// The application's client_id.
    #[arg(long, value_name = "CLIENT_ID")]
    app: String,
    /// The application's secret (or set RATION_APP_SECRET, which keeps it out of the shell history).
    // Secrets are base64url and start with `-` one time in 64: without `allow_hyphen_values`,
    // `--secret -abc…` was read as an unknown flag.
    #[arg(long, env = "RATION_APP_SECRET", hide_env_values = true, allow_hyphen_values = true)]
    secret: String,
    /// The API identifier (default: the tenant's default audience).
    #[arg(long)]
    audience: Option<String>,
    /// Scopes to ask for (space- or comma-separated; default: every scope of the grant).
    #[arg(long)]
    scope: Vec<String>,
    /// Organization id or name.
    #[arg(long)]
    organization: Option<String>,
    /// Print the token's header and claims instead of the token response.
    #[arg(long)]
    decode: bool,
    /// Server URL (default: the profile's).
    #[arg(long)]
    url: Option<String>,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("app", &self.app)
            .field("secret", &"[REDACTED]")
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("organization", &self.organization)
            .field("decode", &self.decode)
            .field("url", &self.url)
            .finish()
    }
}

/// Decodes the header and claims of a JWT (no signature check: this is for reading them).
pub fn decode_jwt(token: &str) -> CliResult<(Value, Value)> {
    let part = |i: usize| -> CliResult<Value> {
        let segment = token.split('.').nth(i).unwrap_or_default();
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|e| CliError::new(Exit::Server, format!("the access token is not a JWT: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::new(Exit::Server, format!("the access token is not a JWT: {e}")))
    };
    Ok((part(0)?, part(1)?))
}

/// `b=per_hour;q=10;r=9;t=3541,b=per_day;…` as `per_hour 9 of 10 left (resets in 59m 1s)`.
fn describe_quota_header(value: &str) -> String {
    value
        .split(',')
        .map(|bucket| {
            let field = |name: &str| {
                bucket.split(';').find_map(|kv| kv.trim().strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            match (field("b"), field("q"), field("r"), field("t").and_then(|t| t.parse::<i64>().ok())) {
                (Some(b), Some(q), Some(r), Some(t)) => format!("{b} {r} of {q} left (resets in {})", duration(t)),
                _ => bucket.trim().to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn server_url(args: &TokenArgs, global: &GlobalArgs) -> CliResult<String> {
    if let Some(u) = &args.url {
        return Ok(client::parse_base_url(u)?.to_string());
    }
    let store = Store::locate()?;
    store.profile(global.profile.as_deref()).map(|(_, p)| p.url).map_err(|e| {
        e.hint("pass --url <URL>, or run `ration login --url <URL> --client-id <CLIENT_ID> --client-secret <CLIENT_SECRET>`")
    })
}

/// Requests the token and prints the response (or, with `--decode`, its claims).
pub async fn run(global: &GlobalArgs, args: TokenArgs) -> CliResult<()> {
    let url = server_url(&args, global)?;
    let mut body = Map::new();
    body.insert("grant_type".into(), json!("client_credentials"));
    body.insert("client_id".into(), json!(args.app));
    body.insert("client_secret".into(), json!(args.secret));
    if let Some(a) = &args.audience {
        body.insert("audience".into(), json!(a));
    }
    let scopes: Vec<&str> = args.scope.iter().flat_map(|s| s.split([' ', ','])).filter(|s| !s.is_empty()).collect();
    if !scopes.is_empty() {
        body.insert("scope".into(), json!(scopes.join(" ")));
    }
    if let Some(o) = &args.organization {
        body.insert("organization".into(), json!(o));
    }
    let http = client::http_client()?;
    let response = client::request_token(&http, &url, &Value::Object(body)).await.map_err(|e| match e.exit {
        Exit::Auth => e.hint("check --app and --secret, that the application is not paused, and that a grant exists for the audience (`ration grants list --app …`)"),
        Exit::QuotaExceeded => e.hint(format!("see the usage with `ration quota show --app {}`", args.app)),
        _ => e,
    })?;
    print(global, &args, &response)
}

fn print(global: &GlobalArgs, args: &TokenArgs, response: &TokenResponse) -> CliResult<()> {
    if args.decode {
        let (header, claims) = decode_jwt(response.access_token()?)?;
        if global.json {
            return emit_json(&json!({ "header": header, "claims": claims }));
        }
        emit("header:")?;
        emit_json(&header)?;
        emit("claims:")?;
        return emit_json(&claims);
    }
    if global.json {
        return emit_json(&response.body);
    }
    let header = |name: &str| {
        response.headers.get(name).and_then(|v| v.to_str().ok()).map(describe_quota_header).unwrap_or_default()
    };
    emit(&key_values(&[
        ("access_token", text(&response.body, "access_token")),
        ("token_type", text(&response.body, "token_type")),
        ("expires_in", text(&response.body, "expires_in")),
        ("scope", text(&response.body, "scope")),
        ("client quota", header("auth0-client-quota-limit")),
        ("organization quota", header("auth0-organization-quota-limit")),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_headers_read_well() {
        assert_eq!(
            describe_quota_header("b=per_hour;q=10;r=9;t=3541,b=per_day;q=100;r=99;t=7"),
            "per_hour 9 of 10 left (resets in 59m 1s), per_day 99 of 100 left (resets in 7s)"
        );
        assert_eq!(describe_quota_header("garbage"), "garbage");
    }

    #[test]
    fn decodes_jwt_parts() {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let token = format!("{}.{}.sig", enc(&json!({"alg": "RS256"})), enc(&json!({"sub": "x@clients"})));
        let (h, c) = decode_jwt(&token).unwrap();
        assert_eq!((h["alg"].as_str(), c["sub"].as_str()), (Some("RS256"), Some("x@clients")));
        assert!(decode_jwt("not-a-jwt").is_err());
    }
}
