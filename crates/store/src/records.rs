//! Persistence records: the JSON shape of each entity's `doc` column and the conversions to and
//! from the domain types.
//!
//! Why separate types: the domain crate knows no wire or storage format, and the HTTP shapes in
//! `ration-proto` may change with Auth0 compatibility work. What is on disk must only change with a
//! migration, so it gets its own structs here. Key, unique and filter fields live in real columns
//! and are passed alongside the doc; the doc holds everything else.
//!
//! Enums are stored as their stable text names (`as_str`/`parse`), times as integer milliseconds.
//! Optional fields carry `#[serde(default)]` so that a field added later reads as absent from rows
//! written before it existed.

use std::collections::BTreeMap;

use ration_domain::{
    Client, ClientGrant, DefaultOrganization, DefaultTokenQuota, Organization, OrganizationUsage, QuotaLimits,
    ResourceServer, ResourceServerScope, SigningAlg, TenantSettings, TokenEndpointAuthMethod, TokenQuota, UnixTime,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// A table whose rows are `(id, name, doc)` (both backends read them with the same queries, up to
/// placeholder syntax). Only these constants exist, so its name is safe to put in SQL text.
#[derive(Clone, Copy)]
pub(crate) struct NamedTable(pub(crate) &'static str);
pub(crate) const ORGANIZATIONS: NamedTable = NamedTable("organizations");
pub(crate) const ACTIONS: NamedTable = NamedTable("actions");

/// Builds an entity from a named table's `(id, name, doc)` row.
pub(crate) type FromNamedRow<T> = fn(String, String, &str) -> Result<T>;

#[derive(Serialize, Deserialize)]
struct QuotaRecord {
    enforce: bool,
    #[serde(default)]
    per_minute: Option<u32>,
    #[serde(default)]
    per_hour: Option<u32>,
    #[serde(default)]
    per_day: Option<u32>,
}

impl From<&TokenQuota> for QuotaRecord {
    fn from(q: &TokenQuota) -> Self {
        QuotaRecord {
            enforce: q.enforce,
            per_minute: q.limits.per_minute,
            per_hour: q.limits.per_hour,
            per_day: q.limits.per_day,
        }
    }
}

impl From<QuotaRecord> for TokenQuota {
    fn from(r: QuotaRecord) -> Self {
        TokenQuota {
            enforce: r.enforce,
            limits: QuotaLimits { per_minute: r.per_minute, per_hour: r.per_hour, per_day: r.per_day },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct DefaultOrganizationRecord {
    organization_id: String,
    #[serde(default)]
    flows: Vec<String>,
}

/// `clients.doc`; the key `client_id` is a column.
#[derive(Serialize, Deserialize)]
struct ClientDoc {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    app_type: Option<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    token_endpoint_auth_method: String,
    #[serde(default)]
    client_metadata: BTreeMap<String, String>,
    secret_hash: String,
    #[serde(default)]
    token_quota: Option<QuotaRecord>,
    #[serde(default)]
    default_organization: Option<DefaultOrganizationRecord>,
    #[serde(default)]
    is_first_party: bool,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct ScopeRecord {
    value: String,
    #[serde(default)]
    description: Option<String>,
}

/// `resource_servers.doc`; `id` and `identifier` are columns.
#[derive(Serialize, Deserialize)]
struct ResourceServerDoc {
    name: String,
    #[serde(default)]
    scopes: Vec<ScopeRecord>,
    signing_alg: String,
    #[serde(default)]
    signing_secret: Option<String>,
    token_lifetime: u32,
    #[serde(default)]
    is_system: bool,
    created_at: i64,
    updated_at: i64,
}

/// `client_grants.doc`; `id`, `client_id`, `audience` and `allow_any_organization` are columns.
#[derive(Serialize, Deserialize)]
struct GrantDoc {
    #[serde(default)]
    scope: Vec<String>,
    organization_usage: String,
    #[serde(default)]
    is_system: bool,
    created_at: i64,
    updated_at: i64,
}

/// `organizations.doc`; `id` and `name` are columns.
#[derive(Serialize, Deserialize)]
struct OrganizationDoc {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    token_quota: Option<QuotaRecord>,
    created_at: i64,
    updated_at: i64,
}

/// `tenant_settings.doc`.
#[derive(Serialize, Deserialize)]
struct TenantDoc {
    #[serde(default)]
    friendly_name: Option<String>,
    #[serde(default)]
    support_email: Option<String>,
    #[serde(default)]
    support_url: Option<String>,
    #[serde(default)]
    default_audience: Option<String>,
    #[serde(default)]
    default_token_quota_clients: Option<QuotaRecord>,
    #[serde(default)]
    default_token_quota_organizations: Option<QuotaRecord>,
}

fn encode<T: Serialize>(what: &str, doc: &T) -> Result<String> {
    serde_json::to_string(doc).map_err(|e| StoreError::Backend(format!("cannot encode {what}: {e}")))
}

/// Parses a doc. The error text names the row and where the JSON broke, but never quotes the
/// content: docs hold secret hashes and HMAC secrets, and serde's messages may echo values.
fn decode<T: DeserializeOwned>(what: &str, key: &str, doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| {
        StoreError::Backend(format!(
            "corrupt {what} record {key:?}: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn corrupt(what: &str, key: &str, field: &str) -> StoreError {
    StoreError::Backend(format!("corrupt {what} record {key:?}: unknown {field}"))
}

/// The `doc` of a client.
pub(crate) fn client_doc(c: &Client) -> Result<String> {
    encode(
        "client",
        &ClientDoc {
            name: c.name.clone(),
            description: c.description.clone(),
            app_type: c.app_type.clone(),
            grant_types: c.grant_types.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.as_str().to_owned(),
            client_metadata: c.client_metadata.clone(),
            secret_hash: c.secret_hash.clone(),
            token_quota: c.token_quota.as_ref().map(QuotaRecord::from),
            default_organization: c.default_organization.as_ref().map(|d| DefaultOrganizationRecord {
                organization_id: d.organization_id.clone(),
                flows: d.flows.clone(),
            }),
            is_first_party: c.is_first_party,
            created_at: c.created_at.millis,
            updated_at: c.updated_at.millis,
        },
    )
}

/// A client from its `client_id` column and `doc`.
pub(crate) fn client_from_row(client_id: String, doc: &str) -> Result<Client> {
    let d: ClientDoc = decode("client", &client_id, doc)?;
    let token_endpoint_auth_method = TokenEndpointAuthMethod::parse(&d.token_endpoint_auth_method)
        .ok_or_else(|| corrupt("client", &client_id, "token_endpoint_auth_method"))?;
    Ok(Client {
        client_id,
        name: d.name,
        description: d.description,
        app_type: d.app_type,
        grant_types: d.grant_types,
        token_endpoint_auth_method,
        client_metadata: d.client_metadata,
        secret_hash: d.secret_hash,
        token_quota: d.token_quota.map(TokenQuota::from),
        default_organization: d
            .default_organization
            .map(|r| DefaultOrganization { organization_id: r.organization_id, flows: r.flows }),
        is_first_party: d.is_first_party,
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}

/// The `doc` of a resource server.
pub(crate) fn resource_server_doc(rs: &ResourceServer) -> Result<String> {
    encode(
        "resource server",
        &ResourceServerDoc {
            name: rs.name.clone(),
            scopes: rs
                .scopes
                .iter()
                .map(|s| ScopeRecord { value: s.value.clone(), description: s.description.clone() })
                .collect(),
            signing_alg: rs.signing_alg.as_str().to_owned(),
            signing_secret: rs.signing_secret.clone(),
            token_lifetime: rs.token_lifetime,
            is_system: rs.is_system,
            created_at: rs.created_at.millis,
            updated_at: rs.updated_at.millis,
        },
    )
}

/// A resource server from its `id` and `identifier` columns and `doc`.
pub(crate) fn resource_server_from_row(id: String, identifier: String, doc: &str) -> Result<ResourceServer> {
    let d: ResourceServerDoc = decode("resource server", &id, doc)?;
    let signing_alg =
        SigningAlg::parse(&d.signing_alg).ok_or_else(|| corrupt("resource server", &id, "signing_alg"))?;
    Ok(ResourceServer {
        id,
        name: d.name,
        identifier,
        scopes: d
            .scopes
            .into_iter()
            .map(|s| ResourceServerScope { value: s.value, description: s.description })
            .collect(),
        signing_alg,
        signing_secret: d.signing_secret,
        token_lifetime: d.token_lifetime,
        is_system: d.is_system,
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}

/// The `doc` of a client grant.
pub(crate) fn grant_doc(g: &ClientGrant) -> Result<String> {
    encode(
        "client grant",
        &GrantDoc {
            scope: g.scope.clone(),
            organization_usage: g.organization_usage.as_str().to_owned(),
            is_system: g.is_system,
            created_at: g.created_at.millis,
            updated_at: g.updated_at.millis,
        },
    )
}

/// The columns of a `client_grants` row, in `SELECT` order.
pub(crate) type GrantRow = (String, String, String, bool, String);

/// The column list matching [`GrantRow`], for `SELECT`s over `client_grants`.
pub(crate) const GRANT_COLUMNS: &str = "id, client_id, audience, allow_any_organization, doc";

/// A client grant from its row.
pub(crate) fn grant_from_row((id, client_id, audience, allow_any_organization, doc): GrantRow) -> Result<ClientGrant> {
    let d: GrantDoc = decode("client grant", &id, &doc)?;
    let organization_usage = OrganizationUsage::parse(&d.organization_usage)
        .ok_or_else(|| corrupt("client grant", &id, "organization_usage"))?;
    Ok(ClientGrant {
        id,
        client_id,
        audience,
        scope: d.scope,
        organization_usage,
        allow_any_organization,
        is_system: d.is_system,
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}

/// The `doc` of an organization.
pub(crate) fn organization_doc(o: &Organization) -> Result<String> {
    encode(
        "organization",
        &OrganizationDoc {
            display_name: o.display_name.clone(),
            token_quota: o.token_quota.as_ref().map(QuotaRecord::from),
            created_at: o.created_at.millis,
            updated_at: o.updated_at.millis,
        },
    )
}

/// An organization from its `id` and `name` columns and `doc`.
pub(crate) fn organization_from_row(id: String, name: String, doc: &str) -> Result<Organization> {
    let d: OrganizationDoc = decode("organization", &id, doc)?;
    Ok(Organization {
        id,
        name,
        display_name: d.display_name,
        token_quota: d.token_quota.map(TokenQuota::from),
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}

/// The `doc` of the tenant settings row.
pub(crate) fn tenant_doc(t: &TenantSettings) -> Result<String> {
    encode(
        "tenant settings",
        &TenantDoc {
            friendly_name: t.friendly_name.clone(),
            support_email: t.support_email.clone(),
            support_url: t.support_url.clone(),
            default_audience: t.default_audience.clone(),
            default_token_quota_clients: t.default_token_quota.clients.as_ref().map(QuotaRecord::from),
            default_token_quota_organizations: t.default_token_quota.organizations.as_ref().map(QuotaRecord::from),
        },
    )
}

/// The tenant settings from their `doc`.
pub(crate) fn tenant_from_doc(doc: &str) -> Result<TenantSettings> {
    let d: TenantDoc = decode("tenant settings", "tenant", doc)?;
    Ok(TenantSettings {
        friendly_name: d.friendly_name,
        support_email: d.support_email,
        support_url: d.support_url,
        default_audience: d.default_audience,
        default_token_quota: DefaultTokenQuota {
            clients: d.default_token_quota_clients.map(TokenQuota::from),
            organizations: d.default_token_quota_organizations.map(TokenQuota::from),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_doc_error_does_not_echo_content() {
        let err = client_from_row("c1".into(), r#"{"name": 1, "secret_hash": "hush"}"#);
        let Err(StoreError::Backend(text)) = err else { panic!("expected a backend error") };
        assert!(text.contains("c1"), "{text}");
        assert!(!text.contains("hush"), "{text}");
    }

    #[test]
    fn unknown_enum_text_is_reported() {
        let doc = r#"{"scope":[],"organization_usage":"sometimes","created_at":0,"updated_at":0}"#;
        let err = grant_from_row(("g1".into(), "c".into(), "a".into(), false, doc.into()));
        assert!(matches!(err, Err(StoreError::Backend(t)) if t.contains("organization_usage")));
    }

    #[test]
    fn fields_added_later_default_to_absent() {
        let doc = r#"{"created_at":5,"updated_at":6}"#;
        let org = organization_from_row("o1".into(), "acme".into(), doc).expect("decodes");
        assert_eq!(org.display_name, None);
        assert_eq!(org.token_quota, None);
        assert_eq!(org.created_at, UnixTime::from_millis(5));
    }
}

#[derive(Serialize, Deserialize)]
struct HttpSinkRecord {
    endpoint: String,
    #[serde(default)]
    authorization: Option<String>,
    content_type: String,
    format: String,
    #[serde(default)]
    custom_headers: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct LogStreamDoc {
    name: String,
    #[serde(default)]
    http: Option<HttpSinkRecord>,
    #[serde(default)]
    file_path: Option<String>,
    status: String,
    #[serde(default)]
    filters: Vec<String>,
    #[serde(default)]
    is_priority: bool,
    created_at: i64,
    updated_at: i64,
}

/// The `doc` of a log stream (the cursor lives in its own column: it changes on every delivery).
pub(crate) fn log_stream_doc(s: &ration_domain::LogStream) -> Result<String> {
    let (http, file_path) = match &s.sink {
        ration_domain::Sink::Http(h) => (
            Some(HttpSinkRecord {
                endpoint: h.endpoint.clone(),
                authorization: h.authorization.clone(),
                content_type: h.content_type.clone(),
                format: h.format.as_str().to_owned(),
                custom_headers: h.custom_headers.clone(),
            }),
            None,
        ),
        ration_domain::Sink::File { path } => (None, Some(path.clone())),
    };
    encode(
        "log stream",
        &LogStreamDoc {
            name: s.name.clone(),
            http,
            file_path,
            status: s.status.as_str().to_owned(),
            filters: s.filters.clone(),
            is_priority: s.is_priority,
            created_at: s.created_at.millis,
            updated_at: s.updated_at.millis,
        },
    )
}

pub(crate) fn log_stream_from_row(id: String, doc: &str) -> Result<ration_domain::LogStream> {
    let d: LogStreamDoc = decode("log stream", &id, doc)?;
    let sink = match (d.http, d.file_path) {
        (Some(h), _) => ration_domain::Sink::Http(ration_domain::HttpSink {
            endpoint: h.endpoint,
            authorization: h.authorization,
            content_type: h.content_type,
            format: ration_domain::ContentFormat::parse(&h.format)
                .ok_or_else(|| corrupt("log stream", &id, "format"))?,
            custom_headers: h.custom_headers,
        }),
        (None, Some(path)) => ration_domain::Sink::File { path },
        (None, None) => return Err(corrupt("log stream", &id, "sink")),
    };
    let status = ration_domain::StreamStatus::parse(&d.status).ok_or_else(|| corrupt("log stream", &id, "status"))?;
    Ok(ration_domain::LogStream {
        id,
        name: d.name,
        sink,
        status,
        filters: d.filters,
        is_priority: d.is_priority,
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}

#[derive(Serialize, Deserialize)]
struct SecretRecord {
    name: String,
    value: String,
    updated_at: i64,
}

fn secrets_to_records(secrets: &[ration_domain::ActionSecret]) -> Vec<SecretRecord> {
    secrets
        .iter()
        .map(|s| SecretRecord { name: s.name.clone(), value: s.value.clone(), updated_at: s.updated_at.millis })
        .collect()
}

fn secrets_from_records(records: Vec<SecretRecord>) -> Vec<ration_domain::ActionSecret> {
    records
        .into_iter()
        .map(|s| ration_domain::ActionSecret {
            name: s.name,
            value: s.value,
            updated_at: UnixTime::from_millis(s.updated_at),
        })
        .collect()
}

#[derive(Serialize, Deserialize)]
struct ActionDoc {
    code: String,
    runtime: String,
    #[serde(default)]
    supported_triggers: Vec<(String, String)>,
    #[serde(default)]
    secrets: Vec<SecretRecord>,
    #[serde(default)]
    deployed_version: Option<u32>,
    #[serde(default)]
    all_changes_deployed: bool,
    created_at: i64,
    updated_at: i64,
}

/// The `doc` of an action (name and id are columns).
pub(crate) fn action_doc(a: &ration_domain::Action) -> Result<String> {
    encode(
        "action",
        &ActionDoc {
            code: a.code.clone(),
            runtime: a.runtime.clone(),
            supported_triggers: a.supported_triggers.clone(),
            secrets: secrets_to_records(&a.secrets),
            deployed_version: a.deployed_version,
            all_changes_deployed: a.all_changes_deployed,
            created_at: a.created_at.millis,
            updated_at: a.updated_at.millis,
        },
    )
}

pub(crate) fn action_from_row(id: String, name: String, doc: &str) -> Result<ration_domain::Action> {
    let d: ActionDoc = decode("action", &id, doc)?;
    Ok(ration_domain::Action {
        id,
        name,
        code: d.code,
        runtime: d.runtime,
        supported_triggers: d.supported_triggers,
        secrets: secrets_from_records(d.secrets),
        deployed_version: d.deployed_version,
        all_changes_deployed: d.all_changes_deployed,
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}

#[derive(Serialize, Deserialize)]
struct ActionVersionDoc {
    code: String,
    runtime: String,
    #[serde(default)]
    secrets: Vec<SecretRecord>,
    created_at: i64,
}

/// The `doc` of an action version (id, action_id and number are columns).
pub(crate) fn action_version_doc(v: &ration_domain::ActionVersion) -> Result<String> {
    encode(
        "action version",
        &ActionVersionDoc {
            code: v.code.clone(),
            runtime: v.runtime.clone(),
            secrets: secrets_to_records(&v.secrets),
            created_at: v.created_at.millis,
        },
    )
}

pub(crate) fn action_version_from_row(
    id: String,
    action_id: String,
    number: i64,
    doc: &str,
) -> Result<ration_domain::ActionVersion> {
    let d: ActionVersionDoc = decode("action version", &id, doc)?;
    let number = u32::try_from(number).map_err(|_| corrupt("action version", &id, "number"))?;
    Ok(ration_domain::ActionVersion {
        id,
        action_id,
        number,
        code: d.code,
        runtime: d.runtime,
        secrets: secrets_from_records(d.secrets),
        created_at: UnixTime::from_millis(d.created_at),
    })
}

#[derive(Serialize, Deserialize)]
struct CredentialDoc {
    name: String,
    kid: String,
    alg: String,
    jwk: String,
    #[serde(default)]
    expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// The `doc` of a client credential (id and client_id are columns).
pub(crate) fn credential_doc(c: &ration_domain::ClientCredential) -> Result<String> {
    encode(
        "client credential",
        &CredentialDoc {
            name: c.name.clone(),
            kid: c.kid.clone(),
            alg: c.alg.clone(),
            jwk: c.jwk.clone(),
            expires_at: c.expires_at.map(|t| t.millis),
            created_at: c.created_at.millis,
            updated_at: c.updated_at.millis,
        },
    )
}

pub(crate) fn credential_from_row(id: String, client_id: String, doc: &str) -> Result<ration_domain::ClientCredential> {
    let d: CredentialDoc = decode("client credential", &id, doc)?;
    Ok(ration_domain::ClientCredential {
        id,
        client_id,
        name: d.name,
        kid: d.kid,
        alg: d.alg,
        jwk: d.jwk,
        expires_at: d.expires_at.map(UnixTime::from_millis),
        created_at: UnixTime::from_millis(d.created_at),
        updated_at: UnixTime::from_millis(d.updated_at),
    })
}
