use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ration_domain::{
    DefaultOrganization, OrganizationUsage, QuotaLimits, ResourceServerScope, SigningAlg, TokenEndpointAuthMethod,
    TokenQuota,
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
    crate::conformance::concurrent_writers_on(&db.open().await).await;
}
