-- Client filters on the event log go through a shard of the client id instead of the client id
-- itself. An index on (client_id, log_id) has one insertion point per client: with 10 000 active
-- clients every event indexed lands on its own B-tree page, and each background indexing
-- transaction rewrote about one page per event (the WAL writes and page-cache misses cost 10-25 %
-- of the token throughput, docs/benchmarks.md). 64 shards bound that to 64 pages per transaction,
-- whatever the number of clients. The price is on the read side: a client-filtered query walks the
-- index entries of its shard (about 1/64 of the events) and keeps those of its client, which the
-- index carries, so the rows themselves are read only for matches.
--
-- The shard is the last two characters of the id (random in generated ids); the expression must
-- stay identical to `CLIENT_SHARD` in src/sqlite.rs, which computes the shard of a queried id.
ALTER TABLE events ADD COLUMN client_shard INTEGER GENERATED ALWAYS AS (
    (coalesce(unicode(substr(client_id, -1)), 0) + 7 * coalesce(unicode(substr(client_id, -2, 1)), 0)) % 64
) VIRTUAL;
DROP INDEX events_client;
CREATE INDEX events_client ON events (client_shard, log_id, client_id);
