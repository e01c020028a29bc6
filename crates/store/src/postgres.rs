//! The PostgreSQL backend of [`ConfigStore`], for the distributed mode: several Ration instances
//! share one database.
//!
//! Same schema, same `doc` JSON (`records.rs`) and same semantics as the SQLite backend; only the
//! SQL dialect differs.
//!
//! Durability: PostgreSQL's own settings govern it (`synchronous_commit`, `fsync`, replication).
//! The store leaves them at the server's defaults for both [`Durability`] modes: a commit is
//! acknowledged only once PostgreSQL has flushed its WAL, which already meets
//! [`Durability::Fsync`]. Relaxing `synchronous_commit` for [`Durability::Process`] would be
//! wrong: with it off, a crash of the *database server* can lose commits the store reported done.
//!
//! Atomicity: every multi-statement write (the cascading deletes, the binding list) runs in one
//! transaction. Listings and the catalog read in one `REPEATABLE READ READ ONLY` transaction, so
//! `total` and `items` (and every table of the catalog) come from the same snapshot.
//!
//! Start-up: several instances may start at once. Each runs the migrations under sqlx's
//! PostgreSQL advisory lock, so one applies them and the others wait, then find nothing to do.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ration_domain::{
    Action, ActionBinding, ActionVersion, Catalog, Client, ClientCredential, ClientGrant, Durability, LogStream,
    Organization, ResourceServer, SigningAlg, TenantSettings, UnixTime,
};
use sqlx::error::ErrorKind;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::records::{self, ACTIONS, FromNamedRow, GRANT_COLUMNS, GrantRow, NamedTable, ORGANIZATIONS};
use crate::{
    ConfigStore, EventQuery, GrantFilter, Listing, Page, Result, StoreError, StoredEvent, StoredKey, StreamPosition,
};

/// Connections per instance. The token path never reads the store; management requests, event
/// group commits and log-stream deliveries share these, and several instances share the server's
/// `max_connections` (100 by default), so a modest pool each.
const MAX_CONNECTIONS: u32 = 16;

/// How long an operation waits for a pooled connection (or for a new one to be established)
/// before failing, so an unreachable server surfaces as an error instead of a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Events per `INSERT` of [`ConfigStore::append_events`]: bounds the size of one statement's
/// parameter arrays whatever the size of the batch.
const EVENTS_PER_STATEMENT: usize = 1000;

/// Schema migrations, oldest first: `(version, description, sql)`.
///
/// Listed by hand rather than with `sqlx::migrate!`, which needs sqlx's `macros` feature (a
/// proc-macro build for the whole workspace). The files keep sqlx-cli's `<version>_<name>.sql`
/// naming and the checksums are the same as `migrate!` would compute. A unit test fails if a file
/// in the directory is missing here.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../migrations/postgres/0001_init.sql"))];

fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    );
    // On by default; set explicitly because concurrent start-up of several instances depends on
    // it: the migrator holds `pg_advisory_lock` while it checks and applies migrations.
    migrator.set_locking(true);
    migrator
}

const SET_KEY_STATE: &str = "UPDATE signing_keys SET state = $1, state_changed_at = $2 WHERE kid = $3";

/// The NOTIFY channel of configuration changes.
const CHANGES_CHANNEL: &str = "ration_changes";

/// The configuration store in a PostgreSQL database.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database?…`) and
    /// brings its schema up to date.
    ///
    /// The pool holds up to 16 connections and waits at most 5 s for one. `durability` changes
    /// nothing: PostgreSQL's own settings decide when a commit is durable (see the module docs).
    /// Safe to call from several processes at once against one database.
    pub async fn connect(url: &str, durability: Durability) -> Result<PgStore> {
        match durability {
            // Deliberately the same for both: never `synchronous_commit = off` (module docs).
            Durability::Process | Durability::Fsync => {}
        }
        // sqlx ignores the scheme; checking it turns a URL meant for another database into a clear
        // error instead of a connection attempt.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Backend(
                "invalid PostgreSQL database URL: expected postgres:// or postgresql://".to_owned(),
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL database URL: {e}")))?;
        // Migrations run on a pool of their own with one connection, closed afterwards whatever
        // the outcome: the advisory lock belongs to that connection's session, and a failed run
        // may leave it held, which closing releases, so other instances are never blocked by it.
        let migration_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        let migrated = migrator().run(&migration_pool).await;
        migration_pool.close().await;
        migrated.map_err(|e| StoreError::Backend(format!("schema migration failed: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PgStore { pool })
    }

    /// A read transaction: one snapshot for several queries.
    async fn read_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(backend)
    }

    /// A write transaction (READ COMMITTED: the writes are by key, and the foreign keys keep
    /// associations consistent under concurrent deletes).
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(backend)
    }

    /// The row `id` of a table of `(id, name, doc)` rows (organizations, actions).
    async fn get_named<T>(&self, table: NamedTable, id: &str, from_row: FromNamedRow<T>) -> Result<Option<T>> {
        if !storable(id) {
            return Ok(None);
        }
        let sql = format!("SELECT name, doc FROM {} WHERE id = $1", table.0);
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
        let sql = format!("SELECT id, name, doc FROM {} ORDER BY seq LIMIT $1 OFFSET $2", table.0);
        let rows: Vec<(String, String, String)> =
            sqlx::query_as(AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(&mut *tx).await.map_err(backend)?;
        commit(tx).await?;
        let items = rows.into_iter().map(|(id, name, doc)| from_row(id, name, &doc)).collect::<Result<Vec<_>>>()?;
        Ok(Listing { items, total: total(count) })
    }
}

/// Maps a sqlx error to the store's error.
///
/// Unique violations become `Conflict` named after the broken constraint; foreign-key violations
/// only arise from associating a missing organization or grant, hence `NotFound`. The text of
/// other errors is PostgreSQL's message, which names objects, not values (the `DETAIL` that
/// quotes values is not included).
fn backend(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            ErrorKind::UniqueViolation => {
                return StoreError::Conflict(conflict_field(db.constraint().unwrap_or_default()));
            }
            ErrorKind::ForeignKeyViolation => return StoreError::NotFound,
            _ => {}
        }
        // character_not_in_repertoire: the only text a Rust string can hold that PostgreSQL
        // cannot is one with a NUL character.
        if db.code().as_deref() == Some("22021") {
            return StoreError::Backend("PostgreSQL cannot store text containing a NUL character".to_owned());
        }
    }
    StoreError::Backend(e.to_string())
}

/// The conflict name for a unique constraint named `<table>__<column>[__<column>]` (see the
/// migration): the column names joined by `/` (`client_id/audience`), except that a duplicate
/// organization association is reported as `grant_id`, the field the caller supplied. These are
/// the names the SQLite backend derives from its error messages.
fn conflict_field(constraint: &str) -> String {
    let Some((_table, columns)) = constraint.split_once("__") else {
        return constraint.to_owned();
    };
    let names: Vec<&str> = columns.split("__").collect();
    match names.as_slice() {
        ["organization_id", "grant_id"] => "grant_id".to_owned(),
        _ => names.join("/"),
    }
}

/// Whether PostgreSQL can hold `s`: its text types reject the NUL character. No stored key can
/// contain one, so a lookup by such a key finds nothing; checking first answers it as SQLite does
/// (absent, `NotFound`, an empty listing) instead of failing with an encoding error.
fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// `NotFound` when a write by key touched no row.
fn require_row(result: PgQueryResult) -> Result<()> {
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

fn empty<T>() -> Listing<T> {
    Listing { items: Vec::new(), total: 0 }
}

async fn commit(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<()> {
    tx.commit().await.map_err(backend)
}

type EventRow = (String, i64, String, Option<String>, String);

fn event_from_row((log_id, date, event_type, client_id, json): EventRow) -> StoredEvent {
    StoredEvent { log_id, date: UnixTime::from_millis(date), event_type, client_id, json }
}

#[async_trait]
impl ConfigStore for PgStore {
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

        // Constant SQL: only the column list constant is interpolated.
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
        sqlx::query("INSERT INTO clients (client_id, doc) VALUES ($1, $2)")
            .bind(client.client_id.as_str())
            .bind(records::client_doc(client)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_client(&self, client: &Client) -> Result<()> {
        if !storable(&client.client_id) {
            return Err(StoreError::NotFound);
        }
        let result = sqlx::query("UPDATE clients SET doc = $1 WHERE client_id = $2")
            .bind(records::client_doc(client)?)
            .bind(client.client_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn delete_client(&self, client_id: &str) -> Result<()> {
        if !storable(client_id) {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.write_tx().await?;
        let result = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        require_row(result)?;
        sqlx::query("DELETE FROM client_credentials WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "DELETE FROM organization_client_grants \
             WHERE grant_id IN (SELECT id FROM client_grants WHERE client_id = $1)",
        )
        .bind(client_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM client_grants WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>> {
        if !storable(client_id) {
            return Ok(None);
        }
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM clients WHERE client_id = $1")
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
            sqlx::query_as("SELECT client_id, doc FROM clients ORDER BY seq LIMIT $1 OFFSET $2")
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
        sqlx::query("INSERT INTO resource_servers (id, identifier, doc) VALUES ($1, $2, $3)")
            .bind(rs.id.as_str())
            .bind(rs.identifier.as_str())
            .bind(records::resource_server_doc(rs)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_resource_server(&self, rs: &ResourceServer) -> Result<()> {
        if !storable(&rs.id) {
            return Err(StoreError::NotFound);
        }
        let result = sqlx::query("UPDATE resource_servers SET identifier = $1, doc = $2 WHERE id = $3")
            .bind(rs.identifier.as_str())
            .bind(records::resource_server_doc(rs)?)
            .bind(rs.id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn delete_resource_server(&self, id: &str) -> Result<()> {
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.write_tx().await?;
        let identifier: Option<String> =
            sqlx::query_scalar("DELETE FROM resource_servers WHERE id = $1 RETURNING identifier")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let Some(identifier) = identifier else {
            return Err(StoreError::NotFound);
        };
        sqlx::query(
            "DELETE FROM organization_client_grants \
             WHERE grant_id IN (SELECT id FROM client_grants WHERE audience = $1)",
        )
        .bind(identifier.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM client_grants WHERE audience = $1")
            .bind(identifier.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn get_resource_server(&self, id: &str) -> Result<Option<ResourceServer>> {
        if !storable(id) {
            return Ok(None);
        }
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT identifier, doc FROM resource_servers WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|(identifier, doc)| records::resource_server_from_row(id.to_owned(), identifier, &doc)).transpose()
    }

    async fn get_resource_server_by_identifier(&self, identifier: &str) -> Result<Option<ResourceServer>> {
        if !storable(identifier) {
            return Ok(None);
        }
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, doc FROM resource_servers WHERE identifier = $1")
                .bind(identifier)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|(id, doc)| records::resource_server_from_row(id, identifier.to_owned(), &doc)).transpose()
    }

    async fn list_resource_servers(&self, identifiers: &[String], page: Page) -> Result<Listing<ResourceServer>> {
        // The identifier list travels as one array parameter, so the SQL text is constant whatever
        // its length. Identifiers PostgreSQL cannot store match nothing and are left out.
        const FILTER: &str = "(NOT $1 OR identifier = ANY($2))";
        let restrict = !identifiers.is_empty();
        let wanted: Vec<&str> = identifiers.iter().map(String::as_str).filter(|i| storable(i)).collect();
        if restrict && wanted.is_empty() {
            return Ok(empty());
        }
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        // Constant SQL: only the FILTER constant is interpolated.
        let count: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM resource_servers WHERE {FILTER}")))
                .bind(restrict)
                .bind(&wanted)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        let rows: Vec<(String, String, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, identifier, doc FROM resource_servers WHERE {FILTER} ORDER BY seq LIMIT $3 OFFSET $4"
        )))
        .bind(restrict)
        .bind(&wanted)
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
            "INSERT INTO client_grants (id, client_id, audience, allow_any_organization, doc) \
             VALUES ($1, $2, $3, $4, $5)",
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
        if !storable(&grant.id) {
            return Err(StoreError::NotFound);
        }
        let result = sqlx::query(
            "UPDATE client_grants SET client_id = $1, audience = $2, allow_any_organization = $3, doc = $4 \
             WHERE id = $5",
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
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM organization_client_grants WHERE grant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let result =
            sqlx::query("DELETE FROM client_grants WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(backend)?;
        require_row(result)?;
        commit(tx).await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<ClientGrant>> {
        if !storable(id) {
            return Ok(None);
        }
        // Constant SQL: only the column list constant is interpolated.
        let row: Option<GrantRow> =
            sqlx::query_as(AssertSqlSafe(format!("SELECT {GRANT_COLUMNS} FROM client_grants WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(records::grant_from_row).transpose()
    }

    async fn list_grants(&self, filter: &GrantFilter, page: Page) -> Result<Listing<ClientGrant>> {
        const FILTER: &str = "($1::text IS NULL OR client_id = $1) AND ($2::text IS NULL OR audience = $2) \
                              AND ($3::boolean IS NULL OR allow_any_organization = $3)";
        let unmatchable = |v: &Option<String>| v.as_deref().is_some_and(|v| !storable(v));
        if unmatchable(&filter.client_id) || unmatchable(&filter.audience) {
            return Ok(empty());
        }
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        // Constant SQL: only the FILTER and column list constants are interpolated.
        let count: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM client_grants WHERE {FILTER}")))
                .bind(filter.client_id.as_deref())
                .bind(filter.audience.as_deref())
                .bind(filter.allow_any_organization)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        let rows: Vec<GrantRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM client_grants WHERE {FILTER} ORDER BY seq LIMIT $4 OFFSET $5"
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
        sqlx::query("INSERT INTO organizations (id, name, doc) VALUES ($1, $2, $3)")
            .bind(org.id.as_str())
            .bind(org.name.as_str())
            .bind(records::organization_doc(org)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_organization(&self, org: &Organization) -> Result<()> {
        if !storable(&org.id) {
            return Err(StoreError::NotFound);
        }
        let result = sqlx::query("UPDATE organizations SET name = $1, doc = $2 WHERE id = $3")
            .bind(org.name.as_str())
            .bind(records::organization_doc(org)?)
            .bind(org.id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn delete_organization(&self, id: &str) -> Result<()> {
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM organization_client_grants WHERE organization_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let result =
            sqlx::query("DELETE FROM organizations WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(backend)?;
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
        // A key PostgreSQL cannot store names no row: the foreign key would fail, so NotFound.
        if !storable(organization_id) || !storable(grant_id) {
            return Err(StoreError::NotFound);
        }
        // A missing organization or grant fails the foreign keys, which `backend` maps to NotFound.
        sqlx::query("INSERT INTO organization_client_grants (organization_id, grant_id) VALUES ($1, $2)")
            .bind(organization_id)
            .bind(grant_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_organization_grant(&self, organization_id: &str, grant_id: &str) -> Result<()> {
        if !storable(organization_id) || !storable(grant_id) {
            return Err(StoreError::NotFound);
        }
        let result = sqlx::query("DELETE FROM organization_client_grants WHERE organization_id = $1 AND grant_id = $2")
            .bind(organization_id)
            .bind(grant_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(result)
    }

    async fn list_organization_grants(&self, organization_id: &str, page: Page) -> Result<Listing<ClientGrant>> {
        if !storable(organization_id) {
            return Ok(empty());
        }
        let (limit, offset) = limit_offset(page);
        let mut tx = self.read_tx().await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM organization_client_grants a JOIN client_grants g ON g.id = a.grant_id \
             WHERE a.organization_id = $1",
        )
        .bind(organization_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let rows: Vec<GrantRow> = sqlx::query_as(
            "SELECT g.id, g.client_id, g.audience, g.allow_any_organization, g.doc \
             FROM organization_client_grants a JOIN client_grants g ON g.id = a.grant_id \
             WHERE a.organization_id = $1 ORDER BY a.seq LIMIT $2 OFFSET $3",
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
            "INSERT INTO tenant_settings (id, doc) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc",
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
             VALUES ($1, $2, $3, $4, $5, $6)",
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
        // One INSERT per chunk, its rows passed as one array per column: the SQL text is constant
        // (one prepared statement, whatever the batch size) and a group commit of hundreds of
        // events costs a round trip per chunk, not per event. `ON CONFLICT DO NOTHING` also skips
        // a `log_id` repeated inside the batch.
        let mut tx = self.write_tx().await?;
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            let log_ids: Vec<&str> = chunk.iter().map(|e| e.log_id.as_str()).collect();
            let dates: Vec<i64> = chunk.iter().map(|e| e.date.millis).collect();
            let types: Vec<&str> = chunk.iter().map(|e| e.event_type.as_str()).collect();
            let categories: Vec<&str> =
                chunk.iter().map(|e| ration_domain::logstream::category_of(&e.event_type)).collect();
            let client_ids: Vec<Option<&str>> = chunk.iter().map(|e| e.client_id.as_deref()).collect();
            // Unpacked first (`crate::packed`): PostgreSQL keeps plain JSON, which SQL can query.
            // Packing is for the embedded store's CPU.
            let docs: Vec<std::borrow::Cow<'_, str>> = chunk
                .iter()
                .map(|e| crate::packed::unpack(&e.json, crate::packed::Columns { log_id: &e.log_id, date: e.date }))
                .collect();
            sqlx::query(
                "INSERT INTO events (log_id, date, type, category, client_id, doc) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                 ON CONFLICT (log_id) DO NOTHING",
            )
            .bind(&log_ids)
            .bind(&dates)
            .bind(&types)
            .bind(&categories)
            .bind(&client_ids)
            .bind(&docs)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        commit(tx).await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Listing<StoredEvent>> {
        // Values PostgreSQL cannot store match no stored event: drop them, and if a filter is left
        // with nothing that can match, so is the query.
        let types: Vec<&str> = query.types.iter().map(String::as_str).filter(|t| storable(t)).collect();
        let categories: Vec<&str> = query.categories.iter().map(String::as_str).filter(|c| storable(c)).collect();
        if (!query.types.is_empty() && types.is_empty())
            || (!query.categories.is_empty() && categories.is_empty())
            || query.client_id.as_deref().is_some_and(|c| !storable(c))
        {
            return Ok(empty());
        }
        // Bytewise, `x > "a\0…"` holds exactly when `x > "a"` for every `x` without a NUL, so the
        // checkpoint is cut at its first NUL.
        let after_log_id = query.after_log_id.as_deref().map(|l| l.split('\0').next().unwrap_or_default());

        // Only the predicates of set filters: each combination gets its own statement (and plan)
        // instead of one generic plan full of `$n IS NULL OR …` that cannot use the indexes.
        let mut filter = String::from(" WHERE TRUE");
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if !types.is_empty() {
            filter.push_str(&format!(" AND type = ANY(${})", next()));
        }
        if !categories.is_empty() {
            filter.push_str(&format!(" AND category = ANY(${})", next()));
        }
        if query.client_id.is_some() {
            filter.push_str(&format!(" AND client_id = ${}", next()));
        }
        if query.date_from.is_some() {
            filter.push_str(&format!(" AND date >= ${}", next()));
        }
        if query.date_to.is_some() {
            filter.push_str(&format!(" AND date < ${}", next()));
        }
        if after_log_id.is_some() {
            filter.push_str(&format!(" AND log_id > ${}", next()));
        }
        let (limit, offset) = (next(), next());
        macro_rules! bind_filters {
            ($q:expr) => {{
                let mut q = $q;
                if !types.is_empty() {
                    q = q.bind(&types);
                }
                if !categories.is_empty() {
                    q = q.bind(&categories);
                }
                if let Some(c) = &query.client_id {
                    q = q.bind(c);
                }
                if let Some(d) = query.date_from {
                    q = q.bind(d.millis);
                }
                if let Some(d) = query.date_to {
                    q = q.bind(d.millis);
                }
                if let Some(l) = after_log_id {
                    q = q.bind(l);
                }
                q
            }};
        }
        let order = if after_log_id.is_none() && query.newest_first { "DESC" } else { "ASC" };
        let offset_value = if after_log_id.is_some() {
            0
        } else {
            i64::from(query.page.page).saturating_mul(i64::from(query.page.per_page))
        };
        let list_sql = format!(
            "SELECT log_id, date, type, client_id, doc FROM events{filter} \
             ORDER BY log_id {order} LIMIT ${limit} OFFSET ${offset}"
        );
        let mut tx = self.read_tx().await?;
        // Only constant fragments and placeholders are interpolated; every value is bound.
        let count: i64 = if query.with_total {
            let count_sql = format!("SELECT COUNT(*) FROM events{filter}");
            bind_filters!(sqlx::query_scalar(AssertSqlSafe(count_sql))).fetch_one(&mut *tx).await.map_err(backend)?
        } else {
            0
        };
        let rows: Vec<EventRow> = bind_filters!(sqlx::query_as(AssertSqlSafe(list_sql)))
            .bind(i64::from(query.page.per_page))
            .bind(offset_value)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await?;
        Ok(Listing { items: rows.into_iter().map(event_from_row).collect(), total: total(count) })
    }

    async fn get_event(&self, log_id: &str) -> Result<Option<StoredEvent>> {
        if !storable(log_id) {
            return Ok(None);
        }
        let row: Option<EventRow> =
            sqlx::query_as("SELECT log_id, date, type, client_id, doc FROM events WHERE log_id = $1")
                .bind(log_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(row.map(event_from_row))
    }

    async fn prune_events(&self, before: UnixTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM events WHERE date < $1")
            .bind(before.millis)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn last_log_id(&self) -> Result<Option<String>> {
        // `log_id` is `COLLATE "C"`, so MAX is the bytewise greatest, as on SQLite.
        sqlx::query_scalar("SELECT MAX(log_id) FROM events").fetch_one(&self.pool).await.map_err(backend)
    }

    async fn insert_log_stream(&self, stream: &LogStream, cursor: &str) -> Result<()> {
        sqlx::query("INSERT INTO log_streams (id, doc, cursor) VALUES ($1, $2, $3)")
            .bind(&stream.id)
            .bind(records::log_stream_doc(stream)?)
            .bind(cursor)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_log_stream(&self, stream: &LogStream) -> Result<()> {
        if !storable(&stream.id) {
            return Err(StoreError::NotFound);
        }
        let done = sqlx::query("UPDATE log_streams SET doc = $1 WHERE id = $2")
            .bind(records::log_stream_doc(stream)?)
            .bind(&stream.id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(done)
    }

    async fn delete_log_stream(&self, id: &str) -> Result<()> {
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let done =
            sqlx::query("DELETE FROM log_streams WHERE id = $1").bind(id).execute(&self.pool).await.map_err(backend)?;
        require_row(done)
    }

    async fn get_log_stream(&self, id: &str) -> Result<Option<(LogStream, StreamPosition)>> {
        if !storable(id) {
            return Ok(None);
        }
        let row: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT doc, cursor, last_delivered FROM log_streams WHERE id = $1")
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
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let done = sqlx::query("UPDATE log_streams SET cursor = $1, last_delivered = $1 WHERE id = $2")
            .bind(log_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(done)
    }

    async fn insert_action(&self, action: &Action) -> Result<()> {
        sqlx::query("INSERT INTO actions (id, name, doc) VALUES ($1, $2, $3)")
            .bind(&action.id)
            .bind(&action.name)
            .bind(records::action_doc(action)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_action(&self, action: &Action) -> Result<()> {
        if !storable(&action.id) {
            return Err(StoreError::NotFound);
        }
        let done = sqlx::query("UPDATE actions SET name = $1, doc = $2 WHERE id = $3")
            .bind(&action.name)
            .bind(records::action_doc(action)?)
            .bind(&action.id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        require_row(done)
    }

    async fn delete_action(&self, id: &str) -> Result<()> {
        if !storable(id) {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.write_tx().await?;
        let done =
            sqlx::query("DELETE FROM actions WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(backend)?;
        require_row(done)?;
        sqlx::query("DELETE FROM action_versions WHERE action_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM action_bindings WHERE action_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        commit(tx).await
    }

    async fn get_action(&self, id: &str) -> Result<Option<Action>> {
        self.get_named(ACTIONS, id, records::action_from_row).await
    }

    async fn list_actions(&self, page: Page) -> Result<Listing<Action>> {
        self.list_named(ACTIONS, page, records::action_from_row).await
    }

    async fn insert_action_version(&self, version: &ActionVersion) -> Result<()> {
        sqlx::query("INSERT INTO action_versions (id, action_id, number, doc) VALUES ($1, $2, $3, $4)")
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
        if !storable(action_id) {
            return Ok(None);
        }
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, doc FROM action_versions WHERE action_id = $1 AND number = $2")
                .bind(action_id)
                .bind(i64::from(number))
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map(|(id, doc)| records::action_version_from_row(id, action_id.to_owned(), i64::from(number), &doc))
            .transpose()
    }

    async fn list_action_versions(&self, action_id: &str) -> Result<Vec<ActionVersion>> {
        if !storable(action_id) {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT id, number, doc FROM action_versions WHERE action_id = $1 ORDER BY number DESC")
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
        // Two concurrent replacements must not interleave (each deleting only the rows it saw,
        // leaving the union of both lists): the table lock queues writers as SQLite's write lock
        // does, while readers go on reading the committed list.
        sqlx::query("LOCK TABLE action_bindings IN EXCLUSIVE MODE").execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("DELETE FROM action_bindings").execute(&mut *tx).await.map_err(backend)?;
        for (position, b) in bindings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO action_bindings (id, action_id, display_name, position, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
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
        commit(tx).await
    }

    async fn publish_change(&self, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn subscribe_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<String>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(backend)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(backend)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects and listens again after a lost connection; notifications sent
                // meanwhile are lost, which the server's periodic refresh makes up for.
                match listener.recv().await {
                    Ok(notification) => {
                        if tx.send(notification.payload().to_owned()).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener error; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn try_lease(&self, name: &str, holder: &str, now: UnixTime, until: UnixTime) -> Result<bool> {
        // Taken if free, expired, or already ours; `RETURNING` yields a row only then.
        let row: Option<(String,)> = sqlx::query_as(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < $4 \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until.millis)
        .bind(now.millis)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.is_some())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn insert_credential(&self, credential: &ClientCredential) -> Result<()> {
        sqlx::query("INSERT INTO client_credentials (id, client_id, doc) VALUES ($1, $2, $3)")
            .bind(&credential.id)
            .bind(&credential.client_id)
            .bind(records::credential_doc(credential)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn update_credential(&self, credential: &ClientCredential) -> Result<()> {
        let done = sqlx::query("UPDATE client_credentials SET doc = $1 WHERE id = $2 AND client_id = $3")
            .bind(records::credential_doc(credential)?)
            .bind(&credential.id)
            .bind(&credential.client_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn delete_credential(&self, client_id: &str, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM client_credentials WHERE id = $1 AND client_id = $2")
            .bind(id)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn list_credentials(&self, client_id: &str) -> Result<Vec<ClientCredential>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, doc FROM client_credentials WHERE client_id = $1 ORDER BY seq")
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
            "INSERT INTO once_keys (key, expires_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= $3",
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
        let done = sqlx::query("DELETE FROM once_keys WHERE expires_at <= $1")
            .bind(now.millis)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        if !storable(key) {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
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
