//! `/api/v2/clients`: applications.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::Client;
use ration_proto::mgmt::{ClientCreate, ClientPatch, client_view_with_credentials, list_response, parse_body};

use super::auth::Principal;
use super::{list_params, read_body};
use crate::error::ApiError;
use crate::secrets::{new_client_id, new_client_secret};
use crate::state::AppState;

fn no_client() -> ApiError {
    ApiError::not_found("The client does not exist", "inexistent_client")
}

/// The client object, with its `private_key_jwt` credential ids when it uses them.
fn view(state: &AppState, client: &Client, secret: Option<&str>) -> serde_json::Value {
    let ids: Vec<String> = state.catalog.load().credentials(&client.client_id).iter().map(|c| c.id.clone()).collect();
    client_view_with_credentials(client, secret, &ids)
}

pub async fn create(State(state): State<AppState>, principal: Principal, body: Body) -> Result<Response, ApiError> {
    principal.require("create:clients")?;
    let input: ClientCreate = parse_body(&read_body(body).await?)?;
    let new_credentials = input.client_authentication_methods.as_ref().map(|cam| cam.new_credentials()).transpose()?;
    let secret = new_client_secret()?;
    let client = input.into_client(new_client_id()?, state.secrets.hash(&secret), state.now())?;
    // Keys are parsed before anything is stored: a bad key stores nothing.
    let credentials = match new_credentials {
        Some(new) => super::credentials::register_all(
            &state,
            &client.client_id,
            new,
            "client_authentication_methods.private_key_jwt.credentials",
        )?,
        None => Vec::new(),
    };
    {
        let _writes = state.writes.lock().await;
        state.store.insert_client(&client).await?;
        for credential in &credentials {
            if let Err(e) = state.store.insert_credential(credential).await {
                // Undo the half-made client rather than leave it without its keys.
                let _ = state.store.delete_client(&client.client_id).await;
                return Err(e.into());
            }
        }
        state.update_catalog(|c| {
            c.upsert_client(client.clone());
            for credential in &credentials {
                c.upsert_credential(credential.clone());
            }
        });
    }
    Ok((StatusCode::CREATED, Json(view(&state, &client, Some(&secret)))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:clients")?;
    let (params, _filters, page) = list_params(query.as_deref())?;
    let listing = state.store.list_clients(page).await?;
    let items = listing.items.iter().map(|c| view(&state, c, None)).collect();
    Ok(Json(list_response(items, "clients", &params, listing.total)).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:clients")?;
    let client = state.store.get_client(&id).await?.ok_or_else(no_client)?;
    Ok(Json(view(&state, &client, None)).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:clients")?;
    let input: ClientPatch = parse_body(&read_body(body).await?)?;
    let _writes = state.writes.lock().await;
    let mut client = state.store.get_client(&id).await?.ok_or_else(no_client)?;
    let referenced = match &input.client_authentication_methods {
        Some(Some(cam)) => cam.referenced_ids()?,
        _ => Vec::new(),
    };
    let new_secret = input.apply(&mut client, state.now())?;
    if client.token_endpoint_auth_method == ration_domain::TokenEndpointAuthMethod::PrivateKeyJwt {
        // The references must name this client's registered keys, and a private_key_jwt client
        // must have at least one.
        let registered = state.store.list_credentials(&client.client_id).await?;
        if let Some(unknown) = referenced.iter().find(|id| !registered.iter().any(|c| &&c.id == id)) {
            return Err(ApiError::bad_request(format!(
                "Payload validation error: 'client_authentication_methods.private_key_jwt.credentials' names an \
                 unknown credential: {unknown}"
            )));
        }
        if registered.is_empty() {
            return Err(ApiError::bad_request(
                "Payload validation error: register a key first (POST /api/v2/clients/{id}/credentials)",
            ));
        }
    }
    if let Some(secret) = &new_secret {
        client.secret_hash = state.secrets.hash(secret);
    }
    state.store.update_client(&client).await?;
    state.update_catalog(|c| c.upsert_client(client.clone()));
    Ok(Json(view(&state, &client, new_secret.as_deref())).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("delete:clients")?;
    let _writes = state.writes.lock().await;
    match state.store.delete_client(&id).await {
        Err(ration_store::StoreError::NotFound) => return Err(no_client()),
        other => other?,
    }
    state.update_catalog(|c| c.remove_client(&id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Replaces the secret: the old one stops working at once (single secret per client, as Auth0).
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("update:clients")?;
    let secret = new_client_secret()?;
    let _writes = state.writes.lock().await;
    let mut client = state.store.get_client(&id).await?.ok_or_else(no_client)?;
    client.secret_hash = state.secrets.hash(&secret);
    client.updated_at = state.now();
    state.store.update_client(&client).await?;
    state.update_catalog(|c| c.upsert_client(client.clone()));
    Ok(Json(view(&state, &client, Some(&secret))).into_response())
}

/// Ration extension: live counts of the client's quota buckets in the current windows.
pub async fn quota_usage(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:clients")?;
    let catalog = state.catalog.load();
    let client = catalog.client(&id).ok_or_else(no_client)?;
    let default = catalog.tenant().default_token_quota.clients.as_ref();
    super::usage_response(
        &state,
        ration_domain::EntityKind::Client,
        &client.client_id,
        client.token_quota.as_ref(),
        default,
    )
    .await
}
