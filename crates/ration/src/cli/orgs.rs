//! `ration orgs …`: organizations (`/api/v2/organizations`) and their client grants.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::GlobalArgs;
use super::client::Session;
use super::error::{CliError, CliResult, Exit};
use super::grants::grants_table;
use super::output::{emit, emit_json, key_values, quota_summary, table, text};

const LIST_HINT: &str = "list organizations with `ration orgs list`";

/// `ration orgs` subcommands.
#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// List organizations.
    List,
    /// Create an organization.
    Create(CreateArgs),
    /// Show an organization and the grants added to it.
    Show {
        /// The organization's id (org_…).
        id: String,
    },
    /// Change an organization's name or display name.
    Update {
        /// The organization's id (org_…).
        id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Delete an organization.
    Delete {
        /// The organization's id (org_…).
        id: String,
    },
    /// Let tokens of a grant be issued for this organization.
    AddGrant {
        /// The organization's id (org_…).
        id: String,
        /// The grant's id (cgr_…).
        #[arg(long, value_name = "GRANT_ID")]
        grant: String,
    },
    /// Remove a grant from this organization.
    RemoveGrant {
        /// The organization's id (org_…).
        id: String,
        /// The grant's id (cgr_…).
        #[arg(long, value_name = "GRANT_ID")]
        grant: String,
    },
}

/// `ration orgs create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// 1 to 50 lower-case letters, digits, '-' and '_' (usable instead of the id in token requests).
    #[arg(long)]
    name: String,
    /// Display name.
    #[arg(long)]
    display_name: Option<String>,
}

/// `ration orgs update` flags.
#[derive(Args, Debug)]
pub struct Fields {
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New display name.
    #[arg(long)]
    display_name: Option<String>,
}

fn details(org: &Value) -> String {
    key_values(&[
        ("id", text(org, "id")),
        ("name", text(org, "name")),
        ("display_name", text(org, "display_name")),
        ("quota", quota_summary(org.get("token_quota"))),
        ("created_at", text(org, "created_at")),
        ("updated_at", text(org, "updated_at")),
    ])
}

fn show(global: &GlobalArgs, org: &Value) -> CliResult<()> {
    if global.json { emit_json(org) } else { emit(&details(org)) }
}

/// Runs an `orgs` subcommand.
pub async fn run(global: &GlobalArgs, command: OrgsCommand) -> CliResult<()> {
    let mut session = Session::open(global.profile.as_deref())?;
    let not_found = |e: CliError| e.hint_if(Exit::NotFound, LIST_HINT);
    match command {
        OrgsCommand::List => {
            let orgs = session.list_all(&["organizations"], "organizations", &[]).await?;
            if global.json {
                return emit_json(&Value::Array(orgs));
            }
            if orgs.is_empty() {
                return emit("no organizations");
            }
            let rows: Vec<Vec<String>> = orgs
                .iter()
                .map(|o| {
                    vec![text(o, "id"), text(o, "name"), text(o, "display_name"), quota_summary(o.get("token_quota"))]
                })
                .collect();
            emit(&table(&["ID", "NAME", "DISPLAY NAME", "QUOTA"], &rows))
        }
        OrgsCommand::Create(args) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(args.name));
            if let Some(d) = args.display_name {
                body.insert("display_name".into(), json!(d));
            }
            let org = session.call(Method::POST, &["organizations"], &[], Some(&Value::Object(body))).await?;
            show(global, &org)
        }
        OrgsCommand::Show { id } => {
            let org = session.call(Method::GET, &["organizations", &id], &[], None).await.map_err(not_found)?;
            let grants = session.list_all(&["organizations", &id, "client-grants"], "client_grants", &[]).await?;
            if global.json {
                let mut org = org;
                if let Some(o) = org.as_object_mut() {
                    o.insert("client_grants".into(), Value::Array(grants));
                }
                return emit_json(&org);
            }
            emit(&details(&org))?;
            if grants.is_empty() {
                emit("\nno grants added (add one with `ration orgs add-grant`)")
            } else {
                emit(&format!("\n{}", grants_table(&grants)))
            }
        }
        OrgsCommand::Update { id, fields } => {
            let mut body = Map::new();
            if let Some(n) = fields.name {
                body.insert("name".into(), json!(n));
            }
            if let Some(d) = fields.display_name {
                body.insert("display_name".into(), json!(d));
            }
            if body.is_empty() {
                return Err(CliError::usage("nothing to update").hint("give --name or --display-name"));
            }
            let org = session
                .call(Method::PATCH, &["organizations", &id], &[], Some(&Value::Object(body)))
                .await
                .map_err(not_found)?;
            show(global, &org)
        }
        OrgsCommand::Delete { id } => {
            session.call(Method::DELETE, &["organizations", &id], &[], None).await.map_err(not_found)?;
            if global.json {
                return emit_json(&json!({ "deleted": true, "id": id }));
            }
            emit(&format!("deleted organization {id}"))
        }
        OrgsCommand::AddGrant { id, grant } => {
            let body = json!({ "grant_id": grant });
            let added = session
                .call(Method::POST, &["organizations", &id, "client-grants"], &[], Some(&body))
                .await
                .map_err(|e| {
                    e.hint_if(
                        Exit::NotFound,
                        "check the organization (`ration orgs list`) and --grant (`ration grants list`)",
                    )
                })?;
            if global.json {
                return emit_json(&added);
            }
            emit(&format!("added grant {grant} to organization {id}"))
        }
        OrgsCommand::RemoveGrant { id, grant } => {
            session.call(Method::DELETE, &["organizations", &id, "client-grants", &grant], &[], None).await.map_err(
                |e| e.hint_if(Exit::NotFound, format!("see the organization's grants with `ration orgs show {id}`")),
            )?;
            if global.json {
                return emit_json(&json!({ "removed": true, "organization_id": id, "grant_id": grant }));
            }
            emit(&format!("removed grant {grant} from organization {id}"))
        }
    }
}
