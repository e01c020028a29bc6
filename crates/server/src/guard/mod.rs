//! `ration guard`: Ration's quota engine in front of an existing Auth0 tenant, shipping the two
//! workarounds teams usually hand-build (docs/guard.md):
//!
//! 1. **Log-stream receiver** (`POST /v1/guard/log-stream`, [`receiver`]): the tenant's
//!    custom-webhook log stream delivers `seccft` events; each is counted once per `log_id`
//!    against the quotas of its client and organization, and a client whose enforced quota is
//!    exhausted is paused on the tenant (`client_credentials` removed from its `grant_types`)
//!    until the window resets ([`pauser`], through the tenant's Management API, [`tenant`]).
//! 2. **Decision endpoint** (`POST /v1/quota/consume`, [`decision`]): a credentials-exchange
//!    Action asks before every exchange; Ration consumes atomically and answers allow or deny.
//!
//! Quotas are set exactly as on Ration's own clients: on *shadow* clients and organizations in the
//! guard's store whose ids equal the tenant's ([`shadow`], created from the configuration at
//! start), manageable afterwards through the guard's own Management API, with tenant defaults
//! from `/api/v2/tenants/settings` applying to every other id.

pub mod decision;
pub mod pauser;
pub mod receiver;
mod shadow;
pub mod tenant;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::routing::post;
use ration_domain::quota::QuotaPlan;
use ration_domain::{Catalog, TokenQuota, UnixTime};
use tower_http::catch_panic::CatchPanicLayer;

use crate::state::AppState;
use crate::{Server, StartError};

/// Where the tenant's log stream delivers.
pub const LOG_STREAM_PATH: &str = "/v1/guard/log-stream";
/// Where credentials-exchange Actions ask for a decision.
pub const DECISION_PATH: &str = "/v1/quota/consume";

/// Validated `[guard]` settings (the binary builds them from the TOML file and `RATION_GUARD_*`).
/// Its `Debug` redacts the secrets.
#[derive(Clone)]
pub struct GuardConfig {
    /// The tenant's base URL without a trailing `/`, e.g. `https://acme.eu.auth0.com`.
    pub tenant_url: String,
    /// Audience of the tenant's Management API; default `<tenant_url>/api/v2/`.
    pub management_audience: Option<String>,
    /// Client credentials of the tenant application the guard pauses clients with
    /// (`read:clients update:clients`). Required with `log_stream_authorization`.
    pub management_client_id: Option<String>,
    pub management_client_secret: Option<String>,
    /// The exact `Authorization` value the tenant's log stream sends; `None` disables the
    /// receiver (every delivery gets a 401).
    pub log_stream_authorization: Option<String>,
    /// Bearer secret of the decision endpoint; `None` disables it (401).
    pub decision_secret: Option<String>,
    /// What the example Action is told to do when Ration is unreachable. Informational only: the
    /// guard cannot act when it is down, the Action decides (`RATION_FAIL_OPEN`).
    pub fail_open: bool,
    /// Shadow clients to create or update at start.
    pub clients: Vec<ShadowClient>,
    /// Shadow organizations to create or update at start.
    pub organizations: Vec<ShadowOrganization>,
}

impl std::fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("GuardConfig")
            .field("tenant_url", &self.tenant_url)
            .field("management_audience", &self.management_audience)
            .field("management_client_id", &self.management_client_id)
            .field("management_client_secret", &redacted(&self.management_client_secret))
            .field("log_stream_authorization", &redacted(&self.log_stream_authorization))
            .field("decision_secret", &redacted(&self.decision_secret))
            .field("fail_open", &self.fail_open)
            .field("clients", &self.clients)
            .field("organizations", &self.organizations)
            .finish()
    }
}

impl GuardConfig {
    /// The tenant's Management API audience.
    pub fn management_audience(&self) -> String {
        self.management_audience.clone().unwrap_or_else(|| format!("{}/api/v2/", self.tenant_url))
    }
}

/// A tenant client whose quota the guard keeps.
#[derive(Clone, Debug)]
pub struct ShadowClient {
    /// The tenant's `client_id`.
    pub client_id: String,
    /// Display name in the guard; default: the client id.
    pub name: Option<String>,
    /// `None`: the guard's tenant default applies.
    pub token_quota: Option<TokenQuota>,
}

/// A tenant organization whose quota the guard keeps.
#[derive(Clone, Debug)]
pub struct ShadowOrganization {
    /// The tenant's organization id (`org_…`).
    pub id: String,
    /// The organization's `name` in the guard (lower case, unique); default: derived from the id.
    pub name: Option<String>,
    pub token_quota: Option<TokenQuota>,
}

/// The running guard: configuration, tenant connection and pause bookkeeping. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    config: GuardConfig,
    management_audience: String,
    /// `None` without management credentials (decision endpoint only).
    tenant: Option<tenant::TenantApi>,
    pauses: pauser::Pauses,
}

impl Guard {
    pub fn config(&self) -> &GuardConfig {
        &self.inner.config
    }

    /// Tokens for this audience are never counted (as on Ration's own Management API), so a
    /// tenant default quota can never pause the guard's own Management API client.
    pub fn management_audience(&self) -> &str {
        &self.inner.management_audience
    }

    pub(crate) fn tenant(&self) -> Option<&tenant::TenantApi> {
        self.inner.tenant.as_ref()
    }

    pub(crate) fn pauses(&self) -> &pauser::Pauses {
        &self.inner.pauses
    }
}

impl Server {
    /// Turns this server into a guard: creates or updates the shadow clients and organizations,
    /// starts the pauser and adds the guard's endpoints to [`Server::router`].
    pub async fn start_guard(&mut self, config: GuardConfig) -> Result<(), StartError> {
        if config.log_stream_authorization.is_none() && config.decision_secret.is_none() {
            return Err(StartError::Setup(
                "guard: set log_stream_authorization, decision_secret or both (nothing to guard otherwise)".into(),
            ));
        }
        let tenant = match (&config.management_client_id, &config.management_client_secret) {
            (Some(id), Some(secret)) => Some(
                tenant::TenantApi::new(&config.tenant_url, &config.management_audience(), id, secret)
                    .map_err(StartError::Setup)?,
            ),
            (None, None) => None,
            _ => {
                return Err(StartError::Setup(
                    "guard: set both management_client_id and management_client_secret, or neither".into(),
                ));
            }
        };
        if config.log_stream_authorization.is_some() && tenant.is_none() {
            return Err(StartError::Setup(
                "guard: the log-stream receiver pauses clients through the tenant's Management API: set \
                 management_client_id and management_client_secret"
                    .into(),
            ));
        }
        shadow::apply(&self.state, &config).await?;
        let guard = Guard {
            inner: Arc::new(GuardInner {
                management_audience: config.management_audience(),
                config,
                tenant,
                pauses: pauser::Pauses::default(),
            }),
        };
        pauser::spawn(self.state.clone(), guard.clone());
        self.guard = Some(guard);
        Ok(())
    }
}

/// The guard's endpoints, merged next to everything `serve` has.
pub fn routes(guard: Guard) -> Router<AppState> {
    Router::new()
        .route(LOG_STREAM_PATH, post(receiver::post_log_stream))
        .route(DECISION_PATH, post(decision::post_consume))
        .layer(Extension(guard))
        // As on the main router: a bug must cost one request a 500, never the process.
        .layer(CatchPanicLayer::new())
}

/// The buckets a token of `client_id` (and `organization`, an id or a name) counts against at
/// `at`: the shadow's own quota, else the guard's tenant default, exactly like the token path.
/// Ids the guard has no shadow for get the tenant default (if any) under the id as given.
pub fn plan_for(catalog: &Catalog, client_id: &str, organization: Option<&str>, at: UnixTime) -> QuotaPlan {
    let defaults = &catalog.tenant().default_token_quota;
    let client_quota = match catalog.client(client_id) {
        Some(client) => client.token_quota.as_ref().or(defaults.clients.as_ref()),
        None => defaults.clients.as_ref(),
    };
    let org = organization.map(|key| match catalog.organization_by_id_or_name(key) {
        Some(org) => (org.id.as_str(), org.token_quota.as_ref().or(defaults.organizations.as_ref())),
        None => (key, defaults.organizations.as_ref()),
    });
    QuotaPlan::new(client_quota.map(|q| (client_id, q)), org.and_then(|(id, quota)| quota.map(|q| (id, q))), at)
}

/// Compares a presented credential with the configured one without leaking, through timing,
/// how much of it matched: both are hashed first, so even their lengths stay private.
pub(crate) fn credential_matches(presented: &[u8], expected: &str) -> bool {
    let a = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented);
    let b = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, expected.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_compare_exactly() {
        assert!(credential_matches(b"Bearer s3cret", "Bearer s3cret"));
        assert!(!credential_matches(b"Bearer s3cre", "Bearer s3cret"));
        assert!(!credential_matches(b"", "Bearer s3cret"));
        assert!(!credential_matches(b"bearer s3cret", "Bearer s3cret"));
    }
}
