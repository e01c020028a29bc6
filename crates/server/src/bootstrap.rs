//! First-start setup: the Management API resource server, the admin client and its grant.
//! Idempotent: running it again with the same data changes nothing.

use std::path::Path;

use ration_domain::{
    CLIENT_CREDENTIALS, Client, ClientGrant, OrganizationUsage, ResourceServer, ResourceServerScope, SigningAlg,
    TokenEndpointAuthMethod, UnixTime,
};
use ration_store::ConfigStore;

use crate::StartError;
use crate::secrets::{SecretHasher, new_client_id, new_client_secret, new_hex_id, new_prefixed_id};

/// Every Management API scope this server implements (DESIGN.md §1).
pub const MANAGEMENT_SCOPES: &[&str] = &[
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "read:client_credentials",
    "create:client_credentials",
    "update:client_credentials",
    "delete:client_credentials",
    "read:client_grants",
    "create:client_grants",
    "update:client_grants",
    "delete:client_grants",
    "read:resource_servers",
    "create:resource_servers",
    "update:resource_servers",
    "delete:resource_servers",
    "read:organizations",
    "create:organizations",
    "update:organizations",
    "delete:organizations",
    "read:organization_client_grants",
    "create:organization_client_grants",
    "delete:organization_client_grants",
    "read:actions",
    "create:actions",
    "update:actions",
    "delete:actions",
    "read:log_streams",
    "create:log_streams",
    "update:log_streams",
    "delete:log_streams",
    "read:logs",
    "read:tenant_settings",
    "update:tenant_settings",
    "read:signing_keys",
    "create:signing_keys",
    "update:signing_keys",
];

const META_MGMT_API: &str = "management_api_id";
const META_ADMIN: &str = "bootstrap_client_id";
pub const CREDENTIALS_FILE: &str = "bootstrap-credentials.json";

/// Credentials generated on first start, to print once.
pub struct GeneratedCredentials {
    pub client_id: String,
    pub client_secret: String,
}

pub async fn run(
    store: &dyn ConfigStore,
    secrets: &SecretHasher,
    mgmt_audience: &str,
    env_credentials: Option<(String, String)>,
    data_dir: &Path,
    now: UnixTime,
) -> Result<Option<GeneratedCredentials>, StartError> {
    ensure_management_api(store, mgmt_audience, now).await?;

    let mut generated = None;
    let admin_id = match env_credentials {
        Some((client_id, secret)) => {
            ensure_admin_client(store, secrets, &client_id, &secret, now).await?;
            client_id
        }
        None => match store.get_meta(META_ADMIN).await? {
            Some(existing) => existing,
            None => {
                let client_id = new_client_id()?;
                let client_secret = new_client_secret()?;
                ensure_admin_client(store, secrets, &client_id, &client_secret, now).await?;
                let file = serde_json::json!({"client_id": client_id, "client_secret": client_secret});
                let path = data_dir.join(CREDENTIALS_FILE);
                crate::files::write_private(&path, format!("{file:#}\n").as_bytes())
                    .map_err(|e| StartError::Io(format!("cannot write {}: {e}", path.display())))?;
                generated = Some(GeneratedCredentials { client_id: client_id.clone(), client_secret });
                client_id
            }
        },
    };
    ensure_admin_grant(store, &admin_id, mgmt_audience, now).await?;
    if store.get_meta(META_ADMIN).await?.as_deref() != Some(admin_id.as_str()) {
        store.set_meta(META_ADMIN, &admin_id).await?;
    }
    Ok(generated)
}

fn management_scopes() -> Vec<ResourceServerScope> {
    MANAGEMENT_SCOPES.iter().map(|s| ResourceServerScope { value: (*s).to_owned(), description: None }).collect()
}

/// The Management API follows the issuer: if the issuer changed, the same system API gets the new
/// identifier rather than a second one appearing.
async fn ensure_management_api(store: &dyn ConfigStore, audience: &str, now: UnixTime) -> Result<(), StartError> {
    let existing = match store.get_meta(META_MGMT_API).await? {
        Some(id) => store.get_resource_server(&id).await?,
        None => None,
    };
    match existing {
        Some(mut rs) => {
            let scopes = management_scopes();
            if rs.identifier != audience || rs.scopes != scopes {
                let old_identifier = std::mem::replace(&mut rs.identifier, audience.to_owned());
                rs.scopes = scopes;
                rs.updated_at = now;
                store.update_resource_server(&rs).await?;
                if old_identifier != audience {
                    retarget_grants(store, &old_identifier, audience, now).await?;
                }
            }
        }
        None => {
            let rs = ResourceServer {
                id: new_hex_id()?,
                name: "Ration Management API".into(),
                identifier: audience.to_owned(),
                scopes: management_scopes(),
                signing_alg: SigningAlg::RS256,
                signing_secret: None,
                token_lifetime: 86_400,
                is_system: true,
                created_at: now,
                updated_at: now,
            };
            store.insert_resource_server(&rs).await?;
            store.set_meta(META_MGMT_API, &rs.id).await?;
        }
    }
    Ok(())
}

async fn retarget_grants(store: &dyn ConfigStore, old: &str, new: &str, now: UnixTime) -> Result<(), StartError> {
    let filter = ration_store::GrantFilter { audience: Some(old.to_owned()), ..Default::default() };
    let grants = store.list_grants(&filter, ration_store::Page { page: 0, per_page: u32::MAX }).await?;
    for mut grant in grants.items {
        grant.audience = new.to_owned();
        grant.updated_at = now;
        store.update_grant(&grant).await?;
    }
    Ok(())
}

async fn ensure_admin_client(
    store: &dyn ConfigStore,
    secrets: &SecretHasher,
    client_id: &str,
    secret: &str,
    now: UnixTime,
) -> Result<(), StartError> {
    match store.get_client(client_id).await? {
        Some(mut client) => {
            if !secrets.verify(secret, &client.secret_hash) {
                client.secret_hash = secrets.hash(secret);
                client.updated_at = now;
                store.update_client(&client).await?;
            }
        }
        None => {
            let client = Client {
                client_id: client_id.to_owned(),
                name: "Ration admin (bootstrap)".into(),
                description: Some("Created on first start; holds every Management API scope.".into()),
                app_type: Some("non_interactive".into()),
                grant_types: vec![CLIENT_CREDENTIALS.into()],
                token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
                client_metadata: Default::default(),
                secret_hash: secrets.hash(secret),
                token_quota: None,
                default_organization: None,
                is_first_party: true,
                created_at: now,
                updated_at: now,
            };
            store.insert_client(&client).await?;
        }
    }
    Ok(())
}

async fn ensure_admin_grant(
    store: &dyn ConfigStore,
    client_id: &str,
    audience: &str,
    now: UnixTime,
) -> Result<(), StartError> {
    let filter = ration_store::GrantFilter {
        client_id: Some(client_id.to_owned()),
        audience: Some(audience.to_owned()),
        allow_any_organization: None,
    };
    let scope: Vec<String> = MANAGEMENT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let existing = store.list_grants(&filter, ration_store::Page { page: 0, per_page: 1 }).await?;
    match existing.items.into_iter().next() {
        Some(mut grant) => {
            if grant.scope != scope || !grant.is_system {
                grant.scope = scope;
                grant.is_system = true;
                grant.updated_at = now;
                store.update_grant(&grant).await?;
            }
        }
        None => {
            let grant = ClientGrant {
                id: new_prefixed_id("cgr_")?,
                client_id: client_id.to_owned(),
                audience: audience.to_owned(),
                scope,
                organization_usage: OrganizationUsage::Deny,
                allow_any_organization: false,
                is_system: true,
                created_at: now,
                updated_at: now,
            };
            store.insert_grant(&grant).await?;
        }
    }
    Ok(())
}
