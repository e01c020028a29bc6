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

    /// A pool on this file with the first `n` migrations only: a database as an older release
    /// left it.
    async fn at_version(&self, n: usize) -> SqlitePool {
        let options = SqliteConnectOptions::new().filename(&self.path).create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.expect("connect");
        migrations_up_to(n).run(&pool).await.expect("older migrations");
        pool
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

/// `PRAGMA page_size` and `PRAGMA wal_autocheckpoint` of a connection.
async fn page_size_and_checkpoint(conn: &mut sqlx::SqliteConnection) -> (i64, i64) {
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut *conn).await.expect("pragma");
    let checkpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&mut *conn).await.expect("pragma");
    (page_size, checkpoint)
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
    // Statement journals of the event inserts stay off the disk (2 = MEMORY).
    let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *conn).await.expect("pragma");
    assert_eq!(temp_store, 2, "MEMORY");
    // A new file gets 16 KiB pages, and checkpoints keep to 4 000 KiB of WAL.
    let (page_size, checkpoint) = page_size_and_checkpoint(&mut conn).await;
    assert_eq!((page_size, checkpoint), (16384, 250));
}

#[tokio::test]
async fn a_database_made_with_4_kib_pages_keeps_them_and_its_checkpoint_bytes() {
    let db = TempDb::new();
    {
        let pool = db.at_version(4).await;
        pool.close().await;
    }
    let store = db.open().await;
    let mut conn = store.pool.acquire().await.expect("connection");
    let (page_size, checkpoint) = page_size_and_checkpoint(&mut conn).await;
    assert_eq!((page_size, checkpoint), (4096, 1000));
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

/// The first `n` migrations only: a database as an older release left it.
fn migrations_up_to(n: usize) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS[..n]
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

fn event(n: i64, client_id: Option<&str>) -> StoredEvent {
    StoredEvent {
        log_id: format!("{n:020}"),
        date: UnixTime::from_millis(n * 1000),
        event_type: "seccft".into(),
        client_id: client_id.map(Into::into),
        json: format!("{{\"n\":{n}}}"),
    }
}

fn by_client(client_id: &str) -> EventQuery {
    EventQuery {
        types: Vec::new(),
        categories: Vec::new(),
        client_id: Some(client_id.into()),
        date_from: None,
        date_to: None,
        after_log_id: None,
        newest_first: true,
        with_total: true,
        page: Page { page: 0, per_page: 100 },
    }
}

/// Ids that stress the shard expression: empty, one character, NUL, multi-byte, generated-like.
const ODD_CLIENT_IDS: &[&str] =
    &["", "a", "ab", "A\0", "\0", "é", "中文", "x🦀", "Vx3kQ9mZr2LpT8sWc4YnB6dHf1JgE7aU", "ration-bench-admin"];

#[tokio::test]
async fn client_filters_find_exactly_their_events_whatever_the_id() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let mut events = Vec::new();
    for (i, id) in ODD_CLIENT_IDS.iter().enumerate() {
        for k in 0..3 {
            events.push(event((k * 100 + i) as i64 + 1, Some(id)));
        }
    }
    events.push(event(1000, None));
    events.sort_by(|a, b| a.log_id.cmp(&b.log_id));
    store.append_events(&events).await.expect("append");
    for id in ODD_CLIENT_IDS {
        let listing = store.list_events(&by_client(id)).await.expect("list");
        assert_eq!(listing.total, 3, "{id:?}");
        assert!(listing.items.iter().all(|e| e.client_id.as_deref() == Some(*id)), "{id:?}");
        // The generated column and the query's shard agree for this id.
        let key = client_key(id);
        let same: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE client_id = ? AND client_shard = ? AND client_key = ?",
        )
        .bind(*id)
        .bind(client_shard(key))
        .bind(key)
        .fetch_one(&store.pool)
        .await
        .expect("shard");
        assert_eq!(same, 3, "{id:?}");
    }
    let spread: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT client_shard) FROM events")
        .fetch_one(&store.pool)
        .await
        .expect("shards");
    // Ten ids and no id over 16 shards: the expression spreads them (7 with this set).
    assert!(spread >= 6, "ten different ids should not share a few shards: {spread}");
}

#[tokio::test]
async fn client_filters_walk_the_shard_index_not_the_table() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let filter = event_filter(&by_client("c"));
    for sql in [
        format!("EXPLAIN QUERY PLAN SELECT log_id FROM events{filter} ORDER BY seq DESC LIMIT 50"),
        format!("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events{filter}"),
    ] {
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(AssertSqlSafe(sql.clone()))
            .bind(client_shard(client_key("c")))
            .bind(client_key("c"))
            .bind("c")
            .fetch_all(&store.pool)
            .await
            .expect("plan");
        let text: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(text.iter().any(|step| step.contains("INDEX events_client (client_shard=?)")), "{sql}: {text:?}");
        assert!(!text.iter().any(|step| step.contains("TEMP B-TREE")), "{sql}: {text:?}");
    }
}

#[tokio::test]
async fn events_stored_before_the_shard_migration_are_found_by_client() {
    let db = TempDb::new();
    {
        let pool = db.at_version(1).await;
        sqlx::query(
            "INSERT INTO events (log_id, date, type, category, client_id, doc) \
             VALUES ('01', 1, 'seccft', 'auth.token', 'old-client', '{}'), ('02', 2, 'seccft', 'auth.token', 'other', '{}')",
        )
        .execute(&pool)
        .await
        .expect("old events");
        pool.close().await;
    }
    let store = db.open().await;
    let listing = store.list_events(&by_client("old-client")).await.expect("list");
    assert_eq!(listing.items.iter().map(|e| e.log_id.as_str()).collect::<Vec<_>>(), ["01"]);
}

#[tokio::test]
async fn events_indexed_in_64_shards_are_found_by_client_in_16() {
    let db = TempDb::new();
    {
        let pool = db.at_version(3).await;
        let mut n = 0;
        for id in ODD_CLIENT_IDS {
            for _ in 0..2 {
                n += 1;
                sqlx::query(
                    "INSERT INTO events (log_id, date, type, category, client_id, doc) \
                     VALUES (?, 1, 'seccft', 'auth.token', ?, '{}')",
                )
                .bind(format!("{n:020}"))
                .bind(*id)
                .execute(&pool)
                .await
                .expect("old event");
            }
        }
        // Shards that only the old modulus gives: the rows must not keep them.
        let wide: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE client_shard >= 16")
            .fetch_one(&pool)
            .await
            .expect("old shards");
        assert!(wide > 0, "the fixture should hold ids whose 64-way shard is past 15");
        pool.close().await;
    }
    let store = db.open().await;
    let wide: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE client_shard >= 16")
        .fetch_one(&store.pool)
        .await
        .expect("new shards");
    assert_eq!(wide, 0);
    for id in ODD_CLIENT_IDS {
        let listing = store.list_events(&by_client(id)).await.expect("list");
        assert_eq!(listing.total, 2, "{id:?}");
        assert!(listing.items.iter().all(|e| e.client_id.as_deref() == Some(*id)), "{id:?}");
    }
}

#[tokio::test]
async fn event_batches_of_any_length_are_stored_whole_and_in_order() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    // 64 + 64 + 2 + 1 rows, then 1 + (64 + 32 + 16 + 8 + 4 + 2 + 1): every chunk size and the
    // remainders between them.
    let batch: Vec<_> = (1..=131).map(|n| event(n, Some("c"))).collect();
    store.append_events(&batch).await.expect("first batch");
    let batch: Vec<_> = (132..=259).map(|n| event(n, Some("c"))).collect();
    store.append_events(&batch).await.expect("second batch");
    let all =
        EventQuery { client_id: None, newest_first: false, page: Page { page: 0, per_page: 1000 }, ..by_client("") };
    let listing = store.list_events(&all).await.expect("list");
    assert_eq!(listing.total, 259);
    let ids: Vec<String> = listing.items.iter().map(|e| e.log_id.clone()).collect();
    assert_eq!(ids, (1..=259).map(|n| format!("{n:020}")).collect::<Vec<_>>());
}

fn typed_event(n: i64, event_type: &str) -> StoredEvent {
    StoredEvent { event_type: event_type.into(), ..event(n, Some("c")) }
}

fn by_types(types: &[&str], categories: &[&str]) -> EventQuery {
    EventQuery {
        types: types.iter().map(|t| t.to_string()).collect(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        client_id: None,
        ..by_client("")
    }
}

/// Events 1..=40 with a type each: mostly `seccft`, some of three others.
async fn mixed_events(store: &SqliteStore) -> Vec<StoredEvent> {
    let events: Vec<StoredEvent> = (1..=40)
        .map(|n| {
            let event_type = match n % 10 {
                3 => "feccft",
                6 => "sapi",
                9 => "token_quota_consumption_warning",
                _ => "seccft",
            };
            typed_event(n, event_type)
        })
        .collect();
    store.append_events(&events).await.expect("append");
    events
}

/// The log ids of `events` that a filter on these types and categories must return, newest first.
fn expected(events: &[StoredEvent], types: &[&str], categories: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .filter(|e| types.is_empty() || types.contains(&e.event_type.as_str()))
        .filter(|e| categories.is_empty() || categories.contains(&ration_domain::logstream::category_of(&e.event_type)))
        .map(|e| e.log_id.clone())
        .collect();
    ids.reverse();
    ids
}

const FILTERS: &[(&[&str], &[&str])] = &[
    (&["seccft"], &[]),
    (&["feccft"], &[]),
    (&["seccft", "feccft"], &[]),
    (&["sapi", "token_quota_consumption_warning"], &[]),
    (&[], &["auth.token_exchange.success"]),
    (&[], &["management.success"]),
    (&[], &["auth.token_exchange.success", "system.notification"]),
    (&["seccft"], &["management.success"]),
    (&["feccft"], &["auth.token_exchange.fail"]),
];

#[tokio::test]
async fn type_and_category_filters_find_exactly_their_events() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let events = mixed_events(&store).await;
    for &(types, categories) in FILTERS {
        let want = expected(&events, types, categories);
        let listing = store.list_events(&by_types(types, categories)).await.expect("list");
        let got: Vec<String> = listing.items.iter().map(|e| e.log_id.clone()).collect();
        assert_eq!(got, want, "{types:?} {categories:?}");
        assert_eq!(listing.total, want.len() as u64, "{types:?} {categories:?}");
    }
}

/// Events inserted as the schema of migrations 1 to 4 took them, one statement each.
async fn insert_old_events(pool: &SqlitePool, events: &[StoredEvent]) {
    for e in events {
        sqlx::query("INSERT INTO events (log_id, date, type, category, client_id, doc) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&e.log_id)
            .bind(e.date.millis)
            .bind(&e.event_type)
            .bind(ration_domain::logstream::category_of(&e.event_type))
            .bind(&e.client_id)
            .bind(&e.json)
            .execute(pool)
            .await
            .expect("old event");
    }
}

#[tokio::test]
async fn events_indexed_before_the_partial_indexes_are_found_by_type() {
    let db = TempDb::new();
    let events: Vec<StoredEvent> = {
        let pool = db.at_version(2).await;
        let events: Vec<StoredEvent> =
            (1..=20).map(|n| typed_event(n, if n % 4 == 0 { "feccft" } else { "seccft" })).collect();
        insert_old_events(&pool, &events).await;
        pool.close().await;
        events
    };
    let store = db.open().await;
    for &(types, categories) in FILTERS {
        let listing = store.list_events(&by_types(types, categories)).await.expect("list");
        let got: Vec<String> = listing.items.iter().map(|e| e.log_id.clone()).collect();
        assert_eq!(got, expected(&events, types, categories), "{types:?} {categories:?}");
    }
}

/// What SQLite plans for the listing (`count`: its total) that `list_events` runs for `query`.
async fn listing_plan(store: &SqliteStore, query: &EventQuery, count: bool) -> Vec<String> {
    let filter = event_filter(query);
    let sql = if count {
        format!("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events{filter}")
    } else {
        format!("EXPLAIN QUERY PLAN SELECT log_id, doc FROM events{filter} ORDER BY seq DESC LIMIT 50")
    };
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&store.pool).await.expect("plan");
    plan.into_iter().map(|row| row.3).collect()
}

#[tokio::test]
async fn filters_on_other_types_use_the_partial_indexes_and_seccft_walks_the_log_order() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    mixed_events(&store).await;
    for (query, index) in
        [(by_types(&["feccft"], &[]), "events_type"), (by_types(&[], &["management.success"]), "events_category")]
    {
        for count in [false, true] {
            let plan = listing_plan(&store, &query, count).await;
            assert!(plan.iter().any(|step| step.contains(&format!("INDEX {index} "))), "{count}: {plan:?}");
            assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{count}: {plan:?}");
        }
    }
    for query in [by_types(&["seccft"], &[]), by_types(&[], &["auth.token_exchange.success"])] {
        let plan = listing_plan(&store, &query, false).await;
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.contains("events_type") || step.contains("events_category")), "{plan:?}");
    }
}

#[test]
fn the_partial_indexes_leave_out_what_the_queries_say() {
    let sql = include_str!("../../migrations/sqlite/0005_events_in_order.sql");
    assert!(sql.contains(&format!("WHERE type <> '{UNINDEXED_TYPE}';")), "{sql}");
    let category = ration_domain::logstream::category_of(UNINDEXED_TYPE);
    assert!(sql.contains(&format!("WHERE category <> '{category}';")), "{sql}");
}

fn all_events(newest_first: bool) -> EventQuery {
    EventQuery { client_id: None, newest_first, page: Page { page: 0, per_page: 1000 }, ..by_client("") }
}

fn ids(listing: &Listing<StoredEvent>) -> Vec<String> {
    listing.items.iter().map(|e| e.log_id.clone()).collect()
}

#[tokio::test]
async fn events_stored_before_the_rebuild_keep_their_order_client_keys_and_ids() {
    let db = TempDb::new();
    // Inserted out of `log_id` order, as nothing stopped a version-4 store from: the rebuild puts
    // the rows in `log_id` order.
    let mut old: Vec<StoredEvent> = Vec::new();
    for (i, id) in ODD_CLIENT_IDS.iter().enumerate() {
        old.push(event(100 - i as i64, Some(id)));
        old.push(event(200 - i as i64, Some(id)));
    }
    old.push(event(150, None));
    {
        let pool = db.at_version(4).await;
        insert_old_events(&pool, &old).await;
        pool.close().await;
    }
    let store = db.open().await;
    old.sort_by(|a, b| a.log_id.cmp(&b.log_id));
    let want: Vec<String> = old.iter().map(|e| e.log_id.clone()).collect();
    assert_eq!(ids(&store.list_events(&all_events(false)).await.expect("list")), want);
    // The migration's SQL and `client_key` agree for every id, odd ones included.
    for id in ODD_CLIENT_IDS {
        let keys: Vec<Option<i64>> = sqlx::query_scalar("SELECT client_key FROM events WHERE client_id = ?")
            .bind(*id)
            .fetch_all(&store.pool)
            .await
            .expect("keys");
        assert_eq!(keys, vec![Some(client_key(id)); 2], "{id:?}");
        let listing = store.list_events(&by_client(id)).await.expect("list");
        assert_eq!(listing.total, 2, "{id:?}");
    }
    let unowned: Option<i64> = sqlx::query_scalar("SELECT client_key FROM events WHERE client_id IS NULL")
        .fetch_one(&store.pool)
        .await
        .expect("key");
    assert_eq!(unowned, None);
    // New events go after the old ones; ids are found by the search over `seq`.
    store.append_events(&[event(300, Some("new"))]).await.expect("append");
    for e in &old {
        assert_eq!(store.get_event(&e.log_id).await.expect("get").as_ref(), Some(e));
    }
    let after = EventQuery { after_log_id: Some(format!("{:020}", 150)), ..all_events(false) };
    let listing = store.list_events(&after).await.expect("list");
    assert_eq!(listing.items.first().map(|e| e.log_id.clone()), Some(format!("{:020}", 191)));
    assert_eq!(listing.items.last().map(|e| e.log_id.clone()), Some(format!("{:020}", 300)));
}

#[tokio::test]
async fn ids_are_found_by_the_search_over_seq_across_pruned_gaps() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    // Dates that do not follow the ids (a clock that stepped back), so that pruning leaves gaps
    // in the middle of `seq` and at both ends.
    let events: Vec<StoredEvent> = (1..=500)
        .map(|n| StoredEvent {
            date: UnixTime::from_millis(if n % 7 < 3 || n > 490 { 1 } else { 10 }),
            ..event(n, None)
        })
        .collect();
    for chunk in events.chunks(77) {
        store.append_events(chunk).await.expect("append");
    }
    let pruned = store.prune_events(UnixTime::from_millis(5)).await.expect("prune");
    let kept: Vec<&StoredEvent> = events.iter().filter(|e| e.date.millis == 10).collect();
    assert_eq!(pruned as usize, events.len() - kept.len());
    for n in 0..=501 {
        let log_id = format!("{n:020}");
        let found = store.get_event(&log_id).await.expect("get");
        assert_eq!(found.as_ref(), kept.iter().find(|e| e.log_id == log_id).copied(), "{n}");
        let after = EventQuery { after_log_id: Some(log_id.clone()), ..all_events(false) };
        let listing = store.list_events(&after).await.expect("list");
        let want: Vec<String> = kept.iter().filter(|e| e.log_id > log_id).map(|e| e.log_id.clone()).collect();
        assert_eq!(ids(&listing), want, "{n}");
        assert_eq!(listing.total, want.len() as u64, "{n}");
    }
    // Between ids, before all and after all.
    for probe in ["", "0", "00000000000000000100x", "1"] {
        let want = kept.iter().find(|e| e.log_id.as_str() > probe).map(|e| e.log_id.clone());
        let after = EventQuery { after_log_id: Some(probe.into()), ..all_events(false) };
        let listing = store.list_events(&after).await.expect("list");
        assert_eq!(listing.items.first().map(|e| e.log_id.clone()), want, "{probe:?}");
        assert_eq!(store.get_event(probe).await.expect("get"), None, "{probe:?}");
    }
    assert_eq!(store.last_log_id().await.expect("last"), kept.last().map(|e| e.log_id.clone()));
}

#[tokio::test]
async fn a_replay_after_the_newest_appends_only_the_new_events_in_order() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let events: Vec<StoredEvent> = (1..=40).map(|n| event(n, Some("c"))).collect();
    store.append_events(&events[..25]).await.expect("first");
    // A journal replay: the stored tail again, then what the crash left unstored.
    store.append_events(&events[20..]).await.expect("replay");
    let listing = store.list_events(&all_events(false)).await.expect("list");
    assert_eq!(ids(&listing), events.iter().map(|e| e.log_id.clone()).collect::<Vec<_>>());
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM events ORDER BY log_id").fetch_all(&store.pool).await.expect("seqs");
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "seq follows log_id: {seqs:?}");
    // An id between stored ones breaks the writer's order: it is left out (and logged), the log
    // keeps its order and nothing stored changes.
    let stray = StoredEvent { log_id: format!("{:020}x", 10), ..event(10, Some("c")) };
    store.append_events(&[stray, event(41, Some("c"))]).await.expect("append");
    let listing = store.list_events(&all_events(false)).await.expect("list");
    assert_eq!(ids(&listing), (1..=41).map(|n| format!("{n:020}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_token_path_indexes_no_log_id() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let indexed: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT m.name FROM sqlite_master m, pragma_index_info(m.name) i \
         WHERE m.type = 'index' AND m.tbl_name = 'events' AND i.name = 'log_id'",
    )
    .fetch_all(&store.pool)
    .await
    .expect("indexes");
    assert!(indexed.is_empty(), "{indexed:?}");
}

/// The events' `INSERT` can never abort a statement half way (SQLite's `OE_Abort`, 2, as the
/// `onError` of a constraint check), so SQLite keeps no statement journal for it: a copy of every
/// page each statement changes, which cost ~7 % of the indexer's CPU (`insert_events_sql`).
#[tokio::test]
async fn the_events_insert_keeps_no_statement_journal() {
    let store = SqliteStore::open_in_memory().await.expect("store");
    let explain = format!("EXPLAIN {}", insert_events_sql(2));
    let program: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(explain))
        .fetch_all(&store.pool)
        .await
        .expect("explain")
        .into_iter()
        .map(|row: (i64, String, i64, i64, i64, Option<String>, i64, Option<String>)| (row.1, row.3))
        .collect();
    let checks: Vec<&(String, i64)> = program.iter().filter(|(op, _)| op.starts_with("Halt") && op != "Halt").collect();
    assert!(!checks.is_empty(), "the NOT NULL columns are checked: {program:?}");
    assert!(checks.iter().all(|(_, on_error)| *on_error != 2), "a check aborts the statement: {checks:?}");
}
