//! `/api/v2/resource-servers`: APIs (token audiences).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::ResourceServer;
use ration_proto::mgmt::{ResourceServerCreate, ResourceServerPatch, list_response, parse_body, resource_server_view};
use ration_store::StoreError;

use super::auth::Principal;
use super::{list_params, read_body};
use crate::error::ApiError;
use crate::secrets::{new_client_secret, new_hex_id};
use crate::state::AppState;

fn no_resource_server() -> ApiError {
    ApiError::not_found("The resource server does not exist", "inexistent_resource_server")
}

fn duplicate_identifier() -> ApiError {
    ApiError::conflict("A resource server with the same identifier already exists")
}

/// By id, or by identifier (audience), as Auth0 allows.
async fn find(state: &AppState, id: &str) -> Result<ResourceServer, ApiError> {
    if let Some(rs) = state.store.get_resource_server(id).await? {
        return Ok(rs);
    }
    state.store.get_resource_server_by_identifier(id).await?.ok_or_else(no_resource_server)
}

pub async fn create(State(state): State<AppState>, principal: Principal, body: Body) -> Result<Response, ApiError> {
    principal.require("create:resource_servers")?;
    let input: ResourceServerCreate = parse_body(&read_body(body).await?)?;
    let rs = input.into_resource_server(new_hex_id()?, new_client_secret()?, state.now())?;
    state.ensure_signing_key(rs.signing_alg).await?;
    {
        let _writes = state.writes.lock().await;
        match state.store.insert_resource_server(&rs).await {
            Err(StoreError::Conflict(_)) => return Err(duplicate_identifier()),
            other => other?,
        }
        state.update_catalog(|c| c.upsert_resource_server(rs.clone()));
    }
    Ok((StatusCode::CREATED, Json(resource_server_view(&rs))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:resource_servers")?;
    let (params, filters, page) = list_params(query.as_deref())?;
    let identifiers: Vec<String> =
        filters.into_iter().filter(|(k, _)| k == "identifiers" || k == "identifiers[]").map(|(_, v)| v).collect();
    if identifiers.len() > 10 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Query validation error: 'identifiers' accepts at most 10 values",
            Some("invalid_query_string"),
        ));
    }
    let listing = state.store.list_resource_servers(&identifiers, page).await?;
    let items = listing.items.iter().map(resource_server_view).collect();
    Ok(Json(list_response(items, "resource_servers", &params, listing.total)).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:resource_servers")?;
    Ok(Json(resource_server_view(&find(&state, &id).await?)).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:resource_servers")?;
    let input: ResourceServerPatch = parse_body(&read_body(body).await?)?;
    let generated_secret = new_client_secret()?;
    let _writes = state.writes.lock().await;
    let mut rs = find(&state, &id).await?;
    if rs.is_system {
        return Err(ApiError::bad_request("System resource servers cannot be patched."));
    }
    input.apply(&mut rs, generated_secret, state.now())?;
    state.ensure_signing_key(rs.signing_alg).await?;
    state.store.update_resource_server(&rs).await?;
    state.update_catalog(|c| c.upsert_resource_server(rs.clone()));
    Ok(Json(resource_server_view(&rs)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("delete:resource_servers")?;
    let _writes = state.writes.lock().await;
    let rs = find(&state, &id).await?;
    if rs.is_system {
        return Err(ApiError::bad_request("System resource servers cannot be deleted."));
    }
    state.store.delete_resource_server(&rs.id).await?;
    state.update_catalog(|c| c.remove_resource_server(&rs.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}
