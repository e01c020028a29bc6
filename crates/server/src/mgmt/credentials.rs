//! `/api/v2/clients/{id}/credentials`: the public keys of `private_key_jwt` clients.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::{ClientCredential, TokenEndpointAuthMethod};
use ration_proto::mgmt::{
    CredentialBody, CredentialPatch, MAX_CREDENTIALS, NewCredential, credential_view, parse_body,
};

use super::auth::Principal;
use super::read_body;
use crate::error::ApiError;
use crate::secrets::new_prefixed_id;
use crate::state::AppState;

fn no_client() -> ApiError {
    ApiError::not_found("The client does not exist", "inexistent_client")
}

fn no_credential() -> ApiError {
    ApiError::not_found("The credential does not exist", "inexistent_credential")
}

/// Parses and normalizes new keys for `client_id`; `path` names the field in errors.
pub fn register_all(
    state: &AppState,
    client_id: &str,
    new: Vec<NewCredential>,
    path: &str,
) -> Result<Vec<ClientCredential>, ApiError> {
    new.into_iter()
        .enumerate()
        .map(|(i, n)| {
            let field = if path.is_empty() { "pem".to_owned() } else { format!("{path}[{i}]") };
            crate::client_keys::register(n, new_prefixed_id("cred_")?, client_id, state.now())
                .map_err(|p| ApiError::bad_request(format!("Payload validation error: '{field}': {}", p.0)))
        })
        .collect()
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(client_id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("create:client_credentials")?;
    let input: CredentialBody = parse_body(&read_body(body).await?)?;
    let new = input.into_new("")?;
    let mut credential = register_all(&state, &client_id, vec![new], "")?;
    let Some(credential) = credential.pop() else { return Err(ApiError::internal("no credential registered")) };
    let _writes = state.writes.lock().await;
    state.store.get_client(&client_id).await?.ok_or_else(no_client)?;
    if state.store.list_credentials(&client_id).await?.len() >= MAX_CREDENTIALS {
        return Err(ApiError::conflict(format!(
            "A client can have at most {MAX_CREDENTIALS} credentials: delete one first (rotation keeps two)"
        )));
    }
    state.store.insert_credential(&credential).await?;
    state.update_catalog(|c| c.upsert_credential(credential.clone()));
    Ok((StatusCode::CREATED, Json(credential_view(&credential))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:client_credentials")?;
    state.store.get_client(&client_id).await?.ok_or_else(no_client)?;
    let credentials = state.store.list_credentials(&client_id).await?;
    Ok(Json(credentials.iter().map(credential_view).collect::<Vec<_>>()).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path((client_id, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.require("read:client_credentials")?;
    let credentials = state.store.list_credentials(&client_id).await?;
    let credential = credentials.iter().find(|c| c.id == id).ok_or_else(no_credential)?;
    Ok(Json(credential_view(credential)).into_response())
}

/// Only `expires_at` changes. Auth0 answers this PATCH with 201.
pub async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path((client_id, id)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:client_credentials")?;
    let input: CredentialPatch = parse_body(&read_body(body).await?)?;
    let _writes = state.writes.lock().await;
    let mut credential =
        state.store.list_credentials(&client_id).await?.into_iter().find(|c| c.id == id).ok_or_else(no_credential)?;
    input.apply(&mut credential, state.now())?;
    state.store.update_credential(&credential).await?;
    state.update_catalog(|c| c.upsert_credential(credential.clone()));
    Ok((StatusCode::CREATED, Json(credential_view(&credential))).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((client_id, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.require("delete:client_credentials")?;
    let _writes = state.writes.lock().await;
    let client = state.store.get_client(&client_id).await?.ok_or_else(no_client)?;
    let credentials = state.store.list_credentials(&client_id).await?;
    if !credentials.iter().any(|c| c.id == id) {
        return Err(no_credential());
    }
    if client.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt && credentials.len() == 1 {
        return Err(ApiError::bad_request(
            "This is the last credential of a private_key_jwt client: register another one, or switch the client to a \
             secret method (token_endpoint_auth_method) first",
        ));
    }
    state.store.delete_credential(&client_id, &id).await?;
    state.update_catalog(|c| c.remove_credential(&client_id, &id));
    Ok(StatusCode::NO_CONTENT.into_response())
}
