#!/usr/bin/env python3
"""Indexes the header table of a tansu broker's SQLite database (tansu.db), waiting up to
30 s for the broker to create it.

tansu 0.6's SQLite schema has no index on its `header` table, and every fetch looks up the
headers of the records it returns, so the cost of a fetch grows with every header ever
written. Our records carry about a dozen headers each: at about 32,000 records (400,000
header rows) the local broker spun at 100% CPU and stopped answering, even after a restart
(issue 22). With this index a fetch costs the same at any size. CREATE INDEX IF NOT EXISTS
makes it a no-op on every later start.

Used by scripts/stack.sh for the local broker and by the tests' own brokers
(tests/support/broker.rs); tests/pipeline/broker_volume.rs holds fetch cost flat with it.

    scripts/tansu-index.py path/to/tansu.db
"""
import sqlite3
import sys
import time

deadline = time.time() + 30
while True:
    try:
        con = sqlite3.connect(sys.argv[1], timeout=10)
        con.execute(
            "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id)"
        )
        con.commit()
        con.close()
        break
    except sqlite3.OperationalError as error:  # no table yet, or the database is busy
        if time.time() > deadline:
            sys.exit(f"could not index tansu's header table: {error}")
        time.sleep(0.3)
