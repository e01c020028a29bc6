//! The configuration store: every entity an operator configures, signing keys and small metadata.
//!
//! One trait, [`ConfigStore`], with one implementation per backend (embedded SQLite here; the
//! distributed mode adds PostgreSQL). The backend is chosen once at start-up, when the server
//! builds an `Arc<dyn ConfigStore>`; no call site branches on it.
//!
//! Architecture invariant: the token path never calls this trait. It reads the in-memory
//! [`Catalog`] that the server builds with [`ConfigStore::load_catalog`] and keeps current.
//! Every write is durable when its future resolves (a `kill -9` right after cannot lose it).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo, clippy::unimplemented)]

#[cfg(test)]
mod conformance;
pub mod packed;
mod postgres;
mod records;
mod sqlite;

use async_trait::async_trait;
use ration_domain::{
    Action, ActionBinding, ActionVersion, Catalog, Client, ClientCredential, ClientGrant, LogStream, Organization,
    ResourceServer, SigningAlg, TenantSettings, UnixTime,
};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the text says which (e.g. `identifier`).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage backend error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Offset pagination, Auth0 style: `page` is 0-based, `per_page` items per page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

/// One page of a listing and the total count of matching rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Filters of `GET /api/v2/client-grants`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub client_id: Option<String>,
    pub audience: Option<String>,
    /// `Some(true)`: only grants with `allow_any_organization`.
    pub allow_any_organization: Option<bool>,
}

/// One event of the event log, as stored: filter columns plus the full JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Unique and increasing.
    pub log_id: String,
    pub date: UnixTime,
    pub event_type: String,
    pub client_id: Option<String>,
    /// The event exactly as `/api/v2/logs` serves it. What a store is given to append may be
    /// packed ([`packed`]); what it reads back never is.
    pub json: String,
}

/// Which events to list. Every set filter must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQuery {
    /// Any of these types (empty: all types).
    pub types: Vec<String>,
    /// Any of these log-stream categories (empty: all).
    pub categories: Vec<String>,
    pub client_id: Option<String>,
    /// Inclusive lower bound.
    pub date_from: Option<UnixTime>,
    /// Exclusive upper bound.
    pub date_to: Option<UnixTime>,
    /// Checkpoint paging: only events with a greater `log_id`, oldest first, `page.page` ignored.
    pub after_log_id: Option<String>,
    /// Without a checkpoint: newest first when true.
    pub newest_first: bool,
    /// Whether to count every match for [`Listing::total`] (otherwise it is 0). Counting walks all
    /// the matches, not one page: a log-stream delivery or a checkpoint page that does not show
    /// the total must not pay for it on every batch.
    pub with_total: bool,
    pub page: Page,
}

/// Where a log stream's delivery stands.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StreamPosition {
    /// Events after this `log_id` are still to deliver (`""`: from the beginning).
    pub cursor: String,
    /// The last `log_id` the sink accepted; `None` until the first delivery.
    pub last_delivered: Option<String>,
}

/// A token-signing key as persisted. The private key is sealed (encrypted) by the server before it
/// reaches the store; the store never sees it in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// The algorithm this key signs with (one key per asymmetric algorithm).
    pub alg: SigningAlg,
    /// Encrypted PKCS#8 private key (server's `keys` module seals and opens it).
    pub sealed_private_key: Vec<u8>,
    /// `current` (signs), `next` (published, signs after the next rotation), `previous`
    /// (published until its tokens expire) or `revoked` (neither published nor accepted).
    pub state: String,
    pub created_at: UnixTime,
    /// When `state` last changed.
    pub state_changed_at: UnixTime,
}

#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
    /// Everything the token path needs, indexed.
    async fn load_catalog(&self) -> Result<Catalog>;

    async fn insert_client(&self, client: &Client) -> Result<()>;
    /// Replaces the stored client with the same `client_id`; `NotFound` if there is none.
    async fn update_client(&self, client: &Client) -> Result<()>;
    /// Deletes the client, its grants and their organization associations, atomically.
    async fn delete_client(&self, client_id: &str) -> Result<()>;
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>>;
    /// In creation order.
    async fn list_clients(&self, page: Page) -> Result<Listing<Client>>;

    /// `Conflict("identifier")` if the identifier is taken.
    async fn insert_resource_server(&self, rs: &ResourceServer) -> Result<()>;
    async fn update_resource_server(&self, rs: &ResourceServer) -> Result<()>;
    /// Deletes the API and every grant for its identifier (and their org associations).
    async fn delete_resource_server(&self, id: &str) -> Result<()>;
    async fn get_resource_server(&self, id: &str) -> Result<Option<ResourceServer>>;
    async fn get_resource_server_by_identifier(&self, identifier: &str) -> Result<Option<ResourceServer>>;
    /// In creation order; `identifiers` non-empty restricts to those identifiers.
    async fn list_resource_servers(&self, identifiers: &[String], page: Page) -> Result<Listing<ResourceServer>>;

    /// `Conflict("client_id/audience")` if the client already has a grant for the audience.
    async fn insert_grant(&self, grant: &ClientGrant) -> Result<()>;
    async fn update_grant(&self, grant: &ClientGrant) -> Result<()>;
    /// Deletes the grant and its organization associations.
    async fn delete_grant(&self, id: &str) -> Result<()>;
    async fn get_grant(&self, id: &str) -> Result<Option<ClientGrant>>;
    async fn list_grants(&self, filter: &GrantFilter, page: Page) -> Result<Listing<ClientGrant>>;

    /// `Conflict("name")` if the name is taken.
    async fn insert_organization(&self, org: &Organization) -> Result<()>;
    async fn update_organization(&self, org: &Organization) -> Result<()>;
    /// Deletes the organization and its grant associations.
    async fn delete_organization(&self, id: &str) -> Result<()>;
    async fn get_organization(&self, id: &str) -> Result<Option<Organization>>;
    async fn list_organizations(&self, page: Page) -> Result<Listing<Organization>>;
    /// `Conflict("grant_id")` if already associated.
    async fn add_organization_grant(&self, organization_id: &str, grant_id: &str) -> Result<()>;
    /// `NotFound` if not associated.
    async fn remove_organization_grant(&self, organization_id: &str, grant_id: &str) -> Result<()>;
    /// Grants associated with the organization, in association order.
    async fn list_organization_grants(&self, organization_id: &str, page: Page) -> Result<Listing<ClientGrant>>;

    /// Defaults (all `None`) before the first write.
    async fn get_tenant_settings(&self) -> Result<TenantSettings>;
    async fn put_tenant_settings(&self, tenant: &TenantSettings) -> Result<()>;

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<()>;
    /// All keys, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>>;
    /// Changes the state of several keys in one transaction (a rotation must never be half done).
    /// `NotFound` if any kid is unknown.
    async fn set_signing_key_states(&self, changes: &[(String, String)], at: UnixTime) -> Result<()>;

    /// Appends events in one transaction; an event whose `log_id` is already stored is skipped, so
    /// replaying a batch is harmless. The embedded store keeps its events in `log_id` order and
    /// appends only those after its newest (its one writer makes ids in increasing order, so the
    /// others are a journal's replay); a shared store, written by several instances, takes any.
    async fn append_events(&self, events: &[StoredEvent]) -> Result<()>;
    async fn list_events(&self, query: &EventQuery) -> Result<Listing<StoredEvent>>;
    async fn get_event(&self, log_id: &str) -> Result<Option<StoredEvent>>;
    /// Deletes events dated before `before`; returns how many.
    async fn prune_events(&self, before: UnixTime) -> Result<u64>;
    /// The greatest `log_id` stored, if any.
    async fn last_log_id(&self) -> Result<Option<String>>;

    /// Stores a new stream that will deliver events after `cursor` (a `log_id`, or `""` for all).
    async fn insert_log_stream(&self, stream: &LogStream, cursor: &str) -> Result<()>;
    /// Replaces the stream's configuration; its cursor is kept.
    async fn update_log_stream(&self, stream: &LogStream) -> Result<()>;
    async fn delete_log_stream(&self, id: &str) -> Result<()>;
    /// The stream and its delivery position.
    async fn get_log_stream(&self, id: &str) -> Result<Option<(LogStream, StreamPosition)>>;
    /// Every stream with its delivery position, in creation order.
    async fn list_log_streams(&self) -> Result<Vec<(LogStream, StreamPosition)>>;
    /// Records that every matching event up to `log_id` was delivered (moves the cursor and sets
    /// `last_delivered`).
    async fn set_log_stream_cursor(&self, id: &str, log_id: &str) -> Result<()>;

    /// `Conflict("name")` if the name is taken.
    async fn insert_action(&self, action: &Action) -> Result<()>;
    async fn update_action(&self, action: &Action) -> Result<()>;
    /// Deletes the action, its versions and its bindings, atomically.
    async fn delete_action(&self, id: &str) -> Result<()>;
    async fn get_action(&self, id: &str) -> Result<Option<Action>>;
    /// In creation order.
    async fn list_actions(&self, page: Page) -> Result<Listing<Action>>;
    /// `Conflict("number")` if the action already has a version with this number.
    async fn insert_action_version(&self, version: &ActionVersion) -> Result<()>;
    async fn get_action_version(&self, action_id: &str, number: u32) -> Result<Option<ActionVersion>>;
    /// Newest first.
    async fn list_action_versions(&self, action_id: &str) -> Result<Vec<ActionVersion>>;
    /// The credentials-exchange bindings, in execution order.
    async fn list_action_bindings(&self) -> Result<Vec<ActionBinding>>;
    /// Replaces the whole binding list (its order is the execution order).
    async fn set_action_bindings(&self, bindings: &[ActionBinding]) -> Result<()>;

    /// Tells every instance sharing this store that the configuration changed (`payload` names
    /// what, and who). A store that only one instance can use has nobody to tell.
    async fn publish_change(&self, payload: &str) -> Result<()> {
        let _ = payload;
        Ok(())
    }

    /// Change notifications from other instances, or `None` when the store is not shared.
    async fn subscribe_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>> {
        Ok(None)
    }

    /// Takes or renews a lease named `name` for `holder` until `until`; `false` if another holder
    /// has it. Used so that only one instance delivers each log stream. A store only one instance
    /// can use always grants it.
    async fn try_lease(&self, name: &str, holder: &str, now: UnixTime, until: UnixTime) -> Result<bool> {
        let _ = (name, holder, now, until);
        Ok(true)
    }

    /// Whether several instances may share this store (then deliveries wait for a settle delay and
    /// take leases).
    fn is_shared(&self) -> bool {
        false
    }

    /// `Conflict("id")` if the id exists.
    async fn insert_credential(&self, credential: &ClientCredential) -> Result<()>;
    async fn update_credential(&self, credential: &ClientCredential) -> Result<()>;
    /// `NotFound` unless the client has this credential.
    async fn delete_credential(&self, client_id: &str, id: &str) -> Result<()>;
    /// The client's credentials, oldest first.
    async fn list_credentials(&self, client_id: &str) -> Result<Vec<ClientCredential>>;

    /// Records `key` as used until `expires_at`; `false` if it is already recorded and has not
    /// expired at `now` (a replay). Instances sharing the store see each other's keys.
    async fn claim_once(&self, key: &str, expires_at: UnixTime, now: UnixTime) -> Result<bool>;
    /// Forgets keys expired at `now`.
    async fn prune_once(&self, now: UnixTime) -> Result<u64>;

    /// Small named values (bootstrap markers).
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;
}
