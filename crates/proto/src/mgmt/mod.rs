//! Management API (`/api/v2`) shapes, in Auth0's format: request bodies with validation, views of
//! domain objects, error bodies and paging.
//!
//! Request structs deserialize with [`parse_body`], which rejects unknown fields and names the
//! path of any type error; their `into_*`/`apply` methods then check the rules a type cannot
//! express (lengths, enums, patterns) and build or change domain objects. `apply` validates every
//! field before it changes anything, so a rejected PATCH never leaves a half-updated object.

mod actions;
mod client_grants;
mod clients;
mod credentials;
mod error;
mod json;
mod log_streams;
mod organizations;
mod paging;
mod quota;
mod resource_servers;
mod tenant;

pub use actions::{
    ActionCreate, ActionPatch, BindingBody, BindingRef, BindingsPatch, DependencyBody, SecretBody, TriggerBody,
    action_view, binding_view, version_view,
};
pub use client_grants::{ClientGrantCreate, ClientGrantPatch, client_grant_view};
pub use clients::{
    APP_TYPES, ClientCreate, ClientPatch, DefaultOrganizationBody, MAX_CLIENT_SECRET_LEN, MIN_CLIENT_SECRET_LEN,
    client_view, client_view_with_credentials,
};
pub use credentials::{
    CREDENTIAL_ALGS, ClientAuthMethodsBody, CredentialBody, CredentialPatch, KeyMaterial, MAX_CREDENTIALS,
    NewCredential, PrivateKeyJwtBody, credential_view,
};
pub use error::{BodyError, MgmtErrorBody, reason_phrase};
pub use json::{BoundedU32, MAX_DEPTH, double_option, non_null, parse_body};
pub use log_streams::{FilterBody, HeaderBody, LogStreamCreate, LogStreamPatch, SinkBody, log_stream_view};
pub use organizations::{OrganizationCreate, OrganizationGrantAdd, OrganizationPatch, organization_view};
pub use paging::{ListParams, list_response, parse_list_params};
pub use quota::{ClientCredentialsQuotaBody, DefaultTokenQuotaBody, QuotaInt, TokenQuotaBody, quota_view};
pub use resource_servers::{ResourceServerCreate, ResourceServerPatch, ScopeBody, resource_server_view};
pub use tenant::{TenantSettingsPatch, tenant_settings_view};
