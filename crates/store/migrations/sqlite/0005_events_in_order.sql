-- The event log in insertion order, without an index on `log_id`.
--
-- The embedded store has one writer, which makes `log_id`s in increasing order and appends them in
-- that order (`SqliteStore::append_events` skips anything not after the newest stored id: a
-- journal replay). So the rowid order is the `log_id` order, and the unique index on `log_id`,
-- whose 47-byte keys the background indexer inserted for every issued token, goes: listings order
-- by `seq`, and a `log_id` (a single event, a checkpoint) is found by a binary search over `seq`
-- (src/sqlite.rs, `seq_from`). The client index carries `seq` and an integer key of the client id
-- instead of both ids as text. Indexing an event costs about a quarter less CPU (the store's
-- `append_events` example, docs/benchmarks.md, session 14).
--
-- `client_key` packs the low 7 bits of each of the id's last 9 characters: it only narrows a client
-- filter, which still compares `client_id`. New rows get it from `client_key` in src/sqlite.rs;
-- the expression below must give the same value for the rows rebuilt here (a test checks). The
-- shard mixes the last two characters, as before, into 16.
--
-- No AUTOINCREMENT: a rowid is one more than the largest, so it keeps increasing as long as rows
-- are only appended; pruning removes the oldest, or rows whose order no longer matters.
--
-- The table is rebuilt once, in `log_id` order, at the first start after the upgrade: about 9 s
-- per million events stored (session 14's machine). The old table's pages stay in the file as free
-- pages, which new events reuse (`VACUUM` with the server stopped gives them back).
CREATE TABLE events_in_order (
    seq INTEGER PRIMARY KEY,
    log_id TEXT NOT NULL,
    date INTEGER NOT NULL,
    type TEXT NOT NULL,
    -- Log-stream filter category of `type`, fixed when the event is written.
    category TEXT NOT NULL,
    client_id TEXT,
    client_key INTEGER,
    doc TEXT NOT NULL,
    client_shard INTEGER GENERATED ALWAYS AS ((client_key + (client_key >> 7)) & 15) VIRTUAL
);
INSERT INTO events_in_order (log_id, date, type, category, client_id, client_key, doc)
SELECT log_id, date, type, category, client_id,
    CASE WHEN client_id IS NULL THEN NULL ELSE ((coalesce(unicode(substr(client_id, -1, 1)), 0) & 127) << 0) | ((coalesce(unicode(substr(client_id, -2, 1)), 0) & 127) << 7) | ((coalesce(unicode(substr(client_id, -3, 1)), 0) & 127) << 14) | ((coalesce(unicode(substr(client_id, -4, 1)), 0) & 127) << 21) | ((coalesce(unicode(substr(client_id, -5, 1)), 0) & 127) << 28) | ((coalesce(unicode(substr(client_id, -6, 1)), 0) & 127) << 35) | ((coalesce(unicode(substr(client_id, -7, 1)), 0) & 127) << 42) | ((coalesce(unicode(substr(client_id, -8, 1)), 0) & 127) << 49) | ((coalesce(unicode(substr(client_id, -9, 1)), 0) & 127) << 56) END,
    doc
FROM events ORDER BY log_id;
DROP TABLE events;
ALTER TABLE events_in_order RENAME TO events;
CREATE INDEX events_client ON events (client_shard, seq, client_key);
CREATE INDEX events_type ON events (type, seq) WHERE type <> 'seccft';
CREATE INDEX events_category ON events (category, seq) WHERE category <> 'auth.token_exchange.success';
CREATE INDEX events_date ON events (date);
