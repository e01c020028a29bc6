-- The type and category indexes leave out `seccft` (category `auth.token_exchange.success`), the
-- one event every issued token writes. Those entries were most of both indexes, and each one was
-- inserted in the middle of its B-tree (`seccft` sorts before other types), so indexing a token's
-- event touched two more B-tree pages in the background indexer. Without them the server issues
-- about 5 % more tokens per second at saturation (docs/benchmarks.md).
--
-- Reads of `seccft` by type or category do not need the entries: they are the bulk of the log, so
-- walking the `log_id` order and keeping the matches finds a page of them at once. A query for any
-- other type or category states `type <> 'seccft'` (or the category's equivalent) so that SQLite
-- may use these partial indexes (src/sqlite.rs, `list_events`); the literals here and there must
-- stay identical.
DROP INDEX events_type;
DROP INDEX events_category;
CREATE INDEX events_type ON events (type, log_id) WHERE type <> 'seccft';
CREATE INDEX events_category ON events (category, log_id) WHERE category <> 'auth.token_exchange.success';
