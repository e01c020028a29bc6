//! The Auth0-compatible Management API under `/api/v2`. One file per resource; every handler has
//! the same shape: authorize (scope) → parse and validate → one store write → catalog update →
//! Auth0-shaped response.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod client_grants;
pub mod clients;
pub mod credentials;
pub mod keys;
pub mod log_streams;
pub mod logs;
pub mod organizations;
pub mod resource_servers;
pub mod tenant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{delete, get, post};
use ration_proto::mgmt::{ListParams, parse_list_params};
use ration_store::Page;

use crate::error::ApiError;
use crate::state::AppState;

/// Management API bodies are small JSON objects; this is generous.
pub const MGMT_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/clients", get(clients::list).post(clients::create))
        .route("/clients/{id}", get(clients::get_one).patch(clients::patch).delete(clients::delete))
        .route("/clients/{id}/rotate-secret", post(clients::rotate_secret))
        .route("/clients/{id}/quota-usage", get(clients::quota_usage))
        .route("/clients/{id}/credentials", get(credentials::list).post(credentials::create))
        .route(
            "/clients/{id}/credentials/{credential_id}",
            get(credentials::get_one).patch(credentials::patch).delete(credentials::delete),
        )
        .route("/organizations", get(organizations::list).post(organizations::create))
        .route(
            "/organizations/{id}",
            get(organizations::get_one).patch(organizations::patch).delete(organizations::delete),
        )
        .route("/organizations/{id}/client-grants", get(organizations::list_grants).post(organizations::add_grant))
        .route("/organizations/{id}/client-grants/{grant_id}", delete(organizations::remove_grant))
        .route("/organizations/{id}/quota-usage", get(organizations::quota_usage))
        .route("/log-streams", get(log_streams::list).post(log_streams::create))
        .route("/log-streams/{id}", get(log_streams::get_one).patch(log_streams::patch).delete(log_streams::delete))
        .route("/actions/actions", get(actions::list).post(actions::create))
        .route("/actions/actions/{id}", get(actions::get_one).patch(actions::patch).delete(actions::delete))
        .route("/actions/actions/{id}/deploy", post(actions::deploy))
        .route("/actions/actions/{id}/versions", get(actions::list_versions))
        .route("/actions/triggers/{trigger}/bindings", get(actions::get_bindings).patch(actions::patch_bindings))
        .route("/keys/signing", get(keys::list))
        .route("/keys/signing/rotate", post(keys::rotate))
        .route("/keys/signing/{kid}", get(keys::get_one))
        .route("/keys/signing/{kid}/revoke", axum::routing::put(keys::revoke))
        .route("/logs", get(logs::list))
        .route("/logs/{id}", get(logs::get_one))
        .route("/resource-servers", get(resource_servers::list).post(resource_servers::create))
        .route(
            "/resource-servers/{id}",
            get(resource_servers::get_one).patch(resource_servers::patch).delete(resource_servers::delete),
        )
        .route("/client-grants", get(client_grants::list).post(client_grants::create))
        .route(
            "/client-grants/{id}",
            get(client_grants::get_one).patch(client_grants::patch).delete(client_grants::delete),
        )
        .route("/tenants/settings", get(tenant::get_settings).patch(tenant::patch_settings))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state, audit::record_writes))
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found", "inexistent_path")
}

/// Reads a request body up to the Management API limit; larger bodies get Auth0's 413 shape.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    crate::body::read_limited(body, MGMT_BODY_LIMIT).await.map_err(|e| match e {
        crate::body::ReadError::TooLarge => ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large (limit {MGMT_BODY_LIMIT} bytes)"),
            Some("payload_too_large"),
        ),
        crate::body::ReadError::Broken => ApiError::bad_request("The request body could not be read"),
    })
}

/// Query parameters of a list endpoint that are not paging parameters (its filters).
pub type Filters = Vec<(String, String)>;

/// Offset paging parameters plus the endpoint's own filters.
pub fn list_params(query: Option<&str>) -> Result<(ListParams, Filters, Page), ApiError> {
    let (params, rest) = parse_list_params(query)?;
    let page = Page { page: params.page, per_page: params.per_page };
    Ok((params, rest, page))
}

/// The quota-usage answer shared by clients and organizations: which quota applies (own or tenant
/// default) and each bucket's live state in the current windows.
pub async fn usage_response(
    state: &AppState,
    entity: ration_domain::EntityKind,
    id: &str,
    own: Option<&ration_domain::TokenQuota>,
    default: Option<&ration_domain::TokenQuota>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    use ration_domain::quota::{QuotaPlan, QuotaSource, effective_quota};
    let now = state.now();
    let applied = effective_quota(own, default);
    let quota = applied.map(|(q, _)| q);
    let source = applied.map(|(_, source)| match (source, entity) {
        (QuotaSource::TenantDefault, _) => "tenant_default",
        (QuotaSource::Own, ration_domain::EntityKind::Client) => "client",
        (QuotaSource::Own, ration_domain::EntityKind::Organization) => "organization",
    });
    let plan = match entity {
        ration_domain::EntityKind::Client => QuotaPlan::new(quota.map(|q| (id, q)), None, now),
        ration_domain::EntityKind::Organization => QuotaPlan::new(None, quota.map(|q| (id, q)), now),
    };
    let states = crate::quota::usage(state, &plan, entity, now).await.map_err(|e| {
        ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Some("quota_store_unavailable"))
    })?;
    let mut body = serde_json::json!({
        "source": source,
        "token_quota": quota.map(ration_proto::mgmt::quota_view),
        "enforce": quota.map(|q| q.enforce),
        "buckets": states.iter().map(|s| serde_json::json!({
            "bucket": s.window.name(),
            "quota": s.limit,
            "used": s.used,
            "remaining": s.remaining(),
            "resets_at": ration_domain::UnixTime::from_secs(s.reset_at).to_rfc3339(),
            "reset_in": s.reset_in,
        })).collect::<Vec<_>>(),
    });
    let id_field = match entity {
        ration_domain::EntityKind::Client => "client_id",
        ration_domain::EntityKind::Organization => "organization_id",
    };
    body[id_field] = serde_json::json!(id);
    Ok(axum::Json(body).into_response())
}
