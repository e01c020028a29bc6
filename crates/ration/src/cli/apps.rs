//! `ration apps …`: applications (`/api/v2/clients`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::Session;
use super::error::{CliError, CliResult, Exit};
use super::output::{emit, emit_json, key_values, list, quota_summary, table, text};
use super::{GlobalArgs, parse_key_value, split_list};

/// The grant type whose absence pauses an application.
const CLIENT_CREDENTIALS: &str = "client_credentials";
const LIST_HINT: &str = "list applications with `ration apps list`";

/// `ration apps` subcommands.
#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// List applications.
    List,
    /// Create an application; prints its client secret (shown only this once).
    Create(CreateArgs),
    /// Show one application.
    Show {
        /// The application's client_id.
        id: String,
    },
    /// Change an application's name, description, grant types or metadata.
    Update {
        /// The application's client_id.
        id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Delete an application (and its grants).
    Delete {
        /// The application's client_id.
        id: String,
    },
    /// Replace the client secret; the old one stops working at once. Prints the new secret.
    RotateSecret {
        /// The application's client_id.
        id: String,
    },
    /// Stop token issuance: removes `client_credentials` from the grant types.
    Pause {
        /// The application's client_id.
        id: String,
    },
    /// Allow token issuance again: adds `client_credentials` back, keeping other grant types.
    Resume {
        /// The application's client_id.
        id: String,
    },
}

/// `ration apps create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Name, 1 to 255 characters.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    fields: OptionalFields,
}

/// `ration apps update` flags: at least one.
#[derive(Args, Debug)]
pub struct Fields {
    /// New name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    rest: OptionalFields,
}

/// Flags shared by create and update.
#[derive(Args, Debug)]
pub struct OptionalFields {
    /// Description, at most 140 characters.
    #[arg(long)]
    description: Option<String>,
    /// Grant types, comma-separated (default on create: client_credentials; '' for none).
    #[arg(long, value_name = "TYPE,…")]
    grant_types: Option<Vec<String>>,
    /// Metadata entry, repeatable (on update: replaces all metadata).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    metadata: Vec<(String, String)>,
    /// Application type (default on create: non_interactive).
    #[arg(long)]
    app_type: Option<String>,
}

impl OptionalFields {
    fn write_into(self, body: &mut Map<String, Value>) {
        if let Some(d) = self.description {
            body.insert("description".into(), json!(d));
        }
        if let Some(g) = self.grant_types {
            body.insert("grant_types".into(), json!(split_list(&g)));
        }
        if !self.metadata.is_empty() {
            let m: Map<String, Value> = self.metadata.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            body.insert("client_metadata".into(), Value::Object(m));
        }
        if let Some(t) = self.app_type {
            body.insert("app_type".into(), json!(t));
        }
    }
}

/// Whether the application may get tokens (it has `client_credentials`).
pub fn is_active(client: &Value) -> bool {
    client.get("grant_types").and_then(Value::as_array).is_some_and(|g| g.iter().any(|t| t == CLIENT_CREDENTIALS))
}

fn status(client: &Value) -> String {
    if is_active(client) { "active" } else { "paused" }.to_owned()
}

fn details(client: &Value) -> String {
    let metadata = client
        .get("client_metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>())
        .unwrap_or_default()
        .join(", ");
    let default_org = client
        .get("default_organization")
        .and_then(|d| d.get("organization_id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    key_values(&[
        ("client_id", text(client, "client_id")),
        ("name", text(client, "name")),
        ("description", text(client, "description")),
        ("status", status(client)),
        ("app_type", text(client, "app_type")),
        ("grant_types", list(client, "grant_types")),
        ("auth_method", text(client, "token_endpoint_auth_method")),
        ("quota", quota_summary(client.get("token_quota"))),
        ("default_organization", default_org),
        ("metadata", metadata),
        ("client_secret", text(client, "client_secret")),
        ("created_at", text(client, "created_at")),
        ("updated_at", text(client, "updated_at")),
    ])
}

/// Prints a client object (with its new secret, when the server returned one).
fn show(global: &GlobalArgs, client: &Value) -> CliResult<()> {
    if global.json {
        return emit_json(client);
    }
    emit(&details(client))?;
    if client.get("client_secret").is_some() {
        eprintln!("note: store the client_secret now; it cannot be shown again");
    }
    Ok(())
}

async fn get(session: &mut Session, id: &str) -> CliResult<Value> {
    session.call(Method::GET, &["clients", id], &[], None).await.map_err(|e| e.hint_if(Exit::NotFound, LIST_HINT))
}

async fn patch(session: &mut Session, id: &str, body: &Value) -> CliResult<Value> {
    session
        .call(Method::PATCH, &["clients", id], &[], Some(body))
        .await
        .map_err(|e| e.hint_if(Exit::NotFound, LIST_HINT))
}

/// Runs an `apps` subcommand.
pub async fn run(global: &GlobalArgs, command: AppsCommand) -> CliResult<()> {
    let mut session = Session::open(global.profile.as_deref())?;
    match command {
        AppsCommand::List => {
            let clients = session.list_all(&["clients"], "clients", &[]).await?;
            if global.json {
                return emit_json(&Value::Array(clients));
            }
            if clients.is_empty() {
                return emit("no applications");
            }
            let rows: Vec<Vec<String>> = clients
                .iter()
                .map(|c| vec![text(c, "client_id"), text(c, "name"), status(c), quota_summary(c.get("token_quota"))])
                .collect();
            emit(&table(&["CLIENT ID", "NAME", "STATUS", "QUOTA"], &rows))
        }
        AppsCommand::Create(args) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(args.name));
            args.fields.write_into(&mut body);
            let client = session.call(Method::POST, &["clients"], &[], Some(&Value::Object(body))).await?;
            show(global, &client)
        }
        AppsCommand::Show { id } => {
            let client = get(&mut session, &id).await?;
            show(global, &client)
        }
        AppsCommand::Update { id, fields } => {
            let mut body = Map::new();
            if let Some(n) = fields.name {
                body.insert("name".into(), json!(n));
            }
            fields.rest.write_into(&mut body);
            if body.is_empty() {
                return Err(CliError::usage("nothing to update")
                    .hint("give --name, --description, --grant-types, --metadata or --app-type"));
            }
            let client = patch(&mut session, &id, &Value::Object(body)).await?;
            show(global, &client)
        }
        AppsCommand::Delete { id } => {
            session
                .call(Method::DELETE, &["clients", &id], &[], None)
                .await
                .map_err(|e| e.hint_if(Exit::NotFound, LIST_HINT))?;
            if global.json {
                return emit_json(&json!({ "deleted": true, "client_id": id }));
            }
            emit(&format!("deleted application {id}"))
        }
        AppsCommand::RotateSecret { id } => {
            let client = session
                .call(Method::POST, &["clients", &id, "rotate-secret"], &[], None)
                .await
                .map_err(|e| e.hint_if(Exit::NotFound, LIST_HINT))?;
            show(global, &client)
        }
        AppsCommand::Pause { id } => {
            if id == session.profile().client_id {
                return Err(CliError::new(
                    Exit::Invalid,
                    format!("refusing to pause {id}: profile {:?} logs in with it", session.profile_name()),
                )
                .hint("pausing it would lock this profile out of the Management API"));
            }
            set_active(global, &mut session, &id, false).await
        }
        AppsCommand::Resume { id } => set_active(global, &mut session, &id, true).await,
    }
}

/// Pause or resume: PATCH `grant_types` without / with `client_credentials`, other types kept.
async fn set_active(global: &GlobalArgs, session: &mut Session, id: &str, active: bool) -> CliResult<()> {
    let client = get(session, id).await?;
    let verb = if active { "resumed" } else { "paused" };
    let client = if is_active(&client) == active {
        client
    } else {
        let mut grant_types: Vec<Value> = client
            .get("grant_types")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|g| g != CLIENT_CREDENTIALS)
            .collect();
        if active {
            grant_types.push(json!(CLIENT_CREDENTIALS));
        }
        patch(session, id, &json!({ "grant_types": grant_types })).await?
    };
    if global.json {
        return emit_json(&client);
    }
    let effect = if active { "it can get tokens again" } else { "token requests now get 403 unauthorized_client" };
    emit(&format!("{verb} application {id} ({}): {effect}", text(&client, "name")))
}
