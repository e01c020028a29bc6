//! `ration grants …`: client grants (`/api/v2/client-grants`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::Session;
use super::error::{CliError, CliResult, Exit};
use super::output::{TABLE_SCOPES, abbreviate, emit, emit_json, key_values, list, table, text};
use super::{GlobalArgs, split_list};

const LIST_HINT: &str = "list grants with `ration grants list`";

/// `ration grants` subcommands.
#[derive(Subcommand, Debug)]
pub enum GrantsCommand {
    /// List grants, optionally of one application or API.
    List {
        /// Only grants of this application (client_id).
        #[arg(long, value_name = "CLIENT_ID")]
        app: Option<String>,
        /// Only grants for this API (its identifier, the audience).
        #[arg(long, value_name = "AUDIENCE")]
        api: Option<String>,
    },
    /// Allow an application to get tokens for an API.
    Create(CreateArgs),
    /// Change a grant's scopes or organization settings.
    Update {
        /// The grant's id (cgr_…).
        id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Delete a grant: the application can no longer get tokens for the API.
    Delete {
        /// The grant's id (cgr_…).
        id: String,
    },
}

/// `ration grants create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The application (client_id).
    #[arg(long, value_name = "CLIENT_ID")]
    app: String,
    /// The API's identifier (audience).
    #[arg(long, value_name = "AUDIENCE")]
    api: String,
    #[command(flatten)]
    fields: Fields,
}

/// Flags shared by create and update.
#[derive(Args, Debug)]
pub struct Fields {
    /// Scopes tokens may carry, comma-separated; each must be defined by the API ('' for none).
    #[arg(long, value_name = "SCOPE,…")]
    scopes: Option<Vec<String>>,
    /// Whether token requests may or must name an organization: deny, allow or require.
    #[arg(long, value_name = "USAGE")]
    organization_usage: Option<String>,
    /// Any organization may be used, not only those the grant is added to.
    #[arg(long, value_name = "true|false")]
    allow_any_organization: Option<bool>,
}

impl Fields {
    fn into_body(self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(s) = self.scopes {
            body.insert("scope".into(), json!(split_list(&s)));
        }
        if let Some(u) = self.organization_usage {
            body.insert("organization_usage".into(), json!(u));
        }
        if let Some(a) = self.allow_any_organization {
            body.insert("allow_any_organization".into(), json!(a));
        }
        body
    }
}

/// One line per grant; shared with `ration orgs show`.
pub fn grants_table(grants: &[Value]) -> String {
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            let orgs = match (text(g, "organization_usage").as_str(), g.get("allow_any_organization")) {
                ("", _) => String::new(),
                (usage, Some(Value::Bool(true))) => format!("{usage}, any"),
                (usage, _) => usage.to_owned(),
            };
            let scopes: Vec<&str> = g
                .get("scope")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            vec![text(g, "id"), text(g, "client_id"), text(g, "audience"), abbreviate(&scopes, TABLE_SCOPES), orgs]
        })
        .collect();
    table(&["ID", "APP", "API", "SCOPES", "ORGANIZATIONS"], &rows)
}

fn show(global: &GlobalArgs, grant: &Value) -> CliResult<()> {
    if global.json {
        return emit_json(grant);
    }
    emit(&key_values(&[
        ("id", text(grant, "id")),
        ("app", text(grant, "client_id")),
        ("api", text(grant, "audience")),
        ("scopes", list(grant, "scope")),
        ("organization_usage", text(grant, "organization_usage")),
        ("allow_any_organization", text(grant, "allow_any_organization")),
    ]))
}

/// Runs a `grants` subcommand.
pub async fn run(global: &GlobalArgs, command: GrantsCommand) -> CliResult<()> {
    let mut session = Session::open(global.profile.as_deref())?;
    match command {
        GrantsCommand::List { app, api } => {
            let mut filters: Vec<(&str, &str)> = Vec::new();
            if let Some(a) = &app {
                filters.push(("client_id", a));
            }
            if let Some(a) = &api {
                filters.push(("audience", a));
            }
            let grants = session.list_all(&["client-grants"], "client_grants", &filters).await?;
            if global.json {
                return emit_json(&Value::Array(grants));
            }
            if grants.is_empty() {
                return emit("no grants");
            }
            emit(&grants_table(&grants))
        }
        GrantsCommand::Create(args) => {
            let mut body = args.fields.into_body();
            body.insert("client_id".into(), json!(args.app));
            body.insert("audience".into(), json!(args.api));
            let grant =
                session.call(Method::POST, &["client-grants"], &[], Some(&Value::Object(body))).await.map_err(|e| {
                    e.hint_if(Exit::NotFound, "check --app (`ration apps list`) and --api (`ration apis list`)")
                })?;
            show(global, &grant)
        }
        GrantsCommand::Update { id, fields } => {
            let body = fields.into_body();
            if body.is_empty() {
                return Err(CliError::usage("nothing to update")
                    .hint("give --scopes, --organization-usage or --allow-any-organization"));
            }
            let grant = session
                .call(Method::PATCH, &["client-grants", &id], &[], Some(&Value::Object(body)))
                .await
                .map_err(|e| e.hint_if(Exit::NotFound, LIST_HINT))?;
            show(global, &grant)
        }
        GrantsCommand::Delete { id } => {
            session
                .call(Method::DELETE, &["client-grants", &id], &[], None)
                .await
                .map_err(|e| e.hint_if(Exit::NotFound, LIST_HINT))?;
            if global.json {
                return emit_json(&json!({ "deleted": true, "id": id }));
            }
            emit(&format!("deleted grant {id}"))
        }
    }
}
