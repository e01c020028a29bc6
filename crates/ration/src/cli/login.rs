//! `ration login`: checks Management API credentials and stores them as a profile.

use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::client::{self, unix_now};
use super::error::{CliResult, Exit};
use super::output::{emit, emit_json, key_values};
use super::profile::{self, Profile, Store};

/// Flags of `ration login`. `Debug` is written by hand so that the secret never shows.
#[derive(Args)]
pub struct LoginArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A client with a grant for the Management API (e.g. the admin client printed at first start).
    #[arg(long)]
    client_id: String,
    /// Its secret (or set RATION_CLIENT_SECRET, which keeps it out of the shell history).
    // Base64url: may start with `-` (see `ration token --secret`).
    #[arg(long, env = "RATION_CLIENT_SECRET", hide_env_values = true, allow_hyphen_values = true)]
    client_secret: String,
}

impl std::fmt::Debug for LoginArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginArgs")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// Reads the issuer from discovery, gets a Management API token (which proves the credentials),
/// then stores the profile with the token cached.
pub async fn run(global: &GlobalArgs, args: LoginArgs) -> CliResult<()> {
    let store = Store::locate()?;
    let config = store.load()?;
    let name = global.profile.clone().unwrap_or_else(|| {
        // A first login creates `default`; later logins without --profile refresh the default one.
        profile::resolve_name(None, &config)
    });
    profile::check_profile_name(&name)?;
    let mut url = client::parse_base_url(&args.url)?.to_string();
    while url.ends_with('/') {
        url.pop();
    }
    let http = client::http_client()?;
    let issuer = client::discover_issuer(&http, &url).await?;
    let mut profile = Profile {
        url,
        issuer,
        client_id: args.client_id,
        client_secret: args.client_secret,
        access_token: None,
        token_expires_at: None,
    };
    let response = client::management_token(&http, &profile).await.map_err(|e| {
        e.hint_if(
            Exit::Auth,
            "check --client-id and --client-secret: the client needs a grant for the Management API (the admin client printed at the server's first start has one)",
        )
    })?;
    let scope = response.body.get("scope").and_then(|s| s.as_str()).unwrap_or_default().to_owned();
    profile.access_token = Some(response.access_token()?.to_owned());
    profile.token_expires_at = Some(unix_now() + response.expires_in());
    store.put_profile(&name, profile.clone())?;

    let path = store.path().display().to_string();
    if global.json {
        return emit_json(&json!({
            "profile": name,
            "url": profile.url,
            "issuer": profile.issuer,
            "client_id": profile.client_id,
            "scope": scope,
            "config_path": path,
        }));
    }
    let scopes = scope.split(' ').filter(|s| !s.is_empty()).count();
    emit(&format!("Logged in to {} as {} (profile {name:?}).", profile.url, profile.client_id))?;
    emit(&key_values(&[
        ("issuer", profile.issuer.clone()),
        ("scopes", format!("{scopes} Management API scopes")),
        ("config", path),
    ]))
}
