//! Behaviour every [`ConfigStore`] backend must share, as one set of assertions that each backend's
//! tests run against a fresh store of their own ([`conformance_tests!`]).
//!
//! The SQLite backend runs them here (in memory); `postgres/tests.rs` runs them against a real
//! PostgreSQL. `sqlite/tests.rs` keeps its own, SQLite-specific tests.

use std::collections::BTreeMap;

use ration_domain::{
    Action, ActionBinding, ActionSecret, ActionVersion, Client, ClientGrant, ContentFormat, DefaultOrganization,
    DefaultTokenQuota, HttpSink, LogStream, Organization, OrganizationUsage, QuotaLimits, ResourceServer,
    ResourceServerScope, SigningAlg, Sink, StreamStatus, TenantSettings, TokenEndpointAuthMethod, TokenQuota, UnixTime,
};

use crate::{
    ConfigStore, EventQuery, GrantFilter, Listing, Page, Result, StoreError, StoredEvent, StoredKey, StreamPosition,
};

/// A fresh, empty store of one backend, and a look at its raw tables.
pub(crate) trait Harness: Sized {
    type Store: ConfigStore + Clone;
    /// A new harness with its own empty store.
    async fn new() -> Self;
    fn store(&self) -> &Self::Store;
    /// Every `(organization_id, grant_id)` association, in association order. Read from the table
    /// itself where the backend allows, so a row left dangling by a cascade shows.
    async fn associations(&self) -> Vec<(String, String)>;
}

/// Defines one `#[tokio::test]` per conformance test, each with a fresh `$harness`.
macro_rules! conformance_tests {
    ($harness:ty) => {
        $crate::conformance::conformance_tests!(@each $harness;
            client_round_trip_update_and_delete,
            resource_server_round_trip_and_conflicts,
            grant_round_trip_and_conflicts,
            organization_round_trip_and_associations,
            delete_client_cascades_to_grants_and_associations,
            delete_resource_server_cascades_to_its_audience,
            delete_grant_and_organization_remove_associations_only,
            failed_delete_changes_nothing,
            listings_paginate_in_creation_order,
            list_grants_honours_each_filter,
            list_resource_servers_restricts_to_identifiers,
            load_catalog_contains_everything,
            empty_store_loads_an_empty_catalog,
            tenant_settings_default_then_put_and_replace,
            signing_keys_and_meta,
            concurrent_writers_all_succeed,
            events_append_idempotently_filter_page_and_prune,
            events_in_large_batches_skip_duplicates,
            event_ids_order_bytewise,
            packed_events_read_back_as_json,
            log_streams_round_trip_keep_cursor_and_categories_filter,
            log_stream_conflicts_and_missing_streams,
            actions_versions_and_bindings,
            concurrent_binding_replacements_do_not_mix,
            nul_characters_in_keys_find_nothing,
            client_credentials_and_single_use_keys,
        );
    };
    (@each $harness:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = <$harness as $crate::conformance::Harness>::new().await;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;

/// The SQLite backend, in memory.
mod sqlite {
    use super::*;
    use crate::SqliteStore;

    pub(crate) struct SqliteHarness(SqliteStore);

    impl Harness for SqliteHarness {
        type Store = SqliteStore;

        async fn new() -> Self {
            SqliteHarness(SqliteStore::open_in_memory().await.expect("open"))
        }

        fn store(&self) -> &SqliteStore {
            &self.0
        }

        /// Through the trait (the pool is private to `sqlite`); `sqlite/tests.rs` checks the raw
        /// rows.
        async fn associations(&self) -> Vec<(String, String)> {
            trait_associations(&self.0).await
        }
    }

    conformance_tests!(SqliteHarness);
}

/// The associations as the trait shows them: organization by organization, in association order.
pub(crate) async fn trait_associations(store: &impl ConfigStore) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in store.list_organizations(ALL).await.expect("orgs").items {
        for g in store.list_organization_grants(&o.id, ALL).await.expect("grants").items {
            out.push((o.id.clone(), g.id));
        }
    }
    out
}

pub(crate) fn quota(enforce: bool, m: Option<u32>, h: Option<u32>, d: Option<u32>) -> TokenQuota {
    TokenQuota { enforce, limits: QuotaLimits { per_minute: m, per_hour: h, per_day: d } }
}

pub(crate) fn client(id: &str) -> Client {
    Client {
        client_id: id.to_owned(),
        name: format!("app {id}"),
        description: None,
        app_type: Some("non_interactive".to_owned()),
        grant_types: vec!["client_credentials".to_owned()],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
        client_metadata: BTreeMap::new(),
        secret_hash: format!("hash-of-{id}"),
        token_quota: None,
        default_organization: None,
        is_first_party: true,
        created_at: UnixTime::from_millis(1_700_000_000_123),
        updated_at: UnixTime::from_millis(1_700_000_000_456),
    }
}

pub(crate) fn full_client(id: &str) -> Client {
    Client {
        description: Some("with \"quotes\", ünïcode and a \u{0} NUL".to_owned()),
        app_type: None,
        grant_types: vec!["client_credentials".to_owned(), "implicit".to_owned()],
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        client_metadata: BTreeMap::from([("tier".to_owned(), "gold".to_owned()), ("a".to_owned(), String::new())]),
        token_quota: Some(quota(false, Some(1), None, Some(2_147_483_647))),
        default_organization: Some(DefaultOrganization {
            organization_id: "org_1".to_owned(),
            flows: vec!["client_credentials".to_owned()],
        }),
        is_first_party: false,
        created_at: UnixTime::from_millis(-5),
        ..client(id)
    }
}

pub(crate) fn api(id: &str, identifier: &str) -> ResourceServer {
    ResourceServer {
        id: id.to_owned(),
        name: format!("api {id}"),
        identifier: identifier.to_owned(),
        scopes: vec![
            ResourceServerScope { value: "read:a".to_owned(), description: Some("Read A".to_owned()) },
            ResourceServerScope { value: "write:a".to_owned(), description: None },
        ],
        signing_alg: SigningAlg::RS256,
        signing_secret: None,
        token_lifetime: 86_400,
        is_system: false,
        created_at: UnixTime::from_millis(10),
        updated_at: UnixTime::from_millis(20),
    }
}

pub(crate) fn grant(id: &str, client_id: &str, audience: &str) -> ClientGrant {
    ClientGrant {
        id: id.to_owned(),
        client_id: client_id.to_owned(),
        audience: audience.to_owned(),
        scope: vec!["read:a".to_owned()],
        organization_usage: OrganizationUsage::Deny,
        allow_any_organization: false,
        is_system: false,
        created_at: UnixTime::from_millis(30),
        updated_at: UnixTime::from_millis(40),
    }
}

pub(crate) fn org(id: &str, name: &str) -> Organization {
    Organization {
        id: id.to_owned(),
        name: name.to_owned(),
        display_name: None,
        token_quota: None,
        created_at: UnixTime::from_millis(50),
        updated_at: UnixTime::from_millis(60),
    }
}

fn page(page: u32, per_page: u32) -> Page {
    Page { page, per_page }
}

pub(crate) const ALL: Page = Page { page: 0, per_page: 1000 };

fn conflict(r: Result<()>) -> String {
    match r {
        Err(StoreError::Conflict(field)) => field,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn not_found(r: Result<()>) {
    assert!(matches!(r, Err(StoreError::NotFound)), "expected NotFound, got {r:?}");
}

fn ids<T>(listing: &Listing<T>, id: impl Fn(&T) -> &str) -> Vec<String> {
    listing.items.iter().map(|t| id(t).to_owned()).collect()
}

fn grant_ids(listing: &Listing<ClientGrant>) -> Vec<String> {
    ids(listing, |g| &g.id)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

async fn all_grant_ids(store: &impl ConfigStore) -> Vec<String> {
    grant_ids(&store.list_grants(&GrantFilter::default(), ALL).await.expect("grants"))
}

/// Two clients, two APIs, three grants, two organizations with associations.
async fn populate(store: &impl ConfigStore) {
    for c in ["c1", "c2"] {
        store.insert_client(&client(c)).await.expect("client");
    }
    store.insert_resource_server(&api("rsA", "A")).await.expect("api");
    store.insert_resource_server(&api("rsB", "B")).await.expect("api");
    store.insert_grant(&grant("g1", "c1", "A")).await.expect("grant");
    store.insert_grant(&grant("g2", "c1", "B")).await.expect("grant");
    store.insert_grant(&grant("g3", "c2", "A")).await.expect("grant");
    store.insert_organization(&org("o1", "one")).await.expect("org");
    store.insert_organization(&org("o2", "two")).await.expect("org");
    for (o, g) in [("o1", "g1"), ("o1", "g3"), ("o2", "g2"), ("o2", "g3")] {
        store.add_organization_grant(o, g).await.expect("assoc");
    }
}

fn event_query() -> EventQuery {
    EventQuery {
        types: vec![],
        categories: vec![],
        client_id: None,
        date_from: None,
        date_to: None,
        after_log_id: None,
        newest_first: false,
        with_total: true,
        page: Page { page: 0, per_page: 100 },
    }
}

fn event_ids(listing: &Listing<StoredEvent>) -> Vec<String> {
    ids(listing, |e| &e.log_id)
}

pub(crate) async fn client_round_trip_update_and_delete(h: &impl Harness) {
    let store = h.store();
    assert_eq!(store.get_client("c1").await.expect("get"), None);

    let c = full_client("c1");
    store.insert_client(&c).await.expect("insert");
    assert_eq!(store.get_client("c1").await.expect("get"), Some(c.clone()));
    assert_eq!(conflict(store.insert_client(&client("c1")).await), "client_id");

    let plain = client("c2");
    store.insert_client(&plain).await.expect("insert");
    assert_eq!(store.get_client("c2").await.expect("get"), Some(plain));

    let mut changed = c.clone();
    changed.name = "renamed".to_owned();
    changed.token_quota = Some(quota(true, None, Some(10), None));
    changed.default_organization = None;
    changed.client_metadata.clear();
    changed.updated_at = UnixTime::from_millis(99);
    store.update_client(&changed).await.expect("update");
    assert_eq!(store.get_client("c1").await.expect("get"), Some(changed));

    not_found(store.update_client(&client("nope")).await);
    not_found(store.delete_client("nope").await);
    store.delete_client("c1").await.expect("delete");
    assert_eq!(store.get_client("c1").await.expect("get"), None);
    assert_eq!(store.list_clients(ALL).await.expect("list").total, 1);
}

pub(crate) async fn resource_server_round_trip_and_conflicts(h: &impl Harness) {
    let store = h.store();
    let mut a = api("rs1", "https://a");
    a.signing_alg = SigningAlg::HS256;
    a.signing_secret = Some("shh".to_owned());
    a.is_system = true;
    store.insert_resource_server(&a).await.expect("insert");
    assert_eq!(store.get_resource_server("rs1").await.expect("get"), Some(a.clone()));
    assert_eq!(store.get_resource_server_by_identifier("https://a").await.expect("get"), Some(a.clone()));
    assert_eq!(store.get_resource_server_by_identifier("https://zzz").await.expect("get"), None);
    assert_eq!(store.get_resource_server("zzz").await.expect("get"), None);

    assert_eq!(conflict(store.insert_resource_server(&api("rs2", "https://a")).await), "identifier");
    assert_eq!(conflict(store.insert_resource_server(&api("rs1", "https://other")).await), "id");

    let b = api("rs2", "https://b");
    store.insert_resource_server(&b).await.expect("insert");
    assert_eq!(conflict(store.update_resource_server(&api("rs2", "https://a")).await), "identifier");

    let mut changed = b.clone();
    changed.scopes.clear();
    changed.signing_alg = SigningAlg::EdDSA;
    changed.token_lifetime = 60;
    store.update_resource_server(&changed).await.expect("update");
    assert_eq!(store.get_resource_server("rs2").await.expect("get"), Some(changed));

    not_found(store.update_resource_server(&api("nope", "https://nope")).await);
    not_found(store.delete_resource_server("nope").await);
}

pub(crate) async fn grant_round_trip_and_conflicts(h: &impl Harness) {
    let store = h.store();
    let mut g = grant("g1", "c1", "https://a");
    g.scope = vec![];
    g.organization_usage = OrganizationUsage::Require;
    g.allow_any_organization = true;
    g.is_system = true;
    store.insert_grant(&g).await.expect("insert");
    assert_eq!(store.get_grant("g1").await.expect("get"), Some(g.clone()));
    assert_eq!(store.get_grant("nope").await.expect("get"), None);

    assert_eq!(conflict(store.insert_grant(&grant("g2", "c1", "https://a")).await), "client_id/audience");
    assert_eq!(conflict(store.insert_grant(&grant("g1", "c1", "https://b")).await), "id");

    store.insert_grant(&grant("g2", "c1", "https://b")).await.expect("insert");
    assert_eq!(conflict(store.update_grant(&grant("g2", "c1", "https://a")).await), "client_id/audience");

    let mut changed = g.clone();
    changed.scope = vec!["x".to_owned(), "y".to_owned()];
    changed.organization_usage = OrganizationUsage::Allow;
    changed.allow_any_organization = false;
    store.update_grant(&changed).await.expect("update");
    assert_eq!(store.get_grant("g1").await.expect("get"), Some(changed));
    let any = GrantFilter { allow_any_organization: Some(true), ..GrantFilter::default() };
    assert_eq!(store.list_grants(&any, ALL).await.expect("list").total, 0, "filter column follows updates");

    not_found(store.update_grant(&grant("nope", "c1", "https://z")).await);
    not_found(store.delete_grant("nope").await);
}

pub(crate) async fn organization_round_trip_and_associations(h: &impl Harness) {
    let store = h.store();
    let mut o = org("o1", "acme");
    o.display_name = Some("Acme Inc.".to_owned());
    o.token_quota = Some(quota(true, Some(5), Some(50), Some(500)));
    store.insert_organization(&o).await.expect("insert");
    assert_eq!(store.get_organization("o1").await.expect("get"), Some(o.clone()));
    assert_eq!(store.get_organization("nope").await.expect("get"), None);
    assert_eq!(conflict(store.insert_organization(&org("o2", "acme")).await), "name");
    assert_eq!(conflict(store.insert_organization(&org("o1", "other")).await), "id");

    store.insert_organization(&org("o2", "globex")).await.expect("insert");
    assert_eq!(conflict(store.update_organization(&org("o2", "acme")).await), "name");
    let mut renamed = o.clone();
    renamed.name = "acme-2".to_owned();
    renamed.token_quota = None;
    store.update_organization(&renamed).await.expect("update");
    assert_eq!(store.get_organization("o1").await.expect("get"), Some(renamed));
    not_found(store.update_organization(&org("nope", "nope")).await);
    not_found(store.delete_organization("nope").await);

    store.insert_grant(&grant("g1", "c1", "https://a")).await.expect("insert");
    store.insert_grant(&grant("g2", "c1", "https://b")).await.expect("insert");
    store.add_organization_grant("o1", "g2").await.expect("add");
    store.add_organization_grant("o1", "g1").await.expect("add");
    assert_eq!(conflict(store.add_organization_grant("o1", "g1").await), "grant_id");
    not_found(store.add_organization_grant("o1", "nope").await);
    not_found(store.add_organization_grant("nope", "g1").await);

    let listed = store.list_organization_grants("o1", ALL).await.expect("list");
    assert_eq!(grant_ids(&listed), ["g2", "g1"], "association order");
    assert_eq!(listed.total, 2);
    let second = store.list_organization_grants("o1", page(1, 1)).await.expect("list");
    assert_eq!((grant_ids(&second), second.total), (vec!["g1".to_owned()], 2));
    assert_eq!(store.list_organization_grants("o2", ALL).await.expect("list").total, 0);
    assert_eq!(store.list_organization_grants("nope", ALL).await.expect("list").total, 0);

    store.remove_organization_grant("o1", "g2").await.expect("remove");
    not_found(store.remove_organization_grant("o1", "g2").await);
    assert_eq!(grant_ids(&store.list_organization_grants("o1", ALL).await.expect("list")), ["g1"]);
}

pub(crate) async fn delete_client_cascades_to_grants_and_associations(h: &impl Harness) {
    let store = h.store();
    populate(store).await;
    store.delete_client("c1").await.expect("delete");
    assert_eq!(all_grant_ids(store).await, ["g3"]);
    assert_eq!(h.associations().await, pairs(&[("o1", "g3"), ("o2", "g3")]));
    assert!(store.get_client("c2").await.expect("get").is_some());
    assert_eq!(store.list_resource_servers(&[], ALL).await.expect("apis").total, 2);
}

pub(crate) async fn delete_resource_server_cascades_to_its_audience(h: &impl Harness) {
    let store = h.store();
    populate(store).await;
    store.delete_resource_server("rsA").await.expect("delete");
    assert_eq!(all_grant_ids(store).await, ["g2"]);
    assert_eq!(h.associations().await, pairs(&[("o2", "g2")]));
    assert_eq!(store.get_resource_server_by_identifier("A").await.expect("get"), None);
    assert_eq!(store.list_clients(ALL).await.expect("clients").total, 2);
}

pub(crate) async fn delete_grant_and_organization_remove_associations_only(h: &impl Harness) {
    let store = h.store();
    populate(store).await;
    store.delete_grant("g3").await.expect("delete grant");
    assert_eq!(all_grant_ids(store).await, ["g1", "g2"]);
    assert_eq!(h.associations().await, pairs(&[("o1", "g1"), ("o2", "g2")]));

    store.delete_organization("o1").await.expect("delete org");
    assert_eq!(h.associations().await, pairs(&[("o2", "g2")]));
    assert_eq!(all_grant_ids(store).await, ["g1", "g2"], "grants outlive their organizations");
    assert_eq!(store.list_organization_grants("o1", ALL).await.expect("list").total, 0);
}

pub(crate) async fn failed_delete_changes_nothing(h: &impl Harness) {
    let store = h.store();
    populate(store).await;
    not_found(store.delete_client("nope").await);
    not_found(store.delete_resource_server("nope").await);
    not_found(store.delete_grant("nope").await);
    not_found(store.delete_organization("nope").await);
    assert_eq!(all_grant_ids(store).await, ["g1", "g2", "g3"]);
    assert_eq!(h.associations().await.len(), 4);
}

pub(crate) async fn listings_paginate_in_creation_order(h: &impl Harness) {
    let store = h.store();
    // Ids deliberately out of alphabetical order: the listing follows insertion, not the key.
    for id in ["e", "b", "d", "a", "c"] {
        store.insert_client(&client(id)).await.expect("insert");
        store.insert_organization(&org(&format!("o{id}"), &format!("n{id}"))).await.expect("insert");
    }
    let client_ids = |l: &Listing<Client>| ids(l, |c| &c.client_id);
    let mut seen = Vec::new();
    for p in 0..3 {
        let listing = store.list_clients(page(p, 2)).await.expect("list");
        assert_eq!(listing.total, 5);
        seen.extend(client_ids(&listing));
    }
    assert_eq!(seen, ["e", "b", "d", "a", "c"]);
    let past_end = store.list_clients(page(7, 2)).await.expect("list");
    assert!(past_end.items.is_empty());
    assert_eq!(past_end.total, 5);
    let empty_page = store.list_clients(page(0, 0)).await.expect("list");
    assert!(empty_page.items.is_empty());
    assert_eq!(empty_page.total, 5);
    // Extreme values must not overflow.
    assert!(store.list_clients(page(u32::MAX, u32::MAX)).await.expect("list").items.is_empty());

    // A re-created entity goes to the end.
    store.delete_client("b").await.expect("delete");
    store.insert_client(&client("b")).await.expect("insert");
    assert_eq!(client_ids(&store.list_clients(ALL).await.expect("list")), ["e", "d", "a", "c", "b"]);

    let orgs = store.list_organizations(page(1, 3)).await.expect("list");
    assert_eq!(ids(&orgs, |o| &o.id), ["oa", "oc"]);
    assert_eq!(orgs.total, 5);
}

pub(crate) async fn list_grants_honours_each_filter(h: &impl Harness) {
    let store = h.store();
    let mut any = grant("g4", "c2", "B");
    any.allow_any_organization = true;
    for g in [grant("g1", "c1", "A"), grant("g2", "c1", "B"), grant("g3", "c2", "A"), any] {
        store.insert_grant(&g).await.expect("insert");
    }
    let list = |client_id: Option<&str>, audience: Option<&str>, allow_any: Option<bool>, p: Page| {
        let filter = GrantFilter {
            client_id: client_id.map(str::to_owned),
            audience: audience.map(str::to_owned),
            allow_any_organization: allow_any,
        };
        let store = store.clone();
        async move {
            let l = store.list_grants(&filter, p).await.expect("list");
            (grant_ids(&l), l.total)
        }
    };
    let v = |ids: &[&str], total: u64| (strings(ids), total);

    assert_eq!(list(None, None, None, ALL).await, v(&["g1", "g2", "g3", "g4"], 4));
    assert_eq!(list(Some("c1"), None, None, ALL).await, v(&["g1", "g2"], 2));
    assert_eq!(list(None, Some("A"), None, ALL).await, v(&["g1", "g3"], 2));
    assert_eq!(list(Some("c2"), Some("A"), None, ALL).await, v(&["g3"], 1));
    assert_eq!(list(None, None, Some(true), ALL).await, v(&["g4"], 1));
    assert_eq!(list(None, None, Some(false), ALL).await, v(&["g1", "g2", "g3"], 3));
    assert_eq!(list(Some("c2"), None, Some(false), ALL).await, v(&["g3"], 1));
    assert_eq!(list(Some("nobody"), None, None, ALL).await, v(&[], 0));
    assert_eq!(list(None, None, None, page(1, 3)).await, v(&["g4"], 4));
    assert_eq!(list(Some("c1"), None, None, page(1, 1)).await, v(&["g2"], 2));
}

pub(crate) async fn list_resource_servers_restricts_to_identifiers(h: &impl Harness) {
    let store = h.store();
    for (id, identifier) in [("r1", "https://x"), ("r2", "https://y"), ("r3", "urn:z'\"")] {
        store.insert_resource_server(&api(id, identifier)).await.expect("insert");
    }
    let rs_ids = |l: &Listing<ResourceServer>| ids(l, |r| &r.id);
    let all = store.list_resource_servers(&[], ALL).await.expect("list");
    assert_eq!((rs_ids(&all), all.total), (strings(&["r1", "r2", "r3"]), 3));

    let wanted = strings(&["urn:z'\"", "https://x", "https://missing"]);
    let some = store.list_resource_servers(&wanted, ALL).await.expect("list");
    assert_eq!((rs_ids(&some), some.total), (strings(&["r1", "r3"]), 2));
    let second = store.list_resource_servers(&wanted, page(1, 1)).await.expect("list");
    assert_eq!((rs_ids(&second), second.total), (strings(&["r3"]), 2));
    let none = store.list_resource_servers(&strings(&["https://missing"]), ALL).await.expect("list");
    assert_eq!(none.total, 0);
}

pub(crate) async fn load_catalog_contains_everything(h: &impl Harness) {
    let store = h.store();
    populate(store).await;
    let mut c1 = full_client("c1");
    c1.name = "full".to_owned();
    store.update_client(&c1).await.expect("update");
    let tenant = TenantSettings {
        default_audience: Some("A".to_owned()),
        default_token_quota: DefaultTokenQuota { clients: Some(quota(true, None, Some(1), None)), organizations: None },
        ..TenantSettings::default()
    };
    store.put_tenant_settings(&tenant).await.expect("tenant");

    let catalog = store.load_catalog().await.expect("catalog");
    assert_eq!(catalog.n_clients(), 2);
    assert_eq!(catalog.client("c1").map(|c| (**c).clone()), Some(c1));
    assert_eq!(catalog.client("c2").map(|c| (**c).clone()), Some(client("c2")));
    assert_eq!(catalog.resource_server_by_audience("B").map(|r| r.id.as_str()), Some("rsB"));
    assert_eq!(catalog.resource_server("rsA").map(|r| (**r).clone()), Some(api("rsA", "A")));
    for (id, c, a) in [("g1", "c1", "A"), ("g2", "c1", "B"), ("g3", "c2", "A")] {
        assert_eq!(catalog.grant(id).map(|g| (**g).clone()), Some(grant(id, c, a)));
        assert_eq!(catalog.grant_for(c, a).map(|g| g.id.as_str()), Some(id));
    }
    assert_eq!(catalog.organization_by_id_or_name("two").map(|o| o.id.as_str()), Some("o2"));
    assert_eq!(catalog.organization("o1").map(|o| (**o).clone()), Some(org("o1", "one")));
    for (o, g, present) in
        [("o1", "g1", true), ("o1", "g3", true), ("o2", "g2", true), ("o2", "g3", true), ("o1", "g2", false)]
    {
        assert_eq!(catalog.organization_has_grant(o, g), present, "{o}/{g}");
    }
    assert_eq!(catalog.tenant(), &tenant);
}

pub(crate) async fn empty_store_loads_an_empty_catalog(h: &impl Harness) {
    let catalog = h.store().load_catalog().await.expect("catalog");
    assert_eq!(catalog.n_clients(), 0);
    assert_eq!(catalog.tenant(), &TenantSettings::default());
}

pub(crate) async fn tenant_settings_default_then_put_and_replace(h: &impl Harness) {
    let store = h.store();
    assert_eq!(store.get_tenant_settings().await.expect("get"), TenantSettings::default());
    let t = TenantSettings {
        friendly_name: Some("Ration".to_owned()),
        support_email: Some("ops@example.com".to_owned()),
        support_url: Some("https://example.com/help".to_owned()),
        default_audience: Some("https://api".to_owned()),
        default_token_quota: DefaultTokenQuota {
            clients: Some(quota(true, Some(1), Some(2), Some(3))),
            organizations: Some(quota(false, None, None, Some(7))),
        },
    };
    store.put_tenant_settings(&t).await.expect("put");
    assert_eq!(store.get_tenant_settings().await.expect("get"), t);
    store.put_tenant_settings(&TenantSettings::default()).await.expect("put");
    assert_eq!(store.get_tenant_settings().await.expect("get"), TenantSettings::default());
}

pub(crate) async fn signing_keys_and_meta(h: &impl Harness) {
    let store = h.store();
    assert!(store.list_signing_keys().await.expect("list").is_empty());
    let key = |kid: &str, alg: SigningAlg, at: i64| StoredKey {
        kid: kid.to_owned(),
        alg,
        // Every byte value, NUL included: the sealed key is binary.
        sealed_private_key: (0..=255).chain([0, kid.len() as u8]).collect(),
        state: "current".to_owned(),
        created_at: UnixTime::from_millis(at),
        state_changed_at: UnixTime::from_millis(at),
    };
    // Inserted out of time order: listed oldest first.
    let keys = [
        key("k-rsa", SigningAlg::RS256, 100),
        key("k-ec", SigningAlg::ES256, 200),
        key("k-ed", SigningAlg::EdDSA, 300),
    ];
    for k in [&keys[1], &keys[0], &keys[2]] {
        store.insert_signing_key(k).await.expect("insert");
    }
    assert_eq!(conflict(store.insert_signing_key(&keys[0]).await), "kid");
    assert_eq!(store.list_signing_keys().await.expect("list"), keys.to_vec());
    // A rotation changes several states at once, or none.
    let at = UnixTime::from_millis(999);
    store
        .set_signing_key_states(&[("k-rsa".into(), "previous".into()), ("k-ec".into(), "revoked".into())], at)
        .await
        .expect("set states");
    let listed = store.list_signing_keys().await.expect("list");
    assert_eq!((listed[0].state.as_str(), listed[0].state_changed_at), ("previous", at));
    assert_eq!(listed[1].state, "revoked");
    let missing = store
        .set_signing_key_states(&[("k-ed".into(), "previous".into()), ("nope".into(), "revoked".into())], at)
        .await;
    assert!(matches!(missing, Err(crate::StoreError::NotFound)));
    assert_eq!(store.list_signing_keys().await.expect("list")[2].state, "current", "nothing partial");

    assert_eq!(store.get_meta("bootstrapped").await.expect("get"), None);
    store.set_meta("bootstrapped", "1").await.expect("set");
    store.set_meta("other", "x").await.expect("set");
    store.set_meta("bootstrapped", "2").await.expect("overwrite");
    assert_eq!(store.get_meta("bootstrapped").await.expect("get").as_deref(), Some("2"));
    assert_eq!(store.get_meta("other").await.expect("get").as_deref(), Some("x"));
}

pub(crate) async fn concurrent_writers_all_succeed(h: &impl Harness) {
    concurrent_writers_on(h.store()).await;
}

/// The body of [`concurrent_writers_all_succeed`], also run by `sqlite/tests.rs` on a file-backed
/// pool (several connections contending for SQLite's one writer, unlike the in-memory harness).
pub(crate) async fn concurrent_writers_on<S: ConfigStore + Clone>(store: &S) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i}");
            store.insert_client(&client(&id)).await?;
            store.insert_grant(&grant(&format!("g{i}"), &id, "A")).await?;
            if i % 2 == 0 { store.delete_client(&id).await } else { Ok(()) }
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("write");
    }
    assert_eq!(store.list_clients(ALL).await.expect("list").total, 20);
    assert_eq!(store.list_grants(&GrantFilter::default(), ALL).await.expect("list").total, 20);
}

pub(crate) async fn events_append_idempotently_filter_page_and_prune(h: &impl Harness) {
    let store = h.store();
    let ev = |n: i64, t: &str, c: Option<&str>| StoredEvent {
        log_id: format!("{n:020}"),
        date: UnixTime::from_millis(n * 1000),
        event_type: t.into(),
        client_id: c.map(Into::into),
        json: format!("{{\"n\":{n}}}"),
    };
    let batch: Vec<_> = (1..=10)
        .map(|n| ev(n, if n % 2 == 0 { "seccft" } else { "feccft" }, Some(if n <= 5 { "a" } else { "b" })))
        .collect();
    store.append_events(&[]).await.expect("empty batch");
    store.append_events(&batch).await.expect("append");
    store.append_events(&batch[..3]).await.expect("replay"); // skipped
    let base = event_query();
    assert_eq!(store.list_events(&base).await.expect("list").total, 10);
    let q = EventQuery { types: vec!["seccft".into()], client_id: Some("a".into()), ..base.clone() };
    let l = store.list_events(&q).await.expect("list");
    assert_eq!(event_ids(&l), vec![format!("{:020}", 2), format!("{:020}", 4)]);
    let q = EventQuery { types: vec!["seccft".into(), "feccft".into()], ..base.clone() };
    assert_eq!(store.list_events(&q).await.expect("list").total, 10);
    let q = EventQuery { newest_first: true, page: Page { page: 1, per_page: 3 }, ..base.clone() };
    let l = store.list_events(&q).await.expect("list");
    assert_eq!(l.items.first().map(|e| e.json.clone()), Some("{\"n\":7}".into()));
    assert_eq!(l.total, 10);
    let q = EventQuery { after_log_id: Some(format!("{:020}", 8)), newest_first: true, ..base.clone() };
    let l = store.list_events(&q).await.expect("list");
    assert_eq!(event_ids(&l), vec![format!("{:020}", 9), format!("{:020}", 10)], "checkpoint is ascending");
    assert_eq!(l.total, 2);
    let q =
        EventQuery { after_log_id: Some(format!("{:020}", 2)), page: Page { page: 5, per_page: 2 }, ..base.clone() };
    let l = store.list_events(&q).await.expect("list");
    assert_eq!(event_ids(&l), vec![format!("{:020}", 3), format!("{:020}", 4)], "checkpoint ignores the page");
    assert_eq!(l.total, 8);
    // Without the total: the same page, nothing counted.
    let q = EventQuery { with_total: false, ..q };
    let l = store.list_events(&q).await.expect("list");
    assert_eq!(event_ids(&l), vec![format!("{:020}", 3), format!("{:020}", 4)], "a page without its total");
    assert_eq!(l.total, 0);
    let q =
        EventQuery { date_from: Some(UnixTime::from_secs(3)), date_to: Some(UnixTime::from_secs(5)), ..base.clone() };
    assert_eq!(store.list_events(&q).await.expect("list").total, 2, "from inclusive, to exclusive");
    let q = EventQuery { client_id: Some("nobody".into()), ..base.clone() };
    assert_eq!(store.list_events(&q).await.expect("list").total, 0);
    let e9 = store.get_event(&format!("{:020}", 9)).await.expect("get");
    assert_eq!(e9, Some(ev(9, "feccft", Some("b"))));
    assert_eq!(store.get_event("nope").await.expect("get"), None);
    assert_eq!(store.prune_events(UnixTime::from_secs(4)).await.expect("prune"), 3);
    assert_eq!(store.list_events(&base).await.expect("list").total, 7);
    assert_eq!(store.prune_events(UnixTime::from_secs(4)).await.expect("prune"), 0);
}

pub(crate) async fn events_in_large_batches_skip_duplicates(h: &impl Harness) {
    let store = h.store();
    assert_eq!(store.last_log_id().await.expect("last"), None);
    let ev = |n: usize| StoredEvent {
        log_id: format!("{n:06}"),
        date: UnixTime::from_millis(n as i64),
        event_type: if n.is_multiple_of(3) { "fapi".into() } else { "seccft".into() },
        client_id: n.is_multiple_of(2).then(|| format!("c{}", n % 7)),
        json: format!("{{\"n\":{n}}}"),
    };
    // More than one statement's worth, with a duplicate inside the batch: the first copy wins.
    let mut batch: Vec<StoredEvent> = (1..=2345).map(ev).collect();
    batch.push(StoredEvent { json: "{\"dup\":true}".into(), ..ev(1200) });
    store.append_events(&batch).await.expect("append");
    // A replay overlapping new events stores only the new ones.
    store.append_events(&(2000..=2500).map(ev).collect::<Vec<_>>()).await.expect("append");
    let all = store.list_events(&event_query()).await.expect("list");
    assert_eq!(all.total, 2500);
    assert_eq!(store.get_event("001200").await.expect("get"), Some(ev(1200)));
    assert_eq!(store.get_event("000002").await.expect("get").and_then(|e| e.client_id), Some("c2".into()));
    assert_eq!(store.get_event("000001").await.expect("get").and_then(|e| e.client_id), None);
    assert_eq!(store.last_log_id().await.expect("last"), Some("002500".into()));
    let q = EventQuery { categories: vec!["management.fail".into()], ..event_query() };
    assert_eq!(store.list_events(&q).await.expect("list").total, 833);
}

/// What the event writer hands over packed (`crate::packed`) reads back as JSON, from a listing
/// and by id, with its `log_id` and `date` from the row, and a plain document beside it is
/// untouched.
pub(crate) async fn packed_events_read_back_as_json(h: &impl Harness) {
    use crate::packed::Member;
    let store = h.store();
    let code = |m: Member| char::from(m.code());
    let packed = format!(
        "{{{}{}{}\"https://api/\"{}\"c1\"{}{}{}\"j\\u0007\"}}{}{}}}",
        code(Member::LogId),
        code(Member::EventSchema),
        code(Member::Audience),
        code(Member::ClientId),
        code(Member::Date),
        code(Member::SeccftDescription),
        code(Member::AccessTokenJti),
        code(Member::SeccftType),
        code(Member::NoUserName),
    );
    let json = r#"{"log_id":"p1","$event_schema":{"version":"1.0.0"},"audience":"https://api/","client_id":"c1","date":"2026-12-06T00:00:01.234Z","description":"Client Credentials for Access Token","details":{"access_token_jti":"j\u0007"},"type":"seccft","user_name":""}"#;
    let ev = |log_id: &str, json: &str| StoredEvent {
        log_id: log_id.into(),
        date: UnixTime::from_millis(1_796_515_201_234),
        event_type: "seccft".into(),
        client_id: Some("c1".into()),
        json: json.into(),
    };
    store.append_events(&[ev("p1", &packed), ev("p2", r#"{"log_id":"p2"}"#)]).await.expect("append");
    assert_eq!(store.get_event("p1").await.expect("get"), Some(ev("p1", json)));
    let listed = store.list_events(&EventQuery { client_id: Some("c1".into()), ..event_query() }).await.expect("list");
    let docs: Vec<&str> = listed.items.iter().map(|e| e.json.as_str()).collect();
    assert_eq!(docs, vec![json, r#"{"log_id":"p2"}"#]);
    let value: serde_json::Value = serde_json::from_str(docs[0]).expect("JSON");
    assert_eq!(value["details"]["access_token_jti"], "j\u{7}");
}

pub(crate) async fn event_ids_order_bytewise(h: &impl Harness) {
    let store = h.store();
    // Byte order differs from a linguistic collation's (which ignores case and punctuation).
    let issued = ["B", "Z", "_", "a", "a-c", "aB", "ab", "b"];
    let events: Vec<StoredEvent> = issued
        .iter()
        .rev()
        .map(|id| StoredEvent {
            log_id: (*id).to_owned(),
            date: UnixTime::from_millis(1),
            event_type: "seccft".into(),
            client_id: None,
            json: "{}".into(),
        })
        .collect();
    store.append_events(&events).await.expect("append");
    let ascending = store.list_events(&event_query()).await.expect("list");
    assert_eq!(event_ids(&ascending), strings(&issued));
    let newest = store.list_events(&EventQuery { newest_first: true, ..event_query() }).await.expect("list");
    assert_eq!(event_ids(&newest), issued.iter().rev().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let after = EventQuery { after_log_id: Some("a".into()), ..event_query() };
    assert_eq!(event_ids(&store.list_events(&after).await.expect("list")), strings(&["a-c", "aB", "ab", "b"]));
    assert_eq!(store.last_log_id().await.expect("last"), Some("b".into()));
}

fn http_stream(id: &str) -> LogStream {
    LogStream {
        id: id.into(),
        name: "audit".into(),
        sink: Sink::Http(HttpSink {
            endpoint: "http://127.0.0.1:9/x".into(),
            authorization: Some("Bearer s".into()),
            content_type: "application/json".into(),
            format: ContentFormat::JsonLines,
            custom_headers: vec![("X-A".into(), "b".into())],
        }),
        status: StreamStatus::Active,
        filters: vec!["auth.token_exchange.success".into()],
        is_priority: false,
        created_at: UnixTime::from_millis(1),
        updated_at: UnixTime::from_millis(2),
    }
}

fn position(cursor: &str, delivered: Option<&str>) -> StreamPosition {
    StreamPosition { cursor: cursor.into(), last_delivered: delivered.map(Into::into) }
}

pub(crate) async fn log_streams_round_trip_keep_cursor_and_categories_filter(h: &impl Harness) {
    let store = h.store();
    let stream = http_stream("lst_1");
    store.insert_log_stream(&stream, "0005").await.expect("insert");
    assert_eq!(store.get_log_stream("lst_1").await.expect("get"), Some((stream.clone(), position("0005", None))));
    store.set_log_stream_cursor("lst_1", "0009").await.expect("cursor");
    let mut paused = stream.clone();
    paused.status = StreamStatus::Paused;
    paused.sink = Sink::File { path: "/tmp/x.jsonl".into() };
    store.update_log_stream(&paused).await.expect("update");
    assert_eq!(
        store.list_log_streams().await.expect("list"),
        vec![(paused, position("0009", Some("0009")))],
        "update keeps the cursor"
    );
    assert!(matches!(store.set_log_stream_cursor("nope", "1").await, Err(StoreError::NotFound)));
    store.delete_log_stream("lst_1").await.expect("delete");
    assert!(matches!(store.delete_log_stream("lst_1").await, Err(StoreError::NotFound)));

    let ev = |n: i64, t: &str| StoredEvent {
        log_id: format!("{n:04}"),
        date: UnixTime::from_millis(n),
        event_type: t.into(),
        client_id: None,
        json: "{}".into(),
    };
    let events: Vec<_> = (1..=250).map(|n| ev(n, if n % 5 == 0 { "sapi" } else { "seccft" })).collect();
    store.append_events(&events).await.expect("append");
    assert_eq!(store.last_log_id().await.expect("last"), Some("0250".into()));
    let q = EventQuery {
        categories: vec!["management.success".into()],
        after_log_id: Some("0100".into()),
        ..event_query()
    };
    let l = store.list_events(&q).await.expect("list");
    assert_eq!(l.total, 30);
    assert_eq!(l.items.first().map(|e| e.log_id.clone()), Some("0105".into()));
}

pub(crate) async fn log_stream_conflicts_and_missing_streams(h: &impl Harness) {
    let store = h.store();
    assert_eq!(store.get_log_stream("lst_1").await.expect("get"), None);
    assert!(store.list_log_streams().await.expect("list").is_empty());
    not_found(store.update_log_stream(&http_stream("lst_1")).await);
    store.insert_log_stream(&http_stream("lst_2"), "").await.expect("insert");
    store.insert_log_stream(&http_stream("lst_1"), "0001").await.expect("insert");
    assert_eq!(conflict(store.insert_log_stream(&http_stream("lst_1"), "").await), "id");
    let listed = store.list_log_streams().await.expect("list");
    assert_eq!(
        listed.iter().map(|(s, p)| (s.id.clone(), p.clone())).collect::<Vec<_>>(),
        vec![("lst_2".to_owned(), position("", None)), ("lst_1".to_owned(), position("0001", None))],
        "creation order"
    );
}

pub(crate) async fn actions_versions_and_bindings(h: &impl Harness) {
    let store = h.store();
    let t = UnixTime::from_millis(5);
    let action = Action {
        id: "act_1".into(),
        name: "deny-eu".into(),
        code: "exports.onExecuteCredentialsExchange = async () => {}".into(),
        runtime: "node22".into(),
        supported_triggers: vec![("credentials-exchange".into(), "v2".into())],
        secrets: vec![ActionSecret { name: "K".into(), value: "sealed".into(), updated_at: t }],
        deployed_version: None,
        all_changes_deployed: false,
        created_at: t,
        updated_at: t,
    };
    assert_eq!(store.get_action("act_1").await.expect("get"), None);
    store.insert_action(&action).await.expect("insert");
    let dup = Action { id: "act_2".into(), ..action.clone() };
    assert_eq!(conflict(store.insert_action(&dup).await), "name");
    assert_eq!(store.get_action("act_1").await.expect("get"), Some(action.clone()));
    not_found(store.update_action(&dup).await);
    let v = |n: u32| ActionVersion {
        id: format!("ver_{n}"),
        action_id: "act_1".into(),
        number: n,
        code: format!("// v{n}"),
        runtime: "node22".into(),
        secrets: action.secrets.clone(),
        created_at: t,
    };
    store.insert_action_version(&v(1)).await.expect("insert");
    store.insert_action_version(&v(2)).await.expect("insert");
    assert!(matches!(
        store.insert_action_version(&ActionVersion { id: "ver_x".into(), ..v(2) }).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_action_version("act_1", 1).await.expect("get"), Some(v(1)));
    assert_eq!(store.get_action_version("act_1", 3).await.expect("get"), None);
    assert_eq!(
        store.list_action_versions("act_1").await.expect("list").iter().map(|v| v.number).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let mut deployed = action.clone();
    deployed.deployed_version = Some(2);
    store.update_action(&deployed).await.expect("update");
    assert_eq!(store.list_actions(Page { page: 0, per_page: 10 }).await.expect("list").items, vec![deployed]);
    let b =
        |id: &str| ActionBinding { id: id.into(), action_id: "act_1".into(), display_name: id.into(), created_at: t };
    store.set_action_bindings(&[b("b2"), b("b1")]).await.expect("bind");
    assert_eq!(store.list_action_bindings().await.expect("list"), vec![b("b2"), b("b1")], "order kept");
    store.set_action_bindings(&[b("b1")]).await.expect("bind");
    assert_eq!(store.list_action_bindings().await.expect("list"), vec![b("b1")], "replaced");
    store.set_action_bindings(&[b("b3"), b("b2")]).await.expect("bind");
    store.delete_action("act_1").await.expect("delete");
    assert!(store.list_action_bindings().await.expect("list").is_empty());
    assert!(store.list_action_versions("act_1").await.expect("list").is_empty());
    not_found(store.delete_action("act_1").await);
}

pub(crate) async fn concurrent_binding_replacements_do_not_mix(h: &impl Harness) {
    let store = h.store();
    let t = UnixTime::from_millis(1);
    let list = move |i: usize| -> Vec<ActionBinding> {
        (0..3)
            .map(|j| ActionBinding {
                id: format!("b{i}_{j}"),
                action_id: format!("act_{i}"),
                display_name: format!("{i}/{j}"),
                created_at: t,
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.set_action_bindings(&list(i)).await }));
    }
    for task in tasks {
        task.await.expect("join").expect("set");
    }
    let last = store.list_action_bindings().await.expect("list");
    assert!((0..12).any(|i| last == list(i)), "one replacement wins whole: {last:?}");
}

/// PostgreSQL's text cannot hold NUL; SQLite's can. A key with a NUL names nothing stored, and
/// both backends answer so (absent, `NotFound`, empty) rather than with an error.
pub(crate) async fn nul_characters_in_keys_find_nothing(h: &impl Harness) {
    let store = h.store();
    populate(store).await;
    store.insert_log_stream(&http_stream("lst_1"), "").await.expect("stream");
    store
        .append_events(&[StoredEvent {
            log_id: "0001".into(),
            date: UnixTime::from_millis(1),
            event_type: "seccft".into(),
            client_id: Some("c1".into()),
            json: "{}".into(),
        }])
        .await
        .expect("event");
    let k = "c1\0x";
    assert_eq!(store.get_client(k).await.expect("get"), None);
    assert_eq!(store.get_resource_server(k).await.expect("get"), None);
    assert_eq!(store.get_resource_server_by_identifier(k).await.expect("get"), None);
    assert_eq!(store.get_grant(k).await.expect("get"), None);
    assert_eq!(store.get_organization(k).await.expect("get"), None);
    assert_eq!(store.get_event(k).await.expect("get"), None);
    assert_eq!(store.get_log_stream(k).await.expect("get"), None);
    assert_eq!(store.get_action(k).await.expect("get"), None);
    assert_eq!(store.get_action_version(k, 1).await.expect("get"), None);
    assert!(store.list_action_versions(k).await.expect("list").is_empty());
    assert_eq!(store.get_meta(k).await.expect("get"), None);
    not_found(store.update_client(&client(k)).await);
    not_found(store.update_resource_server(&api(k, "https://nul")).await);
    not_found(store.update_grant(&grant(k, "c1", "Z")).await);
    not_found(store.update_organization(&org(k, "nul")).await);
    not_found(store.update_log_stream(&http_stream(k)).await);
    not_found(store.delete_client(k).await);
    not_found(store.delete_resource_server(k).await);
    not_found(store.delete_grant(k).await);
    not_found(store.delete_organization(k).await);
    not_found(store.delete_log_stream(k).await);
    not_found(store.delete_action(k).await);
    not_found(store.set_log_stream_cursor(k, "0001").await);
    not_found(store.add_organization_grant("o1", k).await);
    not_found(store.add_organization_grant(k, "g1").await);
    not_found(store.remove_organization_grant("o1", k).await);
    assert_eq!(store.list_organization_grants(k, ALL).await.expect("list").total, 0);
    let by_client = GrantFilter { client_id: Some(k.into()), ..GrantFilter::default() };
    assert_eq!(store.list_grants(&by_client, ALL).await.expect("list").total, 0);
    let by_audience = GrantFilter { audience: Some("A\0".into()), ..GrantFilter::default() };
    assert_eq!(store.list_grants(&by_audience, ALL).await.expect("list").total, 0);
    assert_eq!(store.list_resource_servers(&strings(&["A\0"]), ALL).await.expect("list").total, 0);
    let some = store.list_resource_servers(&strings(&["A\0", "B"]), ALL).await.expect("list");
    assert_eq!(ids(&some, |r| &r.id), ["rsB"]);
    for q in [
        EventQuery { types: vec!["seccft\0".into()], ..event_query() },
        EventQuery { categories: vec!["x\0".into()], ..event_query() },
        EventQuery { client_id: Some(k.into()), ..event_query() },
    ] {
        assert_eq!(store.list_events(&q).await.expect("list").total, 0, "{q:?}");
    }
    let q = EventQuery { types: vec!["seccft\0".into(), "seccft".into()], ..event_query() };
    assert_eq!(store.list_events(&q).await.expect("list").total, 1);
    // Bytewise, "0001" > "000\0…" and "0001" < "0001\0".
    let after = |l: &str| EventQuery { after_log_id: Some(l.into()), ..event_query() };
    assert_eq!(store.list_events(&after("000\0z")).await.expect("list").total, 1);
    assert_eq!(store.list_events(&after("0001\0")).await.expect("list").total, 0);
}

pub(crate) async fn client_credentials_and_single_use_keys(h: &impl Harness) {
    let store = h.store();
    store.insert_client(&client("c1")).await.expect("client");
    let t = |ms: i64| UnixTime::from_millis(ms);
    let cred = |id: &str| ration_domain::ClientCredential {
        id: id.to_owned(),
        client_id: "c1".to_owned(),
        name: "laptop".to_owned(),
        kid: format!("kid-{id}"),
        alg: "RS256".to_owned(),
        jwk: r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#.to_owned(),
        expires_at: Some(t(9_000)),
        created_at: t(1),
        updated_at: t(1),
    };
    store.insert_credential(&cred("cred_a")).await.expect("insert");
    store.insert_credential(&cred("cred_b")).await.expect("insert");
    assert_eq!(conflict(store.insert_credential(&cred("cred_a")).await), "id");
    let mut changed = cred("cred_a");
    changed.expires_at = None;
    store.update_credential(&changed).await.expect("update");
    assert_eq!(store.list_credentials("c1").await.expect("list"), vec![changed.clone(), cred("cred_b")]);
    let catalog = store.load_catalog().await.expect("catalog");
    assert_eq!(catalog.credentials("c1").len(), 2);
    assert!(matches!(store.delete_credential("other", "cred_b").await, Err(StoreError::NotFound)));
    store.delete_credential("c1", "cred_b").await.expect("delete");
    store.delete_client("c1").await.expect("delete client");
    assert!(store.list_credentials("c1").await.expect("list").is_empty(), "credentials go with their client");

    assert!(store.claim_once("jti:c1:x", t(5_000), t(1_000)).await.expect("claim"));
    assert!(!store.claim_once("jti:c1:x", t(6_000), t(2_000)).await.expect("claim"), "a replay");
    assert!(store.claim_once("jti:c1:x", t(9_000), t(5_000)).await.expect("claim"), "expired: usable again");
    assert!(store.claim_once("jti:c1:y", t(3_000), t(2_000)).await.expect("claim"));
    assert_eq!(store.prune_once(t(4_000)).await.expect("prune"), 1);
}
