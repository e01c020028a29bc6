//! The operator CLI: `ration login|apps|apis|grants|orgs|quota|token|logs`.
//!
//! It talks to a running server over HTTP only (discovery, `/oauth/token`, the Management API),
//! never to its database. `ration login` stores a profile (see [`profile`]); every other command
//! uses it. Output is a table or key/value block for people and the server's JSON with `--json`.
//! Exit codes (see [`error::Exit`]): 0 ok, 2 usage, 3 not logged in, 4 authentication or
//! permission refused, 5 not found, 6 validation, 7 server or network, 8 quota exceeded.

mod apis;
mod apps;
mod client;
mod error;
mod grants;
mod login;
mod logs;
mod orgs;
mod output;
mod profile;
mod quota;
mod token;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use error::{CliError, CliResult};

/// Flags every CLI command accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Profile to use (default: $RATION_PROFILE, else the profile of the first login, else
    /// `default`).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Print the server's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    /// Whether any of the flags was given (they mean nothing to `ration serve`).
    pub fn any(&self) -> bool {
        self.profile.is_some() || self.json
    }
}

/// The operator commands (flattened into the binary's subcommands next to `serve`).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check Management API credentials against a server and store them as a profile.
    Login(login::LoginArgs),
    /// Applications (clients): list, create, show, update, delete, rotate-secret, pause, resume.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// APIs (resource servers): list, create, show, update, delete.
    #[command(subcommand)]
    Apis(apis::ApisCommand),
    /// Client grants (which application may get tokens for which API): list, create, update,
    /// delete.
    #[command(subcommand)]
    Grants(grants::GrantsCommand),
    /// Organizations: list, create, show, update, delete, add-grant, remove-grant.
    #[command(subcommand)]
    Orgs(orgs::OrgsCommand),
    /// Token quotas: live usage as bars, and setting quotas and tenant defaults.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// Get a client-credentials token for an application (for testing).
    Token(token::TokenArgs),
    /// The event log: `logs tail [--type seccft] [--client ID] [--follow]`.
    #[command(subcommand)]
    Logs(logs::LogsCommand),
}

/// Runs one operator command to completion and returns the process exit code.
pub fn run(global: GlobalArgs, command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return CliError::new(error::Exit::Server, format!("cannot start the async runtime: {e}")).report(),
    };
    match runtime.block_on(dispatch(&global, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

async fn dispatch(global: &GlobalArgs, command: Command) -> CliResult<()> {
    if let Some(name) = &global.profile {
        profile::check_profile_name(name)?;
    }
    match command {
        Command::Login(args) => login::run(global, args).await,
        Command::Apps(c) => apps::run(global, c).await,
        Command::Apis(c) => apis::run(global, c).await,
        Command::Grants(c) => grants::run(global, c).await,
        Command::Orgs(c) => orgs::run(global, c).await,
        Command::Quota(c) => quota::run(global, c).await,
        Command::Token(args) => token::run(global, args).await,
        Command::Logs(c) => logs::run(global, c).await,
    }
}

/// Splits comma-separated flag values, dropping empty ones (`--scopes ''` means none).
fn split_list(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `KEY=VALUE` of `--metadata`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_on_commas() {
        assert_eq!(split_list(&["a,b".into(), " c ".into()]), vec!["a", "b", "c"]);
        assert!(split_list(&[String::new()]).is_empty());
    }

    #[test]
    fn key_values_need_a_key() {
        assert_eq!(parse_key_value("team=billing=x"), Ok(("team".into(), "billing=x".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("x").is_err());
    }
}
