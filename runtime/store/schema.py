"""The run store's tables, created on first use and stamped with their version.

``PRAGMA user_version`` records the schema version; a store of an older version is
migrated in one transaction (a crash leaves it at its old version or the new one).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import StoreError

SCHEMA_VERSION = 3

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

# Version 2: the unhandled error a flow-level on_error handler is handling (the run fails
# once the handler ran), and each step attempt's log lines as they happen (`steprun logs`).
MIGRATION_2 = """
ALTER TABLE runs ADD COLUMN failure TEXT;
CREATE TABLE IF NOT EXISTS log_lines (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    attempt INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_lines_run ON log_lines (run_id, attempt);
"""

# Version 3: batches (`run --inputs-file`). A batch keeps its flow and every row's inputs
# from the start, so `steprun resume BATCH` starts the rows never started even after the
# inputs file changed or is gone. A run records its batch and row; the unique index lets
# one run, and one only, ever start a row (two resumes of one batch cannot both start it).
# `line` is the row's line in the inputs file (the row number users see).
MIGRATION_3 = """
ALTER TABLE runs ADD COLUMN batch_id TEXT;
ALTER TABLE runs ADD COLUMN batch_row INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS runs_batch_row ON runs (batch_id, batch_row);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    flow_file TEXT NOT NULL,
    flow_text TEXT NOT NULL,
    flow_hash TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    inputs_file TEXT NOT NULL,
    authorizations_file TEXT,
    concurrency INTEGER NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_rows (
    batch_id TEXT NOT NULL REFERENCES batches (id),
    line INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    PRIMARY KEY (batch_id, line)
);
"""
MIGRATIONS = {1: SCHEMA, 2: MIGRATION_2, 3: MIGRATION_3}  # what brings version N-1 to N
TABLES = {"runs", "merge_fields", "attempts", "log_lines", "batches", "batch_rows"}


def create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in ``conn``'s open transaction, unless the file is not ours."""
    found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    foreign = sorted(found - TABLES)
    if foreign:
        # Tables of its own and no version: somebody else's SQLite file (a mistyped
        # --state). Adding ours would hide the mistake and change a file not ours.
        raise StoreError(
            f"{path} is an SQLite database but not a steprun run store (it has "
            f"tables {', '.join(foreign[:5])} and no steprun schema version); point "
            "--state / STEPRUN_STATE at a steprun store or at a new file"
        )
    migrate(conn, 0)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store at ``version`` to SCHEMA_VERSION in ``conn``'s open transaction."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # Statement by statement: executescript() would commit the open transaction first.
        for statement in MIGRATIONS[target].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "TABLES", "create_schema", "migrate"]
