"""The lease history: which process drove which run, from when to when.

One row per drive: written when a process starts driving a run (fenced by the run's lease,
so the row is proof that it held the lease then) and closed before it lets the lease go
(a hand-back, the run's end). A process killed mid-drive leaves its row open. The rows
answer "was this run ever driven by two processes at once?" from the store itself.

The table sits beside the run store's own, in its schema, created with the queue's
(``queue.ensure_schema``, under its advisory lock: two workers starting at once would
otherwise race on ``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

import time

from ..store import Op

TABLE = """
CREATE TABLE IF NOT EXISTS drives (
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    began DOUBLE PRECISION NOT NULL,
    ended DOUBLE PRECISION,
    how TEXT
)
"""
INDEX = "CREATE INDEX IF NOT EXISTS drives_run ON drives (run_id, began)"


def began_ops(run_id: str, owner: str) -> list[Op]:
    return [
        (
            "INSERT INTO drives (run_id, owner, began) VALUES (?,?,?)",
            (run_id, owner, time.time()),
        )
    ]


def ended_ops(run_id: str, owner: str, how: str) -> list[Op]:
    return [
        (
            "UPDATE drives SET ended = ?, how = ? WHERE run_id = ? AND owner = ? AND ended IS NULL",
            (time.time(), how, run_id, owner),
        )
    ]


__all__ = ["INDEX", "TABLE", "began_ops", "ended_ops"]
