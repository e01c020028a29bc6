#!/usr/bin/env python3
"""Cost of indexing token events into the embedded store's SQLite schema, outside the server.

The server's background indexer inserts `seccft` events into the `events` table in transactions
of a few thousand rows, as multi-row INSERTs of 64 rows (crates/store/src/sqlite.rs). This script
does the same with Python's sqlite3 on the schema built from the repository's own migrations, so
that a change to the schema or to a pragma can be measured alone, in CPU time and bytes written
per event, without the noise of a whole token benchmark (docs/benchmarks.md, session 10).

    scripts/sqlite-events-bench.py [--clients N] [--txn ROWS] [--checkpoint PAGES] [--events N]

Python's own work (building the rows) is included and the same in every variant (~0.6 us/event
here); compare variants, not absolute numbers.
"""

import argparse
import os
import random
import resource
import sqlite3
import string
import tempfile
import time
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent.parent / "crates" / "store" / "migrations" / "sqlite"
ROWS_PER_STATEMENT = 64
# About the size of a real seccft event's JSON (docs/benchmarks.md).
DOC = "x" * 590


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10_000, help="distinct client ids, in rotation")
    ap.add_argument("--txn", type=int, default=3584, help="events per transaction")
    ap.add_argument("--checkpoint", type=int, default=10_000, help="PRAGMA wal_autocheckpoint (pages)")
    ap.add_argument("--events", type=int, default=200_000, help="events in all")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ration-sqlite-bench-") as tmp:
        path = os.path.join(tmp, "ration.db")
        db = sqlite3.connect(path, isolation_level=None)
        # The server's connection settings (SqliteStore::open), but the checkpoint interval.
        for pragma in ("journal_mode=wal", "synchronous=normal", "cache_size=-16384", "temp_store=memory"):
            db.execute(f"PRAGMA {pragma}")
        db.execute(f"PRAGMA wal_autocheckpoint={args.checkpoint}")
        for migration in sorted(MIGRATIONS.glob("*.sql")):
            db.executescript(migration.read_text())

        rng = random.Random(1)
        alphabet = string.ascii_letters + string.digits
        clients = ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(args.clients)]
        sql = (
            "INSERT INTO events (log_id, date, type, category, client_id, doc) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?)"] * ROWS_PER_STATEMENT)
            + " ON CONFLICT (log_id) DO NOTHING"
        )
        statements = max(1, args.txn // ROWS_PER_STATEMENT)
        seq, millis, done = 0, 1_796_484_916_267, 0
        blocks0 = resource.getrusage(resource.RUSAGE_SELF).ru_oublock
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while done < args.events:
            db.execute("BEGIN")
            for _ in range(statements):
                values = []
                for _ in range(ROWS_PER_STATEMENT):
                    seq += 1
                    millis += seq % 36 == 0  # ~36 events per millisecond, as at 36 k tokens/s
                    log_id = "900%016d%08d%020d" % (millis, 12345, seq)
                    values += [log_id, millis, "seccft", "auth.token_exchange.success", clients[seq % len(clients)], DOC]
                db.execute(sql, values)
            db.execute("COMMIT")
            done += statements * ROWS_PER_STATEMENT
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        blocks = resource.getrusage(resource.RUSAGE_SELF).ru_oublock - blocks0
        db.close()
        print(
            f"clients {args.clients}  txn {statements * ROWS_PER_STATEMENT}  checkpoint {args.checkpoint}: "
            f"{cpu / done * 1e6:.2f} us CPU/event, {wall / done * 1e6:.2f} us wall/event, "
            f"{blocks * 512 / done:.0f} bytes written/event"
        )


if __name__ == "__main__":
    main()
