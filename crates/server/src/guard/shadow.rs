//! Shadow clients and organizations: the guard's stand-ins for the tenant's, carrying their quotas.
//!
//! They are ordinary entities of the guard's store with the tenant's ids, so their quotas are read
//! and changed through the usual Management API (`PATCH /api/v2/clients/{id}` `token_quota`,
//! `quota-usage`, …). A shadow client has no grant types and an unknown secret: it can never get a
//! token from the guard itself.
//!
//! Which wins, the file or the API: an entry's configuration is applied when it differs from what
//! was applied at the previous start (remembered in metadata). Editing the file therefore takes
//! effect on restart, while quota changes made through the API survive restarts that do not touch
//! that entry.

use std::collections::BTreeMap;

use ration_domain::{Client, Organization, TokenEndpointAuthMethod};
use ration_store::StoreError;

use super::{GuardConfig, ShadowClient, ShadowOrganization};
use crate::StartError;
use crate::state::AppState;

/// Marks shadows in `client_metadata`, so that operators can tell them from real clients.
const METADATA_KEY: &str = "ration_guard";

/// Creates or updates every configured shadow.
pub(super) async fn apply(state: &AppState, config: &GuardConfig) -> Result<(), StartError> {
    let mut changed = false;
    for client in &config.clients {
        changed |= apply_client(state, client).await?;
    }
    for org in &config.organizations {
        changed |= apply_organization(state, org).await?;
    }
    if changed {
        crate::sync::publish(state).await;
    }
    Ok(())
}

/// What the file said last time, to tell a file edit from an unchanged entry.
fn fingerprint(name: &str, quota: &Option<ration_domain::TokenQuota>) -> String {
    format!("{name}|{quota:?}")
}

async fn apply_client(state: &AppState, shadow: &ShadowClient) -> Result<bool, StartError> {
    let name = shadow.name.clone().unwrap_or_else(|| shadow.client_id.clone());
    let applied_key = format!("guard:config:client:{}", shadow.client_id);
    let fp = fingerprint(&name, &shadow.token_quota);
    let _writes = state.writes.lock().await;
    let now = state.now();
    let client = match state.store.get_client(&shadow.client_id).await? {
        Some(_) if state.store.get_meta(&applied_key).await?.as_deref() == Some(fp.as_str()) => return Ok(false),
        Some(mut existing) => {
            existing.name = name;
            existing.token_quota = shadow.token_quota;
            existing.updated_at = now;
            state.store.update_client(&existing).await?;
            existing
        }
        None => {
            // A secret nobody knows: the shadow must never authenticate here.
            let secret = crate::secrets::new_client_secret()?;
            let client = Client {
                client_id: shadow.client_id.clone(),
                name,
                description: Some("Shadow of a guarded tenant's client: holds its quota (ration guard)".into()),
                app_type: Some("non_interactive".into()),
                grant_types: Vec::new(),
                token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
                client_metadata: BTreeMap::from([(METADATA_KEY.to_owned(), "shadow".to_owned())]),
                secret_hash: state.secrets.hash(&secret),
                token_quota: shadow.token_quota,
                default_organization: None,
                is_first_party: true,
                created_at: now,
                updated_at: now,
            };
            state.store.insert_client(&client).await?;
            client
        }
    };
    state.store.set_meta(&applied_key, &fp).await?;
    tracing::info!(client_id = %client.client_id, quota = ?client.token_quota, "guard: shadow client configured");
    state.update_catalog(|c| c.upsert_client(client));
    Ok(true)
}

async fn apply_organization(state: &AppState, shadow: &ShadowOrganization) -> Result<bool, StartError> {
    let name = shadow.name.clone().unwrap_or_else(|| name_from_id(&shadow.id));
    let applied_key = format!("guard:config:organization:{}", shadow.id);
    let fp = fingerprint(&name, &shadow.token_quota);
    let _writes = state.writes.lock().await;
    let now = state.now();
    let taken = |e: StoreError| match e {
        StoreError::Conflict(_) => StartError::Setup(format!(
            "guard: organization {}: the name {name:?} is taken in the guard; set [[guard.organizations]] name",
            shadow.id
        )),
        other => other.into(),
    };
    let org = match state.store.get_organization(&shadow.id).await? {
        Some(_) if state.store.get_meta(&applied_key).await?.as_deref() == Some(fp.as_str()) => return Ok(false),
        Some(mut existing) => {
            existing.name = name.clone();
            existing.token_quota = shadow.token_quota;
            existing.updated_at = now;
            state.store.update_organization(&existing).await.map_err(taken)?;
            existing
        }
        None => {
            let org = Organization {
                id: shadow.id.clone(),
                name: name.clone(),
                display_name: None,
                token_quota: shadow.token_quota,
                created_at: now,
                updated_at: now,
            };
            state.store.insert_organization(&org).await.map_err(taken)?;
            org
        }
    };
    state.store.set_meta(&applied_key, &fp).await?;
    tracing::info!(id = %org.id, quota = ?org.token_quota, "guard: shadow organization configured");
    state.update_catalog(|c| c.upsert_organization(org));
    Ok(true)
}

/// A valid organization `name` (lower-case letters, digits, `-`, `_`; starts with a letter or a
/// digit; at most 50) derived from a tenant organization id such as `org_mPdwToiiHHOtz0SH`.
pub(super) fn name_from_id(id: &str) -> String {
    let mut name: String = id
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' { c } else { '-' })
        .take(50)
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'o');
        name.truncate(50);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_names_are_valid() {
        assert_eq!(name_from_id("org_mPdwToiiHHOtz0SH"), "org_mpdwtoiihhotz0sh");
        assert_eq!(name_from_id("_x.y"), "o_x-y");
        assert_eq!(name_from_id(&"a".repeat(80)).len(), 50);
    }
}
