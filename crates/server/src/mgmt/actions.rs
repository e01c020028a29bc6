//! `/api/v2/actions/actions` and the credentials-exchange trigger bindings.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::{Action, ActionBinding, ActionVersion, CREDENTIALS_EXCHANGE};
use ration_proto::mgmt::{
    ActionCreate, ActionPatch, BindingsPatch, action_view, binding_view, parse_body, version_view,
};
use ration_store::{Page, StoreError};
use serde_json::{Value, json};

use super::auth::Principal;
use super::{list_params, read_body};
use crate::actions::{open_action, reload_bound, seal_action, seal_version};
use crate::error::ApiError;
use crate::secrets::new_prefixed_id;
use crate::state::AppState;

fn no_action() -> ApiError {
    ApiError::not_found("The action does not exist", "inexistent_action")
}

fn duplicate_name() -> ApiError {
    ApiError::conflict("An action with this name already exists")
}

async fn find(state: &AppState, id: &str) -> Result<Action, ApiError> {
    let action = state.store.get_action(id).await?.ok_or_else(no_action)?;
    Ok(open_action(&state.master, action)?)
}

async fn view(state: &AppState, action: &Action) -> Result<Value, ApiError> {
    let deployed = match action.deployed_version {
        Some(n) => state.store.get_action_version(&action.id, n).await?,
        None => None,
    };
    Ok(action_view(action, deployed.as_ref()))
}

/// Compiles the code in a sandbox; a 400 that says where it went wrong.
async fn check_code(state: &AppState, code: &str) -> Result<(), ApiError> {
    state.actions.check(code).await.map_err(|e| ApiError::bad_request(format!("Invalid action code: {}", e.message)))
}

pub async fn create(State(state): State<AppState>, principal: Principal, body: Body) -> Result<Response, ApiError> {
    principal.require("create:actions")?;
    let input: ActionCreate = parse_body(&read_body(body).await?)?;
    let deploy_now = input.deploy.unwrap_or(false);
    let mut action = input.into_action(new_prefixed_id("act_")?, state.now())?;
    check_code(&state, &action.code).await?;
    let _writes = state.writes.lock().await;
    match state.store.insert_action(&seal_action(&state.master, &action)?).await {
        Err(StoreError::Conflict(_)) => return Err(duplicate_name()),
        other => other?,
    }
    if deploy_now {
        deploy_locked(&state, &mut action).await?;
    }
    Ok((StatusCode::CREATED, Json(view(&state, &action).await?)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:actions")?;
    let (params, filters, _) = list_params(query.as_deref())?;
    let get = |k: &str| filters.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    // Filters are applied in memory: a tenant has at most a few dozen actions (Auth0 allows 100).
    let all = state.store.list_actions(Page { page: 0, per_page: u32::MAX }).await?;
    let mut items = Vec::new();
    for action in all.items {
        if get("triggerId").is_some_and(|t| !action.supported_triggers.iter().any(|(id, _)| id == t))
            || get("actionName").is_some_and(|n| n != action.name)
            || get("deployed").is_some_and(|d| (d == "true") != action.deployed_version.is_some())
        {
            continue;
        }
        items.push(open_action(&state.master, action)?);
    }
    let total = items.len();
    // Auth0's actions list defaults to 20 per page and always answers with an object.
    let per_page = if query.as_deref().is_some_and(|q| q.contains("per_page")) { params.per_page as usize } else { 20 };
    let start = (params.page as usize).saturating_mul(per_page);
    let mut actions = Vec::new();
    for action in items.iter().skip(start).take(per_page) {
        actions.push(view(&state, action).await?);
    }
    Ok(Json(json!({"actions": actions, "total": total, "page": params.page, "per_page": per_page})).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:actions")?;
    let action = find(&state, &id).await?;
    Ok(Json(view(&state, &action).await?).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:actions")?;
    let input: ActionPatch = parse_body(&read_body(body).await?)?;
    if let Some(code) = &input.code {
        check_code(&state, code).await?;
    }
    let _writes = state.writes.lock().await;
    let mut action = find(&state, &id).await?;
    input.apply(&mut action, state.now())?;
    match state.store.update_action(&seal_action(&state.master, &action)?).await {
        Err(StoreError::Conflict(_)) => return Err(duplicate_name()),
        other => other?,
    }
    // What runs is the deployed version: editing changes nothing until the next deploy.
    Ok(Json(view(&state, &action).await?).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("delete:actions")?;
    let force = query.as_deref().is_some_and(|q| q.split('&').any(|p| p == "force=true"));
    let _writes = state.writes.lock().await;
    find(&state, &id).await?;
    let bound = state.store.list_action_bindings().await?.iter().any(|b| b.action_id == id);
    if bound && !force {
        return Err(ApiError::bad_request(
            "The action is bound to the credentials-exchange trigger: remove the binding first, or delete with ?force=true",
        ));
    }
    state.store.delete_action(&id).await?;
    reload_bound(&state).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn deploy(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("create:actions")?;
    let _writes = state.writes.lock().await;
    let mut action = find(&state, &id).await?;
    check_code(&state, &action.code).await?;
    let version = deploy_locked(&state, &mut action).await?;
    Ok((StatusCode::ACCEPTED, Json(version_view(&version, &action, true))).into_response())
}

/// Snapshots the action into a new version and makes it the deployed one; if the action is bound,
/// the new version runs from the next exchange on. Call with `writes` held.
async fn deploy_locked(state: &AppState, action: &mut Action) -> Result<ActionVersion, ApiError> {
    let number = state.store.list_action_versions(&action.id).await?.first().map_or(1, |v| v.number + 1);
    let version = ActionVersion {
        id: new_prefixed_id("actv_")?,
        action_id: action.id.clone(),
        number,
        code: action.code.clone(),
        runtime: action.runtime.clone(),
        secrets: action.secrets.clone(),
        created_at: state.now(),
    };
    state.store.insert_action_version(&seal_version(&state.master, &version)?).await?;
    action.deployed_version = Some(number);
    action.all_changes_deployed = true;
    state.store.update_action(&seal_action(&state.master, action)?).await?;
    reload_bound(state).await?;
    Ok(version)
}

pub async fn list_versions(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:actions")?;
    let action = find(&state, &id).await?;
    let versions = state.store.list_action_versions(&id).await?;
    let items: Vec<Value> =
        versions.iter().map(|v| version_view(v, &action, Some(v.number) == action.deployed_version)).collect();
    Ok(Json(json!({"versions": items, "total": items.len(), "page": 0, "per_page": items.len()})).into_response())
}

fn only_credentials_exchange(trigger: &str) -> Result<(), ApiError> {
    if trigger == CREDENTIALS_EXCHANGE {
        Ok(())
    } else {
        Err(ApiError::not_found(
            format!("Trigger '{trigger}' is not supported: Ration runs credentials-exchange"),
            "inexistent_trigger",
        ))
    }
}

async fn bindings_body(state: &AppState, bindings: &[ActionBinding]) -> Result<Value, ApiError> {
    let mut items = Vec::new();
    for b in bindings {
        let action = match state.store.get_action(&b.action_id).await? {
            Some(a) => Some(view(state, &open_action(&state.master, a)?).await?),
            None => None,
        };
        items.push(binding_view(b, action.as_ref()));
    }
    Ok(json!({"bindings": items, "total": items.len(), "page": 0, "per_page": items.len().max(20)}))
}

pub async fn get_bindings(
    State(state): State<AppState>,
    principal: Principal,
    Path(trigger): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:actions")?;
    only_credentials_exchange(&trigger)?;
    let bindings = state.store.list_action_bindings().await?;
    Ok(Json(bindings_body(&state, &bindings).await?).into_response())
}

pub async fn patch_bindings(
    State(state): State<AppState>,
    principal: Principal,
    Path(trigger): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:actions")?;
    only_credentials_exchange(&trigger)?;
    let input: BindingsPatch = parse_body(&read_body(body).await?)?;
    input.validate()?;
    let _writes = state.writes.lock().await;
    let current = state.store.list_action_bindings().await?;
    let actions = state.store.list_actions(Page { page: 0, per_page: u32::MAX }).await?.items;
    let now = state.now();
    let mut next = Vec::with_capacity(input.bindings.len());
    for (idx, b) in input.bindings.iter().enumerate() {
        let value = &b.reference.value;
        let (action, existing) = match b.reference.kind.as_str() {
            "action_id" => (actions.iter().find(|a| &a.id == value), None),
            "action_name" => (actions.iter().find(|a| &a.name == value), None),
            _ => {
                let existing = current.iter().find(|c| &c.id == value);
                (existing.and_then(|c| actions.iter().find(|a| a.id == c.action_id)), existing)
            }
        };
        let action = action.ok_or_else(|| {
            ApiError::bad_request(format!("Payload validation error: 'bindings[{idx}].ref' names no action: {value}"))
        })?;
        if action.deployed_version.is_none() {
            return Err(ApiError::bad_request(format!(
                "Payload validation error: 'bindings[{idx}]': action '{}' has not been deployed",
                action.name
            )));
        }
        next.push(ActionBinding {
            id: match existing {
                Some(e) => e.id.clone(),
                None => new_prefixed_id("bnd_")?,
            },
            action_id: action.id.clone(),
            display_name: b.display_name.clone().unwrap_or_else(|| action.name.clone()),
            created_at: existing.map_or(now, |e| e.created_at),
        });
    }
    state.store.set_action_bindings(&next).await?;
    reload_bound(&state).await?;
    Ok(Json(bindings_body(&state, &next).await?).into_response())
}
