//! `/api/v2/organizations` and their client-grant associations.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::Organization;
use ration_proto::mgmt::{
    OrganizationCreate, OrganizationGrantAdd, OrganizationPatch, client_grant_view, list_response, organization_view,
    parse_body,
};
use ration_store::{Page, StoreError};

use super::auth::Principal;
use super::{list_params, read_body};
use crate::error::ApiError;
use crate::secrets::new_prefixed_id;
use crate::state::AppState;

/// Auth0's limit of M2M client grants per organization (public cloud).
const MAX_GRANTS_PER_ORGANIZATION: u64 = 100;

fn no_organization() -> ApiError {
    ApiError::not_found("No organization found by that id", "inexistent_organization")
}

fn duplicate_name() -> ApiError {
    ApiError::conflict("An organization with this name already exists")
}

async fn find(state: &AppState, id: &str) -> Result<Organization, ApiError> {
    state.store.get_organization(id).await?.ok_or_else(no_organization)
}

pub async fn create(State(state): State<AppState>, principal: Principal, body: Body) -> Result<Response, ApiError> {
    principal.require("create:organizations")?;
    let input: OrganizationCreate = parse_body(&read_body(body).await?)?;
    let org = input.into_organization(new_prefixed_id("org_")?, state.now())?;
    let _writes = state.writes.lock().await;
    match state.store.insert_organization(&org).await {
        Err(StoreError::Conflict(_)) => return Err(duplicate_name()),
        other => other?,
    }
    state.update_catalog(|c| c.upsert_organization(org.clone()));
    Ok((StatusCode::CREATED, Json(organization_view(&org))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:organizations")?;
    let (params, _filters, page) = list_params(query.as_deref())?;
    let listing = state.store.list_organizations(page).await?;
    let items = listing.items.iter().map(organization_view).collect();
    Ok(Json(list_response(items, "organizations", &params, listing.total)).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:organizations")?;
    Ok(Json(organization_view(&find(&state, &id).await?)).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:organizations")?;
    let input: OrganizationPatch = parse_body(&read_body(body).await?)?;
    let _writes = state.writes.lock().await;
    let mut org = find(&state, &id).await?;
    input.apply(&mut org, state.now())?;
    match state.store.update_organization(&org).await {
        Err(StoreError::Conflict(_)) => return Err(duplicate_name()),
        other => other?,
    }
    state.update_catalog(|c| c.upsert_organization(org.clone()));
    Ok(Json(organization_view(&org)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("delete:organizations")?;
    let _writes = state.writes.lock().await;
    match state.store.delete_organization(&id).await {
        Err(StoreError::NotFound) => return Err(no_organization()),
        other => other?,
    }
    state.update_catalog(|c| c.remove_organization(&id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_grants(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:organization_client_grants")?;
    let (params, _filters, page) = list_params(query.as_deref())?;
    find(&state, &id).await?;
    let listing = state.store.list_organization_grants(&id, page).await?;
    let items = listing.items.iter().map(client_grant_view).collect();
    Ok(Json(list_response(items, "client_grants", &params, listing.total)).into_response())
}

pub async fn add_grant(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("create:organization_client_grants")?;
    let input: OrganizationGrantAdd = parse_body(&read_body(body).await?)?;
    let _writes = state.writes.lock().await;
    find(&state, &id).await?;
    let grant = state
        .store
        .get_grant(&input.grant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("The grant does not exist.", "inexistent_client_grant"))?;
    let existing = state.store.list_organization_grants(&id, Page { page: 0, per_page: 1 }).await?;
    if existing.total >= MAX_GRANTS_PER_ORGANIZATION {
        return Err(ApiError::conflict(format!(
            "Quota exceeded; cannot add more than {MAX_GRANTS_PER_ORGANIZATION} client grants to a single organization"
        )));
    }
    match state.store.add_organization_grant(&id, &grant.id).await {
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict("The client grant has already been added to this organization."));
        }
        other => other?,
    }
    state.update_catalog(|c| c.set_organization_grant(&id, &grant.id, true));
    Ok((StatusCode::CREATED, Json(client_grant_view(&grant))).into_response())
}

pub async fn remove_grant(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, grant_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.require("delete:organization_client_grants")?;
    let _writes = state.writes.lock().await;
    find(&state, &id).await?;
    match state.store.remove_organization_grant(&id, &grant_id).await {
        Err(StoreError::NotFound) => {
            return Err(ApiError::not_found(
                "The client grant is not associated with this organization.",
                "inexistent_client_grant",
            ));
        }
        other => other?,
    }
    state.update_catalog(|c| c.set_organization_grant(&id, &grant_id, false));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ration extension: live counts of the organization's quota buckets (all clients together).
pub async fn quota_usage(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:organizations")?;
    let catalog = state.catalog.load();
    let org = catalog.organization(&id).ok_or_else(no_organization)?;
    let default = catalog.tenant().default_token_quota.organizations.as_ref();
    super::usage_response(&state, ration_domain::EntityKind::Organization, &org.id, org.token_quota.as_ref(), default)
        .await
}
