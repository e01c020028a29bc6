-- Initial schema of the configuration store on PostgreSQL: the SQLite schema
-- (`migrations/sqlite/0001_init.sql`) translated, table for table and column for column, so both
-- backends hold the same rows and the same `doc` JSON written by `records.rs`.
--
-- `seq` is an identity column: it gives listings their creation order and is never reused.
-- Unique constraints are named `<table>__<column>[__<column>]`: the store derives the name a
-- `Conflict` reports from the constraint name (see `conflict_field` in `postgres.rs`).
-- Times are integer milliseconds (BIGINT), as on SQLite.

CREATE TABLE clients (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id TEXT NOT NULL CONSTRAINT clients__client_id UNIQUE,
    doc TEXT NOT NULL
);

CREATE TABLE resource_servers (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT resource_servers__id UNIQUE,
    identifier TEXT NOT NULL CONSTRAINT resource_servers__identifier UNIQUE,
    doc TEXT NOT NULL
);

CREATE TABLE client_grants (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT client_grants__id UNIQUE,
    client_id TEXT NOT NULL,
    audience TEXT NOT NULL,
    allow_any_organization BOOLEAN NOT NULL,
    doc TEXT NOT NULL,
    CONSTRAINT client_grants__client_id__audience UNIQUE (client_id, audience)
);

-- Deleting an API removes the grants for its identifier.
CREATE INDEX client_grants_audience ON client_grants (audience);

CREATE TABLE organizations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT organizations__id UNIQUE,
    name TEXT NOT NULL CONSTRAINT organizations__name UNIQUE,
    doc TEXT NOT NULL
);

-- The foreign keys make an association to a missing organization or grant impossible; the store
-- also deletes associations explicitly, as on SQLite.
CREATE TABLE organization_client_grants (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    grant_id TEXT NOT NULL REFERENCES client_grants (id) ON DELETE CASCADE,
    CONSTRAINT organization_client_grants__organization_id__grant_id UNIQUE (organization_id, grant_id)
);

CREATE INDEX organization_client_grants_grant ON organization_client_grants (grant_id);

-- At most one row: the tenant. No row means defaults.
CREATE TABLE tenant_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL
);

CREATE TABLE signing_keys (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid TEXT NOT NULL CONSTRAINT signing_keys__kid UNIQUE,
    alg TEXT NOT NULL,
    sealed_private_key BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- When the key last changed state (rotation, revocation): previous keys stay published for
    -- the longest token lifetime after it.
    state_changed_at BIGINT NOT NULL
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The event log (Auth0 tenant logs). `doc` is the event as served by `/api/v2/logs`; the other
-- columns exist for filtering. `log_id` is unique and increases, so checkpoint paging orders by it.
-- It compares bytewise (`COLLATE "C"`), as SQLite's BINARY collation does: the database's default
-- collation may be a linguistic one, under which `ORDER BY`, `>` and `MAX` would disagree with the
-- order the ids were issued in.
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log_id TEXT COLLATE "C" NOT NULL CONSTRAINT events__log_id UNIQUE,
    date BIGINT NOT NULL,
    type TEXT NOT NULL,
    -- Log-stream filter category of `type`, fixed when the event is written.
    category TEXT NOT NULL,
    client_id TEXT,
    doc TEXT NOT NULL
);

CREATE INDEX events_type ON events (type, log_id);
CREATE INDEX events_category ON events (category, log_id);
CREATE INDEX events_client ON events (client_id, log_id);
CREATE INDEX events_date ON events (date);

-- Log streams. `cursor` is the last delivered `log_id` (events after it are the backlog); it has
-- its own column because it changes on every delivery while the doc changes only with the API.
CREATE TABLE log_streams (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT log_streams__id UNIQUE,
    doc TEXT NOT NULL,
    cursor TEXT COLLATE "C" NOT NULL,
    -- NULL until the sink accepted something (the initial cursor is a start point, not a delivery).
    last_delivered TEXT COLLATE "C"
);

-- Credentials-exchange Actions. Secret values inside `doc` are sealed by the server before they
-- get here (see the server's `actions` module).
CREATE TABLE actions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT actions__id UNIQUE,
    name TEXT NOT NULL CONSTRAINT actions__name UNIQUE,
    doc TEXT NOT NULL
);

-- Immutable snapshots made by deploys.
CREATE TABLE action_versions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT action_versions__id UNIQUE,
    action_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    doc TEXT NOT NULL,
    CONSTRAINT action_versions__action_id__number UNIQUE (action_id, number)
);

-- The trigger's bindings; `position` is the execution order.
CREATE TABLE action_bindings (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT action_bindings__id UNIQUE,
    action_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    position BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Leases: which instance does a singleton job (delivering one log stream). A lease is taken when
-- free or expired and renewed by its holder.
CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Public keys of private_key_jwt clients (deleted with their client).
CREATE TABLE client_credentials (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL CONSTRAINT client_credentials__id UNIQUE,
    client_id TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE INDEX client_credentials_client ON client_credentials (client_id);

-- Keys that may be used once until they expire (client assertion jti): a second insert of a live
-- key is a replay.
CREATE TABLE once_keys (
    key TEXT NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
