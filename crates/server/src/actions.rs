//! Credentials-exchange Actions on the server side: secrets sealed at rest, the in-memory list of
//! what runs (the deployed version of each bound action, in binding order), the Auth0 `event`
//! object, and turning a run's outcome into the token path's terms.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ration_actions::{ActionCode, ActionLog, Job, JobOutcome};
use ration_domain::{Action, ActionSecret, ActionVersion, Decision, TokenError, TokenRequest, UnixTime};
use serde_json::{Map, Value, json};

use crate::events::RequestInfo;
use crate::keys::MasterKey;
use crate::state::AppState;

const SEALED_PREFIX: &str = "sealed:v1:";

/// Replaces secret values with sealed ones before the store sees them; bound to the action id and
/// secret name so sealed values cannot be moved between secrets.
pub fn seal_secrets(
    master: &MasterKey,
    action_id: &str,
    secrets: &[ActionSecret],
) -> Result<Vec<ActionSecret>, crate::keys::KeyError> {
    secrets
        .iter()
        .map(|s| {
            let aad = format!("{action_id}/{}", s.name);
            let sealed = master.seal(s.value.as_bytes(), aad.as_bytes())?;
            Ok(ActionSecret {
                name: s.name.clone(),
                value: format!("{SEALED_PREFIX}{}", B64.encode(sealed)),
                updated_at: s.updated_at,
            })
        })
        .collect()
}

/// The inverse of [`seal_secrets`].
pub fn open_secrets(
    master: &MasterKey,
    action_id: &str,
    secrets: &[ActionSecret],
) -> Result<Vec<ActionSecret>, crate::keys::KeyError> {
    secrets
        .iter()
        .map(|s| {
            let encoded = s.value.strip_prefix(SEALED_PREFIX).ok_or(crate::keys::KeyError::Crypto)?;
            let sealed = B64.decode(encoded).map_err(|_| crate::keys::KeyError::Crypto)?;
            let aad = format!("{action_id}/{}", s.name);
            let plain = master.open(&sealed, aad.as_bytes())?;
            let value = String::from_utf8(plain).map_err(|_| crate::keys::KeyError::Crypto)?;
            Ok(ActionSecret { name: s.name.clone(), value, updated_at: s.updated_at })
        })
        .collect()
}

pub fn seal_action(master: &MasterKey, action: &Action) -> Result<Action, crate::keys::KeyError> {
    Ok(Action { secrets: seal_secrets(master, &action.id, &action.secrets)?, ..action.clone() })
}

pub fn open_action(master: &MasterKey, action: Action) -> Result<Action, crate::keys::KeyError> {
    Ok(Action { secrets: open_secrets(master, &action.id, &action.secrets)?, ..action })
}

pub fn seal_version(master: &MasterKey, version: &ActionVersion) -> Result<ActionVersion, crate::keys::KeyError> {
    Ok(ActionVersion { secrets: seal_secrets(master, &version.action_id, &version.secrets)?, ..version.clone() })
}

/// Rebuilds what runs on the token path from the store: for each binding, in order, the deployed
/// version of its action with its secrets opened.
pub async fn load_bound(state: &AppState) -> Result<Vec<Arc<ActionCode>>, crate::error::ApiError> {
    let mut bound = Vec::new();
    for binding in state.store.list_action_bindings().await? {
        let Some(action) = state.store.get_action(&binding.action_id).await? else { continue };
        let Some(number) = action.deployed_version else { continue };
        let Some(version) = state.store.get_action_version(&action.id, number).await? else { continue };
        let secrets = open_secrets(&state.master, &action.id, &version.secrets)?;
        bound.push(Arc::new(ActionCode {
            id: action.id.clone(),
            name: action.name.clone(),
            code: Arc::from(version.code.as_str()),
            secrets: secrets.into_iter().map(|s| (s.name, s.value)).collect(),
        }));
    }
    Ok(bound)
}

pub async fn reload_bound(state: &AppState) -> Result<(), crate::error::ApiError> {
    let bound = load_bound(state).await?;
    state.bound_actions.store(Arc::new(bound));
    Ok(())
}

/// Auth0's `event` for the credentials-exchange trigger (secrets are added per action by the
/// pool). The request body is rebuilt from the parsed parameters, so no secret can be in it.
fn event(
    state: &AppState,
    decision: &Decision<'_>,
    request: &TokenRequest,
    grant_type: &str,
    info: &RequestInfo,
) -> Value {
    let client = &decision.client;
    let mut body = Map::new();
    body.insert("grant_type".into(), json!(grant_type));
    body.insert("client_id".into(), json!(client.client_id));
    if let Some(aud) = &request.audience {
        body.insert("audience".into(), json!(aud));
    }
    if let Some(scope) = &request.scope {
        body.insert("scope".into(), json!(scope.join(" ")));
    }
    if let Some(org) = &request.organization {
        body.insert("organization".into(), json!(org));
    }
    let tenant = state.catalog.load().tenant().friendly_name.clone().unwrap_or_else(|| "ration".to_owned());
    let mut event = json!({
        "accessToken": {"customClaims": {}, "scope": decision.scopes.list()},
        "client": {"client_id": client.client_id, "name": client.name, "metadata": client.client_metadata},
        "request": {
            "body": body,
            // Ration has no GeoIP database; the object exists (its fields are optional in Auth0's
            // schema) so that code reading `event.request.geoip.continentCode` runs unchanged.
            "geoip": {},
            "hostname": info.hostname,
            "ip": info.ip,
            "method": "POST",
            "user_agent": info.user_agent,
        },
        "resource_server": {"identifier": decision.resource_server.identifier},
        "tenant": {"id": tenant},
        "transaction": {
            "requested_scopes": request.scope.clone().unwrap_or_default(),
            "target_scopes": decision.scopes.list(),
        },
    });
    if let Some(org) = &decision.organization {
        event["organization"] =
            json!({"id": org.id, "name": org.name, "display_name": org.display_name, "metadata": {}});
    }
    event
}

/// What running the bound actions produced for a token that may be issued.
pub struct Ran {
    pub custom_claims: Map<String, Value>,
    pub logs: Vec<ActionLog>,
}

/// Runs `actions` (the bound ones, read once by the caller) for this exchange. `Ok(None)`:
/// nothing is bound.
pub async fn run(
    state: &AppState,
    actions: &[Arc<ActionCode>],
    decision: &Decision<'_>,
    request: &TokenRequest,
    grant_type: &str,
    info: &RequestInfo,
    now: UnixTime,
) -> Result<Option<Ran>, (TokenError, Vec<ActionLog>)> {
    if actions.is_empty() {
        return Ok(None);
    }
    let job = Job {
        actions: actions.to_vec(),
        event: event(state, decision, request, grant_type, info),
        now_millis: now.millis,
    };
    let started = std::time::Instant::now();
    let outcome = state.actions.run(job).await;
    state.metrics.action_ran(started, matches!(outcome, JobOutcome::Failed { .. }));
    match outcome {
        JobOutcome::Allowed { custom_claims, logs } => Ok(Some(Ran { custom_claims, logs })),
        JobOutcome::Denied { code, reason, logs, .. } => {
            Err((TokenError::ActionDenied { code: code.as_str(), reason }, logs))
        }
        JobOutcome::Failed { error, logs, .. } => Err((TokenError::ActionFailed(error), logs)),
    }
}

/// `console.log` output for the exchange's event.
pub fn logs_json(logs: &[ActionLog]) -> Value {
    Value::Array(logs.iter().map(|l| json!({"action": l.action, "lines": l.lines})).collect())
}
