//! Tests against the machine's real PostgreSQL: the shared conformance suite plus what only this
//! backend has (connection, concurrent migration, error mapping, schema parity with SQLite).
//!
//! Each test creates its own database `ration_test_<pid>_<n>_<nanos>` and drops it when done, pass
//! or fail ([`TestDb`]); no other database is touched. The server defaults to
//! `postgres://postgres@127.0.0.1:5432/postgres`; `RATION_TEST_DATABASE_URL` overrides it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use super::*;
use crate::conformance::{self, Harness};

/// Advisory locks held on the current database (other tests' databases are none of its business).
const HELD_ADVISORY_LOCKS: &str = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn base_url() -> String {
    std::env::var("RATION_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `url` with its database (the path) replaced by `database`; the query string is kept.
fn with_database(url: &str, database: &str) -> String {
    let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let root = head[authority_start..].find('/').map_or(head, |i| &head[..authority_start + i]);
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// A connection to the server's maintenance database, or a failure that says how to start it.
async fn admin_connection(base: &str) -> PgConnection {
    PgConnection::connect(base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {base} ({e}). These tests need a running server: start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or point \
             RATION_TEST_DATABASE_URL at one."
        )
    })
}

/// A fresh database of this test's own, dropped (with any connection still open to it) when the
/// guard drops, also when the test fails.
struct TestDb {
    base: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("ration_test_{}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), nanos);
        let base = base_url();
        let mut admin = admin_connection(&base).await;
        // The name is made of digits and `ration_test_` only: safe to interpolate.
        admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
        let _ = admin.close().await;
        let url = with_database(&base, &name);
        TestDb { base, name, url }
    }

    async fn connect(&self) -> PgStore {
        PgStore::connect(&self.url, Durability::Fsync).await.expect("connect")
    }

    async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("raw connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future: drop the database
        // from a thread with a runtime of its own. `WITH (FORCE)` ends the store's connections.
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || -> Result<(), String> {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&base).await.map_err(|e| e.to_string())?;
                admin
                    .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok(())
            })
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A fresh store in a fresh database. The store is declared first so its pool drops before the
/// database does.
struct PgHarness {
    store: PgStore,
    /// Held for its `Drop`, which drops the database.
    _db: TestDb,
}

impl Harness for PgHarness {
    type Store = PgStore;

    async fn new() -> Self {
        let db = TestDb::create().await;
        PgHarness { store: db.connect().await, _db: db }
    }

    fn store(&self) -> &PgStore {
        &self.store
    }

    async fn associations(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT organization_id, grant_id FROM organization_client_grants ORDER BY seq")
            .fetch_all(&self.store.pool)
            .await
            .expect("associations")
    }
}

mod conformance_suite {
    use super::PgHarness;

    crate::conformance::conformance_tests!(PgHarness);
}

#[test]
fn every_migration_file_is_registered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
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
fn migrations_take_the_advisory_lock() {
    assert!(migrator().locking);
}

#[test]
fn conflict_names_follow_the_trait_docs() {
    assert_eq!(conflict_field("resource_servers__identifier"), "identifier");
    assert_eq!(conflict_field("client_grants__client_id__audience"), "client_id/audience");
    assert_eq!(conflict_field("organization_client_grants__organization_id__grant_id"), "grant_id");
    assert_eq!(conflict_field("signing_keys__kid"), "kid");
    assert_eq!(conflict_field("unnamed_key"), "unnamed_key");
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
}

/// Every unique constraint of the schema follows the `<table>__<column>…` naming that
/// `conflict_field` reads.
#[tokio::test]
async fn every_unique_constraint_is_named_for_conflicts() {
    let db = TestDb::create().await;
    let _store = db.connect().await;
    let mut conn = db.raw().await;
    let constraints: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.conname::text, t.relname::text, \
                ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, ord) \
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.ord) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE c.contype = 'u' AND n.nspname = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("constraints");
    assert!(constraints.len() >= 10, "{constraints:?}");
    for (name, table, columns) in constraints {
        assert_eq!(name, format!("{table}__{}", columns.join("__")));
    }
}

/// The PostgreSQL schema has the SQLite schema's tables and columns, in the same order: a table or
/// column added to one backend's migrations and not the other's fails here. The exception is
/// `events.client_key`, which only SQLite's client index needs (its migration 0005; PostgreSQL
/// indexes `(client_id, log_id)` directly).
#[tokio::test]
async fn schema_matches_sqlite() {
    let db = TestDb::create().await;
    let _store = db.connect().await;
    let mut pg = db.raw().await;
    let pg_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut pg)
    .await
    .expect("pg columns");

    let mut lite = sqlx::SqliteConnection::connect("sqlite::memory:").await.expect("sqlite");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "sql")) {
        let sql = std::fs::read_to_string(file).expect("read migration");
        lite.execute(AssertSqlSafe(sql)).await.expect("apply sqlite migration");
    }
    let lite_columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, c.cid",
    )
    .fetch_all(&mut lite)
    .await
    .expect("sqlite columns");
    let lite_columns = lite_columns
        .into_iter()
        .filter(|(table, column)| (table.as_str(), column.as_str()) != ("events", "client_key"))
        .collect();
    let group = |rows: Vec<(String, String)>| {
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (table, column) in rows {
            tables.entry(table).or_default().push(column);
        }
        tables
    };
    assert_eq!(group(pg_columns), group(lite_columns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let db = TestDb::create().await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move { PgStore::connect(&url, Durability::Process).await }));
    }
    let mut stores = Vec::new();
    for task in tasks {
        stores.push(task.await.expect("join").expect("every concurrent connect succeeds"));
    }
    let mut conn = db.raw().await;
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .expect("migrations table");
    assert_eq!(applied, MIGRATIONS.iter().map(|(v, _, _)| (*v, true)).collect::<Vec<_>>());
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'clients'")
            .fetch_one(&mut conn)
            .await
            .expect("tables");
    assert_eq!(tables, 1);
    let held: i64 = sqlx::query_scalar(HELD_ADVISORY_LOCKS).fetch_one(&mut conn).await.expect("locks");
    assert_eq!(held, 0, "the migration lock is released");
    // Every instance works on the one schema.
    for (i, store) in stores.iter().enumerate() {
        store.insert_client(&conformance::client(&format!("c{i}"))).await.expect("insert");
    }
    assert_eq!(stores[0].list_clients(conformance::ALL).await.expect("list").total, 6);
}

#[tokio::test]
async fn reconnecting_keeps_the_data() {
    let db = TestDb::create().await;
    {
        let store = db.connect().await;
        store.insert_client(&conformance::full_client("c1")).await.expect("insert");
        store.insert_resource_server(&conformance::api("rs1", "A")).await.expect("insert");
        store.insert_grant(&conformance::grant("g1", "c1", "A")).await.expect("insert");
        store.insert_organization(&conformance::org("o1", "one")).await.expect("insert");
        store.add_organization_grant("o1", "g1").await.expect("assoc");
        store.set_meta("k", "v").await.expect("meta");
        store.pool.close().await;
    }
    // Migrations run again on connect and must be a no-op.
    let store = db.connect().await;
    assert_eq!(store.get_client("c1").await.expect("get"), Some(conformance::full_client("c1")));
    assert_eq!(store.get_grant("g1").await.expect("get"), Some(conformance::grant("g1", "c1", "A")));
    assert_eq!(store.get_meta("k").await.expect("get").as_deref(), Some("v"));
    let catalog = store.load_catalog().await.expect("catalog");
    assert!(catalog.organization_has_grant("o1", "g1"));
    assert!(catalog.resource_server_by_audience("A").is_some());
}

/// Neither mode touches PostgreSQL's durability settings: commits wait for the WAL flush exactly as
/// the server is configured to.
#[tokio::test]
async fn durability_is_the_servers() {
    let db = TestDb::create().await;
    let mut admin = admin_connection(&db.base).await;
    let server: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut admin).await.expect("show");
    for durability in [Durability::Process, Durability::Fsync] {
        let store = PgStore::connect(&db.url, durability).await.expect("connect");
        let mut conn = store.pool.acquire().await.expect("connection");
        let ours: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&mut *conn).await.expect("show");
        assert_eq!(ours, server, "{durability:?}");
    }
}

#[tokio::test]
async fn connect_errors_are_backend_errors() {
    let started = Instant::now();
    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    let refused = PgStore::connect("postgres://postgres@127.0.0.1:1/x", Durability::Process).await;
    assert!(matches!(&refused, Err(StoreError::Backend(t)) if t.contains("cannot connect")), "{refused:?}");
    assert!(started.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(5), "bounded by the acquire timeout");
    for url in ["mysql://u@127.0.0.1/x", "postgres://u@127.0.0.1/x?sslmode=sometimes"] {
        let invalid = PgStore::connect(url, Durability::Process).await;
        assert!(matches!(&invalid, Err(StoreError::Backend(t)) if t.contains("invalid")), "{url}: {invalid:?}");
    }
}

/// A failed migration (here: a table the migration creates already exists) is reported and leaves
/// neither the advisory lock held nor the migration recorded.
#[tokio::test]
async fn failed_migration_is_reported_and_releases_the_lock() {
    let db = TestDb::create().await;
    let mut conn = db.raw().await;
    conn.execute("CREATE TABLE clients (x INTEGER)").await.expect("create");
    let failed = PgStore::connect(&db.url, Durability::Process).await;
    assert!(matches!(&failed, Err(StoreError::Backend(t)) if t.contains("migration")), "{failed:?}");
    let held: i64 = sqlx::query_scalar(HELD_ADVISORY_LOCKS).fetch_one(&mut conn).await.expect("locks");
    assert_eq!(held, 0);
    conn.execute("DROP TABLE clients").await.expect("drop");
    db.connect().await.insert_client(&conformance::client("c1")).await.expect("recovered");
}

#[tokio::test]
async fn errors_do_not_echo_values() {
    let h = PgHarness::new().await;
    let secret = "s3cr3t-value\0";
    let err = h.store.insert_client(&conformance::client(secret)).await;
    let Err(StoreError::Backend(text)) = err else { panic!("expected a backend error, got {err:?}") };
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("NUL"), "{text}");
    // A unique violation's DETAIL quotes the key; the conflict names only the constraint's column.
    h.store.insert_client(&conformance::client("s3cr3t")).await.expect("insert");
    let err = h.store.insert_client(&conformance::client("s3cr3t")).await;
    assert!(matches!(&err, Err(StoreError::Conflict(c)) if c == "client_id"), "{err:?}");
}

#[tokio::test]
async fn notifications_reach_other_connections_and_leases_are_exclusive() {
    let db = TestDb::create().await;
    let a = db.connect().await;
    let b = db.connect().await;
    let mut rx = b.subscribe_changes().await.expect("subscribe").expect("a shared store can be subscribed to");
    // LISTEN is in place once subscribe returns; a NOTIFY from another pool reaches it.
    a.publish_change("instance-a").await.expect("publish");
    let got =
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.expect("notification within 5 s");
    assert_eq!(got.as_deref(), Some("instance-a"));
    assert!(a.is_shared());

    let t = |ms: i64| ration_domain::UnixTime::from_millis(ms);
    assert!(a.try_lease("log_stream:s1", "A", t(1000), t(16_000)).await.expect("lease"));
    assert!(!b.try_lease("log_stream:s1", "B", t(2000), t(17_000)).await.expect("lease"), "held by A");
    assert!(a.try_lease("log_stream:s1", "A", t(3000), t(18_000)).await.expect("lease"), "A renews");
    assert!(b.try_lease("log_stream:s1", "B", t(18_001), t(33_000)).await.expect("lease"), "expired: B takes it");
    assert!(!a.try_lease("log_stream:s1", "A", t(18_002), t(33_000)).await.expect("lease"));
}
