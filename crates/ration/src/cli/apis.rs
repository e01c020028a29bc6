//! `ration apis …`: APIs (`/api/v2/resource-servers`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::Session;
use super::error::{CliError, CliResult, Exit};
use super::output::{TABLE_SCOPES, abbreviate, emit, emit_json, key_values, table, text};
use super::{GlobalArgs, split_list};

const LIST_HINT: &str = "list APIs with `ration apis list`";

/// `ration apis` subcommands. An API is named by its id or its identifier (audience).
#[derive(Subcommand, Debug)]
pub enum ApisCommand {
    /// List APIs.
    List,
    /// Create an API.
    Create(CreateArgs),
    /// Show one API.
    Show {
        /// The API's id or identifier (audience).
        id: String,
    },
    /// Change an API's name, scopes, signing algorithm or token lifetime.
    Update {
        /// The API's id or identifier (audience).
        id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Delete an API (and the grants for it).
    Delete {
        /// The API's id or identifier (audience).
        id: String,
    },
}

/// `ration apis create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The audience tokens will carry, e.g. https://billing.example.com (immutable).
    #[arg(long)]
    identifier: String,
    #[command(flatten)]
    fields: Fields,
}

/// Flags shared by create and update.
#[derive(Args, Debug)]
pub struct Fields {
    /// Name (default on create: the identifier).
    #[arg(long)]
    name: Option<String>,
    /// Scopes the API defines, comma-separated (on update: replaces all).
    #[arg(long, value_name = "SCOPE,…")]
    scopes: Option<Vec<String>>,
    /// RS256 (default), RS512, PS256, HS256, ES256 or EdDSA.
    #[arg(long)]
    signing_alg: Option<String>,
    /// Token lifetime in seconds (default 86400).
    #[arg(long, value_name = "SECONDS")]
    token_lifetime: Option<u64>,
}

impl Fields {
    fn into_body(self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(n) = self.name {
            body.insert("name".into(), json!(n));
        }
        if let Some(s) = self.scopes {
            let scopes: Vec<Value> = split_list(&s).into_iter().map(|v| json!({ "value": v })).collect();
            body.insert("scopes".into(), Value::Array(scopes));
        }
        if let Some(a) = self.signing_alg {
            body.insert("signing_alg".into(), json!(a));
        }
        if let Some(t) = self.token_lifetime {
            body.insert("token_lifetime".into(), json!(t));
        }
        body
    }
}

fn scope_values(api: &Value) -> Vec<&str> {
    api.get("scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.get("value").and_then(Value::as_str)).collect())
        .unwrap_or_default()
}

/// The HS256 signing secret is a secret: the CLI never prints it.
fn redact(mut api: Value) -> Value {
    if let Some(o) = api.as_object_mut()
        && o.contains_key("signing_secret")
    {
        o.insert("signing_secret".into(), json!("[REDACTED]"));
    }
    api
}

fn show(global: &GlobalArgs, api: Value) -> CliResult<()> {
    let api = redact(api);
    if global.json {
        return emit_json(&api);
    }
    let secret = if api.get("signing_secret").is_some() { "set (not shown)".to_owned() } else { String::new() };
    emit(&key_values(&[
        ("id", text(&api, "id")),
        ("name", text(&api, "name")),
        ("identifier", text(&api, "identifier")),
        ("scopes", scope_values(&api).join(",")),
        ("signing_alg", text(&api, "signing_alg")),
        ("signing_secret", secret),
        ("token_lifetime", format!("{}s", text(&api, "token_lifetime"))),
        ("system", if api.get("is_system") == Some(&Value::Bool(true)) { "yes".into() } else { String::new() }),
    ]))
}

/// Runs an `apis` subcommand.
pub async fn run(global: &GlobalArgs, command: ApisCommand) -> CliResult<()> {
    let mut session = Session::open(global.profile.as_deref())?;
    let not_found = |e: CliError| e.hint_if(Exit::NotFound, LIST_HINT);
    match command {
        ApisCommand::List => {
            let apis: Vec<Value> = session
                .list_all(&["resource-servers"], "resource_servers", &[])
                .await?
                .into_iter()
                .map(redact)
                .collect();
            if global.json {
                return emit_json(&Value::Array(apis));
            }
            if apis.is_empty() {
                return emit("no APIs");
            }
            let rows: Vec<Vec<String>> = apis
                .iter()
                .map(|a| {
                    vec![
                        text(a, "id"),
                        text(a, "name"),
                        text(a, "identifier"),
                        text(a, "signing_alg"),
                        format!("{}s", text(a, "token_lifetime")),
                        abbreviate(&scope_values(a), TABLE_SCOPES),
                    ]
                })
                .collect();
            emit(&table(&["ID", "NAME", "IDENTIFIER", "ALG", "LIFETIME", "SCOPES"], &rows))
        }
        ApisCommand::Create(args) => {
            let mut body = args.fields.into_body();
            body.insert("identifier".into(), json!(args.identifier));
            let api = session.call(Method::POST, &["resource-servers"], &[], Some(&Value::Object(body))).await?;
            show(global, api)
        }
        ApisCommand::Show { id } => {
            let api = session.call(Method::GET, &["resource-servers", &id], &[], None).await.map_err(not_found)?;
            show(global, api)
        }
        ApisCommand::Update { id, fields } => {
            let body = fields.into_body();
            if body.is_empty() {
                return Err(CliError::usage("nothing to update")
                    .hint("give --name, --scopes, --signing-alg or --token-lifetime"));
            }
            let api = session
                .call(Method::PATCH, &["resource-servers", &id], &[], Some(&Value::Object(body)))
                .await
                .map_err(not_found)?;
            show(global, api)
        }
        ApisCommand::Delete { id } => {
            session.call(Method::DELETE, &["resource-servers", &id], &[], None).await.map_err(not_found)?;
            if global.json {
                return emit_json(&json!({ "deleted": true, "id": id }));
            }
            emit(&format!("deleted API {id}"))
        }
    }
}
