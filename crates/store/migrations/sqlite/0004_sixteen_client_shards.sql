-- 16 shards of the client id in the event log's client index instead of 64 (migration 0002).
-- Every background indexing transaction (~3 600 events at full load) appends to the tail of each
-- shard it touches, so 10 000 active clients dirtied 64 index leaves per transaction where 10
-- clients dirtied about 9, and indexing an event cost 0.75-0.95 us more CPU (the store's
-- `append_events` example; 0.1-0.25 us with 16 shards). That was about a third of what 10 000
-- clients added to a token (docs/benchmarks.md, session 12). The price is on the read side: a
-- client-filtered query walks a sixteenth of the index instead of a sixty-fourth; over 1 M events
-- from 10 000 clients a count takes ~6.5 ms and a page of 50 ~3 ms (against ~1.8 and ~1.1 ms).
--
-- Same expression as before but for the modulus; it must stay identical to `CLIENT_SHARD` in
-- src/sqlite.rs. A generated column cannot be altered: the index goes, the column is dropped and
-- added again (virtual, so nothing is rewritten but the index, rebuilt here once: about 2 s per
-- million events stored, at the first start after the upgrade).
DROP INDEX events_client;
ALTER TABLE events DROP COLUMN client_shard;
ALTER TABLE events ADD COLUMN client_shard INTEGER GENERATED ALWAYS AS (
    (coalesce(unicode(substr(client_id, -1)), 0) + 7 * coalesce(unicode(substr(client_id, -2, 1)), 0)) % 16
) VIRTUAL;
CREATE INDEX events_client ON events (client_shard, log_id, client_id);
