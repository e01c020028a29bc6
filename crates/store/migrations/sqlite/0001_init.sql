-- Initial schema of the embedded configuration store.
--
-- Each entity table keeps its key, unique and filter columns as real columns (so SQLite enforces
-- uniqueness and can filter) and everything else in `doc`, a JSON object written by
-- `records.rs`. `seq` is an AUTOINCREMENT integer key: it gives listings their creation order and,
-- unlike a plain rowid, is never reused after a delete nor renumbered by VACUUM.

CREATE TABLE clients (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);

CREATE TABLE resource_servers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    identifier TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);

CREATE TABLE client_grants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    audience TEXT NOT NULL,
    allow_any_organization INTEGER NOT NULL CHECK (allow_any_organization IN (0, 1)),
    doc TEXT NOT NULL,
    UNIQUE (client_id, audience)
);

-- Deleting an API removes the grants for its identifier.
CREATE INDEX client_grants_audience ON client_grants (audience);

CREATE TABLE organizations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);

-- The foreign keys make an association to a missing organization or grant impossible; the store
-- also deletes associations explicitly, so correctness does not hinge on `foreign_keys=ON`.
CREATE TABLE organization_client_grants (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    grant_id TEXT NOT NULL REFERENCES client_grants (id) ON DELETE CASCADE,
    UNIQUE (organization_id, grant_id)
);

CREATE INDEX organization_client_grants_grant ON organization_client_grants (grant_id);

-- At most one row: the tenant. No row means defaults.
CREATE TABLE tenant_settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL
);

CREATE TABLE signing_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kid TEXT NOT NULL UNIQUE,
    alg TEXT NOT NULL,
    sealed_private_key BLOB NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- When the key last changed state (rotation, revocation): previous keys stay published for
    -- the longest token lifetime after it.
    state_changed_at INTEGER NOT NULL
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- The event log (Auth0 tenant logs). `doc` is the event as served by `/api/v2/logs`; the other
-- columns exist for filtering. `log_id` is unique and increases, so checkpoint paging orders by it.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    log_id TEXT NOT NULL UNIQUE,
    date INTEGER NOT NULL,
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
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    cursor TEXT NOT NULL,
    -- NULL until the sink accepted something (the initial cursor is a start point, not a delivery).
    last_delivered TEXT
);

-- Credentials-exchange Actions. Secret values inside `doc` are sealed by the server before they
-- get here (see the server's `actions` module).
CREATE TABLE actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);

-- Immutable snapshots made by deploys.
CREATE TABLE action_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    action_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (action_id, number)
);

-- The trigger's bindings; `position` is the execution order.
CREATE TABLE action_bindings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    action_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Leases (used when several instances share a PostgreSQL store; kept here so both schemas match).
CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Public keys of private_key_jwt clients (deleted with their client).
CREATE TABLE client_credentials (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    doc TEXT NOT NULL
);

CREATE INDEX client_credentials_client ON client_credentials (client_id);

-- Keys that may be used once until they expire (client assertion jti): a second insert of a live
-- key is a replay.
CREATE TABLE once_keys (
    key TEXT NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
