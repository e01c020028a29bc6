use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ration_domain::{
    DefaultOrganization, DefaultTokenQuota, OrganizationUsage, QuotaLimits, ResourceServerScope, SigningAlg,
    TokenEndpointAuthMethod, TokenQuota,
};

use super::*;

/// A database file in the temp directory, removed (with its WAL files) when dropped.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new() -> TempDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name =
            format!("ration-store-test-{}-{}-{}.db", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), nanos);
        TempDb { path: std::env::temp_dir().join(name) }
    }

    async fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path, ration_domain::Durability::Fsync).await.expect("open store")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn quota(enforce: bool, m: Option<u32>, h: Option<u32>, d: Option<u32>) -> TokenQuota {
    TokenQuota { enforce, limits: QuotaLimits { per_minute: m, per_hour: h, per_day: d } }
}

fn client(id: &str) -> Client {
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

fn full_client(id: &str) -> Client {
    Client {
        description: Some("with \"quotes\" and ünïcode".to_owned()),
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

fn api(id: &str, identifier: &str) -> ResourceServer {
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

fn grant(id: &str, client_id: &str, audience: &str) -> ClientGrant {
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

fn org(id: &str, name: &str) -> Organization {
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

const ALL: Page = Page { page: 0, per_page: 1000 };

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

#[test]
fn every_migration_file_is_registered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("migrations dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    let registered: Vec<String> =
        MIGRATIONS.iter().map(|(version, name, _)| format!("{version:04}_{name}.sql")).collect();
    assert_eq!(files, registered);
}

#[test]
fn conflict_names_follow_the_trait_docs() {
    assert_eq!(conflict_field("UNIQUE constraint failed: resource_servers.identifier"), "identifier");
    assert_eq!(
        conflict_field("UNIQUE constraint failed: client_grants.client_id, client_grants.audience"),
        "client_id/audience"
    );
    assert_eq!(
        conflict_field(
            "UNIQUE constraint failed: organization_client_grants.organization_id, organization_client_grants.grant_id"
        ),
        "grant_id"
    );
}

#[tokio::test]
async fn open_sets_durability_pragmas() {
    let db = TempDb::new();
    let store = db.open().await;
    let mut conn = store.pool.acquire().await.expect("connection");
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.expect("pragma");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.expect("pragma");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.expect("pragma");
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await.expect("pragma");
    assert_eq!(journal, "wal");
    assert_eq!(synchronous, 2, "FULL");
    assert_eq!(foreign_keys, 1);
    assert_eq!(busy, 5000);
}

#[tokio::test]
async fn client_round_trip_update_and_delete() {
    let store = SqliteStore::open_in_memory().await.expect("open");
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

#[tokio::test]
async fn resource_server_round_trip_and_conflicts() {
    let store = SqliteStore::open_in_memory().await.expect("open");
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

#[tokio::test]
async fn grant_round_trip_and_conflicts() {
    let store = SqliteStore::open_in_memory().await.expect("open");
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

#[tokio::test]
async fn organization_round_trip_and_associations() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    let mut o = org("o1", "acme");
    o.display_name = Some("Acme Inc.".to_owned());
    o.token_quota = Some(quota(true, Some(5), Some(50), Some(500)));
    store.insert_organization(&o).await.expect("insert");
    assert_eq!(store.get_organization("o1").await.expect("get"), Some(o.clone()));
    assert_eq!(store.get_organization("nope").await.expect("get"), None);
    assert_eq!(conflict(store.insert_organization(&org("o2", "acme")).await), "name");

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

    store.remove_organization_grant("o1", "g2").await.expect("remove");
    not_found(store.remove_organization_grant("o1", "g2").await);
    assert_eq!(grant_ids(&store.list_organization_grants("o1", ALL).await.expect("list")), ["g1"]);
}

/// Two clients, two APIs, three grants, two organizations with associations.
async fn populated() -> SqliteStore {
    let store = SqliteStore::open_in_memory().await.expect("open");
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
    store
}

async fn associations(store: &SqliteStore) -> Vec<(String, String)> {
    sqlx::query_as("SELECT organization_id, grant_id FROM organization_client_grants ORDER BY seq")
        .fetch_all(&store.pool)
        .await
        .expect("associations")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

async fn all_grant_ids(store: &SqliteStore) -> Vec<String> {
    grant_ids(&store.list_grants(&GrantFilter::default(), ALL).await.expect("grants"))
}

#[tokio::test]
async fn delete_client_cascades_to_grants_and_associations() {
    let store = populated().await;
    store.delete_client("c1").await.expect("delete");
    assert_eq!(all_grant_ids(&store).await, ["g3"]);
    assert_eq!(associations(&store).await, pairs(&[("o1", "g3"), ("o2", "g3")]));
    assert!(store.get_client("c2").await.expect("get").is_some());
    assert_eq!(store.list_resource_servers(&[], ALL).await.expect("apis").total, 2);
}

#[tokio::test]
async fn delete_resource_server_cascades_to_its_audience() {
    let store = populated().await;
    store.delete_resource_server("rsA").await.expect("delete");
    assert_eq!(all_grant_ids(&store).await, ["g2"]);
    assert_eq!(associations(&store).await, pairs(&[("o2", "g2")]));
    assert_eq!(store.get_resource_server_by_identifier("A").await.expect("get"), None);
    assert_eq!(store.list_clients(ALL).await.expect("clients").total, 2);
}

#[tokio::test]
async fn delete_grant_and_organization_remove_associations_only() {
    let store = populated().await;
    store.delete_grant("g3").await.expect("delete grant");
    assert_eq!(all_grant_ids(&store).await, ["g1", "g2"]);
    assert_eq!(associations(&store).await, pairs(&[("o1", "g1"), ("o2", "g2")]));

    store.delete_organization("o1").await.expect("delete org");
    assert_eq!(associations(&store).await, pairs(&[("o2", "g2")]));
    assert_eq!(all_grant_ids(&store).await, ["g1", "g2"], "grants outlive their organizations");
    assert_eq!(store.list_organization_grants("o1", ALL).await.expect("list").total, 0);
}

#[tokio::test]
async fn failed_delete_changes_nothing() {
    let store = populated().await;
    not_found(store.delete_client("nope").await);
    not_found(store.delete_resource_server("nope").await);
    not_found(store.delete_grant("nope").await);
    not_found(store.delete_organization("nope").await);
    assert_eq!(all_grant_ids(&store).await, ["g1", "g2", "g3"]);
    assert_eq!(associations(&store).await.len(), 4);
}

#[tokio::test]
async fn listings_paginate_in_creation_order() {
    let store = SqliteStore::open_in_memory().await.expect("open");
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

#[tokio::test]
async fn list_grants_honours_each_filter() {
    let store = SqliteStore::open_in_memory().await.expect("open");
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
    let v = |ids: &[&str], total: u64| (ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), total);

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

#[tokio::test]
async fn list_resource_servers_restricts_to_identifiers() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    for (id, identifier) in [("r1", "https://x"), ("r2", "https://y"), ("r3", "urn:z'\"")] {
        store.insert_resource_server(&api(id, identifier)).await.expect("insert");
    }
    let rs_ids = |l: &Listing<ResourceServer>| ids(l, |r| &r.id);
    let all = store.list_resource_servers(&[], ALL).await.expect("list");
    assert_eq!((rs_ids(&all), all.total), (vec!["r1".into(), "r2".into(), "r3".into()], 3));

    let wanted = vec!["urn:z'\"".to_owned(), "https://x".to_owned(), "https://missing".to_owned()];
    let some = store.list_resource_servers(&wanted, ALL).await.expect("list");
    assert_eq!((rs_ids(&some), some.total), (vec!["r1".into(), "r3".into()], 2));
    let second = store.list_resource_servers(&wanted, page(1, 1)).await.expect("list");
    assert_eq!((rs_ids(&second), second.total), (vec!["r3".into()], 2));
    let none = store.list_resource_servers(&["https://missing".to_owned()], ALL).await.expect("list");
    assert_eq!(none.total, 0);
}

#[tokio::test]
async fn load_catalog_contains_everything() {
    let store = populated().await;
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

#[tokio::test]
async fn empty_store_loads_an_empty_catalog() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    let catalog = store.load_catalog().await.expect("catalog");
    assert_eq!(catalog.n_clients(), 0);
    assert_eq!(catalog.tenant(), &TenantSettings::default());
}

#[tokio::test]
async fn tenant_settings_default_then_put_and_replace() {
    let store = SqliteStore::open_in_memory().await.expect("open");
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

#[tokio::test]
async fn signing_keys_and_meta() {
    let store = SqliteStore::open_in_memory().await.expect("open");
    assert!(store.list_signing_keys().await.expect("list").is_empty());
    let key = |kid: &str, alg: SigningAlg, at: i64| StoredKey {
        kid: kid.to_owned(),
        alg,
        sealed_private_key: vec![0, 1, 2, 255, 0, kid.len() as u8],
        state: "current".to_owned(),
        created_at: UnixTime::from_millis(at),
        state_changed_at: UnixTime::from_millis(at),
    };
    let keys = [
        key("k-rsa", SigningAlg::RS256, 100),
        key("k-ec", SigningAlg::ES256, 200),
        key("k-ed", SigningAlg::EdDSA, 300),
    ];
    for k in &keys {
        store.insert_signing_key(k).await.expect("insert");
    }
    assert_eq!(conflict(store.insert_signing_key(&keys[0]).await), "kid");
    assert_eq!(store.list_signing_keys().await.expect("list"), keys.to_vec());

    assert_eq!(store.get_meta("bootstrapped").await.expect("get"), None);
    store.set_meta("bootstrapped", "1").await.expect("set");
    store.set_meta("other", "x").await.expect("set");
    store.set_meta("bootstrapped", "2").await.expect("overwrite");
    assert_eq!(store.get_meta("bootstrapped").await.expect("get").as_deref(), Some("2"));
    assert_eq!(store.get_meta("other").await.expect("get").as_deref(), Some("x"));
}

#[tokio::test]
async fn reopening_the_file_keeps_the_data() {
    let db = TempDb::new();
    {
        let store = db.open().await;
        store.insert_client(&full_client("c1")).await.expect("insert");
        store.insert_resource_server(&api("rs1", "A")).await.expect("insert");
        store.insert_grant(&grant("g1", "c1", "A")).await.expect("insert");
        store.insert_organization(&org("o1", "one")).await.expect("insert");
        store.add_organization_grant("o1", "g1").await.expect("assoc");
        store.set_meta("k", "v").await.expect("meta");
        store.pool.close().await;
    }
    // Migrations run again on open and must be a no-op.
    let store = db.open().await;
    assert_eq!(store.get_client("c1").await.expect("get"), Some(full_client("c1")));
    assert_eq!(store.get_grant("g1").await.expect("get"), Some(grant("g1", "c1", "A")));
    assert_eq!(store.get_meta("k").await.expect("get").as_deref(), Some("v"));
    let catalog = store.load_catalog().await.expect("catalog");
    assert!(catalog.organization_has_grant("o1", "g1"));
    assert!(catalog.resource_server_by_audience("A").is_some());
}

#[tokio::test]
async fn in_memory_stores_are_private() {
    let a = SqliteStore::open_in_memory().await.expect("open");
    let b = SqliteStore::open_in_memory().await.expect("open");
    a.insert_client(&client("c1")).await.expect("insert");
    assert_eq!(b.get_client("c1").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_succeed() {
    let db = TempDb::new();
    let store = db.open().await;
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

#[tokio::test]
async fn events_append_idempotently_filter_page_and_prune() {
    let store = SqliteStore::open_in_memory().await.unwrap();
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
    store.append_events(&batch).await.unwrap();
    store.append_events(&batch[..3]).await.unwrap(); // replay: skipped
    let base = EventQuery {
        types: vec![],
        categories: vec![],
        client_id: None,
        date_from: None,
        date_to: None,
        after_log_id: None,
        newest_first: false,
        page: Page { page: 0, per_page: 100 },
    };
    assert_eq!(store.list_events(&base).await.unwrap().total, 10);
    let q = EventQuery { types: vec!["seccft".into()], client_id: Some("a".into()), ..base.clone() };
    let l = store.list_events(&q).await.unwrap();
    assert_eq!(
        l.items.iter().map(|e| e.log_id.clone()).collect::<Vec<_>>(),
        vec![format!("{:020}", 2), format!("{:020}", 4)]
    );
    let q = EventQuery { newest_first: true, page: Page { page: 1, per_page: 3 }, ..base.clone() };
    let l = store.list_events(&q).await.unwrap();
    assert_eq!(l.items.first().map(|e| e.json.clone()), Some("{\"n\":7}".into()));
    let q = EventQuery { after_log_id: Some(format!("{:020}", 8)), newest_first: true, ..base.clone() };
    assert_eq!(store.list_events(&q).await.unwrap().items.len(), 2, "checkpoint is ascending after the id");
    let q =
        EventQuery { date_from: Some(UnixTime::from_secs(3)), date_to: Some(UnixTime::from_secs(5)), ..base.clone() };
    assert_eq!(store.list_events(&q).await.unwrap().total, 2);
    assert_eq!(store.get_event(&format!("{:020}", 9)).await.unwrap().map(|e| e.event_type), Some("feccft".into()));
    assert_eq!(store.prune_events(UnixTime::from_secs(4)).await.unwrap(), 3);
    assert_eq!(store.list_events(&base).await.unwrap().total, 7);
}

#[tokio::test]
async fn log_streams_round_trip_keep_cursor_and_categories_filter() {
    use ration_domain::{ContentFormat, HttpSink, LogStream, Sink, StreamStatus};
    let store = SqliteStore::open_in_memory().await.unwrap();
    let stream = LogStream {
        id: "lst_1".into(),
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
    };
    store.insert_log_stream(&stream, "0005").await.unwrap();
    let pos = |c: &str, d: Option<&str>| StreamPosition { cursor: c.into(), last_delivered: d.map(Into::into) };
    assert_eq!(store.get_log_stream("lst_1").await.unwrap(), Some((stream.clone(), pos("0005", None))));
    store.set_log_stream_cursor("lst_1", "0009").await.unwrap();
    let mut paused = stream.clone();
    paused.status = StreamStatus::Paused;
    paused.sink = Sink::File { path: "/tmp/x.jsonl".into() };
    store.update_log_stream(&paused).await.unwrap();
    assert_eq!(
        store.list_log_streams().await.unwrap(),
        vec![(paused, pos("0009", Some("0009")))],
        "update keeps the cursor"
    );
    assert!(matches!(store.set_log_stream_cursor("nope", "1").await, Err(StoreError::NotFound)));
    store.delete_log_stream("lst_1").await.unwrap();
    assert!(matches!(store.delete_log_stream("lst_1").await, Err(StoreError::NotFound)));

    let ev = |n: i64, t: &str| StoredEvent {
        log_id: format!("{n:04}"),
        date: UnixTime::from_millis(n),
        event_type: t.into(),
        client_id: None,
        json: "{}".into(),
    };
    let events: Vec<_> = (1..=250).map(|n| ev(n, if n % 5 == 0 { "sapi" } else { "seccft" })).collect();
    store.append_events(&events).await.unwrap();
    assert_eq!(store.last_log_id().await.unwrap(), Some("0250".into()));
    let q = EventQuery {
        types: vec![],
        categories: vec!["management.success".into()],
        client_id: None,
        date_from: None,
        date_to: None,
        after_log_id: Some("0100".into()),
        newest_first: false,
        page: Page { page: 0, per_page: 100 },
    };
    let l = store.list_events(&q).await.unwrap();
    assert_eq!(l.total, 30);
    assert_eq!(l.items.first().map(|e| e.log_id.clone()), Some("0105".into()));
}

#[tokio::test]
async fn actions_versions_and_bindings() {
    use ration_domain::{Action, ActionBinding, ActionSecret, ActionVersion};
    let store = SqliteStore::open_in_memory().await.unwrap();
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
    store.insert_action(&action).await.unwrap();
    let dup = Action { id: "act_2".into(), ..action.clone() };
    assert!(matches!(store.insert_action(&dup).await, Err(StoreError::Conflict(c)) if c == "name"));
    assert_eq!(store.get_action("act_1").await.unwrap(), Some(action.clone()));
    let v = |n: u32| ActionVersion {
        id: format!("ver_{n}"),
        action_id: "act_1".into(),
        number: n,
        code: format!("// v{n}"),
        runtime: "node22".into(),
        secrets: action.secrets.clone(),
        created_at: t,
    };
    store.insert_action_version(&v(1)).await.unwrap();
    store.insert_action_version(&v(2)).await.unwrap();
    assert!(matches!(
        store.insert_action_version(&ActionVersion { id: "ver_x".into(), ..v(2) }).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_action_version("act_1", 1).await.unwrap(), Some(v(1)));
    assert_eq!(
        store.list_action_versions("act_1").await.unwrap().iter().map(|v| v.number).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let mut deployed = action.clone();
    deployed.deployed_version = Some(2);
    store.update_action(&deployed).await.unwrap();
    assert_eq!(store.list_actions(Page { page: 0, per_page: 10 }).await.unwrap().items, vec![deployed]);
    let b =
        |id: &str| ActionBinding { id: id.into(), action_id: "act_1".into(), display_name: id.into(), created_at: t };
    store.set_action_bindings(&[b("b2"), b("b1")]).await.unwrap();
    assert_eq!(store.list_action_bindings().await.unwrap(), vec![b("b2"), b("b1")], "order kept");
    store.delete_action("act_1").await.unwrap();
    assert!(store.list_action_bindings().await.unwrap().is_empty());
    assert!(store.list_action_versions("act_1").await.unwrap().is_empty());
    assert!(matches!(store.delete_action("act_1").await, Err(StoreError::NotFound)));
}
