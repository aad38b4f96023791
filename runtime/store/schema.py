"""The run store's tables, created on first use and stamped with their version.

``PRAGMA user_version`` records the schema version so a future steprun can migrate a
store instead of misreading it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StoreError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    flow_file TEXT NOT NULL,
    flow_text TEXT NOT NULL,
    flow_hash TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    inputs TEXT NOT NULL,
    authorizations_file TEXT,
    status TEXT NOT NULL,
    position TEXT,
    authorization TEXT,
    error TEXT,
    executed INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS merge_fields (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    step_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    saved TEXT NOT NULL DEFAULT '{}',
    wake_at REAL,
    report TEXT,
    PRIMARY KEY (run_id, seq)
);
"""


def create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in ``conn``'s open transaction, unless the file is not ours."""
    found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    foreign = sorted(found - {"runs", "merge_fields", "attempts"})
    if foreign:
        # Tables of its own and no version: somebody else's SQLite file (a mistyped
        # --state). Adding ours would hide the mistake and change a file not ours.
        raise StoreError(
            f"{path} is an SQLite database but not a steprun run store (it has "
            f"tables {', '.join(foreign[:5])} and no steprun schema version); point "
            "--state / STEPRUN_STATE at a steprun store or at a new file"
        )
    # Statement by statement: executescript() would commit the open transaction first.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


__all__ = ["SCHEMA", "SCHEMA_VERSION", "create_schema"]
