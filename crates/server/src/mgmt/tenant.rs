//! `/api/v2/tenants/settings`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ration_proto::mgmt::{TenantSettingsPatch, parse_body, tenant_settings_view};

use super::auth::Principal;
use super::read_body;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get_settings(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    principal.require("read:tenant_settings")?;
    let tenant = state.store.get_tenant_settings().await?;
    Ok(Json(tenant_settings_view(&tenant)).into_response())
}

pub async fn patch_settings(
    State(state): State<AppState>,
    principal: Principal,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require("update:tenant_settings")?;
    let input: TenantSettingsPatch = parse_body(&read_body(body).await?)?;
    let _writes = state.writes.lock().await;
    let mut tenant = state.store.get_tenant_settings().await?;
    input.apply(&mut tenant)?;
    state.store.put_tenant_settings(&tenant).await?;
    state.update_catalog(|c| c.set_tenant(tenant.clone()));
    Ok(Json(tenant_settings_view(&tenant)).into_response())
}
