//! `ration quota show|set`: live usage drawn as bars, and quotas of applications, organizations
//! and the tenant defaults.

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::GlobalArgs;
use super::client::Session;
use super::error::{CliError, CliResult, Exit};
use super::output::{bar, duration, emit, emit_json, quota_summary, text};

/// Cells of a usage bar.
const BAR_CELLS: usize = 10;

/// `ration quota` subcommands.
#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Live usage per bucket: `per_hour  [██████░░░░] 6/10  resets in 54m 12s`.
    Show {
        #[command(flatten)]
        target: Target,
    },
    /// Set (merge into the current quota) or clear a quota.
    Set(SetArgs),
}

/// Whose quota: exactly one of `--app`, `--org`, `--tenant-default`.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// An application (client_id).
    #[arg(long, value_name = "CLIENT_ID")]
    app: Option<String>,
    /// An organization (org_…).
    #[arg(long, value_name = "ORG_ID")]
    org: Option<String>,
    /// The tenant default for applications or organizations without their own quota.
    #[arg(long, value_enum, value_name = "KIND")]
    tenant_default: Option<DefaultKind>,
}

/// Which tenant default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DefaultKind {
    /// Applications without their own quota (`default_token_quota.clients`).
    Clients,
    /// Organizations without their own quota (`default_token_quota.organizations`).
    Organizations,
}

impl DefaultKind {
    fn key(self) -> &'static str {
        match self {
            DefaultKind::Clients => "clients",
            DefaultKind::Organizations => "organizations",
        }
    }
}

/// `ration quota set` flags. Limits given are merged into the current quota; `--clear` removes it.
#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    target: Target,
    /// Tokens per UTC minute.
    #[arg(long, value_name = "N")]
    per_minute: Option<u64>,
    /// Tokens per UTC hour.
    #[arg(long, value_name = "N")]
    per_hour: Option<u64>,
    /// Tokens per UTC day.
    #[arg(long, value_name = "N")]
    per_day: Option<u64>,
    /// Refuse tokens over quota (true), or only count and warn (false).
    #[arg(long, value_name = "true|false")]
    enforce: Option<bool>,
    /// Remove the quota (for an application or organization, the tenant default applies again).
    #[arg(long, conflicts_with_all = ["per_minute", "per_hour", "per_day", "enforce"])]
    clear: bool,
}

impl SetArgs {
    /// The current `client_credentials` object with the given flags applied.
    fn merged(&self, current: Option<&Value>) -> Value {
        let mut cc: Map<String, Value> =
            current.and_then(|q| q.get("client_credentials")).and_then(Value::as_object).cloned().unwrap_or_default();
        for (key, value) in [("per_minute", self.per_minute), ("per_hour", self.per_hour), ("per_day", self.per_day)] {
            if let Some(v) = value {
                cc.insert(key.into(), json!(v));
            }
        }
        if let Some(e) = self.enforce {
            cc.insert("enforce".into(), json!(e));
        }
        json!({ "client_credentials": cc })
    }

    fn has_changes(&self) -> bool {
        self.clear
            || self.per_minute.is_some()
            || self.per_hour.is_some()
            || self.per_day.is_some()
            || self.enforce.is_some()
    }
}

/// Runs a `quota` subcommand.
pub async fn run(global: &GlobalArgs, command: QuotaCommand) -> CliResult<()> {
    let mut session = Session::open(global.profile.as_deref())?;
    match command {
        QuotaCommand::Show { target } => show(global, &mut session, &target).await,
        QuotaCommand::Set(args) => set(global, &mut session, &args).await,
    }
}

fn entity(target: &Target) -> Option<(&'static str, &'static str, &str)> {
    match (&target.app, &target.org) {
        (Some(id), _) => Some(("clients", "application", id)),
        (None, Some(id)) => Some(("organizations", "organization", id)),
        (None, None) => None,
    }
}

fn list_hint(collection: &str) -> &'static str {
    if collection == "clients" {
        "list applications with `ration apps list`"
    } else {
        "list organizations with `ration orgs list`"
    }
}

async fn show(global: &GlobalArgs, session: &mut Session, target: &Target) -> CliResult<()> {
    let Some((collection, noun, id)) = entity(target) else {
        return show_tenant_defaults(global, session, target.tenant_default).await;
    };
    let usage = session
        .call(Method::GET, &[collection, id, "quota-usage"], &[], None)
        .await
        .map_err(|e| e.hint_if(Exit::NotFound, list_hint(collection)))?;
    if global.json {
        return emit_json(&usage);
    }
    let source = match usage.get("source").and_then(Value::as_str) {
        Some("tenant_default") => "tenant default quota",
        Some(_) => "own quota",
        None => {
            let flag = if collection == "clients" { "--app" } else { "--org" };
            emit(&format!("{noun} {id} has no quota (none of its own, no tenant default): tokens are not limited"))?;
            eprintln!("hint: set one with `ration quota set {flag} {id} --per-hour N`");
            return Ok(());
        }
    };
    let enforced = if usage.get("enforce").and_then(Value::as_bool) == Some(false) {
        "not enforced: over-quota tokens are counted and warned about, not refused"
    } else {
        "enforced"
    };
    emit(&format!("{noun} {id}: {source}, {enforced}"))?;
    emit(&usage_bars(&usage))
}

/// One bar per bucket, columns aligned.
pub fn usage_bars(usage: &Value) -> String {
    let buckets = usage.get("buckets").and_then(Value::as_array).cloned().unwrap_or_default();
    let rows: Vec<(String, u64, u64, i64)> = buckets
        .iter()
        .map(|b| {
            (
                text(b, "bucket"),
                b.get("used").and_then(Value::as_u64).unwrap_or(0),
                b.get("quota").and_then(Value::as_u64).unwrap_or(0),
                b.get("reset_in").and_then(Value::as_i64).unwrap_or(0),
            )
        })
        .collect();
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0) + 2;
    let counts: Vec<String> = rows.iter().map(|(_, used, quota, _)| format!("{used}/{quota}")).collect();
    let count_width = counts.iter().map(String::len).max().unwrap_or(0);
    rows.iter()
        .zip(&counts)
        .map(|((name, used, quota, reset_in), count)| {
            format!(
                "{name:<name_width$}{} {count:<count_width$}  resets in {}",
                bar(*used, *quota, BAR_CELLS),
                duration(*reset_in)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn show_tenant_defaults(global: &GlobalArgs, session: &mut Session, kind: Option<DefaultKind>) -> CliResult<()> {
    let settings = session.call(Method::GET, &["tenants", "settings"], &[], None).await?;
    let defaults = settings.get("default_token_quota").cloned().unwrap_or(Value::Null);
    let kinds: Vec<DefaultKind> =
        kind.map(|k| vec![k]).unwrap_or_else(|| vec![DefaultKind::Clients, DefaultKind::Organizations]);
    if global.json {
        let mut out = Map::new();
        for k in &kinds {
            out.insert(k.key().into(), defaults.get(k.key()).cloned().unwrap_or(Value::Null));
        }
        return emit_json(&Value::Object(out));
    }
    for k in kinds {
        let summary = match defaults.get(k.key()) {
            Some(q) => quota_summary(Some(q)),
            None => "none".to_owned(),
        };
        emit(&format!("tenant default for {}: {summary}", k.key()))?;
    }
    Ok(())
}

async fn set(global: &GlobalArgs, session: &mut Session, args: &SetArgs) -> CliResult<()> {
    if !args.has_changes() {
        return Err(
            CliError::usage("nothing to set").hint("give --per-minute, --per-hour, --per-day, --enforce or --clear")
        );
    }
    let Some((collection, noun, id)) = entity(&args.target) else {
        let kind = args.target.tenant_default.unwrap_or(DefaultKind::Clients);
        return set_tenant_default(global, session, args, kind).await;
    };
    let not_found = |e: CliError| e.hint_if(Exit::NotFound, list_hint(collection));
    let token_quota = if args.clear {
        Value::Null
    } else {
        let current = session.call(Method::GET, &[collection, id], &[], None).await.map_err(not_found)?;
        args.merged(current.get("token_quota"))
    };
    let updated = session
        .call(Method::PATCH, &[collection, id], &[], Some(&json!({ "token_quota": token_quota })))
        .await
        .map_err(not_found)?;
    if global.json {
        return emit_json(&updated);
    }
    match updated.get("token_quota") {
        Some(q) => emit(&format!("quota of {noun} {id}: {}", quota_summary(Some(q)))),
        None => emit(&format!("removed the quota of {noun} {id} (the tenant default applies, if any)")),
    }
}

/// The tenant PATCH replaces every default at once, so the other kind is sent back unchanged.
async fn set_tenant_default(
    global: &GlobalArgs,
    session: &mut Session,
    args: &SetArgs,
    kind: DefaultKind,
) -> CliResult<()> {
    let settings = session.call(Method::GET, &["tenants", "settings"], &[], None).await?;
    let mut defaults: Map<String, Value> =
        settings.get("default_token_quota").and_then(Value::as_object).cloned().unwrap_or_default();
    if args.clear {
        defaults.remove(kind.key());
    } else {
        let merged = args.merged(defaults.get(kind.key()));
        defaults.insert(kind.key().into(), merged);
    }
    let body = if defaults.is_empty() { Value::Null } else { Value::Object(defaults) };
    let updated = session
        .call(Method::PATCH, &["tenants", "settings"], &[], Some(&json!({ "default_token_quota": body })))
        .await?;
    if global.json {
        return emit_json(&updated);
    }
    match updated.get("default_token_quota").and_then(|d| d.get(kind.key())) {
        Some(q) => emit(&format!("tenant default for {}: {}", kind.key(), quota_summary(Some(q)))),
        None => emit(&format!("removed the tenant default for {}", kind.key())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_align() {
        let usage = json!({"buckets": [
            {"bucket": "per_hour", "quota": 10, "used": 6, "reset_in": 3252},
            {"bucket": "per_day", "quota": 100, "used": 6, "reset_in": 18062},
        ]});
        assert_eq!(
            usage_bars(&usage),
            "per_hour  [██████░░░░] 6/10   resets in 54m 12s\nper_day   [█░░░░░░░░░] 6/100  resets in 5h 1m 2s"
        );
    }

    #[test]
    fn set_merges_into_current_quota() {
        let args = SetArgs {
            target: Target { app: Some("a".into()), org: None, tenant_default: None },
            per_minute: None,
            per_hour: Some(5),
            per_day: None,
            enforce: Some(false),
            clear: false,
        };
        let current = json!({"client_credentials": {"enforce": true, "per_hour": 10, "per_day": 100}});
        assert_eq!(
            args.merged(Some(&current)),
            json!({"client_credentials": {"enforce": false, "per_hour": 5, "per_day": 100}})
        );
        assert_eq!(args.merged(None), json!({"client_credentials": {"enforce": false, "per_hour": 5}}));
    }
}
