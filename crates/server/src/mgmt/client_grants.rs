//! `/api/v2/client-grants`: which client may get tokens for which API, with which scopes.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::{ClientGrant, ResourceServer};
use ration_proto::mgmt::{ClientGrantCreate, ClientGrantPatch, client_grant_view, list_response, parse_body};
use ration_store::{GrantFilter, StoreError};

use super::auth::Principal;
use super::{list_params, read_body};
use crate::error::ApiError;
use crate::secrets::new_prefixed_id;
use crate::state::AppState;

fn no_grant() -> ApiError {
    ApiError::not_found("The grant does not exist.", "inexistent_client_grant")
}

/// A grant can only hand out scopes its API defines: a typo would otherwise be granted silently.
fn check_scopes(grant: &ClientGrant, rs: &ResourceServer) -> Result<(), ApiError> {
    let undefined: Vec<&str> =
        grant.scope.iter().filter(|s| !rs.scopes.iter().any(|d| &d.value == *s)).map(String::as_str).collect();
    if undefined.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Payload validation error: 'scope' contains scopes not defined by resource server \"{}\": {}",
            rs.identifier,
            undefined.join(" ")
        )))
    }
}

pub async fn create(State(state): State<AppState>, principal: Principal, body: Body) -> Result<Response, ApiError> {
    principal.require("create:client_grants")?;
    let input: ClientGrantCreate = parse_body(&read_body(body).await?)?;
    let grant = input.into_grant(new_prefixed_id("cgr_")?, state.now())?;
    let _writes = state.writes.lock().await;
    if state.store.get_client(&grant.client_id).await?.is_none() {
        return Err(ApiError::not_found("Client not found", "inexistent_client"));
    }
    let rs = state
        .store
        .get_resource_server_by_identifier(&grant.audience)
        .await?
        .ok_or_else(|| ApiError::not_found("Resource server not found", "inexistent_resource_server"))?;
    check_scopes(&grant, &rs)?;
    match state.store.insert_grant(&grant).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict("A client grant for this client and audience already exists"));
        }
        other => other?,
    }
    state.update_catalog(|c| c.upsert_grant(grant.clone()));
    Ok((StatusCode::CREATED, Json(client_grant_view(&grant))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:client_grants")?;
    let (params, filters, page) = list_params(query.as_deref())?;
    let mut filter = GrantFilter::default();
    for (key, value) in filters {
        match key.as_str() {
            "client_id" => filter.client_id = Some(value),
            "audience" => filter.audience = Some(value),
            "allow_any_organization" => {
                filter.allow_any_organization = match value.as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "Query validation error: 'allow_any_organization' must be true or false",
                            Some("invalid_query_string"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    let listing = state.store.list_grants(&filter, page).await?;
    let items = listing.items.iter().map(client_grant_view).collect();
    Ok(Json(list_response(items, "client_grants", &params, listing.total)).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:client_grants")?;
    let grant = state.store.get_grant(&id).await?.ok_or_else(no_grant)?;
    Ok(Json(client_grant_view(&grant)).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:client_grants")?;
    let input: ClientGrantPatch = parse_body(&read_body(body).await?)?;
    let _writes = state.writes.lock().await;
    let mut grant = state.store.get_grant(&id).await?.ok_or_else(no_grant)?;
    if grant.is_system {
        return Err(ApiError::bad_request("System client grants cannot be modified."));
    }
    input.apply(&mut grant, state.now())?;
    if let Some(rs) = state.store.get_resource_server_by_identifier(&grant.audience).await? {
        check_scopes(&grant, &rs)?;
    }
    state.store.update_grant(&grant).await?;
    state.update_catalog(|c| c.upsert_grant(grant.clone()));
    Ok(Json(client_grant_view(&grant)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("delete:client_grants")?;
    let _writes = state.writes.lock().await;
    let grant = state.store.get_grant(&id).await?.ok_or_else(no_grant)?;
    if grant.is_system {
        return Err(ApiError::bad_request("System client grants cannot be deleted."));
    }
    state.store.delete_grant(&id).await?;
    state.update_catalog(|c| c.remove_grant(&id));
    Ok(StatusCode::NO_CONTENT.into_response())
}
