//! The client-credentials decision: given an authenticated client and a parsed request, which API,
//! scopes and organization the token gets, or why not. Client authentication itself (secret
//! hashing) is done by the caller, because it needs a server key.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::catalog::{Catalog, ClientFacts, GrantFacts};
use crate::entity::{CLIENT_CREDENTIALS, Client, ClientGrant, Organization, OrganizationUsage, ResourceServer};
use crate::quota::{EntityKind, QuotaPlan, effective_quota};
use crate::time::UnixTime;

/// A token request after wire parsing and client authentication.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TokenRequest {
    pub audience: Option<String>,
    /// `None`: all scopes of the grant. `Some(empty)` is treated the same way.
    pub scope: Option<Vec<String>>,
    /// Organization id or name.
    pub organization: Option<String>,
}

/// Everything needed to mint the token, borrowed from the catalog the decision was made on.
///
/// Why borrowed: with 10 000 clients sending in turn, each `Arc` cloned here wrote its reference
/// count on a cold cache line of the client's data, and dropping the decision wrote it again
/// (about 3 of the ~25 lines a token touched of its client, in a cache simulation;
/// docs/benchmarks.md). The caller holds the catalog for the whole request anyway.
///
/// The token path reads the client and its grant through `facts` and `grant_facts`, copies kept
/// in the client's catalog entry (see `catalog::ClientEntry`); `client` and [`Decision::grant`]
/// are there for Actions and events about the rarer cases.
#[derive(Clone, Debug)]
pub struct Decision<'a> {
    /// `client.client_id`, from the caller's copy (see [`decide`]).
    pub client_id: &'a str,
    pub client: &'a Client,
    pub facts: &'a ClientFacts,
    pub resource_server: &'a ResourceServer,
    pub grant_facts: &'a GrantFacts,
    pub scopes: Scopes<'a>,
    pub organization: Option<&'a Organization>,
    /// The client's issued-token count, for the server's metrics.
    pub issued: &'a Arc<AtomicU64>,
}

/// The granted scopes, in the grant's order.
#[derive(Clone, Debug)]
pub enum Scopes<'a> {
    /// All of the grant's: the request named none. The joined text is the grant's own copy.
    All(&'a GrantFacts),
    /// The subset the request named, without duplicates.
    Some { list: Vec<String>, joined: String },
}

impl Scopes<'_> {
    /// The token's `scope` claim: the scopes joined by spaces.
    pub fn joined(&self) -> &str {
        match self {
            Scopes::All(grant) => &grant.scope,
            Scopes::Some { joined, .. } => joined,
        }
    }

    pub fn list(&self) -> &[String] {
        match self {
            Scopes::All(grant) => &grant.grant.scope,
            Scopes::Some { list, .. } => list,
        }
    }
}

impl<'a> Decision<'a> {
    /// The client grant the token is issued under.
    pub fn grant(&self) -> &'a ClientGrant {
        &self.grant_facts.grant
    }

    /// The quota buckets this request counts against: the client's quota (own, else the tenant
    /// default) and, with an organization, the organization's (own, else the tenant default).
    ///
    /// Why the Management API is exempt: a tenant-wide default quota must never lock the operator
    /// out of the API that changes quotas. Auth0 likewise does not count its own APIs' tokens
    /// against M2M billing.
    pub fn quota_plan(&self, catalog: &Catalog, now: UnixTime) -> QuotaPlan {
        if self.resource_server.is_system {
            return QuotaPlan::default();
        }
        let defaults = &catalog.tenant().default_token_quota;
        let client_quota = effective_quota(self.facts.token_quota.as_ref(), defaults.clients.as_ref()).map(|(q, _)| q);
        let org_quota = self.organization.as_ref().and_then(|org| {
            effective_quota(org.token_quota.as_ref(), defaults.organizations.as_ref()).map(|(q, _)| (org, q))
        });
        QuotaPlan::new(client_quota.map(|q| (self.client_id, q)), org_quota.map(|(org, q)| (org.id.as_str(), q)), now)
    }
}

/// Why a token request is refused. The HTTP edge maps each to Auth0's status and `error` code;
/// [`TokenError::description`] is the `error_description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// 400 `invalid_request`: the text names the parameter.
    InvalidRequest(String),
    /// 413 `invalid_request`: the body is larger than the limit (bytes).
    BodyTooLarge(usize),
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 401 `access_denied` "Unauthorized": unknown client or wrong secret. One variant for both so
    /// that responses never tell which client ids exist.
    Unauthorized,
    /// 401 `invalid_client`: a `private_key_jwt` assertion was refused (the text says why).
    InvalidClientAssertion(String),
    /// 403 `unauthorized_client`: the client is paused or public.
    GrantTypeNotAllowed,
    /// 403 `access_denied`.
    NoAudience,
    UnknownAudience(String),
    NoClientGrant {
        client_id: String,
        audience: String,
    },
    ScopesNotGranted(Vec<String>),
    UnknownOrganization(String),
    OrganizationNotAllowed {
        audience: String,
    },
    OrganizationRequired {
        audience: String,
    },
    OrganizationNotAssociated {
        organization_id: String,
        audience: String,
    },
    /// 429 `too_many_requests`.
    QuotaExceeded(EntityKind),
    /// 429 `too_many_requests`: this client id or address failed authentication too often.
    TooManyFailedAttempts,
    /// 400 (`invalid_scope`, `invalid_request`) or 500 (`server_error`): an Action called
    /// `api.access.deny(code, reason)`.
    ActionDenied {
        code: &'static str,
        reason: String,
    },
    /// 500 `server_error`: an Action threw, timed out or ran out of memory.
    ActionFailed(String),
    /// 503 `temporarily_unavailable`: the quota counters cannot be reached and the policy is deny.
    QuotaStoreUnavailable,
    /// 500 `server_error`: our fault (details are logged, never sent).
    ServerError,
}

impl TokenError {
    pub fn description(&self) -> String {
        match self {
            TokenError::InvalidRequest(text) => text.clone(),
            TokenError::BodyTooLarge(limit) => format!("Request body too large (limit {limit} bytes)"),
            TokenError::UnsupportedGrantType => "Grant type not supported".to_owned(),
            TokenError::Unauthorized => "Unauthorized".to_owned(),
            TokenError::InvalidClientAssertion(why) => format!("Invalid client assertion: {why}"),
            TokenError::GrantTypeNotAllowed => {
                format!("Grant type '{CLIENT_CREDENTIALS}' not allowed for the client.")
            }
            TokenError::NoAudience => {
                "No audience parameter was provided, and no default audience has been configured".to_owned()
            }
            TokenError::UnknownAudience(aud) => format!("Service not enabled within domain: {aud}"),
            TokenError::NoClientGrant { client_id, audience } => format!(
                "Client \"{client_id}\" is not authorized to access resource server \"{audience}\". \
                 You need to create a \"client-grant\" associated to this API."
            ),
            TokenError::ScopesNotGranted(missing) => {
                format!("Client has not been granted scopes: {}", missing.join(" "))
            }
            TokenError::UnknownOrganization(org) => format!("Organization not found: {org}"),
            TokenError::OrganizationNotAllowed { audience } => format!(
                "The client grant for \"{audience}\" does not allow organizations (organization_usage is \"deny\")"
            ),
            TokenError::OrganizationRequired { audience } => format!(
                "The client grant for \"{audience}\" requires an organization (organization_usage is \"require\"): \
                 send the organization parameter or set the client's default_organization"
            ),
            TokenError::OrganizationNotAssociated { organization_id, audience } => {
                format!("Organization \"{organization_id}\" is not associated with the client grant for \"{audience}\"")
            }
            TokenError::QuotaExceeded(EntityKind::Client) => "Client quota exceeded".to_owned(),
            TokenError::QuotaExceeded(EntityKind::Organization) => "Organization quota exceeded".to_owned(),
            TokenError::TooManyFailedAttempts => {
                "Too many failed client authentications; retry after the time in Retry-After".to_owned()
            }
            TokenError::QuotaStoreUnavailable => "Quota counters are unavailable; retry later".to_owned(),
            TokenError::ServerError => "Internal error".to_owned(),
            TokenError::ActionDenied { reason, .. } => reason.clone(),
            TokenError::ActionFailed(text) => text.clone(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

impl std::error::Error for TokenError {}

/// Decides what the authenticated client `client_id` may get for `request`, in Auth0's order of
/// checks: grant type, audience, client grant, scopes, organization.
///
/// `client_id` is the caller's copy (the request's, which it authenticated): with many clients
/// the client's own copy is a cold cache line, and the decision, the token's claims, its event
/// and its quota buckets all need the id. The client is looked up by it here, so the decision's
/// id and client always agree.
pub fn decide<'a>(
    catalog: &'a Catalog,
    client_id: &'a str,
    request: &TokenRequest,
) -> Result<Decision<'a>, TokenError> {
    // One probe for the client, the grant type and the grants (an unknown client has none).
    let found = catalog.client_grants(client_id).filter(|c| c.facts.client_credentials);
    let Some(found) = found else { return Err(TokenError::GrantTypeNotAllowed) };
    let client = found.client;
    let audience = match (&request.audience, &catalog.tenant().default_audience) {
        (Some(aud), _) => aud.as_str(),
        (None, Some(default)) => default.as_str(),
        (None, None) => return Err(TokenError::NoAudience),
    };
    let resource_server = catalog
        .resource_server_by_audience(audience)
        .ok_or_else(|| TokenError::UnknownAudience(audience.to_owned()))?
        .as_ref();
    let grant_facts = found
        .grant_for(audience)
        .ok_or_else(|| TokenError::NoClientGrant { client_id: client_id.to_owned(), audience: audience.to_owned() })?;
    let grant = grant_facts.grant.as_ref();

    let scopes = match request.scope.as_deref() {
        None | Some([]) => Scopes::All(grant_facts),
        Some(requested) => {
            let missing: Vec<String> = requested.iter().filter(|s| !grant.scope.contains(s)).cloned().collect();
            if !missing.is_empty() {
                return Err(TokenError::ScopesNotGranted(missing));
            }
            // Keep the grant's order and drop duplicates, so equal requests mint equal tokens.
            let list: Vec<String> = grant.scope.iter().filter(|s| requested.contains(s)).cloned().collect();
            Scopes::Some { joined: list.join(" "), list }
        }
    };

    let organization = resolve_organization(catalog, client, grant_facts, request)?;

    Ok(Decision {
        client_id,
        client,
        facts: found.facts,
        resource_server,
        grant_facts,
        scopes,
        organization,
        issued: found.issued,
    })
}

fn resolve_organization<'a>(
    catalog: &'a Catalog,
    client: &Client,
    grant: &GrantFacts,
    request: &TokenRequest,
) -> Result<Option<&'a Organization>, TokenError> {
    let audience = || grant.audience.to_string();
    let org = match (&request.organization, grant.organization_usage) {
        (Some(_), OrganizationUsage::Deny) => {
            return Err(TokenError::OrganizationNotAllowed { audience: audience() });
        }
        (Some(key), _) => {
            catalog.organization_by_id_or_name(key).ok_or_else(|| TokenError::UnknownOrganization(key.clone()))?
        }
        (None, OrganizationUsage::Require) => {
            // The client's default organization applies only where one is required (Auth0).
            let default = client
                .default_organization
                .as_ref()
                .filter(|d| d.flows.iter().any(|f| f == CLIENT_CREDENTIALS))
                .ok_or_else(|| TokenError::OrganizationRequired { audience: audience() })?;
            catalog
                .organization(&default.organization_id)
                .ok_or_else(|| TokenError::UnknownOrganization(default.organization_id.clone()))?
        }
        (None, _) => return Ok(None),
    };
    if !grant.allow_any_organization && !catalog.organization_has_grant(&org.id, &grant.id) {
        return Err(TokenError::OrganizationNotAssociated { organization_id: org.id.clone(), audience: audience() });
    }
    Ok(Some(org))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::entity::*;
    use crate::quota::{QuotaLimits, TokenQuota};

    fn t0() -> UnixTime {
        UnixTime::from_secs(1_796_404_777)
    }

    fn catalog() -> (Catalog, Arc<Client>) {
        let mut c = Catalog::default();
        let client = Client {
            client_id: "c1".into(),
            name: "one".into(),
            description: None,
            app_type: Some("non_interactive".into()),
            grant_types: vec![CLIENT_CREDENTIALS.into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
            client_metadata: BTreeMap::new(),
            secret_hash: String::new(),
            token_quota: None,
            default_organization: None,
            is_first_party: true,
            created_at: t0(),
            updated_at: t0(),
        };
        c.upsert_client(client.clone());
        c.upsert_resource_server(ResourceServer {
            id: "rs1".into(),
            name: "api".into(),
            identifier: "https://api".into(),
            scopes: vec![],
            signing_alg: SigningAlg::RS256,
            signing_secret: None,
            token_lifetime: 86_400,
            is_system: false,
            created_at: t0(),
            updated_at: t0(),
        });
        c.upsert_grant(ClientGrant {
            id: "cgr_1".into(),
            client_id: "c1".into(),
            audience: "https://api".into(),
            scope: vec!["read".into(), "write".into()],
            organization_usage: OrganizationUsage::Allow,
            allow_any_organization: false,
            is_system: false,
            created_at: t0(),
            updated_at: t0(),
        });
        c.upsert_organization(Organization {
            id: "org_1".into(),
            name: "acme".into(),
            display_name: None,
            token_quota: None,
            created_at: t0(),
            updated_at: t0(),
        });
        let client = c.client("c1").cloned().unwrap_or_else(|| Arc::new(client));
        (c, client)
    }

    fn req(aud: Option<&str>, scope: Option<&[&str]>, org: Option<&str>) -> TokenRequest {
        TokenRequest {
            audience: aud.map(str::to_owned),
            scope: scope.map(|s| s.iter().map(|x| x.to_string()).collect()),
            organization: org.map(str::to_owned),
        }
    }

    #[test]
    fn grants_all_scopes_by_default_and_subsets_on_request() {
        let (c, _) = catalog();
        let d = decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap();
        assert_eq!(d.scopes.list(), vec!["read", "write"]);
        let d = decide(&c, "c1", &req(Some("https://api"), Some(&["write", "write"]), None)).unwrap();
        assert_eq!(d.scopes.list(), vec!["write"]);
        let e = decide(&c, "c1", &req(Some("https://api"), Some(&["admin", "read"]), None)).unwrap_err();
        assert_eq!(e.description(), "Client has not been granted scopes: admin");
    }

    #[test]
    fn audience_errors() {
        let (mut c, _) = catalog();
        assert_eq!(decide(&c, "c1", &req(None, None, None)).unwrap_err(), TokenError::NoAudience);
        assert!(matches!(
            decide(&c, "c1", &req(Some("https://nope"), None, None)).unwrap_err(),
            TokenError::UnknownAudience(_)
        ));
        let mut tenant = c.tenant().clone();
        tenant.default_audience = Some("https://api".into());
        c.set_tenant(tenant);
        assert!(decide(&c, "c1", &req(None, None, None)).is_ok());
        c.remove_grant("cgr_1");
        assert!(matches!(
            decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap_err(),
            TokenError::NoClientGrant { .. }
        ));
    }

    /// The token path reads copies of the client's and the grant's fields kept in the entry: they
    /// must follow every change, and the issued count must outlive them.
    #[test]
    fn the_entry_copies_follow_changes_and_the_issued_count_stays() {
        use std::sync::atomic::Ordering;
        let (mut c, client) = catalog();
        let long_name = "n".repeat(100);
        let d = decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap();
        assert_eq!(
            (d.facts.name.as_str(), d.facts.secret_hash.as_str()),
            (client.name.as_str(), client.secret_hash.as_str())
        );
        assert_eq!(d.facts.token_quota, client.token_quota);
        assert_eq!(d.grant_facts.id, "cgr_1");
        d.issued.fetch_add(3, Ordering::Relaxed);
        let before = c.clone();

        let quota = TokenQuota {
            enforce: false,
            limits: QuotaLimits { per_minute: Some(1), per_hour: None, per_day: Some(9) },
        };
        c.upsert_client(Client {
            name: long_name.clone(),
            secret_hash: "other-hash".into(),
            token_quota: Some(quota),
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
            ..(*client).clone()
        });
        c.upsert_grant(ClientGrant {
            scope: vec!["a".into(), "b".into(), "c".into()],
            organization_usage: OrganizationUsage::Allow,
            allow_any_organization: true,
            ..(**c.grant("cgr_1").unwrap()).clone()
        });
        let d = decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap();
        assert_eq!((d.facts.name.as_str(), d.facts.secret_hash.as_str()), (long_name.as_str(), "other-hash"));
        assert_eq!(d.facts.token_quota, Some(quota));
        assert_eq!(d.facts.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert_eq!(d.scopes.joined(), "a b c");
        assert_eq!(
            (d.grant_facts.organization_usage, d.grant_facts.allow_any_organization),
            (OrganizationUsage::Allow, true)
        );
        assert_eq!(d.issued.fetch_add(1, Ordering::Relaxed), 3, "the count outlives the client's changes");
        // An older catalog (a request still using it) shares the count.
        let old = decide(&before, "c1", &req(Some("https://api"), None, None)).unwrap();
        assert_eq!((old.facts.name.as_str(), old.issued.load(Ordering::Relaxed)), (client.name.as_str(), 4));
    }

    /// The catalog keeps a client and its grants in one entry; the grants may arrive first (a
    /// catalog built out of order) and go with the client.
    #[test]
    fn a_client_entry_holds_its_grants_whatever_the_order() {
        let (mut c, client) = catalog();
        assert_eq!(c.n_clients(), 1);
        let grant = c.grant_for("c1", "https://api").unwrap().clone();
        c.remove_client("c1");
        assert_eq!(c.n_clients(), 0);
        assert!(c.client("c1").is_none() && c.grant_for("c1", "https://api").is_none() && c.grant("cgr_1").is_none());

        c.upsert_grant((*grant).clone());
        assert!(c.client("c1").is_none(), "a grant alone makes no client");
        assert_eq!((c.n_clients(), c.clients().count()), (0, 0));
        assert!(!c.client_grants("c1").is_some_and(|g| g.facts.client_credentials));
        c.upsert_client((*client).clone());
        c.upsert_client((*client).clone());
        assert_eq!((c.n_clients(), c.clients().count()), (1, 1));
        let client = c.client("c1").unwrap().clone();
        assert_eq!(decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap().grant().id, "cgr_1");

        c.remove_grant("cgr_1");
        assert!(c.grant_for("c1", "https://api").is_none());
        assert_eq!(c.n_clients(), 1, "the client stays without its grants");
        // Entries live in shards chosen by the id's last bytes: short, empty and many ids are
        // all found, counted and removed.
        let ids: Vec<String> =
            ["", "x"].into_iter().map(str::to_owned).chain((0..300).map(|i| format!("client-{i}"))).collect();
        for id in &ids {
            c.upsert_client(Client { client_id: id.clone(), ..(*client).clone() });
        }
        assert_eq!((c.n_clients(), c.clients().count()), (ids.len() + 1, ids.len() + 1));
        assert!(ids.iter().all(|id| c.client(id).is_some_and(|found| &found.client_id == id)));
        for id in &ids {
            c.remove_client(id);
        }
        assert_eq!((c.n_clients(), c.clients().count()), (1, 1));
        assert!(c.client("c1").is_some() && c.client("client-7").is_none());
    }

    /// A client with a grant per API: each request gets the grant of its own audience, whatever
    /// the order the grants came in and however alike the audiences are; replacing or removing
    /// one grant leaves the others.
    #[test]
    fn each_audience_finds_its_own_grant_among_many() {
        let (mut c, _) = catalog();
        let audiences = ["https://api", "https://api/", "https://apj", "https://ap", "", "https://api2"];
        for (i, audience) in audiences.iter().enumerate().skip(1) {
            c.upsert_resource_server(ResourceServer {
                id: format!("rs{i}x"),
                identifier: (*audience).to_owned(),
                ..(**c.resource_server("rs1").unwrap()).clone()
            });
            c.upsert_grant(ClientGrant {
                id: format!("cgr_{i}x"),
                audience: (*audience).to_owned(),
                scope: vec![format!("scope{i}")],
                ..(**c.grant("cgr_1").unwrap()).clone()
            });
        }
        for (i, audience) in audiences.iter().enumerate() {
            let d = decide(&c, "c1", &req(Some(audience), None, None)).unwrap();
            assert_eq!(d.grant().audience, *audience);
            let expected = if i == 0 { vec!["read".to_owned(), "write".to_owned()] } else { vec![format!("scope{i}")] };
            assert_eq!(d.scopes.list(), expected);
            assert_eq!(d.scopes.joined(), expected.join(" "));
            assert_eq!(d.grant_facts.audience, *audience);
        }
        c.upsert_grant(ClientGrant { scope: vec!["changed".into()], ..(**c.grant("cgr_3x").unwrap()).clone() });
        c.remove_grant("cgr_2x");
        let d = decide(&c, "c1", &req(Some("https://ap"), None, None)).unwrap();
        assert_eq!(d.scopes.list(), ["changed"]);
        assert_eq!(d.scopes.joined(), "changed");
        assert!(matches!(
            decide(&c, "c1", &req(Some("https://apj"), None, None)).unwrap_err(),
            TokenError::NoClientGrant { .. }
        ));
        assert_eq!(decide(&c, "c1", &req(Some("https://api2"), None, None)).unwrap().grant().id, "cgr_5x");
    }

    #[test]
    fn paused_client_is_refused_first() {
        let (mut c, client) = catalog();
        let mut paused = (*client).clone();
        paused.grant_types.clear();
        c.upsert_client(paused);
        assert_eq!(
            decide(&c, "c1", &req(Some("https://nope"), None, None)).unwrap_err(),
            TokenError::GrantTypeNotAllowed
        );
    }

    #[test]
    fn organization_rules() {
        let (mut c, client) = catalog();
        let r = req(Some("https://api"), None, Some("acme"));
        assert!(matches!(decide(&c, "c1", &r).unwrap_err(), TokenError::OrganizationNotAssociated { .. }));
        c.set_organization_grant("org_1", "cgr_1", true);
        let d = decide(&c, "c1", &r).unwrap();
        assert_eq!(d.organization.as_ref().map(|o| o.id.as_str()), Some("org_1"));
        assert!(matches!(
            decide(&c, "c1", &req(Some("https://api"), None, Some("ghost"))).unwrap_err(),
            TokenError::UnknownOrganization(_)
        ));
        // Allow without an organization: none applies.
        assert!(decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap().organization.is_none());

        let mut grant = (**c.grant("cgr_1").unwrap()).clone();
        grant.organization_usage = OrganizationUsage::Require;
        c.upsert_grant(grant.clone());
        assert!(matches!(
            decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap_err(),
            TokenError::OrganizationRequired { .. }
        ));
        let mut with_default = (*client).clone();
        with_default.default_organization =
            Some(DefaultOrganization { organization_id: "org_1".into(), flows: vec![CLIENT_CREDENTIALS.into()] });
        c.upsert_client(with_default);
        let d = decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap();
        assert_eq!(d.organization.map(|o| o.name.clone()).as_deref(), Some("acme"));

        grant.organization_usage = OrganizationUsage::Deny;
        c.upsert_grant(grant);
        assert!(matches!(decide(&c, "c1", &r).unwrap_err(), TokenError::OrganizationNotAllowed { .. }));
    }

    #[test]
    fn quota_plan_uses_own_quota_else_tenant_default() {
        let (mut c, client) = catalog();
        c.set_organization_grant("org_1", "cgr_1", true);
        let q = |h| TokenQuota {
            enforce: true,
            limits: QuotaLimits { per_minute: None, per_hour: Some(h), per_day: None },
        };
        let mut tenant = c.tenant().clone();
        tenant.default_token_quota.clients = Some(q(5));
        tenant.default_token_quota.organizations = Some(q(7));
        c.set_tenant(tenant);
        let d = decide(&c, "c1", &req(Some("https://api"), None, Some("org_1"))).unwrap();
        let plan = d.quota_plan(&c, t0());
        assert_eq!(plan.buckets.iter().map(|b| b.limit).collect::<Vec<_>>(), vec![5, 7]);

        let mut own = (*client).clone();
        own.token_quota = Some(q(3));
        c.upsert_client(own);
        let d = decide(&c, "c1", &req(Some("https://api"), None, None)).unwrap();
        let plan = d.quota_plan(&c, t0());
        assert_eq!(plan.buckets.iter().map(|b| b.limit).collect::<Vec<_>>(), vec![3], "no org, no org quota");
    }
}
