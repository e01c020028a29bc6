//! The embedded SQLite backend of [`ConfigStore`].
//!
//! Durability: the database runs in WAL mode. With [`Durability::Process`] (the default) it uses
//! `synchronous=NORMAL`: a commit is in the WAL file (the operating system's hands) when its future
//! resolves, so it survives `kill -9`; with [`Durability::Fsync`], `synchronous=FULL` also flushes
//! every commit to the disk, so it survives power loss. Events are written in group commits, so
//! even FULL costs one flush per batch, not per event.
//!
//! Atomicity: every multi-statement write (the cascading deletes) runs in one `BEGIN IMMEDIATE`
//! transaction. `IMMEDIATE` takes the write lock up front, so two concurrent writers queue on the
//! busy timeout instead of one failing with `SQLITE_BUSY` when it upgrades a read snapshot.
//! Listings run their count and page queries in one read transaction so `total` and `items` come
//! from the same snapshot.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ration_domain::{
    Action, ActionBinding, ActionVersion, Catalog, Client, ClientCredential, ClientGrant, Durability, LogStream,
    Organization, ResourceServer, SigningAlg, TenantSettings, UnixTime,
};
use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::records::{self, ACTIONS, FromNamedRow, GRANT_COLUMNS, GrantRow, NamedTable, ORGANIZATIONS};
use crate::{
    ConfigStore, EventQuery, GrantFilter, Listing, Page, Result, StoreError, StoredEvent, StoredKey, StreamPosition,
};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of databases created from now on: 16 KiB instead of SQLite's 4 KiB. The background
/// indexer appends ~650-byte event rows and their index entries: with 4 times fewer pages it
/// splits, balances, checksums and writes fewer of them into the WAL and back at checkpoints, and
/// indexing an event costs about a fifth less CPU (the store's `append_events` example: 16 KiB
/// 3.9-4.4 us per event against 5.3-5.6 us with 4 KiB; 32 KiB 4.0-4.3, 64 KiB 4.4-4.8;
/// docs/benchmarks.md, session 14). An existing database keeps its page size; `VACUUM` after
/// `PRAGMA page_size = 16384`, with the server stopped and out of WAL mode, converts it.
const PAGE_SIZE: u32 = 16 * 1024;

/// WAL bytes between automatic checkpoints, whatever the page size: SQLite's default 1 000 pages
/// of 4 KiB. 10 000 such pages saved the event indexer 1-8 % of its CPU, but each checkpoint then
/// copied ~40 MiB at once on one of the two cores, and the token endpoint's p99 at half load rose
/// past 5 ms (docs/benchmarks.md, session 10).
const CHECKPOINT_BYTES: i64 = 1000 * 4096;

/// Connections of a file-backed store. Reads proceed in parallel under WAL; writes serialize on
/// SQLite's lock anyway, and the token path never reads the store, so a few suffice.
const MAX_CONNECTIONS: u32 = 4;

/// Schema migrations, oldest first: `(version, description, sql)`.
///
/// Listed by hand rather than with `sqlx::migrate!`, which needs sqlx's `macros` feature (a
/// proc-macro build for the whole workspace). The files keep sqlx-cli's `<version>_<name>.sql`
/// naming and the checksums are the same as `migrate!` would compute. A unit test fails if a file
/// in the directory is missing here.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "event_client_shards", include_str!("../migrations/sqlite/0002_event_client_shards.sql")),
    (3, "partial_type_indexes", include_str!("../migrations/sqlite/0003_partial_type_indexes.sql")),
    (4, "sixteen_client_shards", include_str!("../migrations/sqlite/0004_sixteen_client_shards.sql")),
    (5, "events_in_order", include_str!("../migrations/sqlite/0005_events_in_order.sql")),
];

/// `events.client_key` of a client id: the low 7 bits of each of its last 9 characters, packed
/// (63 bits, so SQLite keeps it an integer). It only narrows a client filter, which also compares
/// the id. Migration 0005 computes the same for the rows it rebuilds (a test checks they agree),
/// and SQLite's text functions end a text at its first NUL, so this does too.
fn client_key(client_id: &str) -> i64 {
    let text = client_id.split('\0').next().unwrap_or_default();
    text.chars().rev().take(9).enumerate().fold(0, |key, (i, c)| key | i64::from(u32::from(c) & 127) << (7 * i))
}

/// `events.client_shard` of a key: the generated column of migration 0005. Client filters compare
/// it first so that SQLite walks only that shard of the `events_client` index.
fn client_shard(key: i64) -> i64 {
    (key + (key >> 7)) & 15
}

/// The type that the partial indexes `events_type` and `events_category` leave out, with its
/// category (migration 0003): a query for other types or categories states it, with the same
/// literals, so that SQLite may use the indexes.
const UNINDEXED_TYPE: &str = "seccft";

/// The `WHERE` clause of an event listing; its placeholders are bound by `list_events` in the same
/// order (types, categories, the client's shard, key and id, dates, the first `seq`).
fn event_filter(query: &EventQuery) -> String {
    let mut filter = String::from(" WHERE 1 = 1");
    // `column IN (values)`, and for values without the one the partial index leaves out, also
    // `column <> 'left out'`: implied by the IN list, but SQLite uses a partial index only when
    // the query states its condition.
    let mut one_of = |column: &str, values: &[String], unindexed: &str| {
        if values.is_empty() {
            return;
        }
        filter.push_str(&format!(" AND {column} IN ({})", vec!["?"; values.len()].join(", ")));
        if !values.iter().any(|v| v == unindexed) {
            filter.push_str(&format!(" AND {column} <> '{unindexed}'"));
        }
    };
    one_of("type", &query.types, UNINDEXED_TYPE);
    one_of("category", &query.categories, ration_domain::logstream::category_of(UNINDEXED_TYPE));
    if query.client_id.is_some() {
        filter.push_str(" AND client_shard = ? AND client_key = ? AND client_id = ?");
    }
    if query.date_from.is_some() {
        filter.push_str(" AND date >= ?");
    }
    if query.date_to.is_some() {
        filter.push_str(" AND date < ?");
    }
    if query.after_log_id.is_some() {
        filter.push_str(" AND seq >= ?");
    }
    filter
}

/// The newest stored event's `log_id`: the last row, since rows are kept in `log_id` order.
const NEWEST_LOG_ID: &str = "SELECT log_id FROM events ORDER BY seq DESC LIMIT 1";

/// The `seq` and `log_id` of the first event whose `log_id` is at or after (`inclusive`) or after
/// `log_id`.
///
/// The events are stored in `log_id` order (migration 0005: `append_events` appends only ids after
/// the newest), so `seq` order is `log_id` order and a binary search over `seq` finds it without
/// an index on `log_id`: about 20 lookups of the primary key for a million events. Gaps left by
/// pruning are skipped by probing the first row at or after the middle.
async fn seq_from(conn: &mut sqlx::SqliteConnection, log_id: &str, inclusive: bool) -> Result<Option<(i64, String)>> {
    let passes = |id: &str| if inclusive { id >= log_id } else { id > log_id };
    let (first, last): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM events").fetch_one(&mut *conn).await.map_err(backend)?;
    let (Some(mut low), Some(last)) = (first, last) else {
        return Ok(None);
    };
    let probe = async |conn: &mut sqlx::SqliteConnection, at: i64| -> Result<Option<(i64, String)>> {
        sqlx::query_as("SELECT seq, log_id FROM events WHERE seq >= ? ORDER BY seq LIMIT 1")
            .bind(at)
            .fetch_optional(conn)
            .await
            .map_err(backend)
    };
    let mut found = match probe(&mut *conn, last).await? {
        Some(row) if passes(&row.1) => row,
        _ => return Ok(None),
    };
    // Rows below `low` fail, `found` passes, and only `low..top` is still unknown.
    let mut top = last;
    while low < top {
        let middle = low + (top - low) / 2;
        match probe(&mut *conn, middle).await? {
            Some((seq, id)) if seq < top => {
                if passes(&id) {
                    (found, top) = ((seq, id), seq);
                } else {
                    low = seq + 1;
                }
            }
            // Nothing stored in `middle..top`.
            _ => top = middle,
        }
    }
    Ok(Some(found))
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// The configuration store in an embedded SQLite database file.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const SET_KEY_STATE: &str = "UPDATE signing_keys SET state = ?, state_changed_at = ? WHERE kid = ?";

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path` and brings its schema up to date.
    ///
    /// Sets `journal_mode=WAL`, `synchronous` from `durability` (NORMAL or FULL), `foreign_keys=ON`
    /// and a 5 s busy timeout on every connection.
    pub async fn open(path: &Path, durability: Durability) -> Result<SqliteStore> {
        let synchronous = match durability {
            Durability::Process => SqliteSynchronous::Normal,
            Durability::Fsync => SqliteSynchronous::Full,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // 16 MiB of page cache per connection instead of SQLite's 2 MiB: background event
            // indexing touches the tail pages of the events table and its indexes (up to 16 in
            // `events_client`, 64 before migration 0004), and re-reading evicted pages from the OS
            // showed up in profiles (docs/benchmarks.md).
            // Filled only as pages are used.
            .pragma("cache_size", "-16384")
            // Statement journals in memory: a multi-row INSERT into `events` may abort half way
            // (the shard column is an expression), so SQLite keeps the original of every page it
            // touches until the statement ends, by default in a temporary file: about 1.8
            // `pwrite`s per indexed event, more system calls than the token path's own
            // (docs/benchmarks.md). The same setting holds sorts that no index serves; every list
            // query is paged, so those stay small.
            .pragma("temp_store", "memory")
            // Applied before `journal_mode`, which writes the header of a new file.
            .page_size(PAGE_SIZE);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut *conn).await?;
                    let pages = CHECKPOINT_BYTES / page_size.max(512);
                    sqlx::query(AssertSqlSafe(format!("PRAGMA wal_autocheckpoint = {pages}")))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        SqliteStore::init(pool).await
    }

    /// A fresh, private in-memory store, for tests.
    ///
    /// An in-memory SQLite database lives only as long as its one connection, so the pool holds
    /// exactly one connection and never retires it (no idle timeout, no maximum lifetime).
    pub async fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(backend)?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(backend)?;
        SqliteStore::init(pool).await
    }

    async fn init(pool: SqlitePool) -> Result<SqliteStore> {
        migrator().run(&pool).await.map_err(|e| StoreError::Backend(format!("schema migration failed: {e}")))?;
        Ok(SqliteStore { pool })
    }

    /// A write transaction holding the database write lock from its first statement.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)
    }

    /// A read transaction: one snapshot for several queries.
    async fn read_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin().await.map_err(backend)
    }

    /// The row `id` of a table of `(id, name, doc)` rows (organizations, actions).
    async fn get_named<T>(&self, table: NamedTable, id: &str, from_row: FromNamedRow<T>) -> Result<Option<T>> {
        let sql = format!("SELECT name, doc FROM {} WHERE id = ?", table.0);
        let row: Option<(String, String)> =
            sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(backend)?;
        row.map(|(name, doc)| from_row(id.to_owned(), name, &doc)).transpose()
    }

    /// One page of a table of `(id, name, doc)` rows, in creation order, with the total.
    async fn list_named<T>(&self, table: NamedTable, page: Page, from_row: FromNamedRow<T>) -> Result<Listing<T>> {
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {}", table.0)))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let sql = format!("SELECT id, name, doc FROM {} ORDER BY seq LIMIT ? OFFSET ?", table.0);
        let rows: Vec<(String, String, String)> =
            sqlx::query_as(AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(&mut *tx).await.map_err(backend)?;
        commit(tx).await?;
        let items = rows.into_iter().map(|(id, name, doc)| from_row(id, name, &doc)).collect::<Result<Vec<_>>>()?;
        Ok(Listing { items, total: total(count) })
    }
}

/// Maps a sqlx error to the store's error.
///
/// Unique violations become `Conflict` named after the broken rule; foreign-key violations only
/// arise from associating a missing organization or grant, hence `NotFound`. SQLite's messages
/// name tables and columns, never values, so the text is safe to surface.
fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            ErrorKind::UniqueViolation => {
                return StoreError::Conflict(conflict_field(db.message()));
            }
            ErrorKind::ForeignKeyViolation => return StoreError::NotFound,
            _ => {}
        }
    }
    StoreError::Backend(e.to_string())
}

/// The conflict name for SQLite's `UNIQUE constraint failed: t.a, t.b` message: the column names
/// joined by `/` (`client_id/audience`), except that a duplicate organization association is
/// reported as `grant_id`, the field the caller supplied.
fn conflict_field(message: &str) -> String {
    let columns = message.rsplit_once("failed: ").map_or(message, |(_, cols)| cols);
    let names: Vec<&str> = columns
        .split(',')
        .map(|c| {
            let c = c.trim();
            c.rsplit_once('.').map_or(c, |(_, column)| column)
        })
        .collect();
    match names.as_slice() {
        ["organization_id", "grant_id"] => "grant_id".to_owned(),
        _ => names.join("/"),
    }
}

/// `NotFound` when a write by key touched no row.
fn require_row(result: sqlx::sqlite::SqliteQueryResult) -> Result<()> {
    if result.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// `(LIMIT, OFFSET)` of a page. `page * per_page` can exceed i64 for absurd inputs; saturating
/// keeps it a valid (empty) page instead of overflowing.
fn limit_offset(page: Page) -> (i64, i64) {
    let per_page = i64::from(page.per_page);
    (per_page, i64::from(page.page).saturating_mul(per_page))
}

fn total(count: i64) -> u64 {
    // COUNT(*) is never negative.
    u64::try_from(count).unwrap_or_default()
}

/// `SELECT log_id, date, type, client_id, doc FROM events`.
type EventRow = (String, i64, String, Option<String>, String);

/// An event as read: `append_events` stores the document it is given, packed or not, and a read
/// gives it back as JSON text.
fn event_from_row((log_id, date, event_type, client_id, doc): EventRow) -> StoredEvent {
    let date = UnixTime::from_millis(date);
    let json = match crate::packed::unpack(&doc, crate::packed::Columns { log_id: &log_id, date }) {
        std::borrow::Cow::Borrowed(_) => doc,
        std::borrow::Cow::Owned(json) => json,
    };
    StoredEvent { log_id, date, event_type, client_id, json }
}

/// The `INSERT` of `rows` events, each `(log_id, date, type, category, client_id, client_key,
/// doc)`.
///
/// `OR FAIL`, not the default `ABORT`: a statement that may abort inside a transaction makes
/// SQLite keep a statement journal, a copy of every page the statement changes (the tails of the
/// table and of each index, again for every statement), so that it can undo that statement alone.
/// Nothing here needs that: a failed statement fails the whole transaction, which is rolled back,
/// and the journal replay appends only ids after the newest stored. Its only constraints are NOT
/// NULLs that the types already guarantee. About 7 % less CPU per event (the `append_events`
/// example).
fn insert_events_sql(rows: usize) -> String {
    let placeholders = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT OR FAIL INTO events (log_id, date, type, category, client_id, client_key, doc) VALUES {placeholders}"
    )
}

async fn commit(tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<()> {
    tx.commit().await.map_err(backend)
}

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn load_catalog(&self) -> Result<Catalog> {
        let mut tx = self.read_tx().await?;
        let mut catalog = Catalog::default();

        let clients: Vec<(String, String)> = sqlx::query_as("SELECT client_id, doc FROM clients ORDER BY seq")
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        for (client_id, doc) in clients {
            catalog.upsert_client(records::client_from_row(client_id, &doc)?);
        }

        let apis: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, identifier, doc FROM resource_servers ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for (id, identifier, doc) in apis {
            catalog.upsert_resource_server(records::resource_server_from_row(id, identifier, &doc)?);
        }

        let grants: Vec<GrantRow> =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {GRANT_COLUMNS} FROM client_grants ORDER BY seq")))
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for row in grants {
            catalog.upsert_grant(records::grant_from_row(row)?);
        }

        let orgs: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, name, doc FROM organizations ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for (id, name, doc) in orgs {
            catalog.upsert_organization(records::organization_from_row(id, name, &doc)?);
        }

        let associations: Vec<(String, String)> =
            sqlx::query_as("SELECT organization_id, grant_id FROM organization_client_grants ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for (organization_id, grant_id) in associations {
            catalog.set_organization_grant(&organization_id, &grant_id, true);
        }

        let credentials: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, client_id, doc FROM client_credentials ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        for (id, client_id, doc) in credentials {
            catalog.upsert_credential(records::credential_from_row(id, client_id, &doc)?);
        }

        let tenant: Option<String> = sqlx::query_scalar("SELECT doc FROM tenant_settings WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if let Some(doc) = tenant {
            catalog.set_tenant(records::tenant_from_doc(&doc)?);
        }

        commit(tx).await?;
        Ok(catalog)
    }

    async fn insert_client(&self, client: &Client) -> Result<()> {
        sqlx::query("INSERT INTO clients (client_id, doc) VALUES (?, ?)")
            .bind(client.client_id.as_str())
            .bind(records::client_doc(client)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_client(&self, client: &Client) -> Result<()> {
        let result = sqlx::query("UPDATE clients SET doc = ? WHERE client_id = ?")
            .bind(records::client_doc(client)?)
            .bind(client.client_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn delete_client(&self, client_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let result = sqlx::query("DELETE FROM clients WHERE client_id = ?")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        require_row(result)?;
        sqlx::query("DELETE FROM client_credentials WHERE client_id = ?")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "DELETE FROM organization_client_grants \
             WHERE grant_id IN (SELECT id FROM client_grants WHERE client_id = ?)",
        )
        .bind(client_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM client_grants WHERE client_id = ?")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM clients WHERE client_id = ?")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        doc.map(|doc| records::client_from_row(client_id.to_owned(), &doc)).transpose()
    }

    async fn list_clients(&self, page: Page) -> Result<Listing<Client>> {
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM clients").fetch_one(&mut *tx).await.map_err(backend)?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT client_id, doc FROM clients ORDER BY seq LIMIT ? OFFSET ?")
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        commit(tx).await?;
        let items = rows.into_iter().map(|(id, doc)| records::client_from_row(id, &doc)).collect::<Result<Vec<_>>>()?;
        Ok(Listing { items, total: total(count) })
    }

    async fn insert_resource_server(&self, rs: &ResourceServer) -> Result<()> {
        sqlx::query("INSERT INTO resource_servers (id, identifier, doc) VALUES (?, ?, ?)")
            .bind(rs.id.as_str())
            .bind(rs.identifier.as_str())
            .bind(records::resource_server_doc(rs)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_resource_server(&self, rs: &ResourceServer) -> Result<()> {
        let result = sqlx::query("UPDATE resource_servers SET identifier = ?, doc = ? WHERE id = ?")
            .bind(rs.identifier.as_str())
            .bind(records::resource_server_doc(rs)?)
            .bind(rs.id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn delete_resource_server(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let identifier: Option<String> =
            sqlx::query_scalar("DELETE FROM resource_servers WHERE id = ? RETURNING identifier")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let Some(identifier) = identifier else {
            return Err(StoreError::NotFound);
        };
        sqlx::query(
            "DELETE FROM organization_client_grants \
             WHERE grant_id IN (SELECT id FROM client_grants WHERE audience = ?)",
        )
        .bind(identifier.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM client_grants WHERE audience = ?")
            .bind(identifier.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn get_resource_server(&self, id: &str) -> Result<Option<ResourceServer>> {
        let row: Option<(String, String)> = sqlx::query_as("SELECT identifier, doc FROM resource_servers WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|(identifier, doc)| records::resource_server_from_row(id.to_owned(), identifier, &doc)).transpose()
    }

    async fn get_resource_server_by_identifier(&self, identifier: &str) -> Result<Option<ResourceServer>> {
        let row: Option<(String, String)> = sqlx::query_as("SELECT id, doc FROM resource_servers WHERE identifier = ?")
            .bind(identifier)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|(id, doc)| records::resource_server_from_row(id, identifier.to_owned(), &doc)).transpose()
    }

    async fn list_resource_servers(&self, identifiers: &[String], page: Page) -> Result<Listing<ResourceServer>> {
        // The identifier list travels as one JSON array parameter, so the SQL text is constant
        // whatever its length.
        const FILTER: &str = "(?1 = 0 OR identifier IN (SELECT value FROM json_each(?2)))";
        let (limit, offset) = limit_offset(page);
        let restrict = !identifiers.is_empty();
        let wanted = serde_json::to_string(identifiers).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut tx = self.read_tx().await?;
        let count: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM resource_servers WHERE {FILTER}")))
                .bind(restrict)
                .bind(wanted.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        let rows: Vec<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, identifier, doc FROM resource_servers WHERE {FILTER} ORDER BY seq LIMIT ?3 OFFSET ?4"
        )))
        .bind(restrict)
        .bind(wanted.as_str())
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        let items = rows
            .into_iter()
            .map(|(id, identifier, doc)| records::resource_server_from_row(id, identifier, &doc))
            .collect::<Result<Vec<_>>>()?;
        Ok(Listing { items, total: total(count) })
    }

    async fn insert_grant(&self, grant: &ClientGrant) -> Result<()> {
        sqlx::query(
            "INSERT INTO client_grants (id, client_id, audience, allow_any_organization, doc) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(grant.id.as_str())
        .bind(grant.client_id.as_str())
        .bind(grant.audience.as_str())
        .bind(grant.allow_any_organization)
        .bind(records::grant_doc(grant)?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn update_grant(&self, grant: &ClientGrant) -> Result<()> {
        let result = sqlx::query(
            "UPDATE client_grants SET client_id = ?, audience = ?, allow_any_organization = ?, doc = ? WHERE id = ?",
        )
        .bind(grant.client_id.as_str())
        .bind(grant.audience.as_str())
        .bind(grant.allow_any_organization)
        .bind(records::grant_doc(grant)?)
        .bind(grant.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        require_row(result)
    }

    async fn delete_grant(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM organization_client_grants WHERE grant_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let result =
            sqlx::query("DELETE FROM client_grants WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(backend)?;
        require_row(result)?;
        commit(tx).await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<ClientGrant>> {
        let row: Option<GrantRow> =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {GRANT_COLUMNS} FROM client_grants WHERE id = ?")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(records::grant_from_row).transpose()
    }

    async fn list_grants(&self, filter: &GrantFilter, page: Page) -> Result<Listing<ClientGrant>> {
        const FILTER: &str = "(?1 IS NULL OR client_id = ?1) AND (?2 IS NULL OR audience = ?2) \
                              AND (?3 IS NULL OR allow_any_organization = ?3)";
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        let count: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM client_grants WHERE {FILTER}")))
                .bind(filter.client_id.as_deref())
                .bind(filter.audience.as_deref())
                .bind(filter.allow_any_organization)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        let rows: Vec<GrantRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM client_grants WHERE {FILTER} ORDER BY seq LIMIT ?4 OFFSET ?5"
        )))
        .bind(filter.client_id.as_deref())
        .bind(filter.audience.as_deref())
        .bind(filter.allow_any_organization)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        let items = rows.into_iter().map(records::grant_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Listing { items, total: total(count) })
    }

    async fn insert_organization(&self, org: &Organization) -> Result<()> {
        sqlx::query("INSERT INTO organizations (id, name, doc) VALUES (?, ?, ?)")
            .bind(org.id.as_str())
            .bind(org.name.as_str())
            .bind(records::organization_doc(org)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_organization(&self, org: &Organization) -> Result<()> {
        let result = sqlx::query("UPDATE organizations SET name = ?, doc = ? WHERE id = ?")
            .bind(org.name.as_str())
            .bind(records::organization_doc(org)?)
            .bind(org.id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn delete_organization(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM organization_client_grants WHERE organization_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let result =
            sqlx::query("DELETE FROM organizations WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(backend)?;
        require_row(result)?;
        commit(tx).await
    }

    async fn get_organization(&self, id: &str) -> Result<Option<Organization>> {
        self.get_named(ORGANIZATIONS, id, records::organization_from_row).await
    }

    async fn list_organizations(&self, page: Page) -> Result<Listing<Organization>> {
        self.list_named(ORGANIZATIONS, page, records::organization_from_row).await
    }

    async fn add_organization_grant(&self, organization_id: &str, grant_id: &str) -> Result<()> {
        // A missing organization or grant fails the foreign keys, which `backend` maps to NotFound.
        sqlx::query("INSERT INTO organization_client_grants (organization_id, grant_id) VALUES (?, ?)")
            .bind(organization_id)
            .bind(grant_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_organization_grant(&self, organization_id: &str, grant_id: &str) -> Result<()> {
        let result = sqlx::query("DELETE FROM organization_client_grants WHERE organization_id = ? AND grant_id = ?")
            .bind(organization_id)
            .bind(grant_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn list_organization_grants(&self, organization_id: &str, page: Page) -> Result<Listing<ClientGrant>> {
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM organization_client_grants a JOIN client_grants g ON g.id = a.grant_id \
             WHERE a.organization_id = ?",
        )
        .bind(organization_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let rows: Vec<GrantRow> = sqlx::query_as(
            "SELECT g.id, g.client_id, g.audience, g.allow_any_organization, g.doc \
             FROM organization_client_grants a JOIN client_grants g ON g.id = a.grant_id \
             WHERE a.organization_id = ? ORDER BY a.seq LIMIT ? OFFSET ?",
        )
        .bind(organization_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        commit(tx).await?;
        let items = rows.into_iter().map(records::grant_from_row).collect::<Result<Vec<_>>>()?;
        Ok(Listing { items, total: total(count) })
    }

    async fn get_tenant_settings(&self) -> Result<TenantSettings> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM tenant_settings WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        doc.map_or_else(|| Ok(TenantSettings::default()), |doc| records::tenant_from_doc(&doc))
    }

    async fn put_tenant_settings(&self, tenant: &TenantSettings) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_settings (id, doc) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
        )
        .bind(records::tenant_doc(tenant)?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_private_key, state, created_at, state_changed_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key.kid.as_str())
        .bind(key.alg.as_str())
        .bind(key.sealed_private_key.as_slice())
        .bind(key.state.as_str())
        .bind(key.created_at.millis)
        .bind(key.state_changed_at.millis)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredKey>> {
        let rows: Vec<(String, String, Vec<u8>, String, i64, i64)> = sqlx::query_as(
            "SELECT kid, alg, sealed_private_key, state, created_at, state_changed_at FROM signing_keys \
             ORDER BY created_at, seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|(kid, kind, sealed_private_key, state, created_at, state_changed_at)| {
                let alg = SigningAlg::parse(&kind)
                    .ok_or_else(|| StoreError::Backend(format!("corrupt signing key {kid:?}: unknown algorithm")))?;
                Ok(StoredKey {
                    kid,
                    alg,
                    sealed_private_key,
                    state,
                    created_at: UnixTime::from_millis(created_at),
                    state_changed_at: UnixTime::from_millis(state_changed_at),
                })
            })
            .collect()
    }

    async fn set_signing_key_states(&self, changes: &[(String, String)], at: UnixTime) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for (kid, state) in changes {
            let done = sqlx::query(SET_KEY_STATE)
                .bind(state.as_str())
                .bind(at.millis)
                .bind(kid.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn append_events(&self, events: &[StoredEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Multi-row INSERTs: one statement per chunk instead of one per event keeps a group commit
        // of hundreds of events to a handful of round trips to the SQLite thread. Chunks come in a
        // few fixed sizes (the largest that fits what is left) so that their SQL texts stay
        // prepared in sqlx's statement cache: one text per remainder (1 to 100 rows) evicted each
        // other, and re-preparing them cost ~6 k instructions per event.
        //
        // Up to 512 rows (3 072 bound values, well under SQLite's 32 766): while the statements
        // kept a statement journal (until `OR FAIL`, see `insert_events_sql`), a copy of every
        // page each statement modifies, 64-row statements each copied the tail pages of the table
        // and of every index again (up to 64 `events_client` shards each, 16 since migration
        // 0004). 512-row statements cost 15-16 % less CPU per event, with 10 or 10 000 clients
        // (`cargo run --release -p ration-store --example append_events`, docs/benchmarks.md);
        // 2 048 rows gained nothing more.
        const STATEMENT_ROWS: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];
        // Rows are kept in `log_id` order (migration 0005), so only ids after the newest stored one
        // are appended. The one writer makes ids in increasing order: an event at or before the
        // newest is a replay of the journal, already stored. The batch is put in order first, the
        // first copy of a duplicated id kept.
        let mut tx = self.write_tx().await?;
        let newest: Option<String> =
            sqlx::query_scalar(NEWEST_LOG_ID).fetch_optional(&mut *tx).await.map_err(backend)?;
        let in_order = events.windows(2).all(|pair| pair[0].log_id < pair[1].log_id);
        let mut sorted;
        let events = if in_order {
            events
        } else {
            sorted = events.to_vec();
            sorted.sort_by(|a, b| a.log_id.cmp(&b.log_id));
            sorted.dedup_by(|later, earlier| later.log_id == earlier.log_id);
            &sorted[..]
        };
        let replayed = newest.map_or(0, |newest| events.partition_point(|e| e.log_id <= newest));
        let (replayed, mut rest) = events.split_at(replayed);
        if let (Some(oldest), Some(latest)) = (replayed.first(), replayed.last()) {
            // A journal replay overlaps the newest stored events: both ends of the overlap are
            // stored (checking each event would read back the whole overlap, up to a segment).
            let mut missing = Vec::new();
            for event in [oldest, latest] {
                let stored = seq_from(&mut tx, &event.log_id, true).await?;
                if stored.is_none_or(|(_, id)| id != event.log_id) {
                    missing.push(event.log_id.as_str());
                }
            }
            // Only a writer that broke the order could get here: say so rather than reorder the log.
            if !missing.is_empty() {
                tracing::error!(?missing, "events older than the newest stored one were not stored");
            }
        }
        while !rest.is_empty() {
            let rows = STATEMENT_ROWS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
            let (chunk, tail) = rest.split_at(rows.min(rest.len()));
            rest = tail;
            // Only placeholders are interpolated; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(insert_events_sql(chunk.len())));
            for e in chunk {
                q = q
                    .bind(&e.log_id)
                    .bind(e.date.millis)
                    .bind(&e.event_type)
                    .bind(ration_domain::logstream::category_of(&e.event_type))
                    .bind(&e.client_id)
                    .bind(e.client_id.as_deref().map(client_key))
                    .bind(&e.json);
            }
            q.execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Listing<StoredEvent>> {
        let filter = event_filter(query);
        // One snapshot for the search, the count and the page.
        let mut tx = self.read_tx().await?;
        let first_seq = match &query.after_log_id {
            Some(after) => match seq_from(&mut tx, after, false).await? {
                Some((seq, _)) => Some(seq),
                None => return Ok(Listing { items: Vec::new(), total: 0 }),
            },
            None => None,
        };
        macro_rules! bind_filters {
            ($q:expr) => {{
                let mut q = $q;
                for t in &query.types {
                    q = q.bind(t);
                }
                for c in &query.categories {
                    q = q.bind(c);
                }
                if let Some(c) = &query.client_id {
                    let key = client_key(c);
                    q = q.bind(client_shard(key)).bind(key).bind(c);
                }
                if let Some(d) = query.date_from {
                    q = q.bind(d.millis);
                }
                if let Some(d) = query.date_to {
                    q = q.bind(d.millis);
                }
                if let Some(seq) = first_seq {
                    q = q.bind(seq);
                }
                q
            }};
        }
        let order = if query.after_log_id.is_none() && query.newest_first { "DESC" } else { "ASC" };
        let offset = if query.after_log_id.is_some() {
            0
        } else {
            i64::from(query.page.page).saturating_mul(i64::from(query.page.per_page))
        };
        let list_sql = format!(
            "SELECT log_id, date, type, client_id, doc FROM events{filter} ORDER BY seq {order} LIMIT ? OFFSET ?"
        );
        let total: i64 = if query.with_total {
            let count_sql = format!("SELECT COUNT(*) FROM events{filter}");
            bind_filters!(sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql)))
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?
        } else {
            0
        };
        let rows: Vec<EventRow> = bind_filters!(sqlx::query_as(sqlx::AssertSqlSafe(list_sql)))
            .bind(i64::from(query.page.per_page))
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await?;
        let items = rows.into_iter().map(event_from_row).collect();
        Ok(Listing { items, total: u64::try_from(total).unwrap_or(0) })
    }

    async fn get_event(&self, log_id: &str) -> Result<Option<StoredEvent>> {
        let mut tx = self.read_tx().await?;
        let seq = match seq_from(&mut tx, log_id, true).await? {
            Some((seq, id)) if id == log_id => seq,
            _ => return Ok(None),
        };
        let row: Option<EventRow> =
            sqlx::query_as("SELECT log_id, date, type, client_id, doc FROM events WHERE seq = ?")
                .bind(seq)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        commit(tx).await?;
        Ok(row.map(event_from_row))
    }

    async fn prune_events(&self, before: UnixTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM events WHERE date < ?")
            .bind(before.millis)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn last_log_id(&self) -> Result<Option<String>> {
        sqlx::query_scalar(NEWEST_LOG_ID).fetch_optional(&self.pool).await.map_err(backend)
    }

    async fn insert_log_stream(&self, stream: &LogStream, cursor: &str) -> Result<()> {
        sqlx::query("INSERT INTO log_streams (id, doc, cursor) VALUES (?, ?, ?)")
            .bind(&stream.id)
            .bind(records::log_stream_doc(stream)?)
            .bind(cursor)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_log_stream(&self, stream: &LogStream) -> Result<()> {
        let done = sqlx::query("UPDATE log_streams SET doc = ? WHERE id = ?")
            .bind(records::log_stream_doc(stream)?)
            .bind(&stream.id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn delete_log_stream(&self, id: &str) -> Result<()> {
        let done =
            sqlx::query("DELETE FROM log_streams WHERE id = ?").bind(id).execute(&self.pool).await.map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn get_log_stream(&self, id: &str) -> Result<Option<(LogStream, StreamPosition)>> {
        let row: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT doc, cursor, last_delivered FROM log_streams WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|(doc, cursor, last_delivered)| {
            Ok((records::log_stream_from_row(id.to_owned(), &doc)?, StreamPosition { cursor, last_delivered }))
        })
        .transpose()
    }

    async fn list_log_streams(&self) -> Result<Vec<(LogStream, StreamPosition)>> {
        let rows: Vec<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, doc, cursor, last_delivered FROM log_streams ORDER BY seq")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.into_iter()
            .map(|(id, doc, cursor, last_delivered)| {
                Ok((records::log_stream_from_row(id, &doc)?, StreamPosition { cursor, last_delivered }))
            })
            .collect()
    }

    async fn set_log_stream_cursor(&self, id: &str, log_id: &str) -> Result<()> {
        let done = sqlx::query("UPDATE log_streams SET cursor = ?1, last_delivered = ?1 WHERE id = ?2")
            .bind(log_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn insert_action(&self, action: &Action) -> Result<()> {
        sqlx::query("INSERT INTO actions (id, name, doc) VALUES (?, ?, ?)")
            .bind(&action.id)
            .bind(&action.name)
            .bind(records::action_doc(action)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_action(&self, action: &Action) -> Result<()> {
        let done = sqlx::query("UPDATE actions SET name = ?, doc = ? WHERE id = ?")
            .bind(&action.name)
            .bind(records::action_doc(action)?)
            .bind(&action.id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn delete_action(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM actions WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM action_versions WHERE action_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM action_bindings WHERE action_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn get_action(&self, id: &str) -> Result<Option<Action>> {
        self.get_named(ACTIONS, id, records::action_from_row).await
    }

    async fn list_actions(&self, page: Page) -> Result<Listing<Action>> {
        self.list_named(ACTIONS, page, records::action_from_row).await
    }

    async fn insert_action_version(&self, version: &ActionVersion) -> Result<()> {
        sqlx::query("INSERT INTO action_versions (id, action_id, number, doc) VALUES (?, ?, ?, ?)")
            .bind(&version.id)
            .bind(&version.action_id)
            .bind(i64::from(version.number))
            .bind(records::action_version_doc(version)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_action_version(&self, action_id: &str, number: u32) -> Result<Option<ActionVersion>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, doc FROM action_versions WHERE action_id = ? AND number = ?")
                .bind(action_id)
                .bind(i64::from(number))
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|(id, doc)| records::action_version_from_row(id, action_id.to_owned(), i64::from(number), &doc))
            .transpose()
    }

    async fn list_action_versions(&self, action_id: &str) -> Result<Vec<ActionVersion>> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT id, number, doc FROM action_versions WHERE action_id = ? ORDER BY number DESC")
                .bind(action_id)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.into_iter()
            .map(|(id, number, doc)| records::action_version_from_row(id, action_id.to_owned(), number, &doc))
            .collect()
    }

    async fn list_action_bindings(&self) -> Result<Vec<ActionBinding>> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT id, action_id, display_name, created_at FROM action_bindings ORDER BY position")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(id, action_id, display_name, created_at)| ActionBinding {
                id,
                action_id,
                display_name,
                created_at: UnixTime::from_millis(created_at),
            })
            .collect())
    }

    async fn set_action_bindings(&self, bindings: &[ActionBinding]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM action_bindings").execute(&mut *tx).await.map_err(backend)?;
        for (position, b) in bindings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO action_bindings (id, action_id, display_name, position, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&b.id)
            .bind(&b.action_id)
            .bind(&b.display_name)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(b.created_at.millis)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn insert_credential(&self, credential: &ClientCredential) -> Result<()> {
        sqlx::query("INSERT INTO client_credentials (id, client_id, doc) VALUES (?1, ?2, ?3)")
            .bind(&credential.id)
            .bind(&credential.client_id)
            .bind(records::credential_doc(credential)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_credential(&self, credential: &ClientCredential) -> Result<()> {
        let done = sqlx::query("UPDATE client_credentials SET doc = ?1 WHERE id = ?2 AND client_id = ?3")
            .bind(records::credential_doc(credential)?)
            .bind(&credential.id)
            .bind(&credential.client_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn delete_credential(&self, client_id: &str, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM client_credentials WHERE id = ?1 AND client_id = ?2")
            .bind(id)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn list_credentials(&self, client_id: &str) -> Result<Vec<ClientCredential>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, doc FROM client_credentials WHERE client_id = ?1 ORDER BY seq")
                .bind(client_id)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.into_iter().map(|(id, doc)| records::credential_from_row(id, client_id.to_owned(), &doc)).collect()
    }

    async fn claim_once(&self, key: &str, expires_at: UnixTime, now: UnixTime) -> Result<bool> {
        // Inserted, or taken over from an expired record: either way one row changes. A live
        // record stays as it is and nothing changes: a replay.
        let done = sqlx::query(
            "INSERT INTO once_keys (key, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= ?3",
        )
        .bind(key)
        .bind(expires_at.millis)
        .bind(now.millis)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn prune_once(&self, now: UnixTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM once_keys WHERE expires_at <= ?1")
            .bind(now.millis)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
