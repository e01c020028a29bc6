//! The configuration as the token path sees it: every entity indexed for O(1) lookups.
//!
//! The server keeps one `Catalog` behind an atomic pointer and replaces it on every change, so a
//! request works on one consistent view without locks. Each index is behind its own `Arc`, so a
//! change copies only the index it touches.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

// foldhash's maps (randomly seeded per process) instead of std's SipHash: a token request looks up
// about a dozen keys here (client, API by audience, grant, organization by id or name, its grant
// association), and SipHash cost ~165 instructions a lookup, ~2.8 k per token with the counters'
// and metrics' lookups (callgrind, docs/benchmarks.md). SipHash's resistance to chosen-key
// flooding buys nothing here: only the Management API inserts keys, and requests only look them up.
use foldhash::{HashMap, HashSet};
use smallvec::SmallVec;

use crate::entity::{
    Client, ClientCredential, ClientGrant, Organization, OrganizationUsage, ResourceServer, TenantSettings,
    TokenEndpointAuthMethod,
};
use crate::id::Id;
use crate::quota::TokenQuota;

/// Text held inline up to `N` bytes (longer text spills to the heap and still works).
type Inline<const N: usize> = smallstr::SmallString<[u8; N]>;

/// A client and its grants, found with one lookup, with what a token request reads of them
/// copied into the entry itself, which sits in the shard map's slot.
///
/// Why copies: with 10 000 clients sending in turn, every separate allocation a token reads of its
/// client is a cache miss of its own. Before the copies a token read the entry, `Client` (two
/// lines), its secret hash's and its name's texts, the grants' slice, the grant, its audience's
/// text, its scope list and each scope's text: about ten cold lines in as many places. The copies
/// put them on a few consecutive lines of the slot (docs/benchmarks.md, session 18). `client` and
/// each grant's `grant` stay for everything else (Actions, the Management API), and the token
/// path reads only the pointers to them.
#[repr(C)]
#[derive(Clone, Debug, Default)]
struct ClientEntry {
    /// `None` while only grants name this client id (a catalog built out of order).
    facts: Option<ClientFacts>,
    /// The client's grants (a client has few, so a scan by audience is cheaper than a tuple key);
    /// the first in the slot, more on the heap.
    grants: SmallVec<[GrantFacts; 1]>,
    client: Option<Arc<Client>>,
    /// Tokens issued to this client id, for the server's metrics: here, so that counting one reads
    /// a line of the client's own rather than probing a map of all clients under one lock. Shared
    /// by every copy of the entry, and kept when the client changes.
    issued: Arc<AtomicU64>,
}

/// What a token request reads of a client, copied from it when it is stored.
#[derive(Clone, Debug)]
pub struct ClientFacts {
    /// [`Client::secret_hash`] (58 bytes in the server's scheme).
    pub secret_hash: Inline<64>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// [`Client::allows_client_credentials`], precomputed.
    pub client_credentials: bool,
    pub token_quota: Option<TokenQuota>,
    /// [`Client::name`], for every token's `seccft` event.
    pub name: Inline<64>,
}

impl ClientFacts {
    fn of(client: &Client) -> ClientFacts {
        ClientFacts {
            secret_hash: Inline::from(client.secret_hash.as_str()),
            token_endpoint_auth_method: client.token_endpoint_auth_method,
            client_credentials: client.allows_client_credentials(),
            token_quota: client.token_quota,
            name: Inline::from(client.name.as_str()),
        }
    }
}

/// What a token request reads of a client's grant, with its audience's hash ([`audience_hash`]):
/// finding the grant for a request's audience compares the hashes, then the one audience that
/// matches, all in the client's entry.
#[derive(Clone, Debug)]
pub struct GrantFacts {
    audience_hash: u64,
    pub organization_usage: OrganizationUsage,
    pub allow_any_organization: bool,
    pub id: Id,
    pub audience: Inline<64>,
    /// The grant's scopes joined by spaces: a token's `scope` claim when its request asks for all
    /// of them (most do), without reading the list.
    pub scope: Inline<64>,
    pub grant: Arc<ClientGrant>,
}

impl GrantFacts {
    fn new(grant: Arc<ClientGrant>) -> GrantFacts {
        GrantFacts {
            audience_hash: audience_hash(&grant.audience),
            organization_usage: grant.organization_usage,
            allow_any_organization: grant.allow_any_organization,
            id: Id::from(grant.id.as_str()),
            audience: Inline::from(grant.audience.as_str()),
            scope: Inline::from(grant.scope.join(" ").as_str()),
            grant,
        }
    }
}

/// A fixed hash (not per process: nothing outside a catalog sees it).
fn audience_hash(audience: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0).hash_one(audience)
}

/// The grant for `audience` among a client's.
fn find_grant<'a>(grants: &'a [GrantFacts], audience: &str) -> Option<&'a GrantFacts> {
    let hash = audience_hash(audience);
    grants.iter().find(|g| g.audience_hash == hash && g.audience == audience)
}

/// What the token path needs of a client, found with one probe ([`Catalog::client_grants`]).
#[derive(Clone, Copy, Debug)]
pub struct ClientGrants<'a> {
    /// For Actions and the rarer paths; the token path reads `facts`.
    pub client: &'a Client,
    pub facts: &'a ClientFacts,
    /// The client's issued-token count (see `ClientEntry::issued`).
    pub issued: &'a Arc<AtomicU64>,
    grants: &'a [GrantFacts],
}

impl<'a> ClientGrants<'a> {
    /// The grant for `audience`.
    pub fn grant_for(&self, audience: &str) -> Option<&'a GrantFacts> {
        find_grant(self.grants, audience)
    }
}

/// The clients' entries in copy-on-write shards. Every catalog change copies what it touches, and
/// one map of all clients made each client or grant write copy every client: setting up 10 000
/// clients spent most of its time copying that map. A write now copies one shard.
#[derive(Clone, Debug)]
struct ClientShards([Arc<HashMap<Id, ClientEntry>>; CLIENT_SHARDS]);

const CLIENT_SHARDS: usize = 64;

impl Default for ClientShards {
    fn default() -> ClientShards {
        ClientShards(std::array::from_fn(|_| Arc::default()))
    }
}

impl ClientShards {
    /// The shard of an id: from its last two bytes, random in generated ids (a skewed set of ids
    /// only makes writes slower, never a lookup wrong).
    fn index(id: &str) -> usize {
        let b = id.as_bytes();
        let at = |back: usize| b.len().checked_sub(back).and_then(|i| b.get(i)).map_or(0, |&c| usize::from(c));
        (at(1) + 7 * at(2)) % CLIENT_SHARDS
    }

    fn get(&self, id: &str) -> Option<&ClientEntry> {
        // `index` is below CLIENT_SHARDS, the array's length: indexing cannot fail.
        self.0[Self::index(id)].get(id)
    }

    /// The shard holding `id`, copied first if another catalog shares it.
    fn shard_mut(&mut self, id: &str) -> &mut HashMap<Id, ClientEntry> {
        Arc::make_mut(&mut self.0[Self::index(id)])
    }

    fn values(&self) -> impl Iterator<Item = &ClientEntry> {
        self.0.iter().flat_map(|shard| shard.values())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    clients: ClientShards,
    resource_servers: Arc<HashMap<String, Arc<ResourceServer>>>,
    /// identifier (audience) -> resource server id
    audiences: Arc<HashMap<String, String>>,
    grants: Arc<HashMap<String, Arc<ClientGrant>>>,
    organizations: Arc<HashMap<String, Arc<Organization>>>,
    /// organization name -> id
    organization_names: Arc<HashMap<String, String>>,
    /// organization id -> ids of the grants associated with it (nested rather than a tuple key, so
    /// the token path looks an association up by `&str` without allocating)
    organization_grants: Arc<HashMap<String, HashSet<Id>>>,
    tenant: Arc<TenantSettings>,
    /// client_id -> its private_key_jwt credentials
    credentials: Arc<HashMap<String, Vec<Arc<ClientCredential>>>>,
}

impl Catalog {
    pub fn client(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)?.client.as_ref()
    }

    pub fn clients(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.clients.values().filter_map(|entry| entry.client.as_ref())
    }

    /// Counts them (not on the token path).
    pub fn n_clients(&self) -> usize {
        self.clients().count()
    }

    /// A client with its grant facts, with one probe; `None` for an unknown client.
    pub fn client_grants(&self, client_id: &str) -> Option<ClientGrants<'_>> {
        let entry = self.clients.get(client_id)?;
        Some(ClientGrants {
            client: entry.client.as_deref()?,
            facts: entry.facts.as_ref()?,
            issued: &entry.issued,
            grants: &entry.grants,
        })
    }

    pub fn resource_servers(&self) -> impl Iterator<Item = &Arc<ResourceServer>> {
        self.resource_servers.values()
    }

    pub fn resource_server(&self, id: &str) -> Option<&Arc<ResourceServer>> {
        self.resource_servers.get(id)
    }

    pub fn resource_server_by_audience(&self, audience: &str) -> Option<&Arc<ResourceServer>> {
        self.audiences.get(audience).and_then(|id| self.resource_servers.get(id))
    }

    pub fn grant(&self, id: &str) -> Option<&Arc<ClientGrant>> {
        self.grants.get(id)
    }

    pub fn grant_for(&self, client_id: &str, audience: &str) -> Option<&Arc<ClientGrant>> {
        find_grant(&self.clients.get(client_id)?.grants, audience).map(|g| &g.grant)
    }

    pub fn organization(&self, id: &str) -> Option<&Arc<Organization>> {
        self.organizations.get(id)
    }

    /// An organization by id, else by name (token requests may send either).
    pub fn organization_by_id_or_name(&self, key: &str) -> Option<&Arc<Organization>> {
        self.organizations
            .get(key)
            .or_else(|| self.organization_names.get(key).and_then(|id| self.organizations.get(id)))
    }

    pub fn organization_has_grant(&self, organization_id: &str, grant_id: &str) -> bool {
        self.organization_grants.get(organization_id).is_some_and(|grants| grants.contains(grant_id))
    }

    pub fn tenant(&self) -> &TenantSettings {
        &self.tenant
    }

    pub fn upsert_client(&mut self, client: Client) {
        let entry = self.clients.shard_mut(&client.client_id).entry(Id::from(client.client_id.as_str())).or_default();
        entry.facts = Some(ClientFacts::of(&client));
        entry.client = Some(Arc::new(client));
    }

    /// Removes the client and, as Auth0 does, its grants.
    pub fn remove_client(&mut self, client_id: &str) {
        Arc::make_mut(&mut self.credentials).remove(client_id);
        let Some(entry) = self.clients.shard_mut(client_id).remove(client_id) else { return };
        let all = Arc::make_mut(&mut self.grants);
        for g in entry.grants.iter() {
            all.remove(&g.grant.id);
        }
        for g in entry.grants.iter() {
            self.forget_grant_associations(&g.grant.id);
        }
    }

    pub fn upsert_resource_server(&mut self, rs: ResourceServer) {
        let audiences = Arc::make_mut(&mut self.audiences);
        audiences.retain(|_, id| id != &rs.id);
        audiences.insert(rs.identifier.clone(), rs.id.clone());
        Arc::make_mut(&mut self.resource_servers).insert(rs.id.clone(), Arc::new(rs));
    }

    /// Removes the API and, as Auth0 does, the grants for it.
    pub fn remove_resource_server(&mut self, id: &str) {
        let Some(rs) = Arc::make_mut(&mut self.resource_servers).remove(id) else { return };
        Arc::make_mut(&mut self.audiences).remove(&rs.identifier);
        let doomed: Vec<String> =
            self.grants.values().filter(|g| g.audience == rs.identifier).map(|g| g.id.clone()).collect();
        for grant_id in doomed {
            self.remove_grant(&grant_id);
        }
    }

    pub fn upsert_grant(&mut self, grant: ClientGrant) {
        let grant = Arc::new(grant);
        let entry = self.clients.shard_mut(&grant.client_id).entry(Id::from(grant.client_id.as_str())).or_default();
        entry.grants.retain(|g| g.grant.id != grant.id);
        entry.grants.push(GrantFacts::new(grant.clone()));
        Arc::make_mut(&mut self.grants).insert(grant.id.clone(), grant);
    }

    pub fn remove_grant(&mut self, id: &str) {
        let Some(grant) = Arc::make_mut(&mut self.grants).remove(id) else { return };
        let shard = self.clients.shard_mut(&grant.client_id);
        if let Some(entry) = shard.get_mut(grant.client_id.as_str()) {
            entry.grants.retain(|g| g.grant.id != id);
            if entry.client.is_none() && entry.grants.is_empty() {
                shard.remove(grant.client_id.as_str());
            }
        }
        self.forget_grant_associations(id);
    }

    fn forget_grant_associations(&mut self, grant_id: &str) {
        let map = Arc::make_mut(&mut self.organization_grants);
        map.values_mut().for_each(|grants| {
            grants.remove(grant_id);
        });
        map.retain(|_, grants| !grants.is_empty());
    }

    pub fn upsert_organization(&mut self, org: Organization) {
        let names = Arc::make_mut(&mut self.organization_names);
        names.retain(|_, id| id != &org.id);
        names.insert(org.name.clone(), org.id.clone());
        Arc::make_mut(&mut self.organizations).insert(org.id.clone(), Arc::new(org));
    }

    pub fn remove_organization(&mut self, id: &str) {
        if let Some(org) = Arc::make_mut(&mut self.organizations).remove(id) {
            Arc::make_mut(&mut self.organization_names).remove(&org.name);
        }
        Arc::make_mut(&mut self.organization_grants).remove(id);
    }

    pub fn set_organization_grant(&mut self, organization_id: &str, grant_id: &str, present: bool) {
        let map = Arc::make_mut(&mut self.organization_grants);
        if present {
            map.entry(organization_id.to_owned()).or_default().insert(Id::from(grant_id));
        } else if let Some(grants) = map.get_mut(organization_id) {
            grants.remove(grant_id);
            if grants.is_empty() {
                map.remove(organization_id);
            }
        }
    }

    /// The client's registered public keys (any state; callers check expiry).
    pub fn credentials(&self, client_id: &str) -> &[Arc<ClientCredential>] {
        self.credentials.get(client_id).map_or(&[], Vec::as_slice)
    }

    pub fn upsert_credential(&mut self, credential: ClientCredential) {
        let list = Arc::make_mut(&mut self.credentials).entry(credential.client_id.clone()).or_default();
        list.retain(|c| c.id != credential.id);
        list.push(Arc::new(credential));
    }

    pub fn remove_credential(&mut self, client_id: &str, id: &str) {
        let map = Arc::make_mut(&mut self.credentials);
        if let Some(list) = map.get_mut(client_id) {
            list.retain(|c| c.id != id);
            if list.is_empty() {
                map.remove(client_id);
            }
        }
    }

    pub fn set_tenant(&mut self, tenant: TenantSettings) {
        self.tenant = Arc::new(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a token reads of a typical client stays in its entry: nothing spills to the heap, and
    /// the slot (id and entry) spans a few cache lines.
    #[test]
    fn a_typical_clients_token_facts_stay_in_its_slot() {
        let client = Client {
            // The server's scheme: "hmac-sha256$v1$" and 43 characters of base64.
            secret_hash: format!("hmac-sha256$v1${}", "A".repeat(43)),
            name: "Billing service (production)".into(),
            token_quota: None,
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
            is_first_party: true,
            client_id: "0123456789abcdefghijABCDEFGHIJ01".into(),
            default_organization: None,
            description: None,
            app_type: None,
            grant_types: vec!["client_credentials".into()],
            client_metadata: Default::default(),
            created_at: crate::UnixTime::from_secs(0),
            updated_at: crate::UnixTime::from_secs(0),
        };
        let grant = ClientGrant {
            id: "cgr_0123456789abcdef".into(),
            client_id: client.client_id.clone(),
            audience: "https://billing.example.com/api/v2/".into(),
            scope: vec!["read:invoices".into(), "create:invoices".into(), "read:customers".into()],
            organization_usage: OrganizationUsage::Deny,
            allow_any_organization: false,
            is_system: false,
            created_at: crate::UnixTime::from_secs(0),
            updated_at: crate::UnixTime::from_secs(0),
        };
        let facts = ClientFacts::of(&client);
        let grant = GrantFacts::new(Arc::new(grant));
        assert!(!facts.secret_hash.spilled() && !facts.name.spilled());
        assert!(!grant.id.spilled() && !grant.audience.spilled() && !grant.scope.spilled());
        let slot = std::mem::size_of::<(Id, ClientEntry)>();
        assert!(slot <= 8 * 64, "a slot of {slot} bytes");
    }
}
