//! Actions: `POST/PATCH /api/v2/actions/actions` bodies, the action and version objects, and the
//! trigger bindings (auth0.md §4.5). Secret values are write-only: views list names only.

use ration_domain::{Action, ActionBinding, ActionSecret, ActionVersion, CREDENTIALS_EXCHANGE, UnixTime};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::BodyError;
use super::json::{check_len, non_null};

const MAX_NAME_LEN: usize = 255;
const MAX_SECRETS: usize = 30;
const MAX_SECRET_NAME_LEN: usize = 128;
const MAX_SECRET_VALUE_LEN: usize = 4096;
/// Node runtimes Auth0 offers; the code runs on Ration's QuickJS whichever is named.
const RUNTIMES: &[&str] = &["node22", "node18", "node16", "node12"];

/// `{id, version}` of a trigger.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct TriggerBody {
    /// Must be `credentials-exchange`.
    pub id: String,
    /// e.g. `v2`.
    #[serde(default, deserialize_with = "non_null")]
    pub version: Option<String>,
}

/// One secret: `{name, value}`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct SecretBody {
    /// ≤ 128 characters.
    pub name: String,
    /// ≤ 4096 characters. On PATCH, omitting it keeps the current value of that secret.
    #[serde(default, deserialize_with = "non_null")]
    pub value: Option<String>,
}

impl std::fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBody").field("name", &self.name).finish_non_exhaustive()
    }
}

/// One npm dependency `{name, version}`. Ration provides no npm modules, so any is refused with a
/// message naming it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct DependencyBody {
    /// Package name.
    pub name: String,
    /// Version.
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /api/v2/actions/actions` body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ActionCreate {
    /// Unique, 1 to 255 characters.
    pub name: String,
    /// `[{"id": "credentials-exchange", "version": "v2"}]`.
    pub supported_triggers: Vec<TriggerBody>,
    /// JavaScript source (the server checks that it compiles).
    pub code: String,
    /// `node22` (default), `node18`, …
    #[serde(default, deserialize_with = "non_null")]
    pub runtime: Option<String>,
    /// npm dependencies: none can be provided.
    #[serde(default, deserialize_with = "non_null")]
    pub dependencies: Option<Vec<DependencyBody>>,
    /// Secrets visible to the code as `event.secrets`.
    #[serde(default, deserialize_with = "non_null")]
    pub secrets: Option<Vec<SecretBody>>,
    /// Deploy right away.
    #[serde(default, deserialize_with = "non_null")]
    pub deploy: Option<bool>,
}

impl ActionCreate {
    /// Validates the body and builds the action (code compilation is the server's check).
    pub fn into_action(self, id: String, now: UnixTime) -> Result<Action, BodyError> {
        check_len("name", &self.name, 1, MAX_NAME_LEN)?;
        let supported_triggers = check_triggers(self.supported_triggers)?;
        check_dependencies(self.dependencies.as_deref())?;
        let secrets = merge_secrets(&[], self.secrets.unwrap_or_default(), now)?;
        Ok(Action {
            id,
            name: self.name,
            code: self.code,
            runtime: check_runtime(self.runtime)?,
            supported_triggers,
            secrets,
            deployed_version: None,
            all_changes_deployed: false,
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /api/v2/actions/actions/{id}` body. Changes what the next deploy will run; the deployed
/// version keeps running until then.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ActionPatch {
    /// New name.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// New triggers.
    #[serde(default, deserialize_with = "non_null")]
    pub supported_triggers: Option<Vec<TriggerBody>>,
    /// New code.
    #[serde(default, deserialize_with = "non_null")]
    pub code: Option<String>,
    /// New runtime.
    #[serde(default, deserialize_with = "non_null")]
    pub runtime: Option<String>,
    /// New dependencies (none can be provided).
    #[serde(default, deserialize_with = "non_null")]
    pub dependencies: Option<Vec<DependencyBody>>,
    /// The new secret set: secrets not listed are removed; a listed secret without `value` keeps
    /// its current value.
    #[serde(default, deserialize_with = "non_null")]
    pub secrets: Option<Vec<SecretBody>>,
}

impl ActionPatch {
    /// Validates every field, then applies them all (nothing changes on error).
    pub fn apply(self, action: &mut Action, now: UnixTime) -> Result<(), BodyError> {
        if let Some(name) = &self.name {
            check_len("name", name, 1, MAX_NAME_LEN)?;
        }
        let triggers = self.supported_triggers.map(check_triggers).transpose()?;
        check_dependencies(self.dependencies.as_deref())?;
        let runtime = self.runtime.map(|r| check_runtime(Some(r))).transpose()?;
        let secrets = self.secrets.map(|s| merge_secrets(&action.secrets, s, now)).transpose()?;
        let changes_code = self.code.as_ref().is_some_and(|c| c != &action.code)
            || secrets.as_ref().is_some_and(|s| s != &action.secrets)
            || runtime.as_ref().is_some_and(|r| r != &action.runtime);
        if let Some(v) = self.name {
            action.name = v;
        }
        if let Some(v) = triggers {
            action.supported_triggers = v;
        }
        if let Some(v) = self.code {
            action.code = v;
        }
        if let Some(v) = runtime {
            action.runtime = v;
        }
        if let Some(v) = secrets {
            action.secrets = v;
        }
        if changes_code {
            action.all_changes_deployed = false;
        }
        action.updated_at = now;
        Ok(())
    }
}

fn check_triggers(triggers: Vec<TriggerBody>) -> Result<Vec<(String, String)>, BodyError> {
    if triggers.is_empty() {
        return Err(BodyError::field("supported_triggers", "must name the credentials-exchange trigger"));
    }
    triggers
        .into_iter()
        .enumerate()
        .map(|(idx, t)| {
            if t.id != CREDENTIALS_EXCHANGE {
                return Err(BodyError::field(
                    &format!("supported_triggers[{idx}].id"),
                    "must be \"credentials-exchange\" (the only trigger Ration runs)",
                ));
            }
            Ok((t.id, t.version.unwrap_or_else(|| "v2".to_owned())))
        })
        .collect()
}

fn check_runtime(runtime: Option<String>) -> Result<String, BodyError> {
    let runtime = runtime.unwrap_or_else(|| "node22".to_owned());
    if !RUNTIMES.contains(&runtime.as_str()) {
        return Err(BodyError::field("runtime", format!("must be one of: {}", RUNTIMES.join(", "))));
    }
    Ok(runtime)
}

fn check_dependencies(deps: Option<&[DependencyBody]>) -> Result<(), BodyError> {
    match deps.and_then(|d| d.first()) {
        Some(dep) => Err(BodyError::field(
            "dependencies[0]",
            format!(
                "npm module '{}' cannot be provided: Actions run without npm modules; use fetch() for HTTP calls",
                dep.name
            ),
        )),
        None => Ok(()),
    }
}

fn merge_secrets(
    current: &[ActionSecret],
    wanted: Vec<SecretBody>,
    now: UnixTime,
) -> Result<Vec<ActionSecret>, BodyError> {
    if wanted.len() > MAX_SECRETS {
        return Err(BodyError::field("secrets", format!("at most {MAX_SECRETS} secrets")));
    }
    let mut out: Vec<ActionSecret> = Vec::with_capacity(wanted.len());
    for (idx, s) in wanted.into_iter().enumerate() {
        let path = format!("secrets[{idx}]");
        check_len(&format!("{path}.name"), &s.name, 1, MAX_SECRET_NAME_LEN)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(BodyError::field(&format!("{path}.name"), "duplicates another secret"));
        }
        let secret = match (s.value, current.iter().find(|c| c.name == s.name)) {
            (Some(value), existing) => {
                check_len(&format!("{path}.value"), &value, 0, MAX_SECRET_VALUE_LEN)?;
                let updated_at = match existing {
                    Some(e) if e.value == value => e.updated_at,
                    _ => now,
                };
                ActionSecret { name: s.name, value, updated_at }
            }
            (None, Some(existing)) => existing.clone(),
            (None, None) => return Err(BodyError::field(&format!("{path}.value"), "is required for a new secret")),
        };
        out.push(secret);
    }
    Ok(out)
}

fn secrets_view(secrets: &[ActionSecret]) -> Value {
    Value::Array(secrets.iter().map(|s| json!({"name": s.name, "updated_at": s.updated_at.to_rfc3339()})).collect())
}

fn triggers_view(triggers: &[(String, String)]) -> Value {
    Value::Array(triggers.iter().map(|(id, version)| json!({"id": id, "version": version})).collect())
}

/// Auth0's action object (secret values never included).
pub fn action_view(action: &Action, deployed: Option<&ActionVersion>) -> Value {
    json!({
        "id": action.id,
        "name": action.name,
        "supported_triggers": triggers_view(&action.supported_triggers),
        "code": action.code,
        "dependencies": [],
        "runtime": action.runtime,
        "secrets": secrets_view(&action.secrets),
        "status": "built",
        "all_changes_deployed": action.all_changes_deployed,
        "deployed_version": deployed.map(|v| version_view(v, action, true)),
        "created_at": action.created_at.to_rfc3339(),
        "updated_at": action.updated_at.to_rfc3339(),
    })
}

/// Auth0's action-version object.
pub fn version_view(version: &ActionVersion, action: &Action, deployed: bool) -> Value {
    json!({
        "id": version.id,
        "action_id": version.action_id,
        "number": version.number,
        "code": version.code,
        "runtime": version.runtime,
        "dependencies": [],
        "secrets": secrets_view(&version.secrets),
        "deployed": deployed,
        "status": "built",
        "supported_triggers": triggers_view(&action.supported_triggers),
        "errors": [],
        "built_at": version.created_at.to_rfc3339(),
        "created_at": version.created_at.to_rfc3339(),
        "updated_at": version.created_at.to_rfc3339(),
    })
}

/// How a binding names its action.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct BindingRef {
    /// `action_id`, `action_name` or `binding_id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The id or name.
    pub value: String,
}

/// One entry of `PATCH …/bindings`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct BindingBody {
    /// Which action.
    #[serde(rename = "ref")]
    pub reference: BindingRef,
    /// Shown in listings (default: the action's name).
    #[serde(default, deserialize_with = "non_null")]
    pub display_name: Option<String>,
    /// Auth0 accepts secrets on bindings; Ration does not use them but tolerates an empty list.
    #[serde(default)]
    pub secrets: Option<Vec<Value>>,
}

/// `PATCH /api/v2/actions/triggers/credentials-exchange/bindings` body: the whole ordered list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct BindingsPatch {
    /// The new list; its order is the execution order.
    pub bindings: Vec<BindingBody>,
}

impl BindingsPatch {
    /// Checks the reference types (resolution to actions is the server's job).
    pub fn validate(&self) -> Result<(), BodyError> {
        for (idx, b) in self.bindings.iter().enumerate() {
            if !matches!(b.reference.kind.as_str(), "action_id" | "action_name" | "binding_id") {
                return Err(BodyError::field(
                    &format!("bindings[{idx}].ref.type"),
                    "must be one of: action_id, action_name, binding_id",
                ));
            }
            if b.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(BodyError::field(
                    &format!("bindings[{idx}].secrets"),
                    "binding secrets are not supported; set them on the action",
                ));
            }
        }
        Ok(())
    }
}

/// Auth0's binding object.
pub fn binding_view(binding: &ActionBinding, action: Option<&Value>) -> Value {
    json!({
        "id": binding.id,
        "trigger_id": CREDENTIALS_EXCHANGE,
        "display_name": binding.display_name,
        "action": action,
        "created_at": binding.created_at.to_rfc3339(),
        "updated_at": binding.created_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_body;

    fn create(body: Value) -> Result<Action, BodyError> {
        parse_body::<ActionCreate>(body.to_string().as_bytes())?.into_action("act_1".into(), UnixTime::from_secs(1))
    }

    #[test]
    fn invalid_bodies_name_the_field() {
        let base =
            json!({"name": "a", "supported_triggers": [{"id": "credentials-exchange", "version": "v2"}], "code": "x"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        let rows = [
            (with("supported_triggers", json!([{"id": "post-login", "version": "v3"}])), "supported_triggers[0].id"),
            (with("supported_triggers", json!([])), "supported_triggers"),
            (with("runtime", json!("python3")), "runtime"),
            (with("dependencies", json!([{"name": "axios", "version": "1"}])), "axios"),
            (with("secrets", json!([{"name": "K"}])), "secrets[0].value"),
            (with("secrets", json!([{"name": "K", "value": "a"}, {"name": "K", "value": "b"}])), "secrets[1].name"),
            (with("name", json!("")), "name"),
        ];
        for (body, needle) in rows {
            let err = create(body.clone()).expect_err(&body.to_string());
            assert!(err.message.contains(needle), "{body}: {}", err.message);
        }
    }

    #[test]
    fn patch_keeps_unnamed_secret_values_and_marks_undeployed_changes() {
        let mut a = create(json!({"name": "a", "supported_triggers": [{"id": "credentials-exchange"}], "code": "x",
                                  "secrets": [{"name": "K", "value": "v1"}, {"name": "L", "value": "v2"}]}))
        .unwrap();
        a.all_changes_deployed = true;
        let patch: ActionPatch = parse_body(br#"{"secrets": [{"name": "K"}]}"#).unwrap();
        patch.apply(&mut a, UnixTime::from_secs(2)).unwrap();
        assert_eq!(a.secrets.len(), 1);
        assert_eq!(a.secrets[0].value, "v1");
        assert!(!a.all_changes_deployed, "the secret set changed");
        let view = action_view(&a, None).to_string();
        assert!(!view.contains("v1"), "secret values are write-only: {view}");
    }
}
